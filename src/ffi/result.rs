//! What a `VaradScoreResult` holds: the anomaly map, the image score, the decision and
//! the defect regions, and the heatmap written from the map.

use std::ffi::c_char;
use std::path::Path;

use super::boundary::{check_out, ffi_boundary, required_str, try_ref, FfiError};
use super::score::VaradScoreResult;
use super::status::VaradStatus;
use crate::image::{write_png, ImageView, PixelFormat};
use crate::score::{grey_levels, Decision};

/// The verdict on an image of a calibrated model.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradDecision {
    /// Below the review threshold: a good part.
    VARAD_DECISION_PASS = 1,
    /// At or above the review threshold, below the fail threshold: a person looks.
    VARAD_DECISION_REVIEW = 2,
    /// At or above the fail threshold: reject.
    VARAD_DECISION_FAIL = 3,
}
/// A `VaradDecision` as an out-parameter holds it (the header names it
/// `VaradDecision`).
/// cbindgen:ignore
pub type DecisionValue = u32;

/// A connected defect region: pixels above the pixel threshold.
/// This struct does not grow within a major version (results hand out arrays of it).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaradRegion {
    /// Pixels in the region.
    pub area: u64,
    /// Bounding box left column.
    pub x: u32,
    /// Bounding box top row.
    pub y: u32,
    /// Bounding box width.
    pub width: u32,
    /// Bounding box height.
    pub height: u32,
    /// Centroid column.
    pub centroid_x: f64,
    /// Centroid row.
    pub centroid_y: f64,
    /// The largest map value in the region.
    pub peak: f32,
    /// Column of the peak.
    pub peak_x: u32,
    /// Row of the peak.
    pub peak_y: u32,
    /// The mean map value in the region.
    pub mean: f32,
}

/// The anomaly map at the image's size: `*out_map` points at `*out_len = width * height`
/// floats, row-major (higher = more anomalous); `*out_width`, `*out_height` the image's
/// size. `out_width` and `out_height` may be NULL.
///
/// Ownership: the map belongs to `result`; valid until `varad_score_result_destroy`.
/// Thread safety: `result` is const. Errors: `VARAD_ERR_NULL_POINTER`.
///
/// # Safety
/// `result` is NULL or live; the out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_result_map(
    result: *const VaradScoreResult,
    out_map: *mut *const f32,
    out_len: *mut usize,
    out_width: *mut u32,
    out_height: *mut u32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let r = unsafe { try_ref(result, "result") }?;
        check_out(out_map, "out_map")?;
        check_out(out_len, "out_len")?;
        let r = &r.result;
        // SAFETY: checked or tested non-null; the caller guarantees they are writable.
        unsafe {
            *out_map = r.map.as_ptr();
            *out_len = r.map.len();
            if !out_width.is_null() {
                *out_width = r.width as u32;
            }
            if !out_height.is_null() {
                *out_height = r.height as u32;
            }
        }
        Ok(())
    })
}

/// The raw anomaly map on the finest token grid (before resizing and smoothing), when
/// `VaradScoreParams.raw_map` was set: `*out_len = width * height` floats, row-major.
///
/// Ownership: the map belongs to `result`. Thread safety: `result` is const.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (not requested).
///
/// # Safety
/// `result` is NULL or live; the out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_result_raw_map(
    result: *const VaradScoreResult,
    out_map: *mut *const f32,
    out_len: *mut usize,
    out_width: *mut u32,
    out_height: *mut u32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let r = unsafe { try_ref(result, "result") }?;
        check_out(out_map, "out_map")?;
        check_out(out_len, "out_len")?;
        let raw = r.result.raw_map.as_ref().ok_or_else(|| {
            FfiError::new(
                VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
                "the raw map was not requested: set VaradScoreParams.raw_map",
            )
        })?;
        // SAFETY: checked or tested non-null; the caller guarantees they are writable.
        unsafe {
            *out_map = raw.values.as_ptr();
            *out_len = raw.values.len();
            if !out_width.is_null() {
                *out_width = raw.width as u32;
            }
            if !out_height.is_null() {
                *out_height = raw.height as u32;
            }
        }
        Ok(())
    })
}

/// The image score (under the configured policy; the map's maximum by default, inside
/// the ROI if one was given). Available for uncalibrated models too.
///
/// Thread safety: `result` is const. Errors: `VARAD_ERR_NULL_POINTER`.
///
/// # Safety
/// `result` is NULL or live; `out_score` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_result_image_score(
    result: *const VaradScoreResult,
    out_score: *mut f32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let r = unsafe { try_ref(result, "result") }?;
        check_out(out_score, "out_score")?;
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_score = r.result.image_score };
        Ok(())
    })
}

fn assessment(r: &VaradScoreResult) -> Result<&crate::score::Assessment, FfiError> {
    r.result.assessment.as_ref().ok_or_else(|| {
        FfiError::new(
            VaradStatus::VARAD_ERR_NOT_CALIBRATED,
            "the result has no decision: the model that scored it is not calibrated",
        )
    })
}

