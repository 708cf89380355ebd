//! `VaradModel`: create, destroy, save, load and the active device.

use std::ffi::c_char;
use std::path::Path;

use std::sync::Arc;

use super::boundary::{check_out, ffi_boundary, ffi_value, required_str, try_ref};
use super::params::{
    config_from, default_load_params, default_params, load_options_from, DeviceValue, VaradDevice,
    VaradLoadParams, VaradParams,
};
use super::sized::read_sized;
use super::status::VaradStatus;
use crate::image::ImageLimits;
use crate::{Device, LiveModel, Model};

/// An opaque model. Scoring takes a `const VaradModel*` and may run on many threads at
/// once, also while another thread trains the model or changes its thresholds: those
/// build the next model off to the side and publish it atomically (see [`LiveModel`]).
pub struct VaradModel {
    live: LiveModel,
}

impl VaradModel {
    pub(crate) fn new(model: Model) -> Self {
        VaradModel {
            live: LiveModel::new(model),
        }
    }

    /// The model as it is now, for one call from start to end (scoring, saving, reading
    /// thresholds): what is published meanwhile does not change it.
    pub(crate) fn current(&self) -> Arc<Model> {
        self.live.current()
    }

    /// The model in service, for the calls that change it.
    pub(crate) fn live(&self) -> &LiveModel {
        &self.live
    }
}

/// The image size limit of a model's configuration.
pub(crate) fn limits(model: &Model) -> ImageLimits {
    ImageLimits {
        max_pixels: model.config().max_image_pixels,
    }
}

/// Creates an untrained model from `params`: loads ONNX Runtime if needed, opens the
/// backbone and checks the configuration against it.
///
/// Ownership: the caller owns `*out_model` and frees it with `varad_destroy`; `params`
/// and its strings are borrowed for the call. Thread safety: any thread.
/// Errors: `VARAD_ERR_NULL_POINTER` (`params`, `params->backbone_path` or `out_model`
/// NULL), `VARAD_ERR_INVALID_ARGUMENT` (`params->size` not one `varad_params_init`
/// writes, a field this library does not know set, an unknown enum value, a string not
/// UTF-8), `VARAD_ERR_CONFIG` (a field outside its documented range, named
/// `params.<field>`; every field is checked before ONNX Runtime or the backbone is
/// touched; or a configuration the backbone cannot take), `VARAD_ERR_IO`,
/// `VARAD_ERR_RUNTIME_NOT_FOUND`, `VARAD_ERR_RUNTIME`, `VARAD_ERR_BACKBONE_CONTRACT` (also a
/// backbone file that is not an ONNX model), `VARAD_ERR_CUDA`. `*out_model` is written
/// only on success.
///
/// # Safety
/// `params` is NULL or points at a `VaradParams` whose string fields are NULL or
/// NUL-terminated; `out_model` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_create(
    params: *const VaradParams,
    out_model: *mut *mut VaradModel,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let params = unsafe { read_sized(params, default_params(), "params") }?;
        check_out(out_model, "out_model")?;
        // SAFETY: forwarded.
        let config = unsafe { config_from(&params) }?;
        let model = Model::new(config)?;
        let handle = Box::into_raw(Box::new(VaradModel::new(model)));
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_model = handle };
        Ok(())
    })
}

/// Frees a model. NULL is a harmless no-op.
///
/// Ownership: takes `model`. Thread safety: no other call may use `model` at the same
/// time, or after. Errors: none.
///
/// # Safety
/// `model` is NULL or a model from `varad_create`/`varad_load` not yet destroyed.
#[no_mangle]
pub unsafe extern "C" fn varad_destroy(model: *mut VaradModel) {
    if !model.is_null() {
        ffi_value((), || {
            // SAFETY: the caller passes a model made by Box::into_raw, once.
            drop(unsafe { Box::from_raw(model) });
        });
    }
}

