//! The C ABI. This layer only translates: C types and pointers in, engine calls, status
//! codes and C types out. Every exported body runs inside `boundary::ffi_boundary`,
//! which catches panics, so nothing here can unwind into or abort the host.
//! The functions are re-exported here so Rust tests can call them as C would.

mod boundary;
mod runtime;
mod status;
mod version;

pub use runtime::{varad_runtime_load, varad_runtime_path, varad_runtime_version};
pub use status::VaradStatus;
pub use version::{
    varad_last_error_copy, varad_last_error_message, varad_version_number, varad_version_string,
};
