//! The size-tagged parameter structs (`VaradParams`, `VaradLoadParams`,
//! `VaradScoreParams`), their `_init` calls, the enums their fields hold, and their
//! translation into the engine's configuration.

use std::ffi::c_char;
use std::path::PathBuf;

use super::boundary::{ffi_boundary, optional_str, required_str, FfiError};
use super::c_enum::{c_enum_try_from, enum_arg, enum_arg_where};
use super::sized::{init_sized, SizedStruct};
use super::status::VaradStatus;
use crate::config::ranges::{MAX_CUDA_DEVICE, MAX_THREADS};
use crate::image::ResizeMode;
use crate::model::{BankLevels, BankSelection, MapNorm, NeighbourTerm};
use crate::model_file::LoadOptions;
use crate::score::{BeyondData, ImageScore};
use crate::{Config, Device};

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
c_enum_try_from!(VaradDevice {
    VARAD_DEVICE_AUTO,
    VARAD_DEVICE_CPU,
    VARAD_DEVICE_CUDA,
    VARAD_DEVICE_AS_SAVED,
});

/// How an image whose aspect ratio differs from the backbone input's is fitted into it:
/// `VaradParams.resize_mode`.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradResizeMode {
    /// Scale each axis on its own so the image fills the input (the default).
    VARAD_RESIZE_MODE_STRETCH = 0,
    /// Keep the aspect ratio: scale to fit, centre, pad the rest with mid grey.
    VARAD_RESIZE_MODE_KEEP_ASPECT = 1,
}
c_enum_try_from!(VaradResizeMode {
    VARAD_RESIZE_MODE_STRETCH,
    VARAD_RESIZE_MODE_KEEP_ASPECT,
});

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
c_enum_try_from!(VaradMapNorm {
    VARAD_MAP_NORM_NONE,
    VARAD_MAP_NORM_LEVEL,
    VARAD_MAP_NORM_CHANNEL,
    VARAD_MAP_NORM_POSITION,
    VARAD_MAP_NORM_POSITION_TWO_SIDED,
});

impl From<VaradMapNorm> for MapNorm {
    fn from(norm: VaradMapNorm) -> Self {
        match norm {
            VaradMapNorm::VARAD_MAP_NORM_NONE => MapNorm::None,
            VaradMapNorm::VARAD_MAP_NORM_LEVEL => MapNorm::Level,
            VaradMapNorm::VARAD_MAP_NORM_CHANNEL => MapNorm::Channel,
            VaradMapNorm::VARAD_MAP_NORM_POSITION => MapNorm::Position,
            VaradMapNorm::VARAD_MAP_NORM_POSITION_TWO_SIDED => MapNorm::PositionTwoSided,
        }
    }
}

impl From<MapNorm> for VaradMapNorm {
    fn from(norm: MapNorm) -> Self {
        match norm {
            MapNorm::None => VaradMapNorm::VARAD_MAP_NORM_NONE,
            MapNorm::Level => VaradMapNorm::VARAD_MAP_NORM_LEVEL,
            MapNorm::Channel => VaradMapNorm::VARAD_MAP_NORM_CHANNEL,
            MapNorm::Position => VaradMapNorm::VARAD_MAP_NORM_POSITION,
            MapNorm::PositionTwoSided => VaradMapNorm::VARAD_MAP_NORM_POSITION_TWO_SIDED,
        }
    }
}

/// What calibration does when the normal scores are too few for a requested rate
/// (fewer than `1 / rate - 1` images): `VaradParams.beyond_data`.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradBeyondData {
    /// Extrapolate with a log-normal prediction bound of the normal scores (never below
    /// the largest); the calibration report flags the rate as resting on that assumption
    /// (the default).
    VARAD_BEYOND_DATA_LOG_NORMAL_TAIL = 0,
    /// Refuse: `varad_train` fails with `VARAD_ERR_CONFIG` before optimising, saying how
    /// many good images the rate needs.
    VARAD_BEYOND_DATA_REFUSE = 1,
}
c_enum_try_from!(VaradBeyondData {
    VARAD_BEYOND_DATA_LOG_NORMAL_TAIL,
    VARAD_BEYOND_DATA_REFUSE,
});

impl From<VaradBeyondData> for BeyondData {
    fn from(value: VaradBeyondData) -> Self {
        match value {
            VaradBeyondData::VARAD_BEYOND_DATA_LOG_NORMAL_TAIL => BeyondData::LogNormalTail,
            VaradBeyondData::VARAD_BEYOND_DATA_REFUSE => BeyondData::Refuse,
        }
    }
}

impl From<BeyondData> for VaradBeyondData {
    fn from(value: BeyondData) -> Self {
        match value {
            BeyondData::LogNormalTail => VaradBeyondData::VARAD_BEYOND_DATA_LOG_NORMAL_TAIL,
            BeyondData::Refuse => VaradBeyondData::VARAD_BEYOND_DATA_REFUSE,
        }
    }
}

