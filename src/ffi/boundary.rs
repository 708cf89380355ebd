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
#[derive(Debug)]
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
