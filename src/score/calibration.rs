//! Thresholds fitted on out-of-sample normal image scores: when an image is unusual, when
//! it fails, and which pixels make up a defect region; and what those thresholds promise.

use serde::{Deserialize, Serialize};

use super::conformal::{
    conformal_rank, expected_rate, images_needed, log_normal_bound, rate_upper_bound,
};
use super::decision::Decision;
use super::image_score::ImageScore;
use super::quantile::quantile_of_all;
use crate::config::ranges::Problems;
use crate::{Error, Result};

/// The fewest normal images a calibration accepts: with fewer there is no spread to
/// speak of.
///
/// cbindgen:ignore
pub const MIN_NORMAL_IMAGES: usize = 3;

/// The confidence of the upper bounds a [`CalibrationReport`] states.
///
/// cbindgen:ignore
pub const REPORT_CONFIDENCE: f64 = 0.95;

/// What a calibration does when its normal scores are too few for a requested rate (fewer
/// than `1 / rate - 1`: the conformal rank lies beyond the largest score).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeyondData {
    /// Extrapolate: the threshold is the log-normal prediction bound of the scores for the
    /// rate (never below the largest score), and the report flags the rate as resting on
    /// that assumption. The distribution-free figures stay reported beside it.
    #[default]
    LogNormalTail,
    /// Refuse to calibrate, saying how many good images the rate needs.
    Refuse,
}

impl BeyondData {
    /// The name used in configurations and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BeyondData::LogNormalTail => "log_normal_tail",
            BeyondData::Refuse => "refuse",
        }
    }
}

impl std::str::FromStr for BeyondData {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        [BeyondData::LogNormalTail, BeyondData::Refuse]
            .into_iter()
            .find(|b| b.name() == text)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown rule `{text}` for rates beyond the data: expected log_normal_tail or refuse"
                ))
            })
    }
}

/// How [`Calibration::fit_pool`] turns normal scores into thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CalibrationConfig {
    /// The policy the normal image scores were computed with; images assessed with this
    /// calibration are scored the same way. Default [`ImageScore::Max`].
    pub score_policy: ImageScore,
    /// The fraction of good parts the review threshold may send to review (or fail), in
    /// `(0, 1)`. Default 0.01, a common acceptance figure for inline inspection.
    pub target_false_reject_rate: f64,
    /// Only when `target_false_fail_rate` is 0: the fail threshold is the review threshold
    /// plus this many standard deviations of the normal scores (the rule before conformal
    /// fail thresholds; it states no rate). At least 0. Default 3.0.
    pub review_band: f64,
    /// The fraction of good parts the fail threshold may fail automatically, in `[0, 1)`;
    /// 0 selects the `review_band` rule. Default 0.001: a good part scrapped costs more
    /// than one reviewed, so failing is reserved for scores far beyond normal.
    pub target_false_fail_rate: f64,
    /// What to do when the normal scores are too few for a requested rate. Default
    /// [`BeyondData::LogNormalTail`].
    pub beyond_data: BeyondData,
    /// With known-defective examples: lower the review threshold until none of them
    /// passes (the report states the review rate that costs). Default false: the examples
    /// are only scored and reported.
    pub catch_known_defects: bool,
    /// Which quantile of all normal pixels is the pixel threshold for defect regions, in
    /// `(0, 1]`. Default 1.0, the largest normal pixel: a region then holds only pixels
    /// above anything seen on a good part, so good parts show no regions (a box on a good
    /// part misleads operators). Lower it (e.g. 0.999) to outline defects more fully at the
    /// price of small regions on good parts.
    pub pixel_quantile: f64,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig {
            score_policy: ImageScore::Max,
            target_false_reject_rate: 0.01,
            review_band: 3.0,
            target_false_fail_rate: 0.001,
            beyond_data: BeyondData::LogNormalTail,
            catch_known_defects: false,
            pixel_quantile: 1.0,
        }
    }
}

impl CalibrationConfig {
    /// [`crate::ErrorKind::Config`] for a value outside its documented range (the ranges
    /// are [`crate::config::ranges`]'s), naming every such value.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Problems::default();
        self.check(crate::config::ranges::MAX_IMAGE_PIXELS, &mut problems);
        if problems.0.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
        Err(Error::config(format!(
            "invalid calibration settings: {}",
            list.join("; ")
        )))
    }

    /// Records every value outside its range, named by its path in [`crate::Config`];
    /// a top-k mean over more than `max_pixels` pixels (the largest image) is one.
    pub(crate) fn check(&self, max_pixels: u64, problems: &mut Problems) {
        use crate::config::ranges::{
            PIXEL_QUANTILE, REVIEW_BAND, TARGET_FALSE_FAIL_RATE, TARGET_FALSE_REJECT_RATE,
        };
        if let ImageScore::TopKMean { k } = self.score_policy {
            problems.int("score.calibration.score_policy.k", k as u64, 1, max_pixels);
        }
        problems.float(
            "score.calibration.target_false_reject_rate",
            self.target_false_reject_rate,
            TARGET_FALSE_REJECT_RATE,
        );
        problems.float(
            "score.calibration.review_band",
            self.review_band,
            REVIEW_BAND,
        );
        problems.float(
            "score.calibration.target_false_fail_rate",
            self.target_false_fail_rate,
            TARGET_FALSE_FAIL_RATE,
        );
        problems.float(
            "score.calibration.pixel_quantile",
            self.pixel_quantile,
            PIXEL_QUANTILE,
        );
    }

    /// The smallest pool of normal scores that supports both requested rates without
    /// extrapolating.
    pub fn images_for_rates(&self) -> usize {
        let mut rates = vec![self.target_false_reject_rate];
        if self.target_false_fail_rate > 0.0 {
            rates.push(self.target_false_fail_rate);
        }
        rates
            .into_iter()
            .map(|r| images_needed(r).0 as usize)
            .max()
            .unwrap_or(0)
    }

    /// [`crate::ErrorKind::Config`] when `n` normal scores cannot support a requested rate
    /// and the configuration refuses to extrapolate ([`BeyondData::Refuse`]); the message
    /// says how many images the rate needs. Training checks this before optimising.
    pub fn check_pool_size(&self, n: usize) -> Result<()> {
        if self.beyond_data != BeyondData::Refuse {
            return Ok(());
        }
        let mut rates = vec![("review", self.target_false_reject_rate)];
        if self.target_false_fail_rate > 0.0 {
            rates.push(("fail", self.target_false_fail_rate));
        }
        for (name, rate) in rates {
            if conformal_rank(n, rate) > n {
                let (average, confident) = images_needed(rate);
                return Err(Error::config(format!(
                    "{n} normal scores support rates down to 1/(n+1) = {:.4}; the {name} \
                     rate {rate} needs at least {average} good images ({confident} for it to \
                     hold with 95% confidence); add good images, request a larger rate, or \
                     let the calibration extrapolate (beyond_data = log_normal_tail)",
                    1.0 / (n + 1) as f64
                )));
            }
        }
        Ok(())
    }
}