/// How the nearest-neighbour term's memory bank is chosen from the training images'
/// tokens: `VaradParams.neighbour_bank_selection`.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradBankSelection {
    /// A seeded random draw.
    VARAD_BANK_SELECTION_RANDOM = 0,
    /// Greedy k-center coreset selection: the bank covers every normal token as closely
    /// as its size allows, rare patterns included.
    VARAD_BANK_SELECTION_CORESET = 1,
}
c_enum_try_from!(VaradBankSelection {
    VARAD_BANK_SELECTION_RANDOM,
    VARAD_BANK_SELECTION_CORESET,
});

impl From<VaradBankSelection> for BankSelection {
    fn from(value: VaradBankSelection) -> Self {
        match value {
            VaradBankSelection::VARAD_BANK_SELECTION_RANDOM => BankSelection::Random,
            VaradBankSelection::VARAD_BANK_SELECTION_CORESET => BankSelection::Coreset,
        }
    }
}

impl From<BankSelection> for VaradBankSelection {
    fn from(value: BankSelection) -> Self {
        match value {
            BankSelection::Random => VaradBankSelection::VARAD_BANK_SELECTION_RANDOM,
            BankSelection::Coreset => VaradBankSelection::VARAD_BANK_SELECTION_CORESET,
        }
    }
}

/// Which levels get a nearest-neighbour memory bank: `VaradParams.neighbour_bank_levels`.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradBankLevels {
    /// The coarsest level only.
    VARAD_BANK_LEVELS_COARSEST = 0,
    /// Every used level, each with its own bank of `neighbour_bank_tokens` tokens.
    VARAD_BANK_LEVELS_ALL = 1,
}
c_enum_try_from!(VaradBankLevels {
    VARAD_BANK_LEVELS_COARSEST,
    VARAD_BANK_LEVELS_ALL,
});

impl From<VaradBankLevels> for BankLevels {
    fn from(value: VaradBankLevels) -> Self {
        match value {
            VaradBankLevels::VARAD_BANK_LEVELS_COARSEST => BankLevels::Coarsest,
            VaradBankLevels::VARAD_BANK_LEVELS_ALL => BankLevels::All,
        }
    }
}

impl From<BankLevels> for VaradBankLevels {
    fn from(value: BankLevels) -> Self {
        match value {
            BankLevels::Coarsest => VaradBankLevels::VARAD_BANK_LEVELS_COARSEST,
            BankLevels::All => VaradBankLevels::VARAD_BANK_LEVELS_ALL,
        }
    }
}

/// How a position's distance to a nearest-neighbour bank becomes the term:
/// `VaradParams.neighbour_term`.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradNeighbourTerm {
    /// Standard deviations above the normal mean distance, 0 below it.
    VARAD_NEIGHBOUR_TERM_ABOVE_NORMAL = 0,
    /// The whole distance in standard deviations of the normal distances (the default):
    /// below the normal mean a closer token still ranks lower.
    VARAD_NEIGHBOUR_TERM_SCALED = 1,
}
c_enum_try_from!(VaradNeighbourTerm {
    VARAD_NEIGHBOUR_TERM_ABOVE_NORMAL,
    VARAD_NEIGHBOUR_TERM_SCALED,
});

impl From<VaradNeighbourTerm> for NeighbourTerm {
    fn from(value: VaradNeighbourTerm) -> Self {
        match value {
            VaradNeighbourTerm::VARAD_NEIGHBOUR_TERM_ABOVE_NORMAL => NeighbourTerm::AboveNormal,
            VaradNeighbourTerm::VARAD_NEIGHBOUR_TERM_SCALED => NeighbourTerm::Scaled,
        }
    }
}

impl From<NeighbourTerm> for VaradNeighbourTerm {
    fn from(value: NeighbourTerm) -> Self {
        match value {
            NeighbourTerm::AboveNormal => VaradNeighbourTerm::VARAD_NEIGHBOUR_TERM_ABOVE_NORMAL,
            NeighbourTerm::Scaled => VaradNeighbourTerm::VARAD_NEIGHBOUR_TERM_SCALED,
        }
    }
}

/// A `VaradDevice` as a struct field or argument holds it: any `uint32_t` a caller
/// passes (the header names it `VaradDevice`).
/// cbindgen:ignore
pub type DeviceValue = u32;
/// A `VaradResizeMode` as a struct field holds it.
/// cbindgen:ignore
pub type ResizeModeValue = u32;
/// A `VaradMapNorm` as a struct field holds it.
/// cbindgen:ignore
pub type MapNormValue = u32;
/// A `VaradBeyondData` as a struct field holds it.
/// cbindgen:ignore
pub type BeyondDataValue = u32;
/// A `VaradBankSelection` as a struct field holds it.
/// cbindgen:ignore
pub type BankSelectionValue = u32;
/// A `VaradBankLevels` as a struct field holds it.
/// cbindgen:ignore
pub type BankLevelsValue = u32;
/// A `VaradNeighbourTerm` as a struct field holds it.
/// cbindgen:ignore
pub type NeighbourTermValue = u32;

