//! `VaradModel`: create, destroy, save, load, the active device and the calibration's
//! thresholds.

use std::ffi::c_char;
use std::path::{Path, PathBuf};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::boundary::{
    check_out, ffi_boundary, ffi_value, optional_str, read_sized, required_str, try_ref, FfiError,
    SizedStruct,
};
use super::status::VaradStatus;
use crate::image::{ImageLimits, ResizeMode};
use crate::model::MapNorm;
use crate::model_file::LoadOptions;
use crate::score::ImageScore;
use crate::{Config, Device, Model};

/// An opaque model. Scoring takes a `const VaradModel*` and may run on many threads at
/// once; training, threshold changes and destroying take a `VaradModel*` and are
/// exclusive.
pub struct VaradModel {
    // Readers score; a writer trains or changes thresholds. Writers only ever try the
    // lock (and report VARAD_ERR_BUSY), so no call waits on another and nothing deadlocks.
    inner: RwLock<Model>,
}

impl VaradModel {
    pub(crate) fn new(model: Model) -> Self {
        VaradModel {
            inner: RwLock::new(model),
        }
    }

    /// Shared access for scoring; `VARAD_ERR_BUSY` while the model trains.
    pub(crate) fn read(&self) -> Result<RwLockReadGuard<'_, Model>, FfiError> {
        self.inner.try_read().ok_or_else(|| {
            FfiError::new(
                VaradStatus::VARAD_ERR_BUSY,
                "the model is being trained or changed by another thread; retry when that call has returned",
            )
        })
    }

    /// Exclusive access for training and changes; `VARAD_ERR_BUSY` while another thread
    /// scores with the model (or trains it).
    pub(crate) fn write(&self) -> Result<RwLockWriteGuard<'_, Model>, FfiError> {
        self.inner.try_write().ok_or_else(|| {
            FfiError::new(
                VaradStatus::VARAD_ERR_BUSY,
                "the model is in use by another thread (scoring or training): training and \
                 threshold changes need it exclusively; retry when the other calls have returned",
            )
        })
    }
}

/// The image size limit of a model's configuration.
pub(crate) fn limits(model: &Model) -> ImageLimits {
    ImageLimits {
        max_pixels: model.config().max_image_pixels,
    }
}

/// Where a model runs: `VaradParams.device`, `VaradLoadParams.device` and
/// `varad_active_device`.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradDevice {
    /// CUDA when a usable GPU is found, else the CPU (the fallback is logged).
    VARAD_DEVICE_AUTO = 0,
    /// The CPU.
    VARAD_DEVICE_CPU = 1,
    /// The CUDA device `cuda_device`; failing to use it is `VARAD_ERR_CUDA`.
    VARAD_DEVICE_CUDA = 2,
    /// Only in `VaradLoadParams`: the device the model was saved with.
    VARAD_DEVICE_AS_SAVED = 255,
}

/// How each level's prediction errors become its anomaly map: `VaradParams.map_norm`.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradMapNorm {
    /// The paper's map: the raw squared prediction error, levels summed as they are.
    VARAD_MAP_NORM_NONE = 0,
    /// Each level divided by its mean on the normal training images.
    VARAD_MAP_NORM_LEVEL = 1,
    /// Each channel's error divided by its mean on the normal training images.
    VARAD_MAP_NORM_CHANNEL = 2,
    /// The channel-normalised map scored against its normal mean and spread at each
    /// position.
    VARAD_MAP_NORM_POSITION = 3,
    /// As `VARAD_MAP_NORM_POSITION`, also flagging errors far below normal (the default).
    VARAD_MAP_NORM_POSITION_TWO_SIDED = 4,
}

fn map_norm_from(code: u32) -> Result<MapNorm, FfiError> {
    MapNorm::ALL.get(code as usize).copied().ok_or_else(|| {
        FfiError::new(
            VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
            format!(
                "params.map_norm {code} is unknown (0 = none, 1 = level, 2 = channel, 3 = position, \
                 4 = position_two_sided)"
            ),
        )
    })
}