/// The distribution of the normal images' scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreStats {
    /// The number of normal images.
    pub count: usize,
    /// Their mean score.
    pub mean: f64,
    /// The sample standard deviation (divisor `count - 1`).
    pub std: f64,
    /// The smallest score.
    pub min: f32,
    /// The largest score.
    pub max: f32,
    /// Every score, ascending (there are few; keeping them lets thresholds be re-derived
    /// for another rate without the images).
    pub sorted: Vec<f32>,
}

/// The out-of-sample scores of good images that thresholds are fitted on, by where they
/// came from. Every score is out-of-sample: a cross-fitted score is a training image's,
/// scored by statistics fitted without its fold; a held-out score is an image's that
/// training never saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NormalPool {
    /// The training images' cross-fitted scores, in the order the images were added.
    pub cross_fitted: Vec<f32>,
    /// The held-out good images' scores, in the order the images were added.
    pub held_out: Vec<f32>,
    /// The folds the cross-fitted scores came from (0 without cross-fitting).
    pub folds: usize,
}

impl NormalPool {
    /// A pool of held-out scores only.
    pub fn held_out(scores: &[f32]) -> Self {
        NormalPool {
            cross_fitted: Vec::new(),
            held_out: scores.to_vec(),
            folds: 0,
        }
    }

    /// The number of scores.
    pub fn len(&self) -> usize {
        self.cross_fitted.len() + self.held_out.len()
    }

    /// Whether the pool holds no score.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every score, cross-fitted first.
    pub fn all(&self) -> Vec<f32> {
        self.cross_fitted
            .iter()
            .chain(&self.held_out)
            .copied()
            .collect()
    }
}

/// What one decision threshold promises about good parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateReport {
    /// The rate asked for (0 for a fail threshold set by the `review_band` rule).
    pub requested: f64,
    /// The threshold.
    pub threshold: f32,
    /// The rate of good parts at or above the threshold to expect: the requested rate
    /// when the threshold was extrapolated (an assumption, see `extrapolated`), else the
    /// distribution-free `conformal_rate`.
    pub expected: f64,
    /// The distribution-free rate on average over calibrations, `(n + 1 - k) / (n + 1)`
    /// with `k` the normal scores below the threshold: what exchangeability alone
    /// guarantees.
    pub conformal_rate: f64,
    /// The distribution-free upper bound of the rate for this calibration, at
    /// [`REPORT_CONFIDENCE`]: the quantile of `Beta(n + 1 - k, k)`.
    pub upper_bound: f64,
    /// Whether the threshold lies beyond the normal scores by the log-normal tail
    /// ([`BeyondData::LogNormalTail`]): `expected` then rests on that assumption.
    pub extrapolated: bool,
    /// Good images whose scores support the requested rate on average, `1 / rate - 1`
    /// (0 when nothing was requested).
    pub images_needed: u64,
    /// Good images for the requested rate to hold with 95% confidence at the largest
    /// score, `ln(0.05) / ln(1 - rate)` (0 when nothing was requested).
    pub images_needed_confident: u64,
}

/// What a calibration was fitted on and what its thresholds promise; everything in it is
/// derived from what the model file stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// Normal scores the thresholds were fitted on (`n`).
    pub normal_scores: usize,
    /// Of them, training images scored by cross-fitting.
    pub cross_fitted: usize,
    /// Of them, held-out good images.
    pub held_out: usize,
    /// The folds of the cross-fitting (0: none).
    pub folds: usize,
    /// The smallest rate `n` scores support without extrapolating, `1 / (n + 1)`.
    pub achievable_rate: f64,
    /// The review threshold: good parts sent to review or failed.
    pub review: RateReport,
    /// The fail threshold: good parts failed automatically.
    pub fail: RateReport,
    /// Known-defective examples scored at calibration.
    pub known_defects: usize,
    /// Of them, those that pass at the current review threshold.
    pub escapes: usize,
    /// The review threshold before it was lowered to catch the known defects, if it was.
    pub review_lowered_from: Option<f32>,
}

/// Thresholds for one model, fitted on out-of-sample normal scores; stored in the model
/// file's metadata (serde) and adjustable at run time.
///
/// A deserialised calibration is checked like one built by [`Calibration::fit_pool`] and
/// the setters: finite thresholds, a positive image threshold, `review <= fail`, sorted
/// scores that match their pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CalibrationFields", into = "CalibrationFields")]
pub struct Calibration {
    fields: CalibrationFields,
}

