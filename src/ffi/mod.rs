//! The C ABI. This layer only translates: C types and pointers in, engine calls, status
//! codes and C types out. Every exported body runs inside `boundary::ffi_boundary`,
//! which catches panics, so nothing here can unwind into or abort the host.
//! The functions are re-exported here so Rust tests can call them as C would.
//!
//! One file per handle: `model.rs` (`VaradModel`: create, load, save, thresholds),
//! `training_set.rs` (`VaradTrainingSet` and `varad_train`), `score.rs`
//! (`VaradScoreResult`, `varad_score`), `image.rs` (`VaradImage`, image views).

mod boundary;
mod image;
mod model;
mod runtime;
mod score;
mod status;
mod training_set;
mod version;

pub use image::{
    varad_image_destroy, varad_image_read, varad_image_view, VaradImage, VaradImageView,
    VaradPixelFormat,
};
pub use model::{
    varad_active_device, varad_create, varad_default_load_params, varad_default_params,
    varad_destroy, varad_get_threshold, varad_load, varad_save, varad_set_decision_thresholds,
    varad_set_threshold, VaradDevice, VaradLoadParams, VaradMapNorm, VaradModel, VaradParams,
    VaradThreshold,
};
pub use runtime::{varad_runtime_load, varad_runtime_path, varad_runtime_version};
pub use score::{
    varad_default_score_params, varad_result_decision, varad_result_image_score, varad_result_map,
    varad_result_normalised_score, varad_result_raw_map, varad_result_regions, varad_score,
    varad_score_batch, varad_score_result_destroy, varad_write_heatmap_png, VaradDecision,
    VaradRegion, VaradScoreParams, VaradScoreResult,
};
pub use status::VaradStatus;
pub use training_set::{
    varad_train, varad_training_set_add, varad_training_set_count, varad_training_set_create,
    varad_training_set_destroy, VaradProgress, VaradProgressCallback, VaradTrainReport,
    VaradTrainingSet,
};
pub use version::{
    varad_last_error_copy, varad_last_error_message, varad_version_number, varad_version_string,
};