/// The engine's device for a C device code: `None` for `VARAD_DEVICE_AS_SAVED` where
/// that is allowed. Where it is not, the error lists only the codes the field takes.
fn device_from(
    value: DeviceValue,
    cuda_device: u32,
    field: &str,
    allow_as_saved: bool,
) -> Result<Option<Device>, FfiError> {
    let device = enum_arg_where::<VaradDevice>(value, field, |d| {
        allow_as_saved || d != VaradDevice::VARAD_DEVICE_AS_SAVED
    })
    .map_err(|mut e| {
        if value == VaradDevice::VARAD_DEVICE_AS_SAVED as u32 {
            e.message += "; VARAD_DEVICE_AS_SAVED is only for VaradLoadParams";
        }
        e
    })?;
    Ok(match device {
        VaradDevice::VARAD_DEVICE_AUTO => Some(Device::Auto),
        VaradDevice::VARAD_DEVICE_CPU => Some(Device::Cpu),
        VaradDevice::VARAD_DEVICE_CUDA => Some(Device::Cuda(cuda_device)),
        VaradDevice::VARAD_DEVICE_AS_SAVED => None,
    })
}

/// How `varad_create` builds a model. Fill one with `varad_params_init`, set
/// `backbone_path` and what you want to change, pass its address.
///
/// Every numeric field states its range (`[a, b]` includes both ends, `(a, b)` neither;
/// NaN and infinities are never in a range). `varad_create` checks every field before
/// any other work: an out-of-range value is `VARAD_ERR_CONFIG` and an unknown enum value
/// `VARAD_ERR_INVALID_ARGUMENT`, the message naming each such field (`params.sigma`).
///
/// Layout: every field below is in every library from 1.0.0 on; later versions only
/// append fields, and a caller compiled against an older, shorter layout gets the
/// defaults of the fields it does not know.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VaradParams {
    /// The bytes the caller's struct has: `sizeof(VaradParams)`, written by
    /// `varad_params_init`.
    pub size: usize,
    /// The backbone ONNX file (borrowed during `varad_create`). Required. Default: NULL.
    pub backbone_path: *const c_char,
    /// The ONNX Runtime library file. Default: NULL (search: `ORT_DYLIB_PATH`, the folder
    /// of this library's own file, the project's setup folder, then on Linux the system
    /// library path; never a search by name on Windows).
    pub runtime_path: *const c_char,
    /// Comma-separated backbone output names to use, finest first. Default: NULL (the
    /// backbone's `varad.default_levels`, or all its outputs when it declares none).
    pub levels: *const c_char,
    /// Backbone input width, a multiple of the backbone's input multiple (checked against
    /// the backbone). Range: [1, 16384], or 0 with `input_height` 0 for the backbone's
    /// preferred size. Default: 0.
    pub input_width: u32,
    /// Backbone input height, as `input_width`. Range: [1, 16384], or 0 with
    /// `input_width` 0. Default: 0.
    pub input_height: u32,
    /// How images are fitted into the input. Range: a `VaradResizeMode` value. Default:
    /// `VARAD_RESIZE_MODE_STRETCH`.
    pub resize_mode: ResizeModeValue,
    /// Where the model runs. Range: `VARAD_DEVICE_AUTO`, `VARAD_DEVICE_CPU` or
    /// `VARAD_DEVICE_CUDA` (not `VARAD_DEVICE_AS_SAVED`). Default: `VARAD_DEVICE_AUTO`.
    pub device: DeviceValue,
    /// The CUDA device index, read only when `device` is `VARAD_DEVICE_CUDA` (a device
    /// that is not there is `VARAD_ERR_CUDA`). Range: [0, 1023]. Default: 0.
    pub cuda_device: u32,
    /// Worker threads; 0 = one per physical core. Range: [0, 1024]. Default: 0.
    pub threads: u32,
    /// The largest image accepted, in pixels. Range: [1, 4294967296] (2^32). Default:
    /// 268435456 (2^28).
    pub max_image_pixels: u64,
    /// Seed of every random choice. Range: any. Default: 0.
    pub seed: u64,
    /// Prediction step m, also below the token grid's height and width (checked against
    /// the backbone). Range: [1, 16383]. Default: 4.
    pub prediction_step: u32,
    /// Mamba blocks per predictor. Range: [1, 64]. Default: 1.
    pub n_layers: u32,
    /// SSM state size; at most 32 with `VARAD_DEVICE_CUDA`. Range: [1, 256]. Default: 16.
    pub d_state: u32,
    /// Inner width factor. Range: [1, 16]. Default: 2.
    pub expand: u32,
    /// Causal convolution width. Range: [1, 64]. Default: 4.
    pub d_conv: u32,
    /// Nonzero: stop the gradient through the prediction target. Range: any. Default: 0.
    pub detach_target: u32,
    /// Training epochs. Range: [1, 10000]. Default: 10.
    pub epochs: u32,
    /// Images per optimiser step. Range: [1, 1024]. Default: 2.
    pub batch_size: u32,
    /// AdamW learning rate. Range: (0, 1]. Default: 5e-4.
    pub learning_rate: f64,
    /// AdamW weight decay. Range: [0, 1]. Default: 0.01.
    pub weight_decay: f64,
    /// AdamW beta1. Range: [0, 1). Default: 0.9.
    pub beta1: f64,
    /// AdamW beta2. Range: [0, 1). Default: 0.999.
    pub beta2: f64,
    /// AdamW eps. Range: (0, 1]. Default: 1e-8.
    pub eps: f64,
    /// Memory for the training token cache in bytes; beyond it tokens spill to a
    /// temporary file. Range: [0, 1125899906842624] (2^50). Default: 4294967296 (4 GiB).
    pub cache_limit_bytes: u64,
    /// Share of the training images held back for calibration. Range: [0, 1). Default:
    /// 0.1.
    pub calibration_fraction: f64,
    /// Fewest images held back for calibration. Range: [0, 1048576]. Default: 3. The
    /// thresholds need at least 3 normal scores: with cross-fitting (`cross_fit_folds`)
    /// the training images give them and held-back images are optional; without it,
    /// `varad_train` refuses a set whose split (the larger of this and
    /// `calibration_fraction` of the images) holds back fewer than 3, before it trains.
    pub min_calibration_images: u32,
    /// Smallest defect region reported, in pixels; 0 and 1 keep every region. Range: [0,
    /// max_image_pixels]. Default: 1.
    pub min_region_area: u32,
    /// Gaussian smoothing of the anomaly map, in image pixels; 0 = none. Range: [0,
    /// 1000]. Default: 4.
    pub sigma: f32,
    /// Image score: 0 = the map's maximum, k > 0 = the mean of its k largest pixels.
    /// Range: [0, max_image_pixels]. Default: 0.
    pub top_k: u32,
    /// The target share of good parts at or above the image threshold. Range: (0, 1).
    /// Default: 0.01.
    pub target_false_reject_rate: f64,
    /// Review band width in standard deviations of the normal scores. Range: [0, 100].
    /// Default: 3.0.
    pub review_band: f64,
    /// Quantile of normal pixels used as the pixel threshold. Range: (0, 1]. Default:
    /// 1.0.
    pub pixel_quantile: f64,
    /// Memory one scoring call may need for its whole batch, in bytes; a batch that
    /// would need more is refused with `VARAD_ERR_BATCH_TOO_LARGE` before any work.
    /// Range: [1, 1125899906842624] (2^50). Default: 4294967296 (4 GiB).
    pub max_batch_bytes: u64,
    /// Bytes the training cache may spill to its temporary file once
    /// `cache_limit_bytes` of memory are used; past it `varad_training_set_add` returns
    /// `VARAD_ERR_CACHE_FULL`. Range: [0, 1125899906842624] (2^50). Default: 68719476736
    /// (64 GiB).
    pub cache_disk_limit_bytes: u64,
    /// Nonzero: average each token's directional predictions over the directions that
    /// have seen context, leaving out the BOS-only guesses near the borders. Range: any.
    /// Default: 0 (the paper's plain mean of the four).
    pub context_mean: u32,
    /// How each level's prediction errors become its map. Range: a `VaradMapNorm`
    /// value. Default: `VARAD_MAP_NORM_POSITION_TWO_SIDED` (`VARAD_MAP_NORM_NONE` is the
    /// paper's map).
    pub map_norm: MapNormValue,
    /// Weight of the nearest-neighbour term added to a normalised map: each position's
    /// distance to a memory bank of normal tokens, in standard deviations of that
    /// distance on normal images; 0 = off (never added to `VARAD_MAP_NORM_NONE`).
    /// Range: [0, 100]. Default: 1.0.
    pub neighbour_weight: f32,
    /// Tokens of each memory bank training builds for that term (on the levels
    /// `neighbour_bank_levels` names); 0 = no bank. Range: [0, 1048576] (2^20). Default:
    /// 8192.
    pub neighbour_bank_tokens: u32,
    /// Folds of the cross-fitting that scores every training image out-of-sample (each
    /// fold's images scored by statistics fitted without them), so the thresholds rest on
    /// the training images too; 0 = none (only held-back images are scored), 1 is refused
    /// (a single fold leaves no image to fit its statistics on). Range: [0, 64]. Default: 5.
    pub cross_fit_folds: u32,
    /// What calibration does when the normal scores are too few for a requested rate.
    /// Range: a `VaradBeyondData` value. Default: `VARAD_BEYOND_DATA_LOG_NORMAL_TAIL`.
    pub beyond_data: BeyondDataValue,
    /// The target share of good parts at or above the fail threshold (failed
    /// automatically); 0 = the fail threshold is the review threshold plus `review_band`
    /// standard deviations (the rule of varad 1.1, which states no rate). Range: [0, 1).
    /// Default: 0.001.
    pub target_false_fail_rate: f64,
    /// Nonzero: with known-defective examples (`varad_training_set_add_defective`),
    /// calibration lowers the review threshold until none of them passes; the calibration
    /// report states the review rate that costs. Range: any. Default: 0.
    pub catch_known_defects: u32,
    /// Reserved, must be 0: keeps the struct free of padding (see
    /// `VaradLoadParams.reserved`). Range: [0, 0]. Default: 0.
    pub reserved: u32,
    /// How each neighbour bank's tokens are chosen. Range: a `VaradBankSelection` value.
    /// Default: `VARAD_BANK_SELECTION_CORESET`.
    pub neighbour_bank_selection: BankSelectionValue,
    /// Which levels get a neighbour bank. Range: a `VaradBankLevels` value. Default:
    /// `VARAD_BANK_LEVELS_ALL`.
    pub neighbour_bank_levels: BankLevelsValue,
    /// How a position's distance to a bank becomes the nearest-neighbour term. Range: a
    /// `VaradNeighbourTerm` value. Default: `VARAD_NEIGHBOUR_TERM_SCALED`.
    pub neighbour_term: NeighbourTermValue,
    /// Reserved, must be 0: keeps the struct free of padding. Range: [0, 0]. Default: 0.
    pub reserved2: u32,
    /// How the nearest-neighbour term searches each bank: 0 = exactly (every bank token);
    /// N = in an inverted-file index of about sqrt(bank tokens) cells, measuring only the
    /// tokens of each position's N nearest cells (faster, approximate). Range: [0, 65536].
    /// Default: 8.
    pub neighbour_probes: u32,
    /// Reserved, must be 0: keeps the struct free of padding. Range: [0, 0]. Default: 0.
    pub reserved3: u32,
}

