//! Size-tagged structs: the caller's memory holds them and their first field says how
//! many bytes that memory has, so a struct can grow at its end without breaking a
//! caller compiled against an older, shorter layout (Win32's `cbSize`). The library
//! never reads or writes past the caller's `size`, never returns such a struct by value
//! (the caller's return slot would be the old size), and fills the fields a caller's
//! layout lacks with their defaults.
//!
//! A caller's struct larger than the library's (a newer header with an older library)
//! is accepted when the bytes the library does not know are all zero, as
//! `varad_*_init` leaves them; a nonzero byte there is a field this library cannot
//! honour, refused rather than silently ignored (Linux's `copy_struct_from_user` for
//! `openat2`/`clone3` draws the same line).

use super::boundary::{null_pointer, FfiError};
use super::status::VaradStatus;

/// The largest `size` accepted: far above any layout, far below what an uninitialised
/// `size` field usually holds, so a forgotten init is refused instead of read.
pub(crate) const MAX_STRUCT_SIZE: usize = 4096;

/// A `repr(C)` struct whose first field is its own size in bytes (`size_t size`).
///
/// # Safety
/// Implementors are `repr(C)`, start with a `usize` size field, have no padding (so every
/// byte the library copies is a field's), and every bit pattern of every field is valid
/// (integers, floats, raw pointers).
pub(crate) unsafe trait SizedStruct: Copy {
    /// The fewest bytes a caller's struct may have: `size` and the fields that have no
    /// default. Every later field takes its default when the caller's `size` ends
    /// before it.
    const MIN_SIZE: usize;
    /// The struct's name in messages (`"VaradParams"`).
    const NAME: &'static str;
    /// How a caller fills one in (`"varad_params_init(&params, sizeof params)"`).
    const INIT: &'static str;
}

/// Checks a caller's size for `T`: at least `T::MIN_SIZE`, at most `MAX_STRUCT_SIZE`, and
/// a multiple of `T`'s alignment, as every C `sizeof` is (so no field is cut in two).
fn check_size<T: SizedStruct>(size: usize, what: &str) -> Result<(), FfiError> {
    let align = std::mem::align_of::<T>();
    let problem = if size < T::MIN_SIZE {
        format!("is below the {} bytes of its first layout", T::MIN_SIZE)
    } else if size > MAX_STRUCT_SIZE {
        format!("is above {MAX_STRUCT_SIZE}, so it was never initialised")
    } else if !size.is_multiple_of(align) {
        format!("is not a multiple of {align}, as sizeof({}) is", T::NAME)
    } else {
        return Ok(());
    };
    Err(FfiError::new(
        VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
        format!(
            "{what}.size is {size}, which {problem}: fill the struct with {}",
            T::INIT
        ),
    ))
}

/// Reads the size field at `ptr` and checks it.
///
/// # Safety
/// `ptr` is non-null and readable for a `usize`.
unsafe fn read_size<T: SizedStruct>(ptr: *const T, what: &str) -> Result<usize, FfiError> {
    // SAFETY: the caller guarantees a readable size field; no alignment assumed.
    let size = unsafe { std::ptr::read_unaligned(ptr.cast::<usize>()) };
    check_size::<T>(size, what)?;
    Ok(size)
}

/// Fills the caller's struct of `size` bytes with `defaults`: the fields that lie within
/// `size`, `size` itself set to `size`, any bytes past this library's layout zeroed.
///
/// # Safety
/// `ptr` is NULL or writable for `size` bytes.
pub(crate) unsafe fn init_sized<T: SizedStruct>(
    ptr: *mut T,
    size: usize,
    defaults: T,
    what: &str,
) -> Result<(), FfiError> {
    if ptr.is_null() {
        return Err(null_pointer(what));
    }
    check_size::<T>(size, what)?;
    let known = std::mem::size_of::<T>();
    let n = size.min(known);
    let out = ptr.cast::<u8>();
    // SAFETY: the caller guarantees `size >= n` writable bytes at `ptr`; `defaults` is a
    // local of `known >= n` bytes with no padding (SizedStruct's contract); the bytes
    // past `known` up to `size` are the caller's too.
    unsafe {
        std::ptr::copy_nonoverlapping((&defaults as *const T).cast::<u8>(), out, n);
        std::ptr::write_unaligned(out.cast::<usize>(), size);
        if size > known {
            std::ptr::write_bytes(out.add(known), 0, size - known);
        }
    }
    Ok(())
}

