//! Scoring: `varad_score`, `varad_score_batch` and the owned `VaradScoreResult`.

use std::ffi::c_char;
use std::path::Path;

use super::boundary::{
    check_out, ffi_boundary, ffi_value, read_sized, required_str, try_ref, FfiError, SizedStruct,
};
use super::image::{image_view, VaradImageView};
use super::model::{limits, VaradModel};
use super::status::VaradStatus;
use crate::image::{write_png, ImageView, PixelFormat};
use crate::model::{ScoreOptions, ScoreResult};
use crate::score::Decision;

/// Per-call scoring options. Get one from `varad_default_score_params()`; passing NULL
/// instead means the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VaradScoreParams {
    /// `sizeof(VaradScoreParams)`. Default: set by `varad_default_score_params()`.
    pub size: usize,
    /// Region of interest: one byte per image pixel, row-major, nonzero = inspect; the
    /// image score and the regions ignore the rest. Every image of the call must then
    /// have `roi_len = width * height` pixels. Borrowed for the call. Default: NULL (the
    /// whole image).
    pub roi: *const u8,
    /// Bytes at `roi`. Default: 0.
    pub roi_len: usize,
    /// Nonzero: also keep the raw map on the token grid (`varad_result_raw_map`).
    /// Default: 0.
    pub raw_map: u32,
}

// SAFETY: repr(C), starts with `size`, fields are integers and raw pointers.
unsafe impl SizedStruct for VaradScoreParams {
    const MIN_SIZE: usize = std::mem::size_of::<VaradScoreParams>();
    const NAME: &'static str = "VaradScoreParams";
    const SOURCE: &'static str = "varad_default_score_params()";
}

fn default_score_params() -> VaradScoreParams {
    VaradScoreParams {
        size: std::mem::size_of::<VaradScoreParams>(),
        roi: std::ptr::null(),
        roi_len: 0,
        raw_map: 0,
    }
}

/// The default scoring parameters: no ROI, no raw map.
///
/// Thread safety: any thread. Errors: none.
#[no_mangle]
pub extern "C" fn varad_default_score_params() -> VaradScoreParams {
    default_score_params()
}

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

/// The result of scoring one image, owned by the caller (free with
/// `varad_score_result_destroy`). Its accessors take a `const VaradScoreResult*`: any
/// number of threads may read one result at once.
pub struct VaradScoreResult {
    result: ScoreResult,
    regions: Vec<VaradRegion>,
}

impl VaradScoreResult {
    fn new(result: ScoreResult) -> Self {
        let regions = result
            .assessment
            .as_ref()
            .map(|a| {
                a.regions
                    .iter()
                    .map(|r| VaradRegion {
                        area: r.area as u64,
                        x: r.x,
                        y: r.y,
                        width: r.width,
                        height: r.height,
                        centroid_x: r.centroid_x,
                        centroid_y: r.centroid_y,
                        peak: r.peak,
                        peak_x: r.peak_x,
                        peak_y: r.peak_y,
                        mean: r.mean,
                    })
                    .collect()
            })
            .unwrap_or_default();
        VaradScoreResult { result, regions }
    }
}

/// Scores `views` with `model`, checking every view and the params first.
///
/// # Safety
/// As `varad_score_batch`.
unsafe fn score_views(
    model: *const VaradModel,
    views: &[VaradImageView],
    params: *const VaradScoreParams,
) -> Result<Vec<ScoreResult>, FfiError> {
    // SAFETY: forwarded from this function's contract.
    let model = unsafe { try_ref(model, "model") }?;
    let params = if params.is_null() {
        default_score_params()
    } else {
        // SAFETY: forwarded.
        unsafe { read_sized(params, default_score_params(), "params") }?
    };
    let roi = if params.roi.is_null() {
        if params.roi_len != 0 {
            return Err(FfiError::new(
                VaradStatus::VARAD_ERR_NULL_POINTER,
                format!(
                    "params.roi is NULL but params.roi_len is {}",
                    params.roi_len
                ),
            ));
        }
        None
    } else {
        if params.roi_len == 0 || params.roi_len > isize::MAX as usize {
            return Err(FfiError::new(
                VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
                format!("params.roi_len {} is not a mask size", params.roi_len),
            ));
        }
        // SAFETY: the caller guarantees `roi_len` readable bytes at `roi`.
        Some(unsafe { std::slice::from_raw_parts(params.roi, params.roi_len) })
    };
    let guard = model.read()?;
    let limits = limits(&guard);
    let images = views
        .iter()
        // SAFETY: forwarded.
        .map(|v| unsafe { image_view(v, &limits) })
        .collect::<Result<Vec<ImageView>, FfiError>>()?;
    let options = ScoreOptions {
        raw_map: params.raw_map != 0,
        roi,
        ..Default::default()
    };
    Ok(guard.score(&images, &options)?)
}