// SAFETY: repr(C), starts with `size`, fields are integers, floats and raw pointers, no
// padding (tested).
unsafe impl SizedStruct for VaradParams {
    // `size` and `backbone_path`, the one field without a default.
    const MIN_SIZE: usize = std::mem::offset_of!(VaradParams, runtime_path);
    const NAME: &'static str = "VaradParams";
    const INIT: &'static str = "varad_params_init(&params, sizeof params)";
}

/// The defaults of every `VaradParams` field: the engine's default configuration.
pub(crate) fn default_params() -> VaradParams {
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
        resize_mode: match c.resize_mode {
            ResizeMode::Stretch => VaradResizeMode::VARAD_RESIZE_MODE_STRETCH,
            ResizeMode::KeepAspect => VaradResizeMode::VARAD_RESIZE_MODE_KEEP_ASPECT,
        } as u32,
        device: VaradDevice::VARAD_DEVICE_AUTO as u32,
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
        map_norm: VaradMapNorm::from(c.score.map_norm) as u32,
        neighbour_weight: c.score.neighbour_weight,
        neighbour_bank_tokens: t.neighbour_bank_tokens as u32,
        cross_fit_folds: t.cross_fit_folds as u32,
        beyond_data: VaradBeyondData::from(cal.beyond_data) as u32,
        target_false_fail_rate: cal.target_false_fail_rate,
        catch_known_defects: cal.catch_known_defects as u32,
        reserved: 0,
        neighbour_bank_selection: VaradBankSelection::from(t.neighbour_bank_selection) as u32,
        neighbour_bank_levels: VaradBankLevels::from(t.neighbour_bank_levels) as u32,
        neighbour_term: VaradNeighbourTerm::from(c.score.neighbour_term) as u32,
        reserved2: 0,
        neighbour_probes: c.score.neighbour_probes as u32,
        reserved3: 0,
    }
}

