//! The panic boundary, pointer checks and the thread-local last-error message.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::status::VaradStatus;
use crate::Error;

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// An error on its way out of a C call: a status and the message behind it.
pub(crate) struct FfiError {
    pub status: VaradStatus,
    pub message: String,
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        FfiError {
            status: e.kind().into(),
            message: e.to_string(),
        }
    }
}

impl FfiError {
    /// A failure with an explicit status.
    pub fn new(status: VaradStatus, message: impl Into<String>) -> Self {
        FfiError {
            status,
            message: message.into(),
        }
    }
}

/// Runs `body`, turning an error or a panic into a status and the thread's last-error
/// message. On success the last error is cleared.
pub(crate) fn ffi_boundary(body: impl FnOnce() -> Result<(), FfiError>) -> VaradStatus {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(FfiError::new(
            VaradStatus::VARAD_ERR_PANIC,
            format!("internal error (panic): {what}"),
        ))
    });
    match outcome {
        Ok(()) => {
            set_last_error(None);
            VaradStatus::VARAD_OK
        }
        Err(e) => {
            set_last_error(Some(&e.message));
            e.status
        }
    }
}

/// Like [`ffi_boundary`] for calls that return a value instead of a status: a panic
/// yields `fallback`.
pub(crate) fn ffi_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

fn set_last_error(message: Option<&str>) {
    // An interior NUL cannot be carried by a C string; it is replaced, not dropped.
    let c = message.map(|m| CString::new(m.replace('\0', "\\0")).unwrap_or_default());
    LAST_ERROR.with(|slot| *slot.borrow_mut() = c);
}

/// Runs `f` with the thread's last error message, if any.
pub(crate) fn with_last_error<R>(f: impl FnOnce(Option<&CStr>) -> R) -> R {
    LAST_ERROR.with(|slot| f(slot.borrow().as_deref()))
}

/// Reads a NUL-terminated UTF-8 string argument; NULL gives `None`.
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string that outlives the call.
pub(crate) unsafe fn optional_str<'a>(
    ptr: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, FfiError> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map(Some)
        .map_err(|_| {
            FfiError::new(
                VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
                format!("{what} is not valid UTF-8"),
            )
        })
}

/// Copies `text` plus a NUL into `buf` of `len` bytes and stores the needed size (with
/// the NUL) in `*needed` when it is not NULL. A too-small or NULL buffer is
/// `VARAD_ERR_BUFFER_TOO_SMALL` and writes nothing into `buf`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes; `needed` is NULL or writable.
pub(crate) unsafe fn copy_out(
    text: &[u8],
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> Result<(), FfiError> {
    let size = text.len() + 1;
    if !needed.is_null() {
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *needed = size };
    }
    if buf.is_null() || len < size {
        return Err(FfiError::new(
            VaradStatus::VARAD_ERR_BUFFER_TOO_SMALL,
            format!("the buffer holds {len} bytes; {size} are needed"),
        ));
    }
    // SAFETY: `buf` is writable for `len >= size` bytes and does not overlap `text`,
    // which the library owns.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
    }
    Ok(())
}

/// A `VARAD_ERR_NULL_POINTER` error naming the argument.
pub(crate) fn null_pointer(what: &str) -> FfiError {
    FfiError::new(
        VaradStatus::VARAD_ERR_NULL_POINTER,
        format!("{what} is NULL"),
    )
}

/// Fails with `VARAD_ERR_NULL_POINTER` when `ptr` is NULL (for out-parameters, checked
/// before any work so that nothing is done for a call that cannot report its result).
pub(crate) fn check_out<T>(ptr: *mut T, what: &str) -> Result<(), FfiError> {
    if ptr.is_null() {
        Err(null_pointer(what))
    } else {
        Ok(())
    }
}

/// The object behind a pointer argument; NULL is `VARAD_ERR_NULL_POINTER`.
///
/// # Safety
/// `ptr` is NULL or points at a live `T` that is not written during `'a`.
pub(crate) unsafe fn try_ref<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, FfiError> {
    // SAFETY: the caller guarantees a live object when not NULL.
    unsafe { ptr.as_ref() }.ok_or_else(|| null_pointer(what))
}