/// Reads a caller's struct: the fields within its `size` from `ptr`, the rest from
/// `defaults`. Refuses a bad `size` and set bytes past this library's layout.
///
/// # Safety
/// `ptr` is NULL or readable for the size it states in its first field.
pub(crate) unsafe fn read_sized<T: SizedStruct>(
    ptr: *const T,
    defaults: T,
    what: &str,
) -> Result<T, FfiError> {
    if ptr.is_null() {
        return Err(null_pointer(what));
    }
    // SAFETY: non-null; the caller guarantees the size field is readable.
    let size = unsafe { read_size(ptr, what) }?;
    let known = std::mem::size_of::<T>();
    if size > known {
        // SAFETY: the caller guarantees `size` readable bytes at `ptr`.
        let tail = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>().add(known), size - known) };
        if let Some(at) = tail.iter().position(|&b| b != 0) {
            return Err(FfiError::new(
                VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
                format!(
                    "{what} sets a field this library ({}) does not know (byte {} of {size}; \
                     it knows {known}): link the library version the program was compiled for, \
                     or a newer one",
                    super::version::STRING,
                    known + at
                ),
            ));
        }
    }
    let mut value = defaults;
    let n = size.min(known);
    // SAFETY: the caller guarantees `size >= n` readable bytes; `value` has `known >= n`
    // writable bytes; every bit pattern is a valid T (SizedStruct's contract).
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut value as *mut T).cast::<u8>(), n)
    };
    Ok(value)
}

/// Checks the size field of a struct the library will fill in ([`write_sized`]); call it
/// before doing the work, so a bad struct fails early.
///
/// # Safety
/// `ptr` is NULL or readable for a `usize`.
pub(crate) unsafe fn check_sized_out<T: SizedStruct>(
    ptr: *mut T,
    what: &str,
) -> Result<(), FfiError> {
    if ptr.is_null() {
        return Err(null_pointer(what));
    }
    // SAFETY: forwarded.
    unsafe { read_size(ptr.cast_const(), what) }.map(|_| ())
}

/// Writes `value` into the caller's struct: the fields within its `size`, keeping the
/// caller's `size`; bytes past this library's layout are zeroed.
///
/// # Safety
/// `ptr` passed [`check_sized_out`] and is writable for the size it states.
pub(crate) unsafe fn write_sized<T: SizedStruct>(
    ptr: *mut T,
    value: T,
    what: &str,
) -> Result<(), FfiError> {
    // SAFETY: checked before; no alignment assumed.
    let size = unsafe { std::ptr::read_unaligned(ptr.cast::<usize>()) };
    // SAFETY: forwarded: `ptr` is writable for `size` bytes.
    unsafe { init_sized(ptr, size, value, what) }
}

