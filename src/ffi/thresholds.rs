//! The calibration's thresholds: read and set on a trained (or loaded) model.

use super::boundary::{check_out, ffi_boundary, try_ref, FfiError};
use super::c_enum::{c_enum_try_from, enum_arg};
use super::model::VaradModel;
use super::status::VaradStatus;
use crate::score::Calibration;

/// The thresholds of a calibrated model, for `varad_get_threshold` and
/// `varad_set_threshold`.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradThreshold {
    /// The normalisation unit: an image score equal to it normalises to 1.0. Setting it
    /// does not move the decision thresholds. Finite and positive.
    VARAD_THRESHOLD_IMAGE = 1,
    /// Image scores at or above it are reviewed (or fail). At most the fail threshold.
    VARAD_THRESHOLD_REVIEW = 2,
    /// Image scores at or above it fail. At least the review threshold.
    VARAD_THRESHOLD_FAIL = 3,
    /// Pixels strictly above it form defect regions. Finite.
    VARAD_THRESHOLD_PIXEL = 4,
}

c_enum_try_from!(VaradThreshold {
    VARAD_THRESHOLD_IMAGE,
    VARAD_THRESHOLD_REVIEW,
    VARAD_THRESHOLD_FAIL,
    VARAD_THRESHOLD_PIXEL,
});

/// A `VaradThreshold` as an argument holds it: any `uint32_t` a caller passes (the
/// header names it `VaradThreshold`).
/// cbindgen:ignore
pub type ThresholdValue = u32;

fn not_calibrated_error() -> FfiError {
    FfiError::new(
        VaradStatus::VARAD_ERR_NOT_CALIBRATED,
        "the model is not calibrated: train it (or load a trained model) first",
    )
}

/// Reads one threshold of the model's calibration into `*out_value`.
///
/// Thread safety: `model` is const: any thread, also while others score, train or change
/// thresholds (it reads the thresholds published when the call starts).
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (unknown `which`),
/// `VARAD_ERR_NOT_CALIBRATED`.
///
/// # Safety
/// `model` is NULL or a live model; `out_value` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_get_threshold(
    model: *const VaradModel,
    which: ThresholdValue,
    out_value: *mut f32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model, "model") }?;
        check_out(out_value, "out_value")?;
        let guard = model.current();
        let c = guard.calibration().ok_or_else(not_calibrated_error)?;
        let value = match enum_arg::<VaradThreshold>(which, "which")? {
            VaradThreshold::VARAD_THRESHOLD_IMAGE => c.image_threshold(),
            VaradThreshold::VARAD_THRESHOLD_REVIEW => c.review_threshold(),
            VaradThreshold::VARAD_THRESHOLD_FAIL => c.fail_threshold(),
            VaradThreshold::VARAD_THRESHOLD_PIXEL => c.pixel_threshold(),
        };
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_value = value };
        Ok(())
    })
}

/// Sets one threshold of the model's calibration (takes effect for the next scoring
/// call; saved by `varad_save`). On any error nothing changes.
///
/// Thread safety: other threads may go on scoring meanwhile: the new thresholds are
/// published atomically, so a score that started before uses the old ones throughout and
/// a later one the new ones. Threshold changes from several threads at once each apply to
/// what the others published (none is lost). While another thread trains `model` this
/// returns `VARAD_ERR_BUSY` (the training publishes thresholds of its own).
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (unknown `which`, a value
/// out of range, review above fail), `VARAD_ERR_NOT_CALIBRATED`, `VARAD_ERR_BUSY`.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn varad_set_threshold(
    model: *mut VaradModel,
    which: ThresholdValue,
    value: f32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model.cast_const(), "model") }?;
        let which = enum_arg::<VaradThreshold>(which, "which")?;
        change_calibration(model, |c| {
            match which {
                VaradThreshold::VARAD_THRESHOLD_IMAGE => c.set_image_threshold(value),
                VaradThreshold::VARAD_THRESHOLD_REVIEW => c.set_review_threshold(value),
                VaradThreshold::VARAD_THRESHOLD_FAIL => c.set_fail_threshold(value),
                VaradThreshold::VARAD_THRESHOLD_PIXEL => c.set_pixel_threshold(value),
            }
        })
    })
}

/// Sets the review and fail thresholds together (`review <= fail`), for moves that would
/// cross one over the other if made one at a time. On any error nothing changes.
///
/// Thread safety and errors: as `varad_set_threshold`.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn varad_set_decision_thresholds(
    model: *mut VaradModel,
    review: f32,
    fail: f32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model.cast_const(), "model") }?;
        change_calibration(model, |c| c.set_thresholds(review, fail))
    })
}

/// Applies `set` to a copy of the model's calibration and publishes it; an uncalibrated
/// model is `VARAD_ERR_NOT_CALIBRATED`, as for reading a threshold.
fn change_calibration(
    model: &VaradModel,
    set: impl FnMut(&mut Calibration) -> crate::Result<()>,
) -> Result<(), FfiError> {
    model
        .live()
        .change_calibration(set)
        .map_err(|e| match e.kind() {
            crate::ErrorKind::NotTrained => not_calibrated_error(),
            _ => e.into(),
        })
}