/// The object behind a mutable pointer argument; NULL is `VARAD_ERR_NULL_POINTER`.
///
/// # Safety
/// `ptr` is NULL or points at a live `T` that nothing else uses during `'a`.
pub(crate) unsafe fn try_mut<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, FfiError> {
    // SAFETY: the caller guarantees a live, unshared object when not NULL.
    unsafe { ptr.as_mut() }.ok_or_else(|| null_pointer(what))
}

/// Reads a required NUL-terminated UTF-8 string argument; NULL is
/// `VARAD_ERR_NULL_POINTER`.
///
/// # Safety
/// As [`optional_str`].
pub(crate) unsafe fn required_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, FfiError> {
    // SAFETY: forwarded from this function's contract.
    unsafe { optional_str(ptr, what) }?.ok_or_else(|| null_pointer(what))
}

/// A `repr(C)` struct whose first field is its own size in bytes (`size_t size`), so
/// that fields can be appended in later versions: an older caller passes a smaller size
/// and gets the defaults for the fields it does not know.
///
/// # Safety
/// Implementors are `repr(C)`, start with a `usize` size field, and every bit pattern of
/// every field is valid (integers, floats, raw pointers).
pub(crate) unsafe trait SizedStruct: Copy {
    /// The size of the struct's first published version: smaller sizes are refused.
    const MIN_SIZE: usize;
    /// The struct's name in messages (`"VaradParams"`).
    const NAME: &'static str;
    /// Where the caller gets a correctly sized value (`"varad_default_params()"`).
    const SOURCE: &'static str;
}

/// Reads the `size` field of a sized struct and checks it against the known minimum.
///
/// # Safety
/// `ptr` is non-null and readable for at least a `usize`.
unsafe fn checked_size<T: SizedStruct>(ptr: *const T) -> Result<usize, FfiError> {
    // SAFETY: the caller guarantees a readable size field; no alignment assumed.
    let size = unsafe { std::ptr::read_unaligned(ptr.cast::<usize>()) };
    if size < T::MIN_SIZE {
        return Err(FfiError::new(
            VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
            format!(
                "{}.size is {size}; at least {} is expected: start from {} or set size to sizeof({})",
                T::NAME,
                T::MIN_SIZE,
                T::SOURCE,
                T::NAME
            ),
        ));
    }
    Ok(size)
}

/// Reads a sized struct from the caller: the first `min(size, size_of::<T>())` bytes come
/// from `ptr`, the rest from `defaults` (fields a newer library added). A size below
/// `T::MIN_SIZE` is `VARAD_ERR_INVALID_ARGUMENT`; NULL is `VARAD_ERR_NULL_POINTER`.
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
    let size = unsafe { checked_size(ptr) }?;
    let mut value = defaults;
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: the caller guarantees `size` readable bytes; `value` has size_of::<T>() >= n
    // writable bytes; every bit pattern is a valid T (SizedStruct's contract).
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut value as *mut T).cast::<u8>(), n)
    };
    Ok(value)
}

/// Checks the size field of a sized struct the library will fill in ([`write_sized`]);
/// call it before doing the work, so a bad struct fails early.
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
    unsafe { checked_size(ptr.cast_const()) }.map(|_| ())
}

/// Writes `value` into a sized struct of the caller, as many bytes as its `size` says
/// (up to `size_of::<T>()`), keeping the caller's `size` field.
///
/// # Safety
/// `ptr` passed [`check_sized_out`] and is writable for the size it states.
pub(crate) unsafe fn write_sized<T: SizedStruct>(ptr: *mut T, value: T) {
    // SAFETY: checked before; no alignment assumed for the read.
    let size = unsafe { std::ptr::read_unaligned(ptr.cast::<usize>()) };
    let n = size.min(std::mem::size_of::<T>());
    let skip = std::mem::size_of::<usize>();
    if n > skip {
        // SAFETY: the caller guarantees `size >= n` writable bytes at `ptr`; `value` is a
        // distinct local of size_of::<T>() >= n bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&value as *const T).cast::<u8>().add(skip),
                ptr.cast::<u8>().add(skip),
                n - skip,
            )
        };
    }
}