const DEVICE_AUTO: u32 = 0;
const DEVICE_CPU: u32 = 1;
const DEVICE_CUDA: u32 = 2;
const DEVICE_AS_SAVED: u32 = 255;

fn device_from(code: u32, index: u32, allow_saved: bool) -> Result<Option<Device>, FfiError> {
    match code {
        DEVICE_AUTO => Ok(Some(Device::Auto)),
        DEVICE_CPU => Ok(Some(Device::Cpu)),
        DEVICE_CUDA => Ok(Some(Device::Cuda(index))),
        DEVICE_AS_SAVED if allow_saved => Ok(None),
        _ => Err(FfiError::new(
            VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
            format!(
                "unknown device code {code} (valid: 0=AUTO, 1=CPU, 2=CUDA{})",
                if allow_saved { ", 255=AS_SAVED" } else { "" }
            ),
        )),
    }
}

/// How `varad_create` builds a model. Get one from `varad_default_params()`, set
/// `backbone_path` and what you want to change, pass its address. `size` lets fields be
/// added in later versions: leave it as `varad_default_params()` sets it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VaradParams {
    /// `sizeof(VaradParams)`. Default: set by `varad_default_params()`.
    pub size: usize,
    /// The backbone ONNX file (borrowed during `varad_create`). Required. Default: NULL.
    pub backbone_path: *const c_char,
    /// The ONNX Runtime library file. Default: NULL (search: `ORT_DYLIB_PATH`, the
    /// project's setup folder, the system library path).
    pub runtime_path: *const c_char,
    /// Comma-separated backbone output names to use, finest first. Default: NULL (the
    /// backbone's `varad.default_levels`, or all its outputs when it declares none).
    pub levels: *const c_char,
    /// Backbone input width; 0 with `input_height` 0 = the backbone's preferred size.
    /// Default: 0.
    pub input_width: u32,
    /// Backbone input height. Default: 0.
    pub input_height: u32,
    /// 0 = stretch the image to the input, 1 = keep the aspect ratio (pad). Default: 0.
    pub resize_mode: u32,
    /// A `VaradDevice` (not `VARAD_DEVICE_AS_SAVED`). Default: `VARAD_DEVICE_AUTO`.
    pub device: u32,
    /// The CUDA device index when `device` is `VARAD_DEVICE_CUDA`. Default: 0.
    pub cuda_device: u32,
    /// Worker threads; 0 = one per physical core. Default: 0.
    pub threads: u32,
    /// The largest image accepted, in pixels. Default: 268435456 (2^28).
    pub max_image_pixels: u64,
    /// Seed of every random choice. Default: 0.
    pub seed: u64,
    /// Prediction step m. Default: 4.
    pub prediction_step: u32,
    /// Mamba blocks per predictor. Default: 1.
    pub n_layers: u32,
    /// SSM state size. Default: 16.
    pub d_state: u32,
    /// Inner width factor. Default: 2.
    pub expand: u32,
    /// Causal convolution width. Default: 4.
    pub d_conv: u32,
    /// Nonzero: stop the gradient through the prediction target. Default: 0.
    pub detach_target: u32,
    /// Training epochs. Default: 10.
    pub epochs: u32,
    /// Images per optimiser step. Default: 2.
    pub batch_size: u32,
    /// AdamW learning rate. Default: 5e-4.
    pub learning_rate: f64,
    /// AdamW weight decay. Default: 0.01.
    pub weight_decay: f64,
    /// AdamW beta1. Default: 0.9.
    pub beta1: f64,
    /// AdamW beta2. Default: 0.999.
    pub beta2: f64,
    /// AdamW eps. Default: 1e-8.
    pub eps: f64,
    /// Memory for the training token cache in bytes; beyond it tokens spill to a
    /// temporary file. Default: 4294967296 (4 GiB).
    pub cache_limit_bytes: u64,
    /// Share of the training images held back for calibration. Default: 0.1.
    pub calibration_fraction: f64,
    /// Fewest images held back for calibration. Default: 3.
    pub min_calibration_images: u32,
    /// Smallest defect region reported, in pixels. Default: 1.
    pub min_region_area: u32,
    /// Gaussian smoothing of the anomaly map, in image pixels; 0 = none. Default: 4.
    pub sigma: f32,
    /// Image score: 0 = the map's maximum, k > 0 = the mean of its k largest pixels.
    /// Default: 0.
    pub top_k: u32,
    /// The target share of good parts at or above the image threshold, in (0, 1).
    /// Default: 0.01.
    pub target_false_reject_rate: f64,
    /// Review band width in standard deviations of the normal scores. Default: 3.0.
    pub review_band: f64,
    /// Quantile of normal pixels used as the pixel threshold, in (0, 1]. Default: 1.0.
    pub pixel_quantile: f64,
    /// Memory one scoring call may need for its whole batch, in bytes; a batch that
    /// would need more is refused with `VARAD_ERR_BATCH_TOO_LARGE` before any work.
    /// Default: 4294967296 (4 GiB). (Added in 0.1.0 after the first layout: callers
    /// whose `size` ends before it get the default.)
    pub max_batch_bytes: u64,
    /// Bytes the training cache may spill to its temporary file once
    /// `cache_limit_bytes` of memory are used; past it `varad_training_set_add` returns
    /// `VARAD_ERR_CACHE_FULL`. Default: 68719476736 (64 GiB).
    pub cache_disk_limit_bytes: u64,
    /// Nonzero: average each token's directional predictions over the directions that
    /// have seen context, leaving out the BOS-only guesses near the borders. Default: 0
    /// (the paper's plain mean of the four).
    pub context_mean: u32,
    /// A `VaradMapNorm`: how each level's prediction errors become its map. Default:
    /// `VARAD_MAP_NORM_POSITION_TWO_SIDED` (`VARAD_MAP_NORM_NONE` is the paper's map).
    pub map_norm: u32,
}