/// The configuration `p` describes.
///
/// # Safety
/// The string pointers of `p` are NULL or NUL-terminated strings.
pub(crate) unsafe fn config_from(p: &VaradParams) -> Result<Config, FfiError> {
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
    c.resize_mode = match enum_arg::<VaradResizeMode>(p.resize_mode, "params.resize_mode")? {
        VaradResizeMode::VARAD_RESIZE_MODE_STRETCH => ResizeMode::Stretch,
        VaradResizeMode::VARAD_RESIZE_MODE_KEEP_ASPECT => ResizeMode::KeepAspect,
    };
    c.device = device_from(p.device, p.cuda_device, "params.device", false)?
        .expect("AS_SAVED is refused for VaradParams");
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
    c.score.map_norm = enum_arg::<VaradMapNorm>(p.map_norm, "params.map_norm")?.into();
    c.score.calibration.beyond_data =
        enum_arg::<VaradBeyondData>(p.beyond_data, "params.beyond_data")?.into();
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
    t.neighbour_bank_tokens = p.neighbour_bank_tokens as usize;
    t.cross_fit_folds = p.cross_fit_folds as usize;
    t.neighbour_bank_selection = enum_arg::<VaradBankSelection>(
        p.neighbour_bank_selection,
        "params.neighbour_bank_selection",
    )?
    .into();
    t.neighbour_bank_levels =
        enum_arg::<VaradBankLevels>(p.neighbour_bank_levels, "params.neighbour_bank_levels")?
            .into();
    let s = &mut c.score;
    s.neighbour_weight = p.neighbour_weight;
    s.neighbour_probes = p.neighbour_probes as usize;
    s.neighbour_term =
        enum_arg::<VaradNeighbourTerm>(p.neighbour_term, "params.neighbour_term")?.into();
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
    s.calibration.target_false_fail_rate = p.target_false_fail_rate;
    s.calibration.catch_known_defects = p.catch_known_defects != 0;
    check_ranges(
        &c,
        &[
            ("reserved", p.reserved),
            ("reserved2", p.reserved2),
            ("reserved3", p.reserved3),
        ],
    )?;
    Ok(c)
}

