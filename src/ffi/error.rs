//! The message behind the last failed call on this thread.

use std::ffi::c_char;

use super::boundary::{copy_out, ffi_value, with_last_error, FfiError};
use super::status::VaradStatus;

/// The message of the last failed `varad_*` call on this thread, or NULL when the last
/// call succeeded.
///
/// Ownership: owned by the library; valid until the next `varad_*` call on this thread.
/// Copy it (or use `varad_last_error_copy`) to keep it.
/// Thread safety: each thread has its own last error. Errors: none.
#[no_mangle]
pub extern "C" fn varad_last_error_message() -> *const c_char {
    ffi_value(std::ptr::null(), || {
        with_last_error(|message| message.map_or(std::ptr::null(), |m| m.as_ptr()))
    })
}

/// Copies the last error message of this thread, NUL-terminated, into `buf` (`len`
/// bytes); an empty string when the last call succeeded. `*needed` (when `needed` is not
/// NULL) receives the size the message needs, NUL included, whether or not it fits.
/// This call does not change the last error.
///
/// Ownership: the caller owns `buf`. Thread safety: any thread.
/// Errors: `VARAD_ERR_BUFFER_TOO_SMALL` when `buf` is NULL or `len` is too small (then
/// `buf` is not written).
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes; `needed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_last_error_copy(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> VaradStatus {
    ffi_value(VaradStatus::VARAD_ERR_PANIC, || {
        let text = with_last_error(|m| m.map(|m| m.to_bytes().to_vec()).unwrap_or_default());
        // SAFETY: forwarded from this function's contract.
        match unsafe { copy_out(&text, buf, len, needed) } {
            Ok(()) => VaradStatus::VARAD_OK,
            Err(FfiError { status, .. }) => status,
        }
    })
}