// SAFETY: repr(C), starts with `size`, fields are integers, floats and raw pointers.
unsafe impl SizedStruct for VaradParams {
    // The first published layout ended at `pixel_quantile`: a caller built against it
    // passes that size and gets the defaults of the fields appended since.
    const MIN_SIZE: usize = std::mem::offset_of!(VaradParams, max_batch_bytes);
    const NAME: &'static str = "VaradParams";
    const SOURCE: &'static str = "varad_default_params()";
}

fn default_params() -> VaradParams {
    let c = Config::new("");
    let t = &c.train;
    let cal = &c.score.calibration;
    VaradParams {
        size: std::mem::size_of::<VaradParams>(),
        backbone_path: std::ptr::null(),
        runtime_path: std::ptr::null(),
        levels: std::ptr::null(),
        input_width: 0,
        input_height: 0,
        resize_mode: 0,
        device: DEVICE_AUTO,
        cuda_device: 0,
        threads: c.threads as u32,
        max_image_pixels: c.max_image_pixels,
        seed: c.seed,
        prediction_step: c.prediction_step as u32,
        n_layers: c.n_layers as u32,
        d_state: c.d_state as u32,
        expand: c.expand as u32,
        d_conv: c.d_conv as u32,
        detach_target: c.detach_target as u32,
        epochs: t.epochs as u32,
        batch_size: t.batch_size as u32,
        learning_rate: t.learning_rate,
        weight_decay: t.weight_decay,
        beta1: t.beta1,
        beta2: t.beta2,
        eps: t.eps,
        cache_limit_bytes: t.cache_limit_bytes,
        calibration_fraction: t.calibration_fraction,
        min_calibration_images: t.min_calibration_images as u32,
        min_region_area: c.score.min_region_area as u32,
        sigma: c.score.sigma,
        top_k: match cal.score_policy {
            ImageScore::Max => 0,
            ImageScore::TopKMean { k } => k as u32,
        },
        target_false_reject_rate: cal.target_false_reject_rate,
        review_band: cal.review_band,
        pixel_quantile: cal.pixel_quantile,
        max_batch_bytes: c.score.max_batch_bytes,
        cache_disk_limit_bytes: t.cache_disk_limit_bytes,
        context_mean: c.context_mean as u32,
        map_norm: MapNorm::ALL
            .iter()
            .position(|&n| n == c.score.map_norm)
            .unwrap_or(0) as u32,
    }
}

