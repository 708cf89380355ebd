//! The C ABI. This layer only translates: C types and pointers in, engine calls, status
//! codes and C types out. Every exported body runs inside [`boundary::ffi_boundary`],
//! which catches panics, so nothing here can unwind into or abort the host.

mod boundary;
mod runtime;
mod status;
mod version;

pub use status::VaradStatus;