/// The stored form of [`Calibration`], so that deserialisation can validate. The fields
/// after `pixel_threshold` are absent from files written before conformal fail thresholds
/// (their thresholds came from held-out images only and the `review_band` rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CalibrationFields {
    config: CalibrationConfig,
    normal_scores: ScoreStats,
    image_threshold: f32,
    false_reject_bound: f64,
    review_threshold: f32,
    fail_threshold: f32,
    pixel_threshold: f32,
    #[serde(default)]
    pool: Option<NormalPool>,
    #[serde(default)]
    review_extrapolated: bool,
    #[serde(default)]
    fail_extrapolated: bool,
    #[serde(default)]
    known_defects: Vec<f32>,
    #[serde(default)]
    review_lowered_from: Option<f32>,
}

impl TryFrom<CalibrationFields> for Calibration {
    type Error = Error;
    fn try_from(mut fields: CalibrationFields) -> Result<Self> {
        if fields.pool.is_none() {
            // An older file: every score was held out, and the fail threshold came from
            // the band rule whatever today's default says.
            fields.pool = Some(NormalPool::held_out(&fields.normal_scores.sorted));
            fields.config.target_false_fail_rate = 0.0;
        }
        let calibration = Calibration { fields };
        calibration.check()?;
        Ok(calibration)
    }
}

impl From<Calibration> for CalibrationFields {
    fn from(c: Calibration) -> Self {
        c.fields
    }
}

fn check_image_threshold(t: f32) -> Result<()> {
    if t.is_finite() && t > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "image threshold {t} must be finite and positive (it is the unit of the normalised score)"
        )))
    }
}

fn check_band(review: f32, fail: f32) -> Result<()> {
    if review.is_finite() && fail.is_finite() && review <= fail {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "review threshold {review} and fail threshold {fail} must be finite with review <= fail"
        )))
    }
}

fn check_pixel_threshold(t: f32) -> Result<()> {
    if t.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "pixel threshold {t} must be finite"
        )))
    }
}

/// The smallest f32 above the positive finite `t` (`t` itself at `f32::MAX`).
fn next_up(t: f32) -> f32 {
    let up = f32::from_bits(t.to_bits() + 1);
    if up.is_finite() {
        up
    } else {
        t
    }
}

/// How many of the ascending `sorted` scores lie below `t` (the rank a threshold at `t`
/// has among them).
fn scores_below(sorted: &[f32], t: f32) -> usize {
    sorted.partition_point(|&s| s < t)
}

/// The threshold for `rate` over the ascending `sorted` scores, and whether it was
/// extrapolated beyond them. Within the data: just above the order statistic of rank
/// `ceil((n + 1)(1 - rate))`, so that the scores it was fitted on pass (decisions use
/// `score >= threshold`). Beyond it: the configured [`BeyondData`] rule.
fn threshold_for(sorted: &[f32], rate: f64, beyond: BeyondData) -> Result<(f32, bool)> {
    let n = sorted.len();
    let k = conformal_rank(n, rate);
    let top = next_up(sorted[n - 1]);
    if k <= n {
        check_image_threshold(sorted[k - 1]).map_err(|e| Error::config(e.message()))?;
        return Ok((next_up(sorted[k - 1]), false));
    }
    check_image_threshold(sorted[n - 1]).map_err(|e| Error::config(e.message()))?;
    match beyond {
        BeyondData::Refuse => Err(Error::config(format!(
            "{n} normal scores cannot support the rate {rate} (it needs {})",
            images_needed(rate).0
        ))),
        // Scores that are not all positive have no log-normal tail: the largest score is
        // then the threshold, and the report states its distribution-free rate.
        BeyondData::LogNormalTail => Ok(match log_normal_bound(sorted, rate) {
            Some(bound) if bound as f32 > top => (bound as f32, true),
            Some(_) => (top, true),
            None => (top, false),
        }),
    }
}

impl Calibration {
    /// Checks what [`Calibration::fit_pool`] and the setters guarantee, for a calibration
    /// read from a model file (untrusted input; deserialisation runs it): a valid
    /// configuration; at least [`MIN_NORMAL_IMAGES`] normal scores, finite, sorted, as
    /// many as their count, the sorted pool's, with the minimum and maximum they imply and
    /// a finite mean and non-negative finite spread; a false-reject bound in `(0, 1]`;
    /// finite thresholds, a positive image threshold (the normalised score divides by
    /// it), `review <= fail`; finite known-defect scores. The error names the field.
    pub fn check(&self) -> Result<()> {
        let f = &self.fields;
        f.config.validate()?;
        let s = &f.normal_scores;
        if s.count < MIN_NORMAL_IMAGES
            || s.sorted.len() != s.count
            || s.sorted.windows(2).any(|w| w[0] > w[1])
            || s.sorted.iter().any(|v| !v.is_finite())
        {
            return Err(Error::config(
                "calibration: the normal scores are not a sorted list of at least 3 finite values matching their count",
            ));
        }
        if s.sorted.first() != Some(&s.min) || s.sorted.last() != Some(&s.max) {
            return Err(Error::config(format!(
                "calibration: the normal scores' min {} and max {} are not those of their list",
                s.min, s.max
            )));
        }
        if !(s.mean.is_finite() && s.std.is_finite() && s.std >= 0.0) {
            return Err(Error::config(format!(
                "calibration: the normal scores' mean {} and std {} must be finite, the std at least 0",
                s.mean, s.std
            )));
        }
        if let Some(pool) = &f.pool {
            let mut all = pool.all();
            all.sort_by(f32::total_cmp);
            if all != s.sorted {
                return Err(Error::config(
                    "calibration: the pool of cross-fitted and held-out scores is not the sorted normal scores",
                ));
            }
        }
        let bound = f.false_reject_bound;
        if !(bound > 0.0 && bound <= 1.0) {
            return Err(Error::config(format!(
                "calibration: false_reject_bound {bound} must be in (0, 1]"
            )));
        }
        if let Some(v) = f.known_defects.iter().find(|v| !v.is_finite()) {
            return Err(Error::config(format!(
                "calibration: known_defects holds the non-finite score {v}"
            )));
        }
        if f.review_lowered_from.is_some_and(|v| !v.is_finite()) {
            return Err(Error::config(
                "calibration: review_lowered_from must be finite",
            ));
        }
        check_image_threshold(f.image_threshold)?;
        check_band(f.review_threshold, f.fail_threshold)?;
        check_pixel_threshold(f.pixel_threshold)?;
        Ok(())
    }