/// The configuration `p` describes.
///
/// # Safety
/// The string pointers of `p` are NULL or NUL-terminated strings.
unsafe fn config_from(p: &VaradParams) -> Result<Config, FfiError> {
    // SAFETY: forwarded from this function's contract.
    let backbone = unsafe { required_str(p.backbone_path, "params.backbone_path") }?;
    // SAFETY: as above.
    let runtime = unsafe { optional_str(p.runtime_path, "params.runtime_path") }?;
    // SAFETY: as above.
    let levels = unsafe { optional_str(p.levels, "params.levels") }?;
    let mut c = Config::new(backbone);
    c.runtime_path = runtime.map(PathBuf::from);
    c.levels = levels
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    c.input_size = match (p.input_width, p.input_height) {
        (0, 0) => None,
        (w, h) => Some((w, h)),
    };
    c.resize_mode = match p.resize_mode {
        0 => ResizeMode::Stretch,
        1 => ResizeMode::KeepAspect,
        m => {
            return Err(FfiError::new(
                VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
                format!("params.resize_mode {m} is unknown (0 = stretch, 1 = keep aspect)"),
            ))
        }
    };
    c.device = device_from(p.device, p.cuda_device, false)?.unwrap_or(Device::Auto);
    c.threads = p.threads as usize;
    c.max_image_pixels = p.max_image_pixels;
    c.seed = p.seed;
    c.prediction_step = p.prediction_step as usize;
    c.n_layers = p.n_layers as usize;
    c.d_state = p.d_state as usize;
    c.expand = p.expand as usize;
    c.d_conv = p.d_conv as usize;
    c.detach_target = p.detach_target != 0;
    c.context_mean = p.context_mean != 0;
    c.score.map_norm = map_norm_from(p.map_norm)?;
    let t = &mut c.train;
    t.epochs = p.epochs as usize;
    t.batch_size = p.batch_size as usize;
    t.learning_rate = p.learning_rate;
    t.weight_decay = p.weight_decay;
    t.beta1 = p.beta1;
    t.beta2 = p.beta2;
    t.eps = p.eps;
    t.cache_limit_bytes = p.cache_limit_bytes;
    t.cache_disk_limit_bytes = p.cache_disk_limit_bytes;
    t.calibration_fraction = p.calibration_fraction;
    t.min_calibration_images = p.min_calibration_images as usize;
    let s = &mut c.score;
    s.min_region_area = p.min_region_area as usize;
    s.max_batch_bytes = p.max_batch_bytes;
    s.sigma = p.sigma;
    s.calibration.score_policy = match p.top_k {
        0 => ImageScore::Max,
        k => ImageScore::TopKMean { k: k as usize },
    };
    s.calibration.target_false_reject_rate = p.target_false_reject_rate;
    s.calibration.review_band = p.review_band;
    s.calibration.pixel_quantile = p.pixel_quantile;
    s.calibration.validate()?;
    Ok(c)
}

/// The default model parameters (the paper's), with `size` set and `backbone_path` NULL.
///
/// Thread safety: any thread. Errors: none.
#[no_mangle]
pub extern "C" fn varad_default_params() -> VaradParams {
    default_params()
}

