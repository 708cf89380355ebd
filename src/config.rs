//! The model configuration: everything that decides what a model computes, stored whole
//! in the model file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::image::ResizeMode;
use crate::model::MapNorm;
use crate::score::CalibrationConfig;
use crate::{Device, Error, Result};

/// Most predictor blocks per level a configuration may ask for.
pub const MAX_LAYERS: usize = 64;
/// Largest SSM state size a configuration may ask for.
pub const MAX_D_STATE: usize = 256;
/// Largest expansion factor (`Di / C`) a configuration may ask for.
pub const MAX_EXPAND: usize = 16;
/// Largest causal convolution width a configuration may ask for.
pub const MAX_D_CONV: usize = 64;
/// Most worker threads a configuration may ask for.
pub const MAX_THREADS: usize = 1024;
/// Most tokens of the neighbour memory bank (each one is read for every scored token).
pub const MAX_BANK_TOKENS: usize = 1 << 20;
/// Longest side of the backbone input a configuration may ask for.
pub const MAX_INPUT_SIDE: u32 = 16384;

/// How a VarAD model is built, trained and scored. `Config::new(backbone)` gives the
/// paper's defaults; every field can be changed before training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The backbone ONNX file.
    pub backbone: PathBuf,
    /// The ONNX Runtime library; `None` searches (see [`crate::backbone::runtime`]).
    /// Not part of what the model computes; kept so a saved model reopens the same way.
    pub runtime_path: Option<PathBuf>,
    /// Which backbone outputs to use, by name, finest first; empty = the backbone's
    /// `varad.default_levels`, or all its outputs when it declares none.
    pub levels: Vec<String>,
    /// Backbone input `(width, height)`; `None` = the backbone's preferred size.
    pub input_size: Option<(u32, u32)>,
    /// How images of another aspect ratio are fitted into the input.
    #[serde(with = "resize_mode_serde")]
    pub resize_mode: ResizeMode,
    /// The largest image accepted, in pixels.
    pub max_image_pixels: u64,
    /// Prediction step `m`: the predictor sees tokens up to `m` rows (or columns) back.
    /// Default 4 (the paper's).
    pub prediction_step: usize,
    /// Mamba blocks per predictor. Default 1.
    pub n_layers: usize,
    /// SSM state size `N`. Default 16.
    pub d_state: usize,
    /// Inner width factor (`Di = expand * C`). Default 2.
    pub expand: usize,
    /// Causal convolution width. Default 4.
    pub d_conv: usize,
    /// Stop the gradient through the prediction target (the adapted tokens), so the
    /// adapters cannot shrink the features to shrink the loss. Default `false` (the
    /// paper's formulation).
    pub detach_target: bool,
    /// Average each token's directional predictions over the directions that have
    /// seen context only, leaving out those that predicted it from BOS padding alone
    /// (near the borders). Default `false` (the paper's plain mean). Not in DESIGN.md's
    /// map: an improvement option, measured in the project's eval reports.
    #[serde(default)]
    pub context_mean: bool,
    /// The scan directions used (DESIGN.md's `k`: 0 row-major, 1 its reverse, 2
    /// column-major, 3 its reverse), each at most once; the map averages the active ones.
    /// Default all four (the paper's). Fewer directions cost proportionally less; the
    /// option exists for the paper's ablation of the scan directions. (Absent from model
    /// files written before it existed: they get all four.)
    #[serde(default = "default_directions")]
    pub directions: Vec<usize>,
    /// Whether the adapters are trained. `false` keeps them at their zero initialisation
    /// (the identity `F^ = F`), for the paper's ablation without adapters; their tensors
    /// are still saved (as zeros). Default `true`. (Absent from model files written
    /// before it existed: they get `true`.)
    #[serde(default = "default_adapters")]
    pub adapters: bool,
    /// Where to run.
    #[serde(with = "device_serde")]
    pub device: Device,
    /// Worker threads for our kernels and ONNX Runtime; 0 = one per physical core.
    pub threads: usize,
    /// Seed of every random choice (initialisation, shuffling, calibration split).
    pub seed: u64,
    /// Training settings.
    pub train: TrainConfig,
    /// Scoring settings.
    pub score: ScoreConfig,
}