/// The normalised score: the image score divided by the image threshold (1.0 = the
/// threshold; below 1 looks normal).
///
/// Thread safety: `result` is const. Errors: `VARAD_ERR_NULL_POINTER`,
/// `VARAD_ERR_NOT_CALIBRATED`.
///
/// # Safety
/// `result` is NULL or live; `out_score` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_result_normalised_score(
    result: *const VaradScoreResult,
    out_score: *mut f32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let r = unsafe { try_ref(result, "result") }?;
        check_out(out_score, "out_score")?;
        let value = assessment(r)?.normalised_score;
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_score = value };
        Ok(())
    })
}

/// The conformal p-value of the image score against the calibration's normal scores:
/// `(1 + #{normal scores >= score}) / (n + 1)`, in `(0, 1]`. For a good part it is at most
/// `a` with probability at most `a`, so a small value is evidence of a defect (the
/// smallest possible, `1 / (n + 1)`, means above every normal score).
///
/// Thread safety: `result` is const. Errors: `VARAD_ERR_NULL_POINTER`,
/// `VARAD_ERR_NOT_CALIBRATED`.
///
/// # Safety
/// `result` is NULL or live; `out_p_value` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_result_p_value(
    result: *const VaradScoreResult,
    out_p_value: *mut f64,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let r = unsafe { try_ref(result, "result") }?;
        check_out(out_p_value, "out_p_value")?;
        let value = assessment(r)?.p_value;
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_p_value = value };
        Ok(())
    })
}

/// The decision: a `VaradDecision` value in `*out_decision`.
///
/// Thread safety: `result` is const. Errors: `VARAD_ERR_NULL_POINTER`,
/// `VARAD_ERR_NOT_CALIBRATED`.
///
/// # Safety
/// `result` is NULL or live; `out_decision` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_result_decision(
    result: *const VaradScoreResult,
    out_decision: *mut DecisionValue,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let r = unsafe { try_ref(result, "result") }?;
        check_out(out_decision, "out_decision")?;
        let value = match assessment(r)?.decision {
            Decision::Pass => VaradDecision::VARAD_DECISION_PASS,
            Decision::Review => VaradDecision::VARAD_DECISION_REVIEW,
            Decision::Fail => VaradDecision::VARAD_DECISION_FAIL,
        } as u32;
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_decision = value };
        Ok(())
    })
}

/// The defect regions, largest peak first: `*out_regions` points at `*out_count`
/// regions (NULL when there are none). `out_found` (may be NULL) receives how many were
/// found before the list was capped.
///
/// Ownership: the array belongs to `result`. Thread safety: `result` is const.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_NOT_CALIBRATED`.
///
/// # Safety
/// `result` is NULL or live; the out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_result_regions(
    result: *const VaradScoreResult,
    out_regions: *mut *const VaradRegion,
    out_count: *mut usize,
    out_found: *mut usize,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let r = unsafe { try_ref(result, "result") }?;
        check_out(out_regions, "out_regions")?;
        check_out(out_count, "out_count")?;
        let found = assessment(r)?.regions_found;
        let ptr = if r.regions.is_empty() {
            std::ptr::null()
        } else {
            r.regions.as_ptr()
        };
        // SAFETY: checked or tested non-null; the caller guarantees they are writable.
        unsafe {
            *out_regions = ptr;
            *out_count = r.regions.len();
            if !out_found.is_null() {
                *out_found = found;
            }
        }
        Ok(())
    })
}

/// Writes the result's anomaly map as an 8-bit grey PNG: `value / scale * 255`, rounded
/// and clamped to 0..255. `scale` > 0 fixes the white point (e.g. the fail threshold, so
/// heatmaps of different images compare; the command-line tool's `_map.png` uses twice
/// the pixel threshold); `scale` <= 0 uses the map's own maximum.
///
/// Ownership: `path` is borrowed. Thread safety: `result` is const.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (`scale` not finite,
/// path not UTF-8), `VARAD_ERR_IO`.
///
/// # Safety
/// `result` is NULL or live; `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn varad_write_heatmap_png(
    result: *const VaradScoreResult,
    path: *const c_char,
    scale: f32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let r = unsafe { try_ref(result, "result") }?;
        // SAFETY: forwarded.
        let path = unsafe { required_str(path, "path") }?;
        if !scale.is_finite() {
            return Err(FfiError::new(
                VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
                format!("scale {scale} is not finite"),
            ));
        }
        let pixels = grey_levels(&r.result.map, scale);
        let view = ImageView::packed(
            &pixels,
            r.result.width as u32,
            r.result.height as u32,
            PixelFormat::Mono8,
        )?;
        write_png(Path::new(path), &view)?;
        Ok(())
    })
}