/// Creates an untrained model from `params`: loads ONNX Runtime if needed, opens the
/// backbone and checks the configuration against it.
///
/// Ownership: the caller owns `*out_model` and frees it with `varad_destroy`; `params`
/// and its strings are borrowed for the call. Thread safety: any thread.
/// Errors: `VARAD_ERR_NULL_POINTER` (`params`, `params->backbone_path` or `out_model`
/// NULL), `VARAD_ERR_INVALID_ARGUMENT` (`params->size` too small, unknown device or
/// resize mode, a string not UTF-8), `VARAD_ERR_CONFIG`, `VARAD_ERR_IO`,
/// `VARAD_ERR_RUNTIME_NOT_FOUND`, `VARAD_ERR_RUNTIME`, `VARAD_ERR_BACKBONE_CONTRACT`,
/// `VARAD_ERR_CUDA`. `*out_model` is written only on success.
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
/// threads score. Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (path
/// not UTF-8), `VARAD_ERR_IO`, `VARAD_ERR_BUSY` (the model is training).
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
        model.read()?.save(Path::new(path))?;
        Ok(())
    })
}

/// What `varad_load` may change about a saved model: where its files are and where it
/// runs. Get one from `varad_default_load_params()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VaradLoadParams {
    /// `sizeof(VaradLoadParams)`. Default: set by `varad_default_load_params()`.
    pub size: usize,
    /// The backbone file, when not where the model file says; its SHA-256 must match the
    /// one saved. Default: NULL (the saved path).
    pub backbone_path: *const c_char,
    /// The ONNX Runtime library file. Default: NULL (the saved one, else search).
    pub runtime_path: *const c_char,
    /// A `VaradDevice`. Default: `VARAD_DEVICE_AS_SAVED`.
    pub device: u32,
    /// The CUDA device index when `device` is `VARAD_DEVICE_CUDA`. Default: 0.
    pub cuda_device: u32,
    /// Worker threads: -1 = as saved, 0 = one per physical core. Default: -1.
    pub threads: i32,
}

// SAFETY: repr(C), starts with `size`, fields are integers and raw pointers.
unsafe impl SizedStruct for VaradLoadParams {
    const MIN_SIZE: usize = std::mem::size_of::<VaradLoadParams>();
    const NAME: &'static str = "VaradLoadParams";
    const SOURCE: &'static str = "varad_default_load_params()";
}

fn default_load_params() -> VaradLoadParams {
    VaradLoadParams {
        size: std::mem::size_of::<VaradLoadParams>(),
        backbone_path: std::ptr::null(),
        runtime_path: std::ptr::null(),
        device: DEVICE_AS_SAVED,
        cuda_device: 0,
        threads: -1,
    }
}

/// The default load parameters: everything as saved.
///
/// Thread safety: any thread. Errors: none.
#[no_mangle]
pub extern "C" fn varad_default_load_params() -> VaradLoadParams {
    default_load_params()
}