/// Training settings (AdamW with the paper's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training images. Default 10.
    pub epochs: usize,
    /// Images per optimiser step. Default 2 (the paper's timing setup).
    pub batch_size: usize,
    /// AdamW learning rate. Default 5e-4.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay. Default 0.01 (PyTorch's).
    pub weight_decay: f64,
    /// AdamW `beta1`. Default 0.9.
    pub beta1: f64,
    /// AdamW `beta2`. Default 0.999.
    pub beta2: f64,
    /// AdamW `eps`. Default 1e-8.
    pub eps: f64,
    /// Memory the backbone token cache may use, in bytes; past it, tokens spill to a
    /// temporary file. Default 4 GiB.
    pub cache_limit_bytes: u64,
    /// Bytes the token cache may write to its temporary file once memory is full; past
    /// it, adding an image fails with [`crate::ErrorKind::CacheFull`] instead of filling
    /// the disk of a production machine. Default 64 GiB. (Absent from model files
    /// written before it existed: they get the default.)
    #[serde(default = "default_cache_disk_limit")]
    pub cache_disk_limit_bytes: u64,
    /// Share of the normal images held back for calibration. Default 0.1.
    pub calibration_fraction: f64,
    /// Fewest images held back for calibration. Default 3.
    pub min_calibration_images: usize,
    /// Tokens of the nearest-neighbour memory bank that training draws from the coarsest
    /// level's normal tokens (see [`ScoreConfig::neighbour_weight`]); 0 = no bank. Default
    /// 1024: its scoring cost is one `[grid x 1024 x C]` product per image, whatever the
    /// number of training images. (Absent from model files written before it existed:
    /// 0, they have no bank.)
    #[serde(default)]
    pub neighbour_bank_tokens: usize,
}

/// Scoring settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreConfig {
    /// Gaussian smoothing of the image-size map, in image pixels; 0 = none. Default 4.
    pub sigma: f32,
    /// How thresholds are derived from the held-out normal images, and the image-score
    /// policy (the map's maximum by default, or the mean of its top k pixels).
    pub calibration: CalibrationConfig,
    /// Smallest defect region reported, in pixels. Default 1.
    pub min_region_area: usize,
    /// Memory one scoring call may need for its batch, in bytes (estimated before any
    /// work: backbone inputs and outputs, and the image-size maps); a batch that would
    /// need more fails with [`crate::ErrorKind::BatchTooLarge`]. Default 4 GiB. (Absent
    /// from model files written before it existed: they get the default.)
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: u64,
    /// How each level's prediction residuals become its map before the levels are summed
    /// ([`MapNorm`]; `none` is the paper's map). Default `position_two_sided`: on the
    /// project's generated 1024 x 1024 set it raised VarAD's pixel AP and image AUROC the
    /// most of those measured (README, "Results on the generated high-resolution set"). (Absent from model files written before it
    /// existed: they get `none`, the map they were calibrated with.)
    #[serde(default)]
    pub map_norm: MapNorm,
    /// Weight of the nearest-neighbour term added to a normalised map (not to the paper's
    /// `none`): each position's distance to the memory bank of normal tokens, in standard
    /// deviations of that distance on normal images (`src/model/neighbours.rs`); 0 = off,
    /// and a model without a bank scores without it. Default 1.0. (Absent from model files
    /// written before it existed: 0.)
    #[serde(default)]
    pub neighbour_weight: f32,
}

fn default_directions() -> Vec<usize> {
    (0..crate::model::DIRECTIONS).collect()
}

fn default_adapters() -> bool {
    true
}

fn default_cache_disk_limit() -> u64 {
    64 << 30
}

fn default_max_batch_bytes() -> u64 {
    4 << 30
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 2,
            learning_rate: 5e-4,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            cache_limit_bytes: 4 << 30,
            cache_disk_limit_bytes: default_cache_disk_limit(),
            calibration_fraction: 0.1,
            min_calibration_images: 3,
            neighbour_bank_tokens: 1024,
        }
    }
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            sigma: 4.0,
            calibration: CalibrationConfig::default(),
            min_region_area: 1,
            max_batch_bytes: default_max_batch_bytes(),
            map_norm: MapNorm::PositionTwoSided,
            neighbour_weight: 1.0,
        }
    }
}

