//! The valid range of every numeric setting, and the collector that checks values against
//! them and names each one that is out of range.
//!
//! Every bound is here, once: [`crate::Config::validate`] and
//! [`crate::score::CalibrationConfig::validate`] check against these constants, and the C
//! header's field documentation states the same figures (a test compares them).

use std::fmt;

/// Longest side of the backbone input a configuration may ask for.
pub const MAX_INPUT_SIDE: u32 = 16384;
/// The most pixels [`crate::Config::max_image_pixels`] may allow: 65536 x 65536. An
/// image-size map of that many f32 values is 16 GiB, past what an inspection PC holds.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 32;
/// Largest prediction step: the step must be below the token grid's height and width
/// (checked against the backbone when the model is built), and no grid is wider than
/// the widest input.
pub const MAX_PREDICTION_STEP: usize = MAX_INPUT_SIDE as usize - 1;
/// Most predictor blocks per level a configuration may ask for.
pub const MAX_LAYERS: usize = 64;
/// Largest SSM state size a configuration may ask for (on the CPU; the CUDA predictor
/// takes at most 32, its kernels keeping a channel's states in one warp).
pub const MAX_D_STATE: usize = 256;
/// Largest expansion factor (`Di / C`) a configuration may ask for.
pub const MAX_EXPAND: usize = 16;
/// Largest causal convolution width a configuration may ask for.
pub const MAX_D_CONV: usize = 64;
/// Most worker threads a configuration may ask for.
pub const MAX_THREADS: usize = 1024;
/// Largest CUDA device index. The CUDA runtime sets no limit of its own; this one is far
/// above any machine and only refuses garbage.
pub const MAX_CUDA_DEVICE: u32 = 1023;
/// Most training epochs.
pub const MAX_EPOCHS: usize = 10_000;
/// Most images per optimiser step.
pub const MAX_BATCH_SIZE: usize = 1024;
/// Largest AdamW learning rate: a step larger than the weights themselves is no longer
/// an optimisation.
pub const MAX_LEARNING_RATE: f64 = 1.0;
/// Largest AdamW weight decay: with a learning rate of at most
/// [`MAX_LEARNING_RATE`], the decoupled decay factor `1 - lr * wd` stays in `[0, 1]`.
pub const MAX_WEIGHT_DECAY: f64 = 1.0;
/// Largest AdamW `eps`.
pub const MAX_EPS: f64 = 1.0;
/// Largest byte limit (memory, temporary file, batch): 1 PiB, past any machine; it
/// refuses a negative number passed through an unsigned field.
pub const MAX_BYTES: u64 = 1 << 50;
/// Fewest images held back for calibration, at its lowest: 0 leaves the count to
/// `calibration_fraction` (as varad 1.0 allowed, so its model files still load). Whether
/// the split of a given training set holds the [`crate::score::MIN_NORMAL_IMAGES`] scores
/// the calibration needs is checked when training starts, before any optimisation.
pub const MIN_CALIBRATION_IMAGES: usize = 0;
/// Most images held back for calibration.
pub const MAX_CALIBRATION_IMAGES: usize = 1 << 20;
/// Fewest cross-fitting folds when cross-fitting is on (`train.cross_fit_folds` is 0, off,
/// or in `[MIN_CROSS_FIT_FOLDS, MAX_CROSS_FIT_FOLDS]`): one fold would leave nothing to fit
/// its statistics on.
pub const MIN_CROSS_FIT_FOLDS: usize = 2;
/// Most cross-fitting folds: each fold builds its own neighbour bank over the other
/// folds' images, so the cost grows with the folds times the images.
pub const MAX_CROSS_FIT_FOLDS: usize = 64;
/// Most tokens of the neighbour memory bank (each one is read for every scored token).
pub const MAX_BANK_TOKENS: usize = 1 << 20;
/// The most cells `score.neighbour_probes` may name: an index over the largest bank has
/// `sqrt(MAX_BANK_TOKENS)` = 1024 cells, and anything above probes them all anyway; the
/// bound keeps a typo from reading as a request.
pub const MAX_NEIGHBOUR_PROBES: usize = 1 << 16;
/// Largest weight of the nearest-neighbour term, in standard deviations of the normal
/// distance: beyond it the term alone decides every pixel.
pub const MAX_NEIGHBOUR_WEIGHT: f32 = 100.0;
/// Widest review band, in standard deviations of the normal image scores.
pub const MAX_REVIEW_BAND: f64 = 100.0;

/// An interval of real numbers, each end open or closed; NaN and infinities are never in
/// it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloatRange {
    /// The lower end.
    pub min: f64,
    /// Whether `min` itself is valid.
    pub min_inclusive: bool,
    /// The upper end.
    pub max: f64,
    /// Whether `max` itself is valid.
    pub max_inclusive: bool,
}

impl FloatRange {
    /// `[min, max]`.
    pub const fn closed(min: f64, max: f64) -> Self {
        FloatRange {
            min,
            min_inclusive: true,
            max,
            max_inclusive: true,
        }
    }

    /// `(min, max)`.
    pub const fn open(min: f64, max: f64) -> Self {
        FloatRange {
            min,
            min_inclusive: false,
            max,
            max_inclusive: false,
        }
    }

