//! The model configuration: everything that decides what a model computes, stored whole
//! in the model file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::image::ResizeMode;
use crate::model::{BankLevels, BankSelection, MapNorm, NeighbourTerm};
use crate::score::CalibrationConfig;
use crate::{Device, Error, Result};

pub mod ranges;

use ranges::Problems;
pub use ranges::{
    ConfigProblem, MAX_BANK_TOKENS, MAX_D_CONV, MAX_D_STATE, MAX_EXPAND, MAX_INPUT_SIDE,
    MAX_LAYERS, MAX_THREADS,
};

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
    /// Tokens of each nearest-neighbour memory bank that training builds from the normal
    /// tokens of the levels `neighbour_bank_levels` names (see
    /// [`ScoreConfig::neighbour_weight`]); 0 = no bank. Default 8192: with the inverted
    /// file's search ([`ScoreConfig::neighbour_probes`]) it scores in about the time an
    /// exact search of 1024 tokens took, and it holds the fine variety of natural textures
    /// that a smaller bank misses (measured against 1024 and 2048 in docs/results.md).
    /// (Absent from model files written before it existed: 0, they have no bank.)
    #[serde(default)]
    pub neighbour_bank_tokens: usize,
    /// How the banks' tokens are chosen ([`BankSelection`]). Default `coreset`: with more
    /// training images the bank covers more of their variety at the same size and scoring
    /// cost, where a random draw only samples it (docs/results.md). (Absent from model
    /// files written before it existed: `random`, how their banks were drawn.)
    #[serde(default)]
    pub neighbour_bank_selection: BankSelection,
    /// Which levels get a bank of `neighbour_bank_tokens` tokens each ([`BankLevels`]).
    /// Default `all`: the finer level's bank sees small and thin defects that the coarse
    /// one averages away (docs/results.md). (Absent from model files written before it
    /// existed: `coarsest`, the only bank they had.)
    #[serde(default)]
    pub neighbour_bank_levels: BankLevels,
    /// Folds of the cross-fitting that gives every training image an out-of-sample score
    /// for calibration: 0 = off (only held-out images calibrate); otherwise `K`, at least
    /// 2, used as `min(K, training images)`. For each fold, the normal statistics (channel
    /// variances, position means and spreads, the neighbour bank) are fitted again
    /// without that fold's images, which are then scored with them; the predictor is
    /// trained once, on all training images. The scores join the held-out images' in the
    /// calibration pool, so held-out images become optional. Costs one more predictor
    /// pass per training image and `K` neighbour banks. Default 5. (Absent from model
    /// files written before it existed: 0, they were calibrated without it.)
    #[serde(default)]
    pub cross_fit_folds: usize,
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
    /// How a position's distance to the bank becomes the term ([`NeighbourTerm`]).
    /// Default `scaled`: it ranks the positions the floor of `above_normal` flattens, which
    /// faint defect pixels often are (docs/results.md). (Absent from model files written
    /// before it existed: `above_normal`, the term they were calibrated with.)
    #[serde(default)]
    pub neighbour_term: NeighbourTerm,
    /// How the term searches a bank: 0 = exactly (every bank token), N = approximately,
    /// in an inverted-file index of about `sqrt(bank tokens)` cells, measuring only the
    /// tokens of each position's N nearest cells (`src/model/inverted_file.rs`). Its
    /// cost grows with the square root of the bank, which lets larger banks score within
    /// the time an exact search of a small one takes. Default 8 (docs/results.md says what
    /// it was chosen on). (Absent from model files written before it existed: 0, the exact
    /// search they were calibrated with.)
    #[serde(default)]
    pub neighbour_probes: usize,
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
            neighbour_bank_tokens: 8192,
            neighbour_bank_selection: BankSelection::Coreset,
            neighbour_bank_levels: BankLevels::All,
            cross_fit_folds: 5,
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
            neighbour_term: NeighbourTerm::Scaled,
            neighbour_probes: 8,
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

    /// Checks every setting against its range ([`ranges`]) and the rules between
    /// settings, all before any work;
    /// [`crate::ErrorKind::Config`] naming every setting that is out of range. The
    /// grid-dependent rules (`m` against the token grid, the input multiple) are checked
    /// when the model is built, against the backbone.
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Err(Error::config(format!(
            "invalid configuration: {}",
            list.join("; ")
        )))
    }

    /// Every setting that is out of range, each named by its path in the configuration
    /// (`score.sigma`); empty when the configuration is valid. [`Config::validate`] as a
    /// list, for callers that name settings their own way (the C ABI's field names).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        use ranges::*;
        let mut p = Problems::default();
        if let Some((w, h)) = self.input_size {
            let side = u64::from(MAX_INPUT_SIDE);
            p.int("input_size.width", w.into(), 1, side);
            p.int("input_size.height", h.into(), 1, side);
        }
        p.int(
            "max_image_pixels",
            self.max_image_pixels,
            1,
            MAX_IMAGE_PIXELS,
        );
        for (name, value, max) in [
            ("prediction_step", self.prediction_step, MAX_PREDICTION_STEP),
            ("n_layers", self.n_layers, MAX_LAYERS),
            ("d_state", self.d_state, MAX_D_STATE),
            ("expand", self.expand, MAX_EXPAND),
            ("d_conv", self.d_conv, MAX_D_CONV),
        ] {
            p.int(name, value as u64, 1, max as u64);
        }
        p.int("threads", self.threads as u64, 0, MAX_THREADS as u64);
        if let Device::Cuda(index) = self.device {
            if index > MAX_CUDA_DEVICE {
                p.push(
                    "device",
                    format!("cuda:{index}: the CUDA device index {index} is not in [0, {MAX_CUDA_DEVICE}]"),
                );
            }
            let cuda_max = crate::cuda::MAX_D_STATE;
            if self.d_state > cuda_max {
                p.push(
                    "d_state",
                    format!(
                        "{} is more than {cuda_max}, the most the CUDA predictor takes (device {})",
                        self.d_state, self.device
                    ),
                );
            }
        }
        self.directions_problems(&mut p);

        let t = &self.train;
        p.int("train.epochs", t.epochs as u64, 1, MAX_EPOCHS as u64);
        p.int(
            "train.batch_size",
            t.batch_size as u64,
            1,
            MAX_BATCH_SIZE as u64,
        );
        p.float("train.learning_rate", t.learning_rate, LEARNING_RATE);
        p.float("train.weight_decay", t.weight_decay, WEIGHT_DECAY);
        p.float("train.beta1", t.beta1, BETA);
        p.float("train.beta2", t.beta2, BETA);
        p.float("train.eps", t.eps, EPS);
        p.int("train.cache_limit_bytes", t.cache_limit_bytes, 0, MAX_BYTES);
        p.int(
            "train.cache_disk_limit_bytes",
            t.cache_disk_limit_bytes,
            0,
            MAX_BYTES,
        );
        p.float(
            "train.calibration_fraction",
            t.calibration_fraction,
            CALIBRATION_FRACTION,
        );
        p.int(
            "train.min_calibration_images",
            t.min_calibration_images as u64,
            MIN_CALIBRATION_IMAGES as u64,
            MAX_CALIBRATION_IMAGES as u64,
        );
        p.int(
            "train.neighbour_bank_tokens",
            t.neighbour_bank_tokens as u64,
            0,
            MAX_BANK_TOKENS as u64,
        );
        if t.cross_fit_folds != 0 {
            p.int(
                "train.cross_fit_folds",
                t.cross_fit_folds as u64,
                MIN_CROSS_FIT_FOLDS as u64,
                MAX_CROSS_FIT_FOLDS as u64,
            );
        }

        let s = &self.score;
        p.float("score.sigma", s.sigma.into(), SIGMA);
        // A region larger than the largest image cannot exist.
        p.int(
            "score.min_region_area",
            s.min_region_area as u64,
            0,
            self.max_image_pixels,
        );
        p.int("score.max_batch_bytes", s.max_batch_bytes, 1, MAX_BYTES);
        p.float(
            "score.neighbour_weight",
            s.neighbour_weight.into(),
            NEIGHBOUR_WEIGHT,
        );
        p.int(
            "score.neighbour_probes",
            s.neighbour_probes as u64,
            0,
            MAX_NEIGHBOUR_PROBES as u64,
        );
        s.calibration.check(self.max_image_pixels, &mut p);
        p.0
    }

    /// The scan directions: some, each existing, none twice.
    fn directions_problems(&self, p: &mut Problems) {
        if self.directions.is_empty() {
            p.push(
                "directions",
                "is empty: at least one scan direction (0-3) is needed",
            );
        }
        if let Some(k) = self
            .directions
            .iter()
            .find(|&&k| k >= crate::model::DIRECTIONS)
        {
            p.push(
                "directions",
                format!("name direction {k}, which does not exist: the scan directions are 0, 1, 2 and 3"),
            );
        }
        let mut sorted = self.directions.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            p.push(
                "directions",
                format!("{:?} name a direction twice", self.directions),
            );
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
        for needle in [
            "train.epochs 0 is not in [1, 10000]",
            "prediction_step 0 is not in [1, 16383]",
            "train.beta2 1 is not in [0, 1)",
        ] {
            assert!(err.message().contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn directions_must_be_distinct_existing_and_some() {
        let mut c = Config::new("b.onnx");
        for (dirs, needle) in [
            (vec![], "directions is empty"),
            (vec![0, 5], "direction 5, which does not exist"),
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
            "n_layers 65 is not in [1, 64]",
            "d_state 1099511627776 is not in [1, 256]",
            "threads 1025 is not in [0, 1024]",
            "input_size.width 16385 is not in [1, 16384]",
        ] {
            assert!(err.message().contains(needle), "{needle}: {err}");
        }
        let mut c = Config::new("b.onnx");
        (c.n_layers, c.d_state, c.threads) = (MAX_LAYERS, MAX_D_STATE, MAX_THREADS);
        c.validate().unwrap();
    }

    /// Sets one setting of a default configuration.
    type Set = fn(&mut Config, f64);

    /// The settings that hold real numbers (the others hold integers).
    const REAL: &[&str] = &[
        "train.learning_rate",
        "train.weight_decay",
        "train.beta1",
        "train.beta2",
        "train.eps",
        "train.calibration_fraction",
        "score.sigma",
        "score.neighbour_weight",
        "score.calibration.target_false_reject_rate",
        "score.calibration.review_band",
        "score.calibration.target_false_fail_rate",
        "score.calibration.pixel_quantile",
    ];

    /// Every numeric setting: its path, a setter, and its smallest and largest valid
    /// values (for an open end, the nearest value inside).
    fn numeric_settings() -> Vec<(&'static str, Set, f64, f64)> {
        use ranges::*;
        let bytes = MAX_BYTES as f64;
        vec![
            (
                "input_size.width",
                |c, v| c.input_size = Some((v as u32, 64)),
                1.0,
                16384.0,
            ),
            (
                "input_size.height",
                |c, v| c.input_size = Some((64, v as u32)),
                1.0,
                16384.0,
            ),
            (
                "max_image_pixels",
                |c, v| c.max_image_pixels = v as u64,
                1.0,
                MAX_IMAGE_PIXELS as f64,
            ),
            (
                "prediction_step",
                |c, v| c.prediction_step = v as usize,
                1.0,
                16383.0,
            ),
            ("n_layers", |c, v| c.n_layers = v as usize, 1.0, 64.0),
            ("d_state", |c, v| c.d_state = v as usize, 1.0, 256.0),
            ("expand", |c, v| c.expand = v as usize, 1.0, 16.0),
            ("d_conv", |c, v| c.d_conv = v as usize, 1.0, 64.0),
            ("threads", |c, v| c.threads = v as usize, 0.0, 1024.0),
            (
                "device",
                |c, v| c.device = Device::Cuda(v as u32),
                0.0,
                1023.0,
            ),
            (
                "train.epochs",
                |c, v| c.train.epochs = v as usize,
                1.0,
                10_000.0,
            ),
            (
                "train.batch_size",
                |c, v| c.train.batch_size = v as usize,
                1.0,
                1024.0,
            ),
            (
                "train.learning_rate",
                |c, v| c.train.learning_rate = v,
                1e-300,
                1.0,
            ),
            (
                "train.weight_decay",
                |c, v| c.train.weight_decay = v,
                0.0,
                1.0,
            ),
            ("train.beta1", |c, v| c.train.beta1 = v, 0.0, 0.999_999),
            ("train.beta2", |c, v| c.train.beta2 = v, 0.0, 0.999_999),
            ("train.eps", |c, v| c.train.eps = v, 1e-300, 1.0),
            (
                "train.cache_limit_bytes",
                |c, v| c.train.cache_limit_bytes = v as u64,
                0.0,
                bytes,
            ),
            (
                "train.cache_disk_limit_bytes",
                |c, v| c.train.cache_disk_limit_bytes = v as u64,
                0.0,
                bytes,
            ),
            (
                "train.calibration_fraction",
                |c, v| c.train.calibration_fraction = v,
                0.0,
                0.999_999,
            ),
            (
                "train.min_calibration_images",
                |c, v| c.train.min_calibration_images = v as usize,
                0.0,
                (1u64 << 20) as f64,
            ),
            (
                "train.neighbour_bank_tokens",
                |c, v| c.train.neighbour_bank_tokens = v as usize,
                0.0,
                (1u64 << 20) as f64,
            ),
            (
                "train.cross_fit_folds",
                |c, v| c.train.cross_fit_folds = v as usize,
                2.0,
                64.0,
            ),
            ("score.sigma", |c, v| c.score.sigma = v as f32, 0.0, 1000.0),
            (
                "score.min_region_area",
                |c, v| c.score.min_region_area = v as usize,
                0.0,
                (1u64 << 28) as f64,
            ),
            (
                "score.max_batch_bytes",
                |c, v| c.score.max_batch_bytes = v as u64,
                1.0,
                bytes,
            ),
            (
                "score.neighbour_weight",
                |c, v| c.score.neighbour_weight = v as f32,
                0.0,
                100.0,
            ),
            (
                "score.neighbour_probes",
                |c, v| c.score.neighbour_probes = v as usize,
                0.0,
                65536.0,
            ),
            (
                "score.calibration.score_policy.k",
                |c, v| {
                    c.score.calibration.score_policy =
                        crate::score::ImageScore::TopKMean { k: v as usize }
                },
                1.0,
                (1u64 << 28) as f64,
            ),
            (
                "score.calibration.target_false_reject_rate",
                |c, v| c.score.calibration.target_false_reject_rate = v,
                1e-300,
                0.999_999,
            ),
            (
                "score.calibration.review_band",
                |c, v| c.score.calibration.review_band = v,
                0.0,
                100.0,
            ),
            (
                "score.calibration.target_false_fail_rate",
                |c, v| c.score.calibration.target_false_fail_rate = v,
                0.0,
                0.999_999,
            ),
            (
                "score.calibration.pixel_quantile",
                |c, v| c.score.calibration.pixel_quantile = v,
                1e-300,
                1.0,
            ),
        ]
    }

    /// The values just outside `[min, max]` for a setting (integers step by 1, reals to
    /// the next representable value or a clear step out), plus NaN and the infinities.
    fn outside(min: f64, max: f64, integer: bool) -> Vec<f64> {
        let mut out = vec![
            max + if integer {
                1.0
            } else {
                max.abs().max(1.0) * 1e-3
            },
        ];
        if min > 0.0 {
            out.push(if integer { min - 1.0 } else { 0.0 });
        } else {
            out.push(-1.0);
        }
        if !integer {
            out.extend([f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
        }
        out
    }

    #[test]
    fn every_numeric_setting_is_refused_outside_its_range_and_named() {
        for (field, set, min, max) in numeric_settings() {
            let integer = !REAL.contains(&field);
            for valid in [min, max] {
                let mut c = Config::new("b.onnx");
                set(&mut c, valid);
                assert!(
                    c.validate().is_ok(),
                    "{field} = {valid}: {:?}",
                    c.validate()
                );
            }
            for bad in outside(min, max, integer) {
                // Unsigned settings cannot hold a negative number.
                if bad < 0.0 && integer {
                    continue;
                }
                let mut c = Config::new("b.onnx");
                set(&mut c, bad);
                let problems = c.problems();
                assert!(
                    problems.iter().any(|p| p.field == field),
                    "{field} = {bad} was not refused: {problems:?}"
                );
                let err = c.validate().unwrap_err();
                assert_eq!(err.kind(), crate::ErrorKind::Config);
                assert!(err.message().contains(field), "{field}: {err}");
            }
        }
    }

    #[test]
    fn cross_fitting_is_off_at_0_or_takes_at_least_2_folds() {
        let mut c = Config::new("b.onnx");
        c.train.cross_fit_folds = 0;
        c.validate().unwrap();
        c.train.cross_fit_folds = 1;
        let err = c.validate().unwrap_err();
        assert!(
            err.message()
                .contains("train.cross_fit_folds 1 is not in [2, 64]"),
            "{err}"
        );
        // A model file written before the setting existed was calibrated without it.
        let mut old = serde_json::to_value(&Config::new("b.onnx").train).unwrap();
        old.as_object_mut().unwrap().remove("cross_fit_folds");
        let train: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!(train.cross_fit_folds, 0);
    }

    #[test]
    fn the_sigma_that_fails_only_at_scoring_is_refused_up_front() {
        let mut c = Config::new("b.onnx");
        c.score.sigma = 5000.0;
        let err = c.validate().unwrap_err();
        assert!(
            err.message()
                .contains("score.sigma 5000 is not in [0, 1000]"),
            "{err}"
        );
    }

    #[test]
    fn a_cuda_device_takes_the_cuda_predictors_state_size_only() {
        let mut c = Config::new("b.onnx");
        c.d_state = crate::cuda::MAX_D_STATE + 1;
        c.validate().unwrap();
        c.device = Device::Cuda(0);
        let err = c.validate().unwrap_err();
        assert!(
            err.message().contains("the most the CUDA predictor takes"),
            "{err}"
        );
    }

    #[test]
    fn settings_bounded_by_the_image_size_follow_max_image_pixels() {
        let mut c = Config::new("b.onnx");
        c.max_image_pixels = 100;
        c.score.min_region_area = 101;
        c.score.calibration.score_policy = crate::score::ImageScore::TopKMean { k: 101 };
        let fields: Vec<_> = c.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["score.min_region_area", "score.calibration.score_policy.k"]
        );
    }
}
