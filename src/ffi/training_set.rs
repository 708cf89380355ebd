//! `VaradTrainingSet`: the good images a model is trained on, added one at a time, and
//! `varad_train`.

use std::ffi::c_void;
use std::ops::ControlFlow;

use super::boundary::{check_out, ffi_boundary, ffi_value, try_mut, try_ref};
use super::image::{image_view, VaradImageView};
use super::model::{limits, VaradModel};
use super::sized::{check_sized_out, write_sized, SizedStruct};
use super::status::VaradStatus;
use crate::train::{Progress, TrainingSet};

/// Training images, tokenized by the model's backbone as they are added (the caller may
/// free each image as soon as `varad_training_set_add` returns). A set belongs to the
/// model it was created for, or one with the same backbone levels and input size.
pub struct VaradTrainingSet {
    set: TrainingSet,
}

/// Creates an empty training set for `model`.
///
/// Ownership: the caller owns `*out_set` and frees it with `varad_training_set_destroy`.
/// Thread safety: `model` is const; any thread, also while others score or train.
/// Errors: `VARAD_ERR_NULL_POINTER`. `*out_set` is written only on success.
///
/// # Safety
/// `model` is NULL or a live model; `out_set` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_training_set_create(
    model: *const VaradModel,
    out_set: *mut *mut VaradTrainingSet,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model, "model") }?;
        check_out(out_set, "out_set")?;
        let set = TrainingSet::new(&model.current());
        let handle = Box::into_raw(Box::new(VaradTrainingSet { set }));
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_set = handle };
        Ok(())
    })
}

/// Adds one good image to `set`: runs the backbone on it now and caches its features.
///
/// Ownership: `image` and its pixels are borrowed for the call only.
/// Thread safety: `set` is exclusive to the calling thread; `model` is const (other
/// threads may score with it or train it meanwhile).
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_IMAGE`, `VARAD_ERR_IMAGE_TOO_LARGE`,
/// `VARAD_ERR_INVALID_ARGUMENT` (the set was made for an incompatible model),
/// `VARAD_ERR_RUNTIME`, `VARAD_ERR_IO` (spilling the cache), `VARAD_ERR_CACHE_FULL` (the
/// cache's memory and spill limits are reached). On error the set is unchanged.
///
/// # Safety
/// `set`, `model`, `image` are NULL or live; `image->data` is readable for the bytes the
/// view covers.
#[no_mangle]
pub unsafe extern "C" fn varad_training_set_add(
    set: *mut VaradTrainingSet,
    model: *const VaradModel,
    image: *const VaradImageView,
) -> VaradStatus {
    // SAFETY: forwarded from this function's contract.
    unsafe { add_image(set, model, image, TrainingSet::add) }
}

/// Adds one known-defective example (an image of a bad part) to `set`: runs the backbone
/// on it now and keeps its features. It is never trained on: `varad_train` scores it with
/// the trained model, the calibration report counts how many such examples would pass
/// (`escapes`), and with `VaradParams.catch_known_defects` the review threshold is
/// lowered until none does.
///
/// Ownership: `image` and its pixels are borrowed for the call only.
/// Thread safety: `set` is exclusive to the calling thread; `model` is const (other
/// threads may score with it or train it meanwhile).
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_IMAGE`, `VARAD_ERR_IMAGE_TOO_LARGE`,
/// `VARAD_ERR_INVALID_ARGUMENT` (the set was made for an incompatible model),
/// `VARAD_ERR_RUNTIME`. On error the set is unchanged.
///
/// # Safety
/// `set`, `model`, `image` are NULL or live; `image->data` is readable for the bytes the
/// view covers.
#[no_mangle]
pub unsafe extern "C" fn varad_training_set_add_defective(
    set: *mut VaradTrainingSet,
    model: *const VaradModel,
    image: *const VaradImageView,
) -> VaradStatus {
    // SAFETY: forwarded from this function's contract.
    unsafe { add_image(set, model, image, TrainingSet::add_defective) }
}