/// Loads a model file written by `varad_save`. `params` may be NULL (everything as
/// saved).
///
/// Ownership: the caller owns `*out_model` and frees it with `varad_destroy`; `path` and
/// `params` are borrowed. Thread safety: any thread.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (size too small,
/// unknown device, bad threads, not UTF-8), `VARAD_ERR_IO`, `VARAD_ERR_MODEL_FILE`
/// (malformed, newer format, backbone mismatch), `VARAD_ERR_RUNTIME_NOT_FOUND`,
/// `VARAD_ERR_RUNTIME`, `VARAD_ERR_BACKBONE_CONTRACT`, `VARAD_ERR_CUDA`.
/// `*out_model` is written only on success.
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
        let backbone = unsafe { optional_str(params.backbone_path, "params.backbone_path") }?;
        // SAFETY: forwarded.
        let runtime = unsafe { optional_str(params.runtime_path, "params.runtime_path") }?;
        let threads = match params.threads {
            -1 => None,
            t if t >= 0 => Some(t as usize),
            t => {
                return Err(FfiError::new(
                    VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
                    format!("params.threads {t} is invalid (-1 = as saved, 0 = per core, n > 0)"),
                ))
            }
        };
        let options = LoadOptions {
            backbone: backbone.map(PathBuf::from),
            runtime_path: runtime.map(PathBuf::from),
            device: device_from(params.device, params.cuda_device, true)?,
            threads,
        };
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
/// Thread safety: `model` is const: any thread, also while others score.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_BUSY` (the model is training).
///
/// # Safety
/// `model` is NULL or a live model; `out_device` and `out_cuda_device` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn varad_active_device(
    model: *const VaradModel,
    out_device: *mut u32,
    out_cuda_device: *mut u32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model, "model") }?;
        check_out(out_device, "out_device")?;
        let active = model.read()?.tokenizer().backbone().device().active;
        let (code, index) = match active {
            Device::Cuda(i) => (DEVICE_CUDA, i),
            _ => (DEVICE_CPU, 0),
        };
        // SAFETY: checked non-null / tested; the caller guarantees they are writable.
        unsafe {
            *out_device = code;
            if !out_cuda_device.is_null() {
                *out_cuda_device = index;
            }
        }
        Ok(())
    })
}

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

fn unknown_threshold(which: u32) -> FfiError {
    FfiError::new(
        VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
        format!("unknown threshold {which} (valid: 1=IMAGE, 2=REVIEW, 3=FAIL, 4=PIXEL)"),
    )
}

fn not_calibrated() -> FfiError {
    FfiError::new(
        VaradStatus::VARAD_ERR_NOT_CALIBRATED,
        "the model is not calibrated: train it (or load a trained model) first",
    )
}

/// Reads one threshold of the model's calibration into `*out_value`.
///
/// Thread safety: `model` is const: any thread, also while others score.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (unknown `which`),
/// `VARAD_ERR_NOT_CALIBRATED`, `VARAD_ERR_BUSY` (the model is training).
///
/// # Safety
/// `model` is NULL or a live model; `out_value` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_get_threshold(
    model: *const VaradModel,
    which: u32,
    out_value: *mut f32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model, "model") }?;
        check_out(out_value, "out_value")?;
        let guard = model.read()?;
        let c = guard.calibration().ok_or_else(not_calibrated)?;
        let value = match which {
            1 => c.image_threshold(),
            2 => c.review_threshold(),
            3 => c.fail_threshold(),
            4 => c.pixel_threshold(),
            w => return Err(unknown_threshold(w)),
        };
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_value = value };
        Ok(())
    })
}

/// Sets one threshold of the model's calibration (takes effect for the next scoring
/// call; saved by `varad_save`). On any error nothing changes.
///
/// Thread safety: exclusive: `VARAD_ERR_BUSY` when another thread is scoring with or
/// training the model at that moment.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (unknown `which`, a value
/// out of range, review above fail), `VARAD_ERR_NOT_CALIBRATED`, `VARAD_ERR_BUSY`.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn varad_set_threshold(
    model: *mut VaradModel,
    which: u32,
    value: f32,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let model = unsafe { try_ref(model.cast_const(), "model") }?;
        let mut guard = model.write()?;
        let mut c = guard.calibration().ok_or_else(not_calibrated)?.clone();
        match which {
            1 => c.set_image_threshold(value)?,
            2 => c.set_review_threshold(value)?,
            3 => c.set_fail_threshold(value)?,
            4 => c.set_pixel_threshold(value)?,
            w => return Err(unknown_threshold(w)),
        }
        guard.set_calibration(c);
        Ok(())
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
        let mut guard = model.write()?;
        let mut c = guard.calibration().ok_or_else(not_calibrated)?.clone();
        c.set_thresholds(review, fail)?;
        guard.set_calibration(c);
        Ok(())
    })
}
