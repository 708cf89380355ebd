//! The calibration's thresholds: read and set on a trained (or loaded) model, and the
//! report of what they promise.

use super::boundary::{check_out, ffi_boundary, try_ref, FfiError};
use super::c_enum::{c_enum_try_from, enum_arg};
use super::model::VaradModel;
use super::sized::{check_sized_out, write_sized, SizedStruct};
use super::status::VaradStatus;
use crate::score::{Calibration, CalibrationReport, RateReport};

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

/// What a calibration was fitted on and what its review and fail thresholds promise about
/// good parts, filled by `varad_get_calibration_report`. Rates are fractions of good
/// parts in `[0, 1]`; every figure comes from what the model (and its file) stores.
///
/// Layout: size-tagged. Set `size` to `sizeof(VaradCalibrationReport)` before the call;
/// the library writes only the fields that fit in `size` (later versions only append
/// fields) and zeroes any bytes past its own layout.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaradCalibrationReport {
    /// Set by the caller: `sizeof(VaradCalibrationReport)`.
    pub size: usize,
    /// The normal (good) image scores the thresholds were fitted on: `cross_fitted +
    /// held_out`.
    pub n: u32,
    /// Of them, training images scored out-of-sample by cross-fitting.
    pub cross_fitted: u32,
    /// Of them, good images held back from training.
    pub held_out: u32,
    /// The folds of the cross-fitting (0: none).
    pub folds: u32,
    /// The smallest rate `n` scores support without extrapolating: `1 / (n + 1)`.
    pub achievable_rate: f64,
    /// The review rate asked for (`VaradParams.target_false_reject_rate`).
    pub review_requested: f64,
    /// The review threshold: image scores at or above it are reviewed (or fail).
    pub review_threshold: f32,
    /// 1 when the review threshold lies beyond the normal scores by the log-normal tail
    /// (`VARAD_BEYOND_DATA_LOG_NORMAL_TAIL`): `review_expected` then rests on that
    /// assumption; else 0.
    pub review_extrapolated: u32,
    /// The share of good parts to expect at or above the review threshold: the requested
    /// rate when extrapolated, else `review_conformal_rate`.
    pub review_expected: f64,
    /// The distribution-free share of good parts at or above the review threshold, on
    /// average over calibrations: `(n + 1 - k) / (n + 1)`, `k` the normal scores below it.
    pub review_conformal_rate: f64,
    /// The distribution-free 95% upper bound of that share for this calibration (a Beta
    /// quantile).
    pub review_upper_bound: f64,
    /// Good images whose scores support the requested review rate on average:
    /// `1 / rate - 1`.
    pub review_images_needed: u64,
    /// Good images for the requested review rate to hold with 95% confidence:
    /// `ln(0.05) / ln(1 - rate)`.
    pub review_images_needed_confident: u64,
    /// The fail rate asked for (`VaradParams.target_false_fail_rate`; 0 when the fail
    /// threshold comes from `review_band`, which states no rate).
    pub fail_requested: f64,
    /// The fail threshold: image scores at or above it fail.
    pub fail_threshold: f32,
    /// As `review_extrapolated`, for the fail threshold.
    pub fail_extrapolated: u32,
    /// As `review_expected`, for the fail threshold.
    pub fail_expected: f64,
    /// As `review_conformal_rate`, for the fail threshold.
    pub fail_conformal_rate: f64,
    /// As `review_upper_bound`, for the fail threshold.
    pub fail_upper_bound: f64,
    /// As `review_images_needed`, for the fail rate (0 when none was requested).
    pub fail_images_needed: u64,
    /// As `review_images_needed_confident`, for the fail rate (0 when none was requested).
    pub fail_images_needed_confident: u64,
    /// Known-defective examples scored at calibration (`varad_training_set_add_defective`).
    pub known_defects: u32,
    /// Of them, those whose score is below the review threshold: they would pass.
    pub escapes: u32,
    /// 1 when the review threshold was lowered to catch the known defects
    /// (`VaradParams.catch_known_defects`), else 0.
    pub review_lowered: u32,
    /// The review threshold before it was lowered, when `review_lowered` is 1; else 0.
    pub review_lowered_from: f32,
}

// SAFETY: repr(C), starts with `size`, fields are integers and floats, no padding (tested).
unsafe impl SizedStruct for VaradCalibrationReport {
    // The first layout is the whole struct: the library fills it all.
    const MIN_SIZE: usize = std::mem::size_of::<VaradCalibrationReport>();
    const NAME: &'static str = "VaradCalibrationReport";
    const INIT: &'static str = "`report.size = sizeof report`";
}