/// The checks and view conversion both adding functions share; `add` is the set's method
/// that keeps the image (a good one or a known-defective example).
///
/// # Safety
/// As `varad_training_set_add`.
unsafe fn add_image(
    set: *mut VaradTrainingSet,
    model: *const VaradModel,
    image: *const VaradImageView,
    add: fn(&mut TrainingSet, &crate::Model, &[crate::image::ImageView]) -> crate::Result<()>,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from the caller's contract.
        let set = unsafe { try_mut(set, "set") }?;
        // SAFETY: forwarded.
        let model = unsafe { try_ref(model, "model") }?;
        // SAFETY: forwarded.
        let image = unsafe { try_ref(image, "image") }?;
        let model = model.current();
        // SAFETY: forwarded.
        let view = unsafe { image_view(image, &limits(&model)) }?;
        add(&mut set.set, &model, &[view])?;
        Ok(())
    })
}

/// The number of known-defective examples in `set`
/// (`varad_training_set_add_defective`), in `*out_count`.
///
/// Thread safety: `set` is const. Errors: `VARAD_ERR_NULL_POINTER`.
///
/// # Safety
/// `set` is NULL or live; `out_count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_training_set_defective_count(
    set: *const VaradTrainingSet,
    out_count: *mut usize,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let set = unsafe { try_ref(set, "set") }?;
        check_out(out_count, "out_count")?;
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_count = set.set.defective_len() };
        Ok(())
    })
}

/// The number of good images in `set` (not counting known-defective examples), in
/// `*out_count`.
///
/// Thread safety: `set` is const. Errors: `VARAD_ERR_NULL_POINTER`.
///
/// # Safety
/// `set` is NULL or live; `out_count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_training_set_count(
    set: *const VaradTrainingSet,
    out_count: *mut usize,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let set = unsafe { try_ref(set, "set") }?;
        check_out(out_count, "out_count")?;
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_count = set.set.len() };
        Ok(())
    })
}

/// Frees a training set. NULL is a harmless no-op.
///
/// Ownership: takes `set`. Thread safety: no other call may use `set` meanwhile.
/// Errors: none.
///
/// # Safety
/// `set` is NULL or a set from `varad_training_set_create` not yet destroyed.
#[no_mangle]
pub unsafe extern "C" fn varad_training_set_destroy(set: *mut VaradTrainingSet) {
    if !set.is_null() {
        ffi_value((), || {
            // SAFETY: the caller passes a set made by Box::into_raw, once.
            drop(unsafe { Box::from_raw(set) });
        });
    }
}

/// Where training stands, passed to the progress callback after every optimiser step.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VaradProgress {
    /// `sizeof(VaradProgress)` as the library knows it: fields may be added at the end;
    /// read only those that fit in `size`.
    pub size: usize,
    /// The current epoch, from 1.
    pub epoch: u32,
    /// Epochs in all.
    pub epochs: u32,
    /// Optimiser steps done so far, from 1.
    pub step: u32,
    /// Steps in all.
    pub steps: u32,
    /// The loss of this step.
    pub loss: f64,
    /// Seconds since training started.
    pub elapsed_seconds: f64,
    /// Estimated seconds left.
    pub remaining_seconds: f64,
}

/// Called by `varad_train` after every optimiser step, on the thread that called
/// `varad_train`. Return 0 to go on, nonzero to cancel (`varad_train` then returns
/// `VARAD_ERR_CANCELLED` and leaves the model unchanged). `progress` is valid during the
/// call only. The callback may score with the model being trained (the published model
/// scores); a second `varad_train` or a threshold change on it reports `VARAD_ERR_BUSY`.
/// It must not unwind (C++ exceptions, longjmp).
pub type VaradProgressCallback =
    Option<unsafe extern "C" fn(progress: *const VaradProgress, user_data: *mut c_void) -> i32>;

/// What `varad_train` did. Set `size` to `sizeof(VaradTrainReport)` before passing it.
///
/// Layout: every field below is in every library from 1.0.0 on; later versions only
/// append fields. The library writes the fields that fit in `size` and zeroes any bytes
/// past its own layout.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VaradTrainReport {
    /// Set by the caller: `sizeof(VaradTrainReport)`. The library writes only the fields
    /// that fit in `size`.
    pub size: usize,
    /// Images trained on.
    pub train_images: u32,
    /// Images held back for calibration.
    pub calibration_images: u32,
    /// Epochs run.
    pub epochs: u32,
    /// Optimiser steps run.
    pub steps: u32,
    /// The mean loss of the last epoch.
    pub final_loss: f64,
    /// Seconds training took.
    pub elapsed_seconds: f64,
    /// Token cache bytes held in memory.
    pub cache_memory_bytes: u64,
    /// Token cache bytes spilled to a temporary file.
    pub cache_spilled_bytes: u64,
}