/// Writes the model (configuration, weights, calibration) to `path` atomically (a
/// temporary file renamed into place).
///
/// Ownership: `path` is borrowed. Thread safety: `model` is const: safe while other
/// threads score, train or change thresholds (it saves the model as published when the
/// call starts). Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (an empty
/// path, a path naming a folder, not UTF-8), `VARAD_ERR_MODEL_FILE` (the model holds
/// values a load would refuse, e.g. non-finite weights; nothing is written),
/// `VARAD_ERR_IO`.
///
/// # Safety
/// `model` is NULL or a live model; `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn varad_save(model: *const VaradModel, path: *const c_char) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model, "model") }?;
        // SAFETY: forwarded.
        let path = unsafe { required_str(path, "path") }?;
        model.current().save(Path::new(path))?;
        Ok(())
    })
}

/// Loads a model file written by `varad_save`. `params` may be NULL (everything as
/// saved).
///
/// Ownership: the caller owns `*out_model` and frees it with `varad_destroy`; `path` and
/// `params` are borrowed. Thread safety: any thread.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (`params->size` not
/// one `varad_load_params_init` writes, unknown device, `threads` outside [-1, 1024],
/// `cuda_device` above 1023, `reserved` not 0, an empty path, not UTF-8), `VARAD_ERR_IO`
/// (missing, unreadable, a folder or device), `VARAD_ERR_MODEL_FILE` (malformed; damaged:
/// a tensor or the metadata does not match the SHA-256 recorded at save, and the message
/// names which; non-finite values, statistics below their floor, an inconsistent
/// calibration, a stored setting outside its range; a newer format; a backbone
/// mismatch), `VARAD_ERR_RUNTIME_NOT_FOUND`, `VARAD_ERR_RUNTIME`,
/// `VARAD_ERR_BACKBONE_CONTRACT`, `VARAD_ERR_CUDA`. `*out_model` is written only on
/// success. A file written by varad 1.0 (format 1) carries no checksums: it loads after
/// the same value checks, with a warning logged, and saving it again adds them.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `params` is NULL or a `VaradLoadParams` with NULL or
/// NUL-terminated strings; `out_model` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_load(
    path: *const c_char,
    params: *const VaradLoadParams,
    out_model: *mut *mut VaradModel,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let path = unsafe { required_str(path, "path") }?;
        let params = if params.is_null() {
            default_load_params()
        } else {
            // SAFETY: forwarded.
            unsafe { read_sized(params, default_load_params(), "params") }?
        };
        check_out(out_model, "out_model")?;
        // SAFETY: forwarded.
        let options = unsafe { load_options_from(&params) }?;
        let model = Model::load(Path::new(path), &options)?;
        let handle = Box::into_raw(Box::new(VaradModel::new(model)));
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_model = handle };
        Ok(())
    })
}

/// The device the model's backbone actually runs on: `VARAD_DEVICE_CPU` or
/// `VARAD_DEVICE_CUDA` (then `*out_cuda_device` is its index; 0 otherwise).
/// `out_cuda_device` may be NULL.
///
/// Thread safety: `model` is const: any thread, also while others score or train.
/// Errors: `VARAD_ERR_NULL_POINTER`.
///
/// # Safety
/// `model` is NULL or a live model; `out_device` and `out_cuda_device` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn varad_active_device(
    model: *const VaradModel,
    out_device: *mut DeviceValue,
    out_cuda_device: *mut u32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model, "model") }?;
        check_out(out_device, "out_device")?;
        let active = model.current().tokenizer().backbone().device().active;
        let (code, index) = match active {
            Device::Cuda(i) => (VaradDevice::VARAD_DEVICE_CUDA, i),
            _ => (VaradDevice::VARAD_DEVICE_CPU, 0),
        };
        // SAFETY: checked non-null / tested; the caller guarantees they are writable.
        unsafe {
            *out_device = code as u32;
            if !out_cuda_device.is_null() {
                *out_cuda_device = index;
            }
        }
        Ok(())
    })
}