    /// Fits thresholds on held-out normal images: `normal_image_scores[i]` is image `i`'s
    /// score (by `config.score_policy`) and `normal_maps[i]` its map at image size after
    /// smoothing (images may differ in size). The pixel threshold is the
    /// `pixel_quantile` quantile of all their pixels ([`CalibrationConfig::pixel_quantile`]),
    /// computed by histogram refinement, exact, without sorting the pixels; the rest is
    /// [`Calibration::fit_pool`] on a pool of held-out scores.
    ///
    /// [`crate::ErrorKind::Config`] for a map count that differs from the score count, an
    /// empty map, a NaN or infinite pixel, and whatever `fit_pool` refuses.
    pub fn fit(
        normal_image_scores: &[f32],
        normal_maps: &[&[f32]],
        config: &CalibrationConfig,
    ) -> Result<Calibration> {
        config.validate()?;
        let n = normal_image_scores.len();
        if normal_maps.len() != n {
            return Err(Error::config(format!(
                "calibration got {n} normal image scores but {} maps",
                normal_maps.len()
            )));
        }
        for (i, m) in normal_maps.iter().enumerate() {
            if m.is_empty() {
                return Err(Error::config(format!(
                    "calibration: normal map {i} is empty"
                )));
            }
            if let Some(j) = m.iter().position(|v| !v.is_finite()) {
                return Err(Error::config(format!(
                    "calibration: normal map {i} has {} at index {j}",
                    m[j]
                )));
            }
        }
        if n < MIN_NORMAL_IMAGES {
            return Err(Error::config(format!(
                "calibration needs at least {MIN_NORMAL_IMAGES} normal images, got {n}"
            )));
        }
        let pixel_threshold = quantile_of_all(normal_maps, config.pixel_quantile);
        Calibration::fit_pool(
            &NormalPool::held_out(normal_image_scores),
            pixel_threshold,
            config,
        )
    }

    /// Fits the image thresholds on a pool of `n` out-of-sample normal scores, split-
    /// conformally; `pixel_threshold` is the caller's quantile of the same images' normal
    /// pixels.
    ///
    /// - Review threshold: for rate `a = target_false_reject_rate`, just above the order
    ///   statistic of rank `k = ceil((n + 1)(1 - a))` of the sorted scores. A new good
    ///   image exchangeable with the pool scores at or above it with probability at most
    ///   `(n + 1 - k) / (n + 1) <= a` on average, whatever the score distribution. When
    ///   `k > n` (fewer than `1 / a - 1` scores) the [`BeyondData`] rule decides: a
    ///   log-normal prediction bound (at least the largest score), flagged as an
    ///   assumption, or a refusal.
    /// - Fail threshold: likewise for `target_false_fail_rate`; when that is 0, the review
    ///   threshold plus `review_band` standard deviations of the scores. Never below the
    ///   review threshold.
    /// - The image threshold (the normalised score's unit) is the review threshold.
    ///
    /// [`crate::ErrorKind::Config`] for fewer than [`MIN_NORMAL_IMAGES`] scores, a NaN or
    /// infinite score or pixel threshold, an invalid config, a rate the scores cannot
    /// support under [`BeyondData::Refuse`], or a review threshold that is not positive
    /// (anomaly scores are squared distances, so that means the maps are all zero).
    pub fn fit_pool(
        pool: &NormalPool,
        pixel_threshold: f32,
        config: &CalibrationConfig,
    ) -> Result<Calibration> {
        config.validate()?;
        let mut sorted = pool.all();
        let n = sorted.len();
        if n < MIN_NORMAL_IMAGES {
            return Err(Error::config(format!(
                "calibration needs at least {MIN_NORMAL_IMAGES} normal images, got {n}"
            )));
        }
        if let Some(i) = sorted.iter().position(|s| !s.is_finite()) {
            return Err(Error::config(format!(
                "calibration: normal image {i} has score {}",
                sorted[i]
            )));
        }
        check_pixel_threshold(pixel_threshold).map_err(|e| Error::config(e.message()))?;
        config.check_pool_size(n)?;
        sorted.sort_by(f32::total_cmp);
        let mean = sorted.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
        let var = sorted
            .iter()
            .map(|&s| (f64::from(s) - mean).powi(2))
            .sum::<f64>()
            / (n - 1) as f64;
        let std = var.sqrt();
        let (review, review_extrapolated) =
            threshold_for(&sorted, config.target_false_reject_rate, config.beyond_data)?;
        check_image_threshold(review).map_err(|e| Error::config(e.message()))?;
        let (fail, fail_extrapolated) = if config.target_false_fail_rate > 0.0 {
            threshold_for(&sorted, config.target_false_fail_rate, config.beyond_data)?
        } else {
            ((f64::from(review) + config.review_band * std) as f32, false)
        };
        let fail = if fail.is_finite() {
            fail.max(review)
        } else {
            review
        };
        let below = scores_below(&sorted, review);
        Ok(Calibration {
            fields: CalibrationFields {
                config: *config,
                normal_scores: ScoreStats {
                    count: n,
                    mean,
                    std,
                    min: sorted[0],
                    max: sorted[n - 1],
                    sorted,
                },
                image_threshold: review,
                false_reject_bound: expected_rate(below, n),
                review_threshold: review,
                fail_threshold: fail,
                pixel_threshold,
                pool: Some(pool.clone()),
                review_extrapolated,
                fail_extrapolated,
                known_defects: Vec::new(),
                review_lowered_from: None,
            },
        })
    }