// SAFETY: repr(C), starts with `size`, fields are integers and floats.
unsafe impl SizedStruct for VaradTrainReport {
    // The library writes the fields that fit; none is required.
    const MIN_SIZE: usize = std::mem::size_of::<usize>();
    const NAME: &'static str = "VaradTrainReport";
    const INIT: &'static str = "`report.size = sizeof report` (and zeroes)";
}

/// Trains `model` on `set` (holding back calibration images, then calibrating the
/// thresholds), calling `progress` (may be NULL) after every step with `user_data`. On
/// success the new weights and calibration replace the model's and `*report` (may be
/// NULL) is filled in. On cancellation or any error the model is unchanged and `*report`
/// is not written.
///
/// Ownership: `set` is borrowed (it can be reused, e.g. to train again).
/// Thread safety: other threads may go on scoring with `model` (and saving it) while it
/// trains: training works on a copy and publishes the trained model atomically when it
/// succeeds, so scores that started before finish on the old model and later ones use
/// the new one. One training at a time: while it runs, a second `varad_train` or a
/// threshold change on `model` returns `VARAD_ERR_BUSY`.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (`report->size` below
/// 8, above 4096 or not a multiple of 8; too few images: at least one to train on beyond
/// those held back), `VARAD_ERR_BUSY` (another thread is training `model`),
/// `VARAD_ERR_CANCELLED`, `VARAD_ERR_IO`, `VARAD_ERR_INTERNAL` (training diverged).
///
/// # Safety
/// `model` and `set` are NULL or live; `report` is NULL or writable for `report->size`
/// bytes; `progress` is NULL or a function as `VaradProgressCallback` describes.
#[no_mangle]
pub unsafe extern "C" fn varad_train(
    model: *mut VaradModel,
    set: *const VaradTrainingSet,
    progress: VaradProgressCallback,
    user_data: *mut c_void,
    report: *mut VaradTrainReport,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model.cast_const(), "model") }?;
        // SAFETY: forwarded.
        let set = unsafe { try_ref(set, "set") }?;
        if !report.is_null() {
            // SAFETY: forwarded.
            unsafe { check_sized_out(report, "report") }?;
        }
        let result = model.live().fit(&set.set, |p: &Progress| {
            let Some(callback) = progress else {
                return ControlFlow::Continue(());
            };
            let info = VaradProgress {
                size: std::mem::size_of::<VaradProgress>(),
                epoch: p.epoch as u32,
                epochs: p.epochs as u32,
                step: p.step as u32,
                steps: p.steps as u32,
                loss: p.loss,
                elapsed_seconds: p.elapsed.as_secs_f64(),
                remaining_seconds: p.remaining.as_secs_f64(),
            };
            // SAFETY: the caller guarantees a valid callback; `info` outlives the call.
            if unsafe { callback(&info, user_data) } == 0 {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        if !report.is_null() {
            let epochs = result.epoch_losses.len();
            let value = VaradTrainReport {
                size: 0,
                train_images: result.train_images as u32,
                calibration_images: result.calibration_images.len() as u32,
                epochs: epochs as u32,
                steps: (result
                    .train_images
                    .div_ceil(model.current().config().train.batch_size.max(1))
                    * epochs) as u32,
                final_loss: result.epoch_losses.last().copied().unwrap_or(f64::NAN),
                elapsed_seconds: result.elapsed.as_secs_f64(),
                cache_memory_bytes: result.cache_bytes.0,
                cache_spilled_bytes: result.cache_bytes.1,
            };
            // SAFETY: checked above; the caller guarantees `report->size` writable bytes.
            unsafe { write_sized(report, value, "report") }?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::sized::assert_no_padding;

    #[test]
    fn the_progress_and_report_structs_have_no_padding() {
        assert_no_padding!(VaradProgress {
            size,
            epoch,
            epochs,
            step,
            steps,
            loss,
            elapsed_seconds,
            remaining_seconds,
        });
        assert_no_padding!(VaradTrainReport {
            size,
            train_images,
            calibration_images,
            epochs,
            steps,
            final_loss,
            elapsed_seconds,
            cache_memory_bytes,
            cache_spilled_bytes,
        });
    }
}