/// `VARAD_ERR_CONFIG` naming, by their `VaradParams` field names, every value of `c` out
/// of its range; the ranges are the engine's ([`Config::problems`]), and `reserved` must
/// be 0.
fn check_ranges(c: &Config, reserved: &[(&str, u32)]) -> Result<(), FfiError> {
    let problems = c.problems();
    if problems.is_empty() && reserved.iter().all(|&(_, v)| v == 0) {
        return Ok(());
    }
    let mut list: Vec<String> = problems
        .iter()
        .map(|p| format!("params.{} {}", params_field(p.field), p.problem))
        .collect();
    for &(name, value) in reserved.iter().filter(|&&(_, v)| v != 0) {
        list.push(format!("params.{name} {value} is not in [0, 0]"));
    }
    Err(FfiError::new(
        VaradStatus::VARAD_ERR_CONFIG,
        format!("invalid configuration: {}", list.join("; ")),
    ))
}

/// The `VaradParams` field that sets the configuration setting `field` (a path in
/// [`Config`], as [`crate::config::ConfigProblem`] names it).
fn params_field(field: &str) -> &str {
    match field {
        "input_size.width" => "input_width",
        "input_size.height" => "input_height",
        // The only numeric part of a device is the CUDA index.
        "device" => "cuda_device",
        "score.calibration.score_policy.k" => "top_k",
        other => ["score.calibration.", "score.", "train."]
            .iter()
            .find_map(|prefix| other.strip_prefix(prefix))
            .unwrap_or(other),
    }
}

/// Fills `*params` with the defaults (the paper's model, `backbone_path` NULL) and sets
/// `params->size` to `size`. Pass `sizeof *params` (or `sizeof(VaradParams)`): the
/// library writes only `size` bytes, so a program compiled against an older header keeps
/// working with a newer library.
///
/// Ownership: the caller owns `*params`. Thread safety: any thread.
/// Errors: `VARAD_ERR_NULL_POINTER` (`params` NULL), `VARAD_ERR_INVALID_ARGUMENT` (`size`
/// below the first layout's, above 4096, or not a multiple of 8). On error `*params` is
/// not written.
///
/// # Safety
/// `params` is NULL or writable for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn varad_params_init(params: *mut VaradParams, size: usize) -> VaradStatus {
    // SAFETY: forwarded from this function's contract.
    ffi_boundary(|| unsafe { init_sized(params, size, default_params(), "params") })
}

/// What `varad_load` may change about a saved model: where its files are and where it
/// runs. Fill one with `varad_load_params_init`, or pass NULL for everything as saved.
///
/// A value outside its field's range is `VARAD_ERR_INVALID_ARGUMENT` naming the field,
/// before the model file is read.
///
/// Layout: every field below is in every library from 1.0.0 on; later versions only
/// append fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VaradLoadParams {
    /// The bytes the caller's struct has: `sizeof(VaradLoadParams)`, written by
    /// `varad_load_params_init`.
    pub size: usize,
    /// The backbone file, when not where the model file says; its SHA-256 must match the
    /// one saved. Default: NULL (the saved path).
    pub backbone_path: *const c_char,
    /// The ONNX Runtime library file. Default: NULL (the saved one, else search).
    pub runtime_path: *const c_char,
    /// Where the model runs. Range: a `VaradDevice` value. Default:
    /// `VARAD_DEVICE_AS_SAVED`.
    pub device: DeviceValue,
    /// The CUDA device index, read only when `device` is `VARAD_DEVICE_CUDA`. Range: [0,
    /// 1023]. Default: 0.
    pub cuda_device: u32,
    /// Worker threads: -1 = as saved, 0 = one per physical core. Range: [-1, 1024].
    /// Default: -1.
    pub threads: i32,
    /// Reserved, must be 0: keeps the struct free of padding, so an appended field can
    /// never fall into bytes an older caller's compiler left unset. Range: [0, 0].
    /// Default: 0.
    pub reserved: u32,
}

