//! `varad`: high-resolution industrial anomaly detection with VarAD.
//!
//! The pipeline (see `DESIGN.md` in the project's shared folder) mirrors the module
//! layout: [`image`] turns pixels into the backbone's input, [`backbone`] runs the frozen
//! ONNX feature extractor, [`predictor`] is the trainable Mamba predictor. This crate's
//! Rust API knows nothing of C; the C ABI lives in `ffi` and only translates.

pub mod backbone;
pub mod config;
pub mod cuda;
pub mod device;
pub mod error;
pub mod eval;
pub mod ffi;
pub mod image;
pub mod model;
pub mod model_file;
pub mod predictor;
pub mod score;
pub mod threads;
pub mod train;

pub use config::{Config, ScoreConfig, TrainConfig};
pub use device::Device;
pub use error::{Error, ErrorKind, Result};
pub use model::Model;

/// The library's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