    /// Records the scores of known-defective examples (by the calibration's policy).
    /// With [`CalibrationConfig::catch_known_defects`], a review threshold above the
    /// lowest of them is lowered to it, so that none passes; the fail threshold is left
    /// where it is (it stays at or above the review threshold), and the report states the
    /// review rate this costs. Replaces any examples recorded before (restoring the review
    /// threshold they lowered). [`crate::ErrorKind::InvalidArgument`] for a non-finite
    /// score; nothing changes then.
    pub fn set_known_defects(&mut self, scores: &[f32]) -> Result<()> {
        if let Some(v) = scores.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid_argument(format!(
                "a known-defective example has the score {v}"
            )));
        }
        let f = &mut self.fields;
        if let Some(before) = f.review_lowered_from.take() {
            f.review_threshold = before;
        }
        f.known_defects = scores.to_vec();
        let lowest = scores.iter().copied().fold(f32::INFINITY, f32::min);
        if f.config.catch_known_defects && lowest < f.review_threshold {
            f.review_lowered_from = Some(f.review_threshold);
            f.review_threshold = lowest;
            f.review_extrapolated = false;
        }
        self.update_bound();
        Ok(())
    }

    fn update_bound(&mut self) {
        let f = &mut self.fields;
        let below = scores_below(&f.normal_scores.sorted, f.review_threshold);
        f.false_reject_bound = expected_rate(below, f.normal_scores.count);
    }

    /// The configuration the calibration was fitted with.
    pub fn config(&self) -> &CalibrationConfig {
        &self.fields.config
    }

    /// The policy image scores must be computed with to be compared with these thresholds.
    pub fn score_policy(&self) -> ImageScore {
        self.fields.config.score_policy
    }

    /// The normal images' score distribution.
    pub fn normal_scores(&self) -> &ScoreStats {
        &self.fields.normal_scores
    }

    /// The normal scores by where they came from.
    pub fn pool(&self) -> &NormalPool {
        // Always present after construction or deserialisation.
        self.fields
            .pool
            .as_ref()
            .expect("a calibration always holds its pool")
    }

    /// The known-defective examples' scores, as recorded.
    pub fn known_defects(&self) -> &[f32] {
        &self.fields.known_defects
    }

    /// The image threshold: the score that normalises to 1.0.
    pub fn image_threshold(&self) -> f32 {
        self.fields.image_threshold
    }

    /// The distribution-free chance, on average over calibrations, that a good image
    /// scores at or above the review threshold: `(n + 1 - k) / (n + 1)` with `k` the normal
    /// scores below it (see [`Calibration::fit_pool`] and [`Calibration::report`]).
    pub fn false_reject_bound(&self) -> f64 {
        self.fields.false_reject_bound
    }

    /// Scores at or above this are reviewed (or fail, at or above [`Self::fail_threshold`]).
    pub fn review_threshold(&self) -> f32 {
        self.fields.review_threshold
    }

    /// Scores at or above this fail.
    pub fn fail_threshold(&self) -> f32 {
        self.fields.fail_threshold
    }

    /// Pixels strictly above this form defect regions.
    pub fn pixel_threshold(&self) -> f32 {
        self.fields.pixel_threshold
    }

    /// `score / image_threshold`: 1.0 is the image threshold, so values compare across
    /// models and products (below 1 looks normal).
    pub fn normalised(&self, score: f32) -> f32 {
        score / self.fields.image_threshold
    }

    /// The conformal p-value of an image score against the normal scores,
    /// `(1 + #{normal scores >= score}) / (n + 1)`: for a good part it is at most `a` with
    /// probability at most `a`, so a small value is evidence of a defect. In `(0, 1]`.
    pub fn p_value(&self, score: f32) -> f64 {
        let s = &self.fields.normal_scores.sorted;
        // A NaN score is no evidence of normality: it gets the smallest p-value.
        let at_or_above = if score.is_nan() {
            0
        } else {
            s.len() - scores_below(s, score)
        };
        (1 + at_or_above) as f64 / (s.len() + 1) as f64
    }

    /// The decision for an image score.
    pub fn decide(&self, score: f32) -> Decision {
        Decision::from_score(
            score,
            self.fields.review_threshold,
            self.fields.fail_threshold,
        )
    }

    /// What the thresholds promise, from the stored scores and the current thresholds
    /// (thresholds set by hand are reported for what they give, distribution-free).
    pub fn report(&self) -> CalibrationReport {
        let f = &self.fields;
        let pool = self.pool();
        let n = f.normal_scores.count;
        let rate = |threshold: f32, requested: f64, extrapolated: bool| {
            let below = scores_below(&f.normal_scores.sorted, threshold);
            let conformal_rate = expected_rate(below, n);
            let (needed, confident) = images_needed(requested);
            RateReport {
                requested,
                threshold,
                expected: if extrapolated {
                    requested
                } else {
                    conformal_rate
                },
                conformal_rate,
                upper_bound: rate_upper_bound(below, n, REPORT_CONFIDENCE),
                extrapolated,
                images_needed: needed,
                images_needed_confident: confident,
            }
        };
        CalibrationReport {
            normal_scores: n,
            cross_fitted: pool.cross_fitted.len(),
            held_out: pool.held_out.len(),
            folds: pool.folds,
            achievable_rate: 1.0 / (n + 1) as f64,
            review: rate(
                f.review_threshold,
                f.config.target_false_reject_rate,
                f.review_extrapolated,
            ),
            fail: rate(
                f.fail_threshold,
                f.config.target_false_fail_rate,
                f.fail_extrapolated,
            ),
            known_defects: f.known_defects.len(),
            escapes: f
                .known_defects
                .iter()
                .filter(|&&d| d < f.review_threshold)
                .count(),
            review_lowered_from: f.review_lowered_from,
        }
    }

    /// Sets the normalisation unit (it does not move the review and fail thresholds).
    /// [`crate::ErrorKind::InvalidArgument`] unless finite and positive.
    pub fn set_image_threshold(&mut self, threshold: f32) -> Result<()> {
        check_image_threshold(threshold)?;
        self.fields.image_threshold = threshold;
        Ok(())
    }

    /// Sets both decision thresholds at once.
    /// [`crate::ErrorKind::InvalidArgument`] unless both are finite and `review <= fail`;
    /// nothing changes then. A threshold that moves is no longer reported as extrapolated
    /// or as lowered for known defects.
    pub fn set_thresholds(&mut self, review: f32, fail: f32) -> Result<()> {
        check_band(review, fail)?;
        let f = &mut self.fields;
        if review != f.review_threshold {
            f.review_extrapolated = false;
            f.review_lowered_from = None;
        }
        if fail != f.fail_threshold {
            f.fail_extrapolated = false;
        }
        f.review_threshold = review;
        f.fail_threshold = fail;
        self.update_bound();
        Ok(())
    }

    /// Sets the review threshold; must stay finite and at most the fail threshold.
    pub fn set_review_threshold(&mut self, review: f32) -> Result<()> {
        self.set_thresholds(review, self.fields.fail_threshold)
    }

    /// Sets the fail threshold; must stay finite and at least the review threshold.
    pub fn set_fail_threshold(&mut self, fail: f32) -> Result<()> {
        self.set_thresholds(self.fields.review_threshold, fail)
    }

    /// Sets the pixel threshold for regions. [`crate::ErrorKind::InvalidArgument`] unless
    /// finite.
    pub fn set_pixel_threshold(&mut self, threshold: f32) -> Result<()> {
        check_pixel_threshold(threshold)?;
        self.fields.pixel_threshold = threshold;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn maps_for(scores: &[f32]) -> Vec<Vec<f32>> {
        scores.iter().map(|&s| vec![0.0, s * 0.5, s]).collect()
    }

    fn fit(scores: &[f32], config: &CalibrationConfig) -> Result<Calibration> {
        let maps = maps_for(scores);
        let refs: Vec<&[f32]> = maps.iter().map(|m| m.as_slice()).collect();
        Calibration::fit(scores, &refs, config)
    }

    /// The legacy rules: the largest score for a rate beyond the data (no tail), the band
    /// for the fail threshold.
    fn max_and_band() -> CalibrationConfig {
        CalibrationConfig {
            target_false_fail_rate: 0.0,
            target_false_reject_rate: 0.2,
            ..Default::default()
        }
    }

    #[test]
    fn few_images_take_the_max() {
        let scores = [2.0, 4.0, 3.0, 1.0, 5.0];
        // 5 scores support 1/6: a rate of 0.2 takes rank ceil(6 * 0.8) = 5, the max.
        let c = fit(&scores, &max_and_band()).unwrap();
        let s = c.normal_scores();
        assert_eq!(s.sorted, [1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!((s.count, s.mean, s.min, s.max), (5, 3.0, 1.0, 5.0));
        assert!((s.std - 2.5f64.sqrt()).abs() < 1e-12);
        let t = next_up(5.0);
        assert!(t > 5.0 && t < 5.000001);
        assert_eq!(c.image_threshold(), t);
        assert!((c.false_reject_bound() - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(c.review_threshold(), t);
        assert!((c.fail_threshold() - (5.0 + 3.0 * 2.5f64.sqrt()) as f32).abs() < 1e-6);
        assert_eq!(c.pixel_threshold(), 5.0);
        assert!((c.normalised(2.5) - 0.5).abs() < 1e-6);
        // Every calibration image passes, anything above them is reviewed.
        assert_eq!(c.decide(5.0), Decision::Pass);
        assert_eq!(c.decide(5.001), Decision::Review);
        assert_eq!(c.decide(10.0), Decision::Fail);
        let r = c.report();
        assert_eq!((r.normal_scores, r.held_out, r.cross_fitted), (5, 5, 0));
        assert!(!r.review.extrapolated && !r.fail.extrapolated);
        assert!((r.review.expected - 1.0 / 6.0).abs() < 1e-12);
        assert!((r.review.upper_bound - (1.0 - 0.05f64.powf(0.2))).abs() < 1e-9);
        assert_eq!(
            (r.review.images_needed, r.review.images_needed_confident),
            (4, 14)
        );
        assert_eq!(r.fail.requested, 0.0);
    }

    #[test]
    fn rates_beyond_the_data_extrapolate_or_refuse() {
        let scores: Vec<f32> = (1..=12).map(|i| 1.0 + 0.1 * i as f32).collect();
        let c = fit(&scores, &CalibrationConfig::default()).unwrap();
        let r = c.report();
        // 12 scores support 1/13: 1% and 0.1% are extrapolated, above the max, fail above
        // review.
        assert!(r.review.extrapolated && r.fail.extrapolated);
        assert!(c.review_threshold() > 2.2 && c.fail_threshold() > c.review_threshold());
        assert_eq!(r.review.expected, 0.01);
        assert!((r.review.conformal_rate - 1.0 / 13.0).abs() < 1e-12);
        assert!((r.achievable_rate - 1.0 / 13.0).abs() < 1e-12);
        assert_eq!(
            (r.review.images_needed, r.review.images_needed_confident),
            (99, 299)
        );
        assert_eq!(
            (r.fail.images_needed, r.fail.images_needed_confident),
            (999, 2995)
        );
        let refuse = CalibrationConfig {
            beyond_data: BeyondData::Refuse,
            ..Default::default()
        };
        let err = fit(&scores, &refuse).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.message().contains("needs at least 99 good images"),
            "{err}"
        );
        // Enough scores for both rates: no extrapolation, nothing refused.
        let many: Vec<f32> = (1..=2000).map(|i| i as f32).collect();
        let c = fit(&many, &refuse).unwrap();
        assert_eq!(c.review_threshold(), next_up(1981.0)); // rank ceil(2001 * 0.99)
        assert_eq!(c.fail_threshold(), next_up(1999.0)); // rank ceil(2001 * 0.999)
        let r = c.report();
        assert!(!r.review.extrapolated && r.review.expected <= 0.01);
        assert!(r.review.upper_bound > 0.01 && r.review.upper_bound < 0.02);
    }

    #[test]
    fn p_values_count_the_normal_scores_at_or_above() {
        let c = fit(&[1.0, 2.0, 3.0, 4.0], &max_and_band()).unwrap();
        assert_eq!(c.p_value(0.5), 1.0);
        assert_eq!(c.p_value(2.0), 4.0 / 5.0);
        assert_eq!(c.p_value(2.5), 3.0 / 5.0);
        assert_eq!(c.p_value(9.0), 1.0 / 5.0);
        assert_eq!(c.p_value(f32::NAN), 1.0 / 5.0);
    }

    #[test]
    fn known_defects_only_lower_the_review_threshold() {
        let scores: Vec<f32> = (1..=19).map(|i| i as f32).collect();
        let config = CalibrationConfig {
            target_false_reject_rate: 0.05,
            ..max_and_band()
        };
        let mut c = fit(&scores, &config).unwrap();
        let review = c.review_threshold();
        assert_eq!(review, next_up(19.0));
        // Reported only: the threshold stays, one of three escapes.
        c.set_known_defects(&[30.0, 17.5, 25.0]).unwrap();
        assert_eq!(c.review_threshold(), review);
        let r = c.report();
        assert_eq!(
            (r.known_defects, r.escapes, r.review_lowered_from),
            (3, 1, None)
        );
        // Caught: lowered to the lowest example; the report states what it costs.
        let mut caught = fit(
            &scores,
            &CalibrationConfig {
                catch_known_defects: true,
                ..config
            },
        )
        .unwrap();
        caught.set_known_defects(&[30.0, 17.5, 25.0]).unwrap();
        assert_eq!(caught.review_threshold(), 17.5);
        assert_eq!(caught.decide(17.5), Decision::Review);
        let r = caught.report();
        assert_eq!((r.escapes, r.review_lowered_from), (0, Some(review)));
        // 17 of 19 normal scores lie below 17.5: rate 3/20.
        assert!((r.review.expected - 3.0 / 20.0).abs() < 1e-12);
        assert!((caught.false_reject_bound() - 3.0 / 20.0).abs() < 1e-12);
        // Examples that all score above the threshold move nothing; replacing the
        // examples restores the threshold they lowered.
        caught.set_known_defects(&[40.0]).unwrap();
        assert_eq!(caught.review_threshold(), review);
        assert_eq!(caught.report().review_lowered_from, None);
        assert_eq!(
            caught.set_known_defects(&[f32::NAN]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        // Survives the model file.
        caught.set_known_defects(&[10.0, 50.0]).unwrap();
        let json = serde_json::to_string(&caught).unwrap();
        let back: Calibration = serde_json::from_str(&json).unwrap();
        assert_eq!(back, caught);
        assert_eq!(back.report(), caught.report());
    }

    #[test]
    fn older_files_keep_their_band_rule() {
        let c = fit(&[1.0, 2.0, 3.0, 4.0], &max_and_band()).unwrap();
        let mut v = serde_json::to_value(&c).unwrap();
        let fields = v.as_object_mut().unwrap();
        for new in [
            "pool",
            "review_extrapolated",
            "fail_extrapolated",
            "known_defects",
            "review_lowered_from",
        ] {
            fields.remove(new).unwrap();
        }
        fields["config"]
            .as_object_mut()
            .unwrap()
            .remove("target_false_fail_rate");
        let old: Calibration = serde_json::from_value(v).unwrap();
        assert_eq!(old.config().target_false_fail_rate, 0.0);
        assert_eq!(old.pool(), &NormalPool::held_out(&[1.0, 2.0, 3.0, 4.0]));
        assert_eq!(old.fail_threshold(), c.fail_threshold());
        assert_eq!(old.report().fail.requested, 0.0);
    }

    #[test]
    fn many_images_take_the_conformal_order_statistic() {
        let scores: Vec<f32> = (1..=200).map(|i| i as f32).collect();
        let config = CalibrationConfig {
            pixel_quantile: 0.5,
            review_band: 0.0,
            target_false_fail_rate: 0.0,
            ..Default::default()
        };
        let c = fit(&scores, &config).unwrap();
        assert_eq!(c.image_threshold(), next_up(199.0));
        assert!(c.false_reject_bound() <= 0.01);
        assert_eq!(c.review_threshold(), c.fail_threshold());
        // Pixels 0, s/2, s for s = 1..200: 600 values, rank 300.
        let maps = maps_for(&scores);
        let mut all: Vec<f32> = maps.concat();
        all.sort_by(f32::total_cmp);
        assert_eq!(c.pixel_threshold(), all[299]);
    }

    #[test]
    fn refuses_bad_input() {
        let d = CalibrationConfig::default();
        let kind = |r: Result<Calibration>| r.unwrap_err().kind();
        assert_eq!(kind(fit(&[1.0, 2.0], &d)), ErrorKind::Config);
        assert_eq!(kind(fit(&[1.0, f32::NAN, 2.0], &d)), ErrorKind::Config);
        assert_eq!(kind(fit(&[0.0, 0.0, 0.0], &d)), ErrorKind::Config);
        let maps = maps_for(&[1.0, 2.0]);
        let refs: Vec<&[f32]> = maps.iter().map(|m| m.as_slice()).collect();
        assert_eq!(
            kind(Calibration::fit(&[1.0, 2.0, 3.0], &refs, &d)),
            ErrorKind::Config
        );
        let nan_map = [1.0, f32::NAN];
        let refs: Vec<&[f32]> = vec![&nan_map, &nan_map, &nan_map];
        assert_eq!(
            kind(Calibration::fit(&[1.0, 2.0, 3.0], &refs, &d)),
            ErrorKind::Config
        );
        for bad in [
            CalibrationConfig {
                target_false_reject_rate: 0.0,
                ..d
            },
            CalibrationConfig {
                target_false_reject_rate: 1.0,
                ..d
            },
            CalibrationConfig {
                review_band: -1.0,
                ..d
            },
            CalibrationConfig {
                pixel_quantile: 0.0,
                ..d
            },
            CalibrationConfig {
                pixel_quantile: f64::NAN,
                ..d
            },
            CalibrationConfig {
                score_policy: ImageScore::TopKMean { k: 0 },
                ..d
            },
        ] {
            assert_eq!(
                kind(fit(&[1.0, 2.0, 3.0], &bad)),
                ErrorKind::Config,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn setters_validate_and_keep_order() {
        let mut c = fit(&[1.0, 2.0, 3.0], &CalibrationConfig::default()).unwrap();
        c.set_thresholds(2.0, 4.0).unwrap();
        assert_eq!((c.review_threshold(), c.fail_threshold()), (2.0, 4.0));
        let kind = |r: Result<()>| r.unwrap_err().kind();
        assert_eq!(
            kind(c.set_review_threshold(5.0)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kind(c.set_fail_threshold(1.0)), ErrorKind::InvalidArgument);
        assert_eq!(
            kind(c.set_thresholds(f32::NAN, 4.0)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kind(c.set_image_threshold(0.0)), ErrorKind::InvalidArgument);
        assert_eq!(
            kind(c.set_pixel_threshold(f32::INFINITY)),
            ErrorKind::InvalidArgument
        );
        assert_eq!((c.review_threshold(), c.fail_threshold()), (2.0, 4.0));
        c.set_fail_threshold(2.0).unwrap();
        assert_eq!(c.decide(2.0), Decision::Fail);
        c.set_image_threshold(4.0).unwrap();
        assert_eq!(c.normalised(2.0), 0.5);
    }

    #[test]
    fn serde_round_trip_validates() {
        let config = CalibrationConfig {
            score_policy: ImageScore::TopKMean { k: 10 },
            target_false_fail_rate: 0.0,
            ..Default::default()
        };
        let c = fit(&[1.0, 2.5, 3.0, 7.0], &config).unwrap();
        assert!(c.report().review.extrapolated);
        let json = serde_json::to_string(&c).unwrap();
        let back: Calibration = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["review_threshold"] = serde_json::json!(1.0e6);
        assert!(serde_json::from_value::<Calibration>(v.clone()).is_err());
        v["review_threshold"] = serde_json::json!(1.0);
        v["normal_scores"]["sorted"] = serde_json::json!([3.0, 1.0, 2.0, 7.0]);
        assert!(serde_json::from_value::<Calibration>(v).is_err());
        // Values that do not fit together are refused, naming the field.
        let good: serde_json::Value = serde_json::from_str(&json).unwrap();
        for (pointer, value, field) in [
            ("/normal_scores/min", 0.5, "min"),
            ("/normal_scores/max", 9.0, "max"),
            ("/normal_scores/std", -1.0, "std"),
            ("/false_reject_bound", 0.0, "false_reject_bound"),
            ("/false_reject_bound", 1.5, "false_reject_bound"),
            ("/image_threshold", -1.0, "image threshold"),
            ("/pixel_threshold", f64::MAX, "pixel threshold"),
        ] {
            let mut v = good.clone();
            *v.pointer_mut(pointer).unwrap() = serde_json::json!(value);
            let err = serde_json::from_value::<Calibration>(v).unwrap_err();
            assert!(err.to_string().contains(field), "{pointer}: {err}");
        }
        back.check().unwrap();
        // Missing config fields take their defaults.
        let d: CalibrationConfig = serde_json::from_str(r#"{"review_band": 2.0}"#).unwrap();
        assert_eq!(
            d,
            CalibrationConfig {
                review_band: 2.0,
                ..Default::default()
            }
        );
    }
}