/// Scores one image. `params` may be NULL (the defaults).
///
/// Ownership: the caller owns `*out_result` and frees it with
/// `varad_score_result_destroy`; `image` (and its pixels) and `params` (and its ROI) are
/// borrowed for the call.
/// Thread safety: `model` is const: any number of threads may score with one model at
/// once, each getting exactly what a serial call would. While the model trains (another
/// thread in `varad_train`) this returns `VARAD_ERR_BUSY`.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_IMAGE` (zero size, stride too
/// short, unknown format), `VARAD_ERR_IMAGE_TOO_LARGE`, `VARAD_ERR_INVALID_ARGUMENT`
/// (`params->size` too small, ROI size not the image's), `VARAD_ERR_BATCH_TOO_LARGE`
/// (more memory than `VaradParams.max_batch_bytes`), `VARAD_ERR_RUNTIME`,
/// `VARAD_ERR_BUSY`. `*out_result` is written only on success.
///
/// # Safety
/// `model`, `image`, `params` are NULL or valid; `image->data` is readable for the bytes
/// the view covers; `params->roi` is NULL or readable for `roi_len` bytes; `out_result`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_score(
    model: *const VaradModel,
    image: *const VaradImageView,
    params: *const VaradScoreParams,
    out_result: *mut *mut VaradScoreResult,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let image = unsafe { try_ref(image, "image") }?;
        check_out(out_result, "out_result")?;
        // SAFETY: forwarded.
        let mut results = unsafe { score_views(model, std::slice::from_ref(image), params) }?;
        let result = results.pop().ok_or_else(|| {
            FfiError::new(
                VaradStatus::VARAD_ERR_INTERNAL,
                "scoring returned no result",
            )
        })?;
        let handle = Box::into_raw(Box::new(VaradScoreResult::new(result)));
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_result = handle };
        Ok(())
    })
}

/// Scores `count` images at once (one backbone batch), writing `count` results to
/// `out_results[0..count]`. `params` may be NULL; its ROI applies to every image.
///
/// Ownership: the caller owns every result and frees each with
/// `varad_score_result_destroy`; on error no result is written and nothing is to be
/// freed. Thread safety and errors: as `varad_score`, plus `VARAD_ERR_INVALID_ARGUMENT`
/// for `count` 0.
///
/// # Safety
/// `images` is NULL or readable for `count` views; `out_results` is NULL or writable for
/// `count` pointers; the rest as `varad_score`.
#[no_mangle]
pub unsafe extern "C" fn varad_score_batch(
    model: *const VaradModel,
    images: *const VaradImageView,
    count: usize,
    params: *const VaradScoreParams,
    out_results: *mut *mut VaradScoreResult,
) -> VaradStatus {
    ffi_boundary(|| {
        if images.is_null() {
            return Err(super::boundary::null_pointer("images"));
        }
        check_out(out_results, "out_results")?;
        if count == 0 || count > isize::MAX as usize / std::mem::size_of::<VaradImageView>() {
            return Err(FfiError::new(
                VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
                format!("count {count} is not a number of images"),
            ));
        }
        // SAFETY: the caller guarantees `count` readable views.
        let views = unsafe { std::slice::from_raw_parts(images, count) };
        // SAFETY: forwarded.
        let results = unsafe { score_views(model, views, params) }?;
        if results.len() != count {
            return Err(FfiError::new(
                VaradStatus::VARAD_ERR_INTERNAL,
                format!(
                    "scoring returned {} results for {count} images",
                    results.len()
                ),
            ));
        }
        for (i, result) in results.into_iter().enumerate() {
            let handle = Box::into_raw(Box::new(VaradScoreResult::new(result)));
            // SAFETY: the caller guarantees `count` writable slots.
            unsafe { *out_results.add(i) = handle };
        }
        Ok(())
    })
}

/// Frees a result. NULL is a harmless no-op.
///
/// Ownership: takes `result`; pointers obtained from it become invalid.
/// Thread safety: no other call may use `result` meanwhile. Errors: none.
///
/// # Safety
/// `result` is NULL or a result from `varad_score`/`varad_score_batch` not yet destroyed.
#[no_mangle]
pub unsafe extern "C" fn varad_score_result_destroy(result: *mut VaradScoreResult) {
    if !result.is_null() {
        ffi_value((), || {
            // SAFETY: the caller passes a result made by Box::into_raw, once.
            drop(unsafe { Box::from_raw(result) });
        });
    }
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
    out_decision: *mut u32,
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

/// Writes the result's anomaly map as an 8-bit grey PNG: `value / scale * 255`, clamped
/// to 0..255. `scale` > 0 fixes the white point (e.g. the fail threshold, so heatmaps of
/// different images compare); `scale` <= 0 uses the map's own maximum.
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
        let map = &r.result.map;
        let white = if scale > 0.0 {
            scale
        } else {
            map.iter().copied().fold(0.0f32, f32::max)
        };
        let pixels: Vec<u8> = map
            .iter()
            .map(|&v| {
                if white > 0.0 {
                    (v / white * 255.0).round().clamp(0.0, 255.0) as u8
                } else {
                    0
                }
            })
            .collect();
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
