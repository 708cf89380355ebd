//! Scoring: `varad_score`, `varad_score_batch` and the owned `VaradScoreResult`.

use super::boundary::{check_out, ffi_boundary, ffi_value, null_pointer, try_ref, FfiError};
use super::image::{image_view, VaradImageView};
use super::model::{limits, VaradModel};
use super::params::{default_score_params, roi_from, VaradScoreParams};
use super::result::VaradRegion;
use super::sized::read_sized;
use super::status::VaradStatus;
use crate::image::ImageView;
use crate::model::{ScoreOptions, ScoreResult};

/// The result of scoring one image, owned by the caller (free with
/// `varad_score_result_destroy`). Its accessors take a `const VaradScoreResult*`: any
/// number of threads may read one result at once.
pub struct VaradScoreResult {
    pub(crate) result: ScoreResult,
    pub(crate) regions: Vec<VaradRegion>,
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
    // SAFETY: forwarded.
    let roi = unsafe { roi_from(&params) }?;
    let guard = model.current();
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
/// once, each getting exactly what a serial call would, also while another thread trains
/// the model or changes its thresholds: the call scores entirely with the model as
/// published when it started.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_NOT_TRAINED` (the model was never
/// trained), `VARAD_ERR_INVALID_IMAGE` (zero size, stride too
/// short, unknown format), `VARAD_ERR_IMAGE_TOO_LARGE`, `VARAD_ERR_INVALID_ARGUMENT`
/// (`params->size` not one `varad_score_params_init` writes, `reserved` not 0, ROI size
/// not the image's), `VARAD_ERR_BATCH_TOO_LARGE`
/// (more memory than `VaradParams.max_batch_bytes`), `VARAD_ERR_RUNTIME`.
/// `*out_result` is written only on success.
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
            return Err(null_pointer("images"));
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
