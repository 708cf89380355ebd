//! `varad`: high-resolution industrial anomaly detection with VarAD.
//!
//! The pipeline (see `DESIGN.md` in the project's shared folder) mirrors the module
//! layout: [`image`] turns pixels into the backbone's input, [`backbone`] runs the frozen
//! ONNX feature extractor, [`model`] adapts its maps and predicts them with the Mamba
//! predictor, [`train`] fits it, [`score`] turns the prediction errors into maps, scores,
//! decisions and regions. This crate's Rust API knows nothing of C; the C ABI lives in
//! `ffi` and only translates.
//!
//! The public Rust API is what an application needs: [`Model`], [`Config`], image views,
//! scoring results. The kernels, the CUDA path and the C ABI's Rust functions are public
//! only with the `internals` feature, for the benches, tests and tools of this workspace.

/// Declares a module that is public with the `internals` feature and crate-private
/// without it.
macro_rules! internal_mod {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[cfg(feature = "internals")]
        pub mod $name;
        $(#[$attr])*
        #[cfg(not(feature = "internals"))]
        pub(crate) mod $name;
    };
}

pub mod backbone;
pub mod config;
internal_mod!(cuda);
pub mod device;
mod digest;
pub mod error;
internal_mod!(
    /// The C ABI (`include/varad.h`); Rust tests call it as C would.
    ffi
);
pub mod image;
pub mod model;
pub mod model_file;
internal_mod!(predictor);
mod platform;
pub mod score;
pub mod train;

pub use config::{Config, ScoreConfig, TrainConfig};
pub use device::Device;
pub use error::{Error, ErrorKind, Result};
pub use model::{LiveModel, Model};

/// The library's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