impl Config {
    /// The paper's defaults on `backbone`.
    pub fn new(backbone: impl Into<PathBuf>) -> Self {
        Config {
            backbone: backbone.into(),
            runtime_path: None,
            levels: Vec::new(),
            input_size: None,
            resize_mode: ResizeMode::Stretch,
            max_image_pixels: crate::image::ImageLimits::default().max_pixels,
            prediction_step: 4,
            n_layers: 1,
            d_state: 16,
            expand: 2,
            d_conv: 4,
            detach_target: false,
            context_mean: false,
            directions: default_directions(),
            adapters: true,
            device: Device::Auto,
            threads: 0,
            seed: 0,
            train: TrainConfig::default(),
            score: ScoreConfig::default(),
        }
    }

    /// Checks what can be checked without the backbone; the grid-dependent rules (`m`
    /// against the grid, the input multiple) are checked when the model is built.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        let t = &self.train;
        if self.prediction_step == 0 {
            problems.push("prediction_step must be at least 1".to_string());
        }
        for (name, value) in [
            ("n_layers", self.n_layers),
            ("d_state", self.d_state),
            ("expand", self.expand),
            ("d_conv", self.d_conv),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        // Upper bounds far past any useful model, so a configuration read from a file
        // cannot make the library allocate without bound before anything else is checked.
        for (name, value, max) in [
            ("n_layers", self.n_layers, MAX_LAYERS),
            ("d_state", self.d_state, MAX_D_STATE),
            ("expand", self.expand, MAX_EXPAND),
            ("d_conv", self.d_conv, MAX_D_CONV),
            ("threads", self.threads, MAX_THREADS),
        ] {
            if value > max {
                problems.push(format!("{name} {value} is more than the limit {max}"));
            }
        }
        if self.directions.is_empty() {
            problems
                .push("directions is empty: at least one scan direction (0-3) is needed".into());
        }
        if let Some(k) = self
            .directions
            .iter()
            .find(|&&k| k >= crate::model::DIRECTIONS)
        {
            problems.push(format!(
                "direction {k} does not exist: the scan directions are 0, 1, 2 and 3"
            ));
        }
        let mut sorted = self.directions.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            problems.push(format!(
                "directions {:?} name a direction twice",
                self.directions
            ));
        }
        if t.epochs == 0 {
            problems.push("train.epochs is 0: a model needs at least one epoch".into());
        }
        if t.batch_size == 0 {
            problems.push("train.batch_size must be at least 1".into());
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            problems.push(format!(
                "train.learning_rate {} must be positive",
                t.learning_rate
            ));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            problems.push(format!(
                "train.weight_decay {} must be zero or positive",
                t.weight_decay
            ));
        }
        for (name, beta) in [("beta1", t.beta1), ("beta2", t.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                problems.push(format!("train.{name} {beta} must be in [0, 1)"));
            }
        }
        if !(t.eps.is_finite() && t.eps > 0.0) {
            problems.push(format!("train.eps {} must be positive", t.eps));
        }
        if !(0.0..1.0).contains(&t.calibration_fraction) {
            problems.push(format!(
                "train.calibration_fraction {} must be in [0, 1)",
                t.calibration_fraction
            ));
        }
        let w = self.score.neighbour_weight;
        if !(w.is_finite() && w >= 0.0) {
            problems.push(format!(
                "score.neighbour_weight {w} must be zero or positive"
            ));
        }
        if t.neighbour_bank_tokens > MAX_BANK_TOKENS {
            problems.push(format!(
                "train.neighbour_bank_tokens {} is more than the limit {MAX_BANK_TOKENS}",
                t.neighbour_bank_tokens
            ));
        }
        if !(self.score.sigma.is_finite() && self.score.sigma >= 0.0) {
            problems.push(format!(
                "score.sigma {} must be zero or positive",
                self.score.sigma
            ));
        }
        if let Some((w, h)) = self.input_size {
            if w == 0 || h == 0 {
                problems.push(format!("input_size {w}x{h} has a zero side"));
            }
            if w > MAX_INPUT_SIDE || h > MAX_INPUT_SIDE {
                problems.push(format!(
                    "input_size {w}x{h} has a side over the limit {MAX_INPUT_SIDE}"
                ));
            }
        }
        if self.score.max_batch_bytes == 0 {
            problems.push("score.max_batch_bytes must be positive".into());
        }
        if self.max_image_pixels == 0 {
            problems.push("max_image_pixels must be positive".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::config(format!(
                "invalid configuration: {}",
                problems.join("; ")
            )))
        }
    }
}

