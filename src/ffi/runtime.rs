//! The ONNX Runtime library: load it, and say which file and version were loaded.

use std::ffi::c_char;
use std::path::Path;

use super::boundary::{copy_out, ffi_boundary, optional_str, FfiError};
use super::status::VaradStatus;
use crate::backbone::runtime;

fn loaded() -> Result<&'static runtime::Runtime, FfiError> {
    runtime::loaded().ok_or_else(|| {
        FfiError::new(
            VaradStatus::VARAD_ERR_RUNTIME_NOT_FOUND,
            "ONNX Runtime is not loaded yet: call varad_runtime_load() or open a model first",
        )
    })
}

/// Loads the ONNX Runtime library now (creating a model does it too). `path` names the
/// library file; NULL searches: `ORT_DYLIB_PATH`, then the folder of this library's own
/// file (`varad.dll`, `libvarad.so`), then the project's setup folder, then on Linux the
/// system library path (never a search by name on Windows, where System32 may hold an
/// older `onnxruntime.dll`). A process holds one ONNX Runtime: once loaded, later calls
/// succeed if `path` is NULL or names the same file.
///
/// Ownership: `path` is borrowed for the call. Thread safety: any thread; concurrent
/// first loads are serialised.
/// Errors: `VARAD_ERR_RUNTIME_NOT_FOUND` (missing, not ONNX Runtime, older than 1.17, or a
/// different file than the one already loaded), `VARAD_ERR_RUNTIME`,
/// `VARAD_ERR_INVALID_ARGUMENT` (path not UTF-8).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn varad_runtime_load(path: *const c_char) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let path = unsafe { optional_str(path, "path") }?;
        runtime::load(path.map(Path::new))?;
        Ok(())
    })
}

/// Copies the absolute path of the loaded ONNX Runtime library file into `buf`
/// (NUL-terminated); `*needed` receives the size needed, NUL included.
///
/// Ownership: the caller owns `buf`. Thread safety: any thread.
/// Errors: `VARAD_ERR_RUNTIME_NOT_FOUND` (not loaded yet), `VARAD_ERR_BUFFER_TOO_SMALL`
/// (`buf` NULL or too short: nothing written to `buf`, `*needed` set).
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes; `needed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_runtime_path(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> VaradStatus {
    ffi_boundary(|| {
        let info = loaded()?.info();
        let text = info.path.to_string_lossy();
        // SAFETY: forwarded from this function's contract.
        unsafe { copy_out(text.as_bytes(), buf, len, needed) }
    })
}

/// Copies the version of the loaded ONNX Runtime (e.g. `"1.23.2"`) into `buf`
/// (NUL-terminated); `*needed` receives the size needed, NUL included.
///
/// Ownership: the caller owns `buf`. Thread safety: any thread.
/// Errors: `VARAD_ERR_RUNTIME_NOT_FOUND` (not loaded yet), `VARAD_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes; `needed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_runtime_version(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> VaradStatus {
    ffi_boundary(|| {
        let info = loaded()?.info();
        // SAFETY: forwarded from this function's contract.
        unsafe { copy_out(info.version.as_bytes(), buf, len, needed) }
    })
}