    /// `(min, max]`.
    pub const fn open_closed(min: f64, max: f64) -> Self {
        FloatRange {
            min,
            min_inclusive: false,
            max,
            max_inclusive: true,
        }
    }

    /// `[min, max)`.
    pub const fn closed_open(min: f64, max: f64) -> Self {
        FloatRange {
            min,
            min_inclusive: true,
            max,
            max_inclusive: false,
        }
    }

    /// Whether `value` is finite and inside.
    pub fn contains(&self, value: f64) -> bool {
        let above = if self.min_inclusive {
            value >= self.min
        } else {
            value > self.min
        };
        let below = if self.max_inclusive {
            value <= self.max
        } else {
            value < self.max
        };
        value.is_finite() && above && below
    }
}

impl fmt::Display for FloatRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open = if self.min_inclusive { '[' } else { '(' };
        let close = if self.max_inclusive { ']' } else { ')' };
        write!(f, "{open}{}, {}{close}", self.min, self.max)
    }
}

/// The range of `train.learning_rate`.
pub const LEARNING_RATE: FloatRange = FloatRange::open_closed(0.0, MAX_LEARNING_RATE);
/// The range of `train.weight_decay`.
pub const WEIGHT_DECAY: FloatRange = FloatRange::closed(0.0, MAX_WEIGHT_DECAY);
/// The range of `train.beta1` and `train.beta2`.
pub const BETA: FloatRange = FloatRange::closed_open(0.0, 1.0);
/// The range of `train.eps`.
pub const EPS: FloatRange = FloatRange::open_closed(0.0, MAX_EPS);
/// The range of `train.calibration_fraction`.
pub const CALIBRATION_FRACTION: FloatRange = FloatRange::closed_open(0.0, 1.0);
/// The range of `score.sigma`, in image pixels: what the smoothing accepts.
pub const SIGMA: FloatRange = FloatRange::closed(0.0, crate::score::MAX_SIGMA_PX as f64);
/// The range of `score.neighbour_weight`.
pub const NEIGHBOUR_WEIGHT: FloatRange = FloatRange::closed(0.0, MAX_NEIGHBOUR_WEIGHT as f64);
/// The range of `score.calibration.target_false_reject_rate`.
pub const TARGET_FALSE_REJECT_RATE: FloatRange = FloatRange::open(0.0, 1.0);
/// The range of `score.calibration.target_false_fail_rate` (0: the fail threshold is the
/// review threshold plus `review_band` standard deviations, as before conformal fail
/// thresholds).
pub const TARGET_FALSE_FAIL_RATE: FloatRange = FloatRange::closed_open(0.0, 1.0);
/// The range of `score.calibration.review_band`.
pub const REVIEW_BAND: FloatRange = FloatRange::closed(0.0, MAX_REVIEW_BAND);
/// The range of `score.calibration.pixel_quantile`.
pub const PIXEL_QUANTILE: FloatRange = FloatRange::open_closed(0.0, 1.0);

/// One setting that is out of range.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    /// The setting's path in [`crate::Config`], e.g. `score.sigma` or `input_size.width`.
    pub field: &'static str,
    /// What is wrong with it, to follow its name: `5000 is not in [0, 1000]`.
    pub problem: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.problem)
    }
}

/// Collects every out-of-range setting, so one error names them all.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<ConfigProblem>);

impl Problems {
    /// Records `problem` for `field`.
    pub(crate) fn push(&mut self, field: &'static str, problem: impl Into<String>) {
        self.0.push(ConfigProblem {
            field,
            problem: problem.into(),
        });
    }

    /// Checks an integer against `[min, max]`.
    pub(crate) fn int(&mut self, field: &'static str, value: u64, min: u64, max: u64) {
        if !(min..=max).contains(&value) {
            self.push(field, format!("{value} is not in [{min}, {max}]"));
        }
    }

    /// Checks a real number against `range` (NaN and infinities are never in one).
    pub(crate) fn float(&mut self, field: &'static str, value: f64, range: FloatRange) {
        if !range.contains(value) {
            self.push(field, format!("{value} is not in {range}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_ranges_honour_their_ends_and_refuse_non_finite_values() {
        let r = FloatRange::open_closed(0.0, 1.0);
        assert!(!r.contains(0.0) && r.contains(1e-300) && r.contains(1.0));
        assert!(!r.contains(1.0000001) && !r.contains(f64::NAN));
        let all = FloatRange::closed(f64::MIN, f64::MAX);
        assert!(!all.contains(f64::INFINITY) && !all.contains(f64::NEG_INFINITY));
        assert_eq!(r.to_string(), "(0, 1]");
        assert_eq!(FloatRange::closed_open(0.0, 1.0).to_string(), "[0, 1)");
    }

    #[test]
    fn problems_name_the_field_the_value_and_the_range() {
        let mut p = Problems::default();
        p.int("train.epochs", 0, 1, 10);
        p.int("threads", 10, 0, 10);
        p.float("score.sigma", f64::NAN, SIGMA);
        p.float("score.sigma", 5000.0, SIGMA);
        let text: Vec<String> = p.0.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "train.epochs 0 is not in [1, 10]",
                "score.sigma NaN is not in [0, 1000]",
                "score.sigma 5000 is not in [0, 1000]",
            ]
        );
    }
}