/// Counts in the report's `uint32_t` fields; no calibration holds more (saturates).
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<&CalibrationReport> for VaradCalibrationReport {
    fn from(r: &CalibrationReport) -> Self {
        let rate = |x: &RateReport| {
            (
                x.requested,
                x.threshold,
                u32::from(x.extrapolated),
                x.expected,
                x.conformal_rate,
                x.upper_bound,
                x.images_needed,
                x.images_needed_confident,
            )
        };
        let review = rate(&r.review);
        let fail = rate(&r.fail);
        VaradCalibrationReport {
            size: std::mem::size_of::<VaradCalibrationReport>(),
            n: count(r.normal_scores),
            cross_fitted: count(r.cross_fitted),
            held_out: count(r.held_out),
            folds: count(r.folds),
            achievable_rate: r.achievable_rate,
            review_requested: review.0,
            review_threshold: review.1,
            review_extrapolated: review.2,
            review_expected: review.3,
            review_conformal_rate: review.4,
            review_upper_bound: review.5,
            review_images_needed: review.6,
            review_images_needed_confident: review.7,
            fail_requested: fail.0,
            fail_threshold: fail.1,
            fail_extrapolated: fail.2,
            fail_expected: fail.3,
            fail_conformal_rate: fail.4,
            fail_upper_bound: fail.5,
            fail_images_needed: fail.6,
            fail_images_needed_confident: fail.7,
            known_defects: count(r.known_defects),
            escapes: count(r.escapes),
            review_lowered: u32::from(r.review_lowered_from.is_some()),
            review_lowered_from: r.review_lowered_from.unwrap_or(0.0),
        }
    }
}

/// Fills `*out_report` with the model's calibration report: how many normal scores the
/// thresholds rest on and where they came from, and for the review and fail thresholds
/// the requested, expected and 95%-upper-bound rates of good parts at or above them and
/// the good images a requested rate needs; known-defective examples and their escapes.
/// Thresholds set by hand (`varad_set_threshold`) are reported for what they give.
///
/// Ownership: the caller owns `*out_report` and sets `out_report->size =
/// sizeof *out_report` first. Thread safety: `model` is const: any thread, also while
/// others score, train or change thresholds (it reports the calibration published when
/// the call starts).
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (`out_report->size`
/// below the first layout's, above 4096 or not a multiple of 8),
/// `VARAD_ERR_NOT_CALIBRATED`. `*out_report` is written only on success.
///
/// # Safety
/// `model` is NULL or a live model; `out_report` is NULL or writable for
/// `out_report->size` bytes.
#[no_mangle]
pub unsafe extern "C" fn varad_get_calibration_report(
    model: *const VaradModel,
    out_report: *mut VaradCalibrationReport,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model, "model") }?;
        // SAFETY: forwarded.
        unsafe { check_sized_out(out_report, "out_report") }?;
        let guard = model.current();
        let c = guard.calibration().ok_or_else(not_calibrated_error)?;
        let value = VaradCalibrationReport::from(&c.report());
        // SAFETY: checked above; the caller guarantees `size` writable bytes.
        unsafe { write_sized(out_report, value, "out_report") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::sized::assert_no_padding;

    #[test]
    fn the_calibration_report_has_no_padding() {
        assert_no_padding!(VaradCalibrationReport {
            size,
            n,
            cross_fitted,
            held_out,
            folds,
            achievable_rate,
            review_requested,
            review_threshold,
            review_extrapolated,
            review_expected,
            review_conformal_rate,
            review_upper_bound,
            review_images_needed,
            review_images_needed_confident,
            fail_requested,
            fail_threshold,
            fail_extrapolated,
            fail_expected,
            fail_conformal_rate,
            fail_upper_bound,
            fail_images_needed,
            fail_images_needed_confident,
            known_defects,
            escapes,
            review_lowered,
            review_lowered_from,
        });
    }

    #[test]
    fn the_report_carries_every_figure_of_the_engines() {
        let scores: Vec<f32> = (1..=20).map(|i| i as f32).collect();
        let maps: Vec<Vec<f32>> = scores.iter().map(|&s| vec![0.0, s]).collect();
        let refs: Vec<&[f32]> = maps.iter().map(Vec::as_slice).collect();
        let config = crate::score::CalibrationConfig {
            catch_known_defects: true,
            ..Default::default()
        };
        let mut c = Calibration::fit(&scores, &refs, &config).unwrap();
        c.set_known_defects(&[0.5, 30.0, 40.0]).unwrap();
        let r = c.report();
        let v = VaradCalibrationReport::from(&r);
        assert_eq!((v.n, v.held_out, v.cross_fitted), (20, 20, 0));
        assert_eq!(v.achievable_rate, 1.0 / 21.0);
        assert_eq!(v.review_threshold, r.review.threshold);
        assert_eq!(v.fail_threshold, r.fail.threshold);
        assert_eq!(v.review_upper_bound, r.review.upper_bound);
        assert_eq!(v.fail_images_needed_confident, r.fail.images_needed_confident);
        assert_eq!(v.review_extrapolated, u32::from(r.review.extrapolated));
        assert_eq!(v.fail_extrapolated, 1, "20 scores cannot support 0.001");
        assert_eq!((v.known_defects, v.escapes), (3, 0));
        assert_eq!(v.review_lowered, 1);
        assert_eq!(Some(v.review_lowered_from), r.review_lowered_from);
    }
}