mod device_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::Device;

    pub fn serialize<S: Serializer>(device: &Device, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&device.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Device, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod resize_mode_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::image::ResizeMode;

    pub fn serialize<S: Serializer>(mode: &ResizeMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match mode {
            ResizeMode::Stretch => "stretch",
            ResizeMode::KeepAspect => "keep_aspect",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ResizeMode, D::Error> {
        match String::deserialize(d)?.as_str() {
            "stretch" => Ok(ResizeMode::Stretch),
            "keep_aspect" => Ok(ResizeMode::KeepAspect),
            other => Err(serde::de::Error::custom(format!(
                "unknown resize mode `{other}`: expected stretch or keep_aspect"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_papers_and_valid() {
        let c = Config::new("b.onnx");
        c.validate().unwrap();
        assert_eq!(
            (c.prediction_step, c.train.epochs, c.train.learning_rate),
            (4, 10, 5e-4)
        );
    }

    #[test]
    fn round_trips_through_json() {
        let mut c = Config::new("b.onnx");
        c.device = Device::Cuda(1);
        c.resize_mode = ResizeMode::KeepAspect;
        c.levels = vec!["stride8".into()];
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Config>(&text).unwrap(), c);
        // A configuration written before `directions` and `adapters` existed gets the
        // paper's defaults.
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        let map = old.as_object_mut().unwrap();
        map.remove("directions");
        map.remove("adapters");
        let old: Config = serde_json::from_value(old).unwrap();
        assert_eq!((old.directions, old.adapters), (vec![0, 1, 2, 3], true));
        assert!(serde_json::from_str::<Config>(&text.replace("\"seed\"", "\"sed\"")).is_err());
    }

    #[test]
    fn bad_values_are_all_named() {
        let mut c = Config::new("b.onnx");
        c.train.epochs = 0;
        c.prediction_step = 0;
        c.train.beta2 = 1.0;
        let err = c.validate().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        for needle in ["epochs is 0", "prediction_step", "beta2"] {
            assert!(err.message().contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn directions_must_be_distinct_existing_and_some() {
        let mut c = Config::new("b.onnx");
        for (dirs, needle) in [
            (vec![], "directions is empty"),
            (vec![0, 5], "direction 5 does not exist"),
            (vec![2, 1, 2], "name a direction twice"),
        ] {
            c.directions = dirs;
            let err = c.validate().unwrap_err();
            assert!(err.message().contains(needle), "{needle}: {err}");
        }
        c.directions = vec![3, 0];
        c.validate().unwrap();
    }

    #[test]
    fn sizes_past_the_limits_are_refused() {
        let mut c = Config::new("b.onnx");
        c.n_layers = MAX_LAYERS + 1;
        c.d_state = 1 << 40;
        c.threads = MAX_THREADS + 1;
        c.input_size = Some((MAX_INPUT_SIDE + 1, 64));
        let err = c.validate().unwrap_err();
        for needle in [
            "n_layers 65",
            "d_state 1099511627776",
            "threads 1025",
            "input_size 16385x64",
        ] {
            assert!(err.message().contains(needle), "{needle}: {err}");
        }
        let mut c = Config::new("b.onnx");
        (c.n_layers, c.d_state, c.threads) = (MAX_LAYERS, MAX_D_STATE, MAX_THREADS);
        c.validate().unwrap();
    }
}