/// Asserts at test time that a size-tagged struct has no padding: the listed fields'
/// sizes add up to the struct's, so a caller's layout that ends after any field is
/// exactly a prefix of the library's, and listing every field is enforced (a field left
/// out of the list fails the test).
#[cfg(test)]
macro_rules! assert_no_padding {
    ($ty:ty { $($field:ident),+ $(,)? }) => {{
        let mut end = 0usize;
        $(
            assert_eq!(
                std::mem::offset_of!($ty, $field),
                end,
                concat!(stringify!($ty), ".", stringify!($field), " follows padding")
            );
            let value: $ty = unsafe { std::mem::zeroed() };
            end += std::mem::size_of_val(&value.$field);
        )+
        assert_eq!(end, std::mem::size_of::<$ty>(), concat!(stringify!($ty), " has unlisted fields or tail padding"));
    }};
}
#[cfg(test)]
pub(crate) use assert_no_padding;

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Grows {
        size: usize,
        first: u64,
        second: u32,
        third: u32,
    }

    // SAFETY: repr(C), starts with `size`, integer fields, no padding (tested below).
    unsafe impl SizedStruct for Grows {
        const MIN_SIZE: usize = 16;
        const NAME: &'static str = "Grows";
        const INIT: &'static str = "grows_init(&g, sizeof g)";
    }

    const DEFAULTS: Grows = Grows {
        size: 24,
        first: 11,
        second: 22,
        third: 33,
    };

    #[test]
    fn the_test_struct_has_no_padding() {
        assert_no_padding!(Grows {
            size,
            first,
            second,
            third
        });
    }

    #[test]
    fn init_writes_only_the_callers_bytes_and_zeroes_what_the_library_does_not_know() {
        // An old caller (16 bytes), the same layout (24) and a newer caller (32).
        for size in [16usize, 24, 32] {
            let mut memory = [0xAAu8; 48];
            // SAFETY: `memory` is writable for 48 >= size bytes; u8 has no alignment
            // needs and the writes are unaligned.
            unsafe { init_sized(memory.as_mut_ptr().cast::<Grows>(), size, DEFAULTS, "g") }
                .unwrap();
            assert_eq!(usize::from_ne_bytes(memory[..8].try_into().unwrap()), size);
            assert_eq!(u64::from_ne_bytes(memory[8..16].try_into().unwrap()), 11);
            if size >= 24 {
                assert_eq!(u32::from_ne_bytes(memory[16..20].try_into().unwrap()), 22);
            }
            assert!(memory[24..size.max(24)].iter().all(|&b| b == 0));
            assert!(
                memory[size..].iter().all(|&b| b == 0xAA),
                "wrote past size {size}"
            );
        }
    }

    #[test]
    fn a_short_callers_struct_reads_defaults_for_the_fields_it_lacks() {
        let old = Grows {
            size: 16,
            first: 5,
            second: 999,
            third: 999,
        };
        // SAFETY: `old` is readable for its 24 bytes >= the 16 it states.
        let read = unsafe { read_sized(&old, DEFAULTS, "g") }.unwrap();
        assert_eq!((read.first, read.second, read.third), (5, 22, 33));
    }

    #[test]
    fn a_newer_callers_struct_is_read_when_the_unknown_bytes_are_zero() {
        let mut memory = [0u8; 32];
        // SAFETY: 32 writable bytes.
        unsafe { init_sized(memory.as_mut_ptr().cast::<Grows>(), 32, DEFAULTS, "g") }.unwrap();
        memory[8] = 7; // first = 7 (little- or big-endian: the low byte differs from 11)
                       // SAFETY: `memory` is readable for the 32 bytes it states.
        let read = unsafe { read_sized(memory.as_ptr().cast::<Grows>(), DEFAULTS, "g") }.unwrap();
        assert_ne!(read.first, 11);
        memory[30] = 1;
        // SAFETY: as above.
        let e = unsafe { read_sized(memory.as_ptr().cast::<Grows>(), DEFAULTS, "g") }.unwrap_err();
        assert_eq!(e.status, VaradStatus::VARAD_ERR_INVALID_ARGUMENT);
        assert!(e.message.contains("byte 30 of 32"), "{}", e.message);
    }

    #[test]
    fn bad_sizes_are_refused_with_what_to_do() {
        for size in [0usize, 8, 20, 4104, usize::MAX] {
            let mut memory = [0u8; 32];
            // SAFETY: the size is refused before any write.
            let e = unsafe { init_sized(memory.as_mut_ptr().cast::<Grows>(), size, DEFAULTS, "g") }
                .unwrap_err();
            assert_eq!(e.status, VaradStatus::VARAD_ERR_INVALID_ARGUMENT, "{size}");
            assert!(
                e.message.contains("grows_init(&g, sizeof g)"),
                "{}",
                e.message
            );
            assert!(memory.iter().all(|&b| b == 0));
        }
        // SAFETY: NULL is checked first.
        let e =
            unsafe { init_sized(std::ptr::null_mut::<Grows>(), 24, DEFAULTS, "g") }.unwrap_err();
        assert_eq!(e.status, VaradStatus::VARAD_ERR_NULL_POINTER);
    }
}