// SAFETY: repr(C), starts with `size`, fields are integers and raw pointers, no padding
// (tested).
unsafe impl SizedStruct for VaradLoadParams {
    // Every field has a default.
    const MIN_SIZE: usize = std::mem::size_of::<usize>();
    const NAME: &'static str = "VaradLoadParams";
    const INIT: &'static str = "varad_load_params_init(&params, sizeof params)";
}

/// The defaults of every `VaradLoadParams` field: everything as saved.
pub(crate) fn default_load_params() -> VaradLoadParams {
    VaradLoadParams {
        size: std::mem::size_of::<VaradLoadParams>(),
        backbone_path: std::ptr::null(),
        runtime_path: std::ptr::null(),
        device: VaradDevice::VARAD_DEVICE_AS_SAVED as u32,
        cuda_device: 0,
        threads: -1,
        reserved: 0,
    }
}

/// `VARAD_ERR_INVALID_ARGUMENT` unless a `reserved` field is 0: a later library may give
/// those bytes a meaning, which this one cannot honour.
fn reserved_is_zero(reserved: u32) -> Result<(), FfiError> {
    if reserved == 0 {
        return Ok(());
    }
    Err(FfiError::new(
        VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
        format!("params.reserved is {reserved}; it must be 0"),
    ))
}

/// The load options `p` describes.
///
/// # Safety
/// The string pointers of `p` are NULL or NUL-terminated strings.
pub(crate) unsafe fn load_options_from(p: &VaradLoadParams) -> Result<LoadOptions, FfiError> {
    // SAFETY: forwarded from this function's contract.
    let backbone = unsafe { optional_str(p.backbone_path, "params.backbone_path") }?;
    // SAFETY: as above.
    let runtime = unsafe { optional_str(p.runtime_path, "params.runtime_path") }?;
    let threads = match p.threads {
        -1 => None,
        t if (0..=MAX_THREADS as i64).contains(&i64::from(t)) => Some(t as usize),
        t => {
            return Err(FfiError::new(
                VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
                format!(
                    "params.threads is {t} (valid: -1 = as saved, 0 = per core, 1 to {MAX_THREADS})"
                ),
            ))
        }
    };
    reserved_is_zero(p.reserved)?;
    let device = device_from(p.device, p.cuda_device, "params.device", true)?;
    if matches!(device, Some(Device::Cuda(i)) if i > MAX_CUDA_DEVICE) {
        return Err(FfiError::new(
            VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
            format!(
                "params.cuda_device is {} (valid: 0 to {MAX_CUDA_DEVICE})",
                p.cuda_device
            ),
        ));
    }
    Ok(LoadOptions {
        backbone: backbone.map(PathBuf::from),
        runtime_path: runtime.map(PathBuf::from),
        device,
        threads,
    })
}

/// Fills `*params` with the defaults (everything as saved) and sets `params->size` to
/// `size` (pass `sizeof *params`); writes only `size` bytes.
///
/// Ownership: the caller owns `*params`. Thread safety: any thread.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (`size` below 8, above
/// 4096, or not a multiple of 8). On error `*params` is not written.
///
/// # Safety
/// `params` is NULL or writable for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn varad_load_params_init(
    params: *mut VaradLoadParams,
    size: usize,
) -> VaradStatus {
    // SAFETY: forwarded from this function's contract.
    ffi_boundary(|| unsafe { init_sized(params, size, default_load_params(), "params") })
}

/// Per-call scoring options. Fill one with `varad_score_params_init`, or pass NULL for
/// the defaults.
///
/// Layout: every field below is in every library from 1.0.0 on; later versions only
/// append fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VaradScoreParams {
    /// The bytes the caller's struct has: `sizeof(VaradScoreParams)`, written by
    /// `varad_score_params_init`.
    pub size: usize,
    /// Region of interest: one byte per image pixel, row-major, nonzero = inspect; the
    /// image score and the regions ignore the rest. Every image of the call must then
    /// have `roi_len = width * height` pixels. Borrowed for the call. Default: NULL (the
    /// whole image).
    pub roi: *const u8,
    /// Bytes at `roi`. Range: 0 when `roi` is NULL, else the image's `width * height`.
    /// Default: 0.
    pub roi_len: usize,
    /// Nonzero: also keep the raw map on the token grid (`varad_result_raw_map`).
    /// Range: any. Default: 0.
    pub raw_map: u32,
    /// Reserved, must be 0: keeps the struct free of padding (see
    /// `VaradLoadParams.reserved`). Range: [0, 0]. Default: 0.
    pub reserved: u32,
}

