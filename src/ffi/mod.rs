//! The C ABI. This layer only translates: C types and pointers in, engine calls, status
//! codes and C types out. Every exported body runs inside `boundary::ffi_boundary`,
//! which catches panics, so nothing here can unwind into or abort the host.
//! With the `internals` feature the functions are re-exported here, so Rust tests can call
//! them as C would.
//!
//! The files follow the header's sections (`xtask` assembles `include/varad.h` from them
//! in this order): `version.rs`; `status.rs` and `error.rs`; `image.rs`; `params.rs`;
//! `model.rs` (`VaradModel`); `training_set.rs` (`VaradTrainingSet`, `varad_train`) and
//! `thresholds.rs`; `score.rs` (`VaradScoreResult`); `result.rs`; `runtime.rs`; `log.rs`. The
//! machinery they share: `boundary.rs` (panics, pointers, strings), `sized.rs`
//! (size-tagged structs), `c_enum.rs` (C enum values).

mod boundary;
mod c_enum;
mod error;
mod image;
mod log;
mod model;
mod params;
mod result;
mod runtime;
mod score;
mod sized;
mod status;
mod thresholds;
mod training_set;
mod version;

#[cfg(feature = "internals")]
pub use error::{varad_last_error_copy, varad_last_error_message};
#[cfg(feature = "internals")]
pub use image::{
    varad_image_destroy, varad_image_read, varad_image_view, VaradImage, VaradImageView,
    VaradPixelFormat,
};
#[cfg(feature = "internals")]
pub use log::{varad_set_log_callback, VaradLogCallback, VaradLogLevel};
#[cfg(feature = "internals")]
pub use model::{
    varad_active_device, varad_create, varad_destroy, varad_load, varad_save, VaradModel,
};
#[cfg(feature = "internals")]
pub use params::{
    varad_load_params_init, varad_params_init, varad_score_params_init, VaradBankLevels,
    VaradBankSelection, VaradBeyondData,
    VaradDevice, VaradLoadParams, VaradMapNorm, VaradNeighbourTerm, VaradParams, VaradResizeMode, VaradScoreParams,
};
#[cfg(feature = "internals")]
pub use result::{
    varad_result_decision, varad_result_image_score, varad_result_map,
    varad_result_normalised_score, varad_result_p_value, varad_result_raw_map, varad_result_regions,
    varad_write_heatmap_png, VaradDecision, VaradRegion,
};
#[cfg(feature = "internals")]
pub use runtime::{varad_runtime_load, varad_runtime_path, varad_runtime_version};
#[cfg(feature = "internals")]
pub use score::{varad_score, varad_score_batch, varad_score_result_destroy, VaradScoreResult};
#[cfg(feature = "internals")]
pub use status::VaradStatus;
#[cfg(feature = "internals")]
pub use thresholds::{
    varad_get_calibration_report, varad_get_threshold, varad_set_decision_thresholds,
    varad_set_threshold, VaradCalibrationReport, VaradThreshold,
};
#[cfg(feature = "internals")]
pub use training_set::{
    varad_train, varad_training_set_add, varad_training_set_add_defective,
    varad_training_set_count, varad_training_set_create, varad_training_set_defective_count,
    varad_training_set_destroy, VaradProgress, VaradProgressCallback, VaradTrainReport,
    VaradTrainingSet,
};
#[cfg(feature = "internals")]
pub use version::{varad_version_number, varad_version_string};