// SAFETY: repr(C), starts with `size`, fields are integers and raw pointers, no padding
// (tested).
unsafe impl SizedStruct for VaradScoreParams {
    // Every field has a default.
    const MIN_SIZE: usize = std::mem::size_of::<usize>();
    const NAME: &'static str = "VaradScoreParams";
    const INIT: &'static str = "varad_score_params_init(&params, sizeof params)";
}

/// The defaults of every `VaradScoreParams` field: no ROI, no raw map.
pub(crate) fn default_score_params() -> VaradScoreParams {
    VaradScoreParams {
        size: std::mem::size_of::<VaradScoreParams>(),
        roi: std::ptr::null(),
        roi_len: 0,
        raw_map: 0,
        reserved: 0,
    }
}

/// The region of interest `p` describes, checked.
///
/// # Safety
/// `p.roi` is NULL or readable for `p.roi_len` bytes during `'a`.
pub(crate) unsafe fn roi_from<'a>(p: &VaradScoreParams) -> Result<Option<&'a [u8]>, FfiError> {
    reserved_is_zero(p.reserved)?;
    if p.roi.is_null() {
        if p.roi_len != 0 {
            return Err(FfiError::new(
                VaradStatus::VARAD_ERR_NULL_POINTER,
                format!("params.roi is NULL but params.roi_len is {}", p.roi_len),
            ));
        }
        return Ok(None);
    }
    if p.roi_len == 0 || p.roi_len > isize::MAX as usize {
        return Err(FfiError::new(
            VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
            format!("params.roi_len {} is not a mask size", p.roi_len),
        ));
    }
    // SAFETY: the caller guarantees `roi_len` readable bytes at `roi`.
    Ok(Some(unsafe {
        std::slice::from_raw_parts(p.roi, p.roi_len)
    }))
}

/// Fills `*params` with the defaults (no ROI, no raw map) and sets `params->size` to
/// `size` (pass `sizeof *params`); writes only `size` bytes.
///
/// Ownership: the caller owns `*params`. Thread safety: any thread.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (`size` below 8, above
/// 4096, or not a multiple of 8). On error `*params` is not written.
///
/// # Safety
/// `params` is NULL or writable for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn varad_score_params_init(
    params: *mut VaradScoreParams,
    size: usize,
) -> VaradStatus {
    // SAFETY: forwarded from this function's contract.
    ffi_boundary(|| unsafe { init_sized(params, size, default_score_params(), "params") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::sized::assert_no_padding;

    #[test]
    fn the_params_structs_have_no_padding() {
        assert_no_padding!(VaradParams {
            size,
            backbone_path,
            runtime_path,
            levels,
            input_width,
            input_height,
            resize_mode,
            device,
            cuda_device,
            threads,
            max_image_pixels,
            seed,
            prediction_step,
            n_layers,
            d_state,
            expand,
            d_conv,
            detach_target,
            epochs,
            batch_size,
            learning_rate,
            weight_decay,
            beta1,
            beta2,
            eps,
            cache_limit_bytes,
            calibration_fraction,
            min_calibration_images,
            min_region_area,
            sigma,
            top_k,
            target_false_reject_rate,
            review_band,
            pixel_quantile,
            max_batch_bytes,
            cache_disk_limit_bytes,
            context_mean,
            map_norm,
            neighbour_weight,
            neighbour_bank_tokens,
            cross_fit_folds,
            beyond_data,
            target_false_fail_rate,
            catch_known_defects,
            reserved,
            neighbour_bank_selection,
            neighbour_bank_levels,
            neighbour_term,
            reserved2,
            neighbour_probes,
            reserved3,
        });
        assert_no_padding!(VaradLoadParams {
            size,
            backbone_path,
            runtime_path,
            device,
            cuda_device,
            threads,
            reserved,
        });
        assert_no_padding!(VaradScoreParams {
            size,
            roi,
            roi_len,
            raw_map,
            reserved,
        });
    }

    #[test]
    fn the_default_map_norm_and_resize_mode_come_from_the_engine_defaults() {
        let p = default_params();
        let c = Config::new("");
        assert_eq!(
            MapNorm::from(VaradMapNorm::try_from(p.map_norm).unwrap()),
            c.score.map_norm
        );
        assert_eq!(
            p.resize_mode,
            VaradResizeMode::VARAD_RESIZE_MODE_STRETCH as u32
        );
        assert_eq!(c.resize_mode, ResizeMode::Stretch);
    }

    #[test]
    fn every_map_norm_round_trips_through_its_c_value() {
        for norm in MapNorm::ALL {
            let value = VaradMapNorm::from(norm) as u32;
            assert_eq!(MapNorm::from(VaradMapNorm::try_from(value).unwrap()), norm);
        }
    }
}
