//! Thresholds fitted on normal images: when an image is unusual, when it fails, and which
//! pixels make up a defect region.

use serde::{Deserialize, Serialize};

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

/// How [`Calibration::fit`] turns normal images into thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CalibrationConfig {
    /// The policy the normal image scores were computed with; images assessed with this
    /// calibration are scored the same way. Default [`ImageScore::Max`].
    pub score_policy: ImageScore,
    /// The largest acceptable fraction of good parts sent to review (the image
    /// threshold's target), in `(0, 1)`. Default 0.01: 1% of good parts reviewed is a
    /// common acceptance figure for inline inspection, and a smaller rate cannot be
    /// backed by the few dozen to few hundred held-out good images a user has (see
    /// [`Calibration::false_reject_bound`]).
    pub target_false_reject_rate: f64,
    /// The width of the review band in standard deviations of the normal image scores:
    /// `fail = review + review_band * std`. At least 0 (0: no review band, every image at
    /// or above the threshold fails). Default 3.0: an image fails automatically only when
    /// it lies well outside the normal spread; just above the threshold, where good parts
    /// still occur at about the target rate, a person decides.
    pub review_band: f64,
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
        use crate::config::ranges::{PIXEL_QUANTILE, REVIEW_BAND, TARGET_FALSE_REJECT_RATE};
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
            "score.calibration.pixel_quantile",
            self.pixel_quantile,
            PIXEL_QUANTILE,
        );
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

/// Thresholds for one model, fitted on held-out normal images; stored in the model file's
/// metadata (serde) and adjustable at run time.
///
/// A deserialised calibration is checked like one built by [`Calibration::fit`] and the
/// setters: finite thresholds, a positive image threshold, `review <= fail`, sorted scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CalibrationFields", into = "CalibrationFields")]
pub struct Calibration {
    fields: CalibrationFields,
}

/// The stored form of [`Calibration`], so that deserialisation can validate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CalibrationFields {
    config: CalibrationConfig,
    normal_scores: ScoreStats,
    image_threshold: f32,
    false_reject_bound: f64,
    review_threshold: f32,
    fail_threshold: f32,
    pixel_threshold: f32,
}

impl TryFrom<CalibrationFields> for Calibration {
    type Error = Error;
    fn try_from(fields: CalibrationFields) -> Result<Self> {
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

/// The 1-based rank of the image threshold among `n` sorted normal scores for false-reject
/// rate `rate`: `ceil((n + 1) * (1 - rate))`, at most `n`.
fn threshold_rank(n: usize, rate: f64) -> usize {
    // ceil((n + 1)(1 - rate)) = (n + 1) - floor((n + 1) rate); the tolerance keeps
    // products such as 100 * 0.01 from landing just below a whole number.
    let allowed_above = ((n + 1) as f64 * rate + 1e-9).floor() as usize;
    (n + 1).saturating_sub(allowed_above).clamp(1, n)
}

impl Calibration {
    /// Checks what [`Calibration::fit`] and the setters guarantee, for a calibration read
    /// from a model file (untrusted input; deserialisation runs it): a valid
    /// configuration; at least [`MIN_NORMAL_IMAGES`] normal scores, finite, sorted, as
    /// many as their count, with the minimum and maximum they imply and a finite mean and
    /// non-negative finite spread; a false-reject bound in `(0, 1]`; finite thresholds, a
    /// positive image threshold (the normalised score divides by it), `review <= fail`.
    /// The error names the field.
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
        let bound = f.false_reject_bound;
        if !(bound > 0.0 && bound <= 1.0) {
            return Err(Error::config(format!(
                "calibration: false_reject_bound {bound} must be in (0, 1]"
            )));
        }
        check_image_threshold(f.image_threshold)?;
        check_band(f.review_threshold, f.fail_threshold)?;
        check_pixel_threshold(f.pixel_threshold)?;
        Ok(())
    }

    /// Fits thresholds on held-out normal images: `normal_image_scores[i]` is image `i`'s
    /// score (by `config.score_policy`) and `normal_maps[i]` its map at image size after
    /// smoothing (images may differ in size).
    ///
    /// - Image threshold: the order statistic of rank `k = ceil((n + 1) * (1 - rate))`
    ///   among the `n` sorted normal scores (no interpolation; the conformal quantile).
    ///   For a new good image exchangeable with the calibration images, the chance of
    ///   scoring at or above it is at most `(n + 1 - k) / (n + 1)` <= `rate`, whatever the
    ///   score distribution. When `k` would exceed `n` (fewer than `1 / rate - 1` images:
    ///   99 at the default 1%) the threshold is the largest normal score, and the
    ///   guarantee weakens to `1 / (n + 1)`, which [`Calibration::false_reject_bound`]
    ///   reports. The threshold is then moved up by one f32 step, so that a calibration
    ///   image scored again passes (decisions use `score >= threshold`) rather than being
    ///   reviewed; the guarantee is unchanged. It is the unit of
    ///   [`Calibration::normalised`].
    /// - Review threshold = image threshold; fail threshold = review + `review_band` *
    ///   the scores' standard deviation.
    /// - Pixel threshold: the `pixel_quantile` quantile of all normal pixels (see
    ///   [`CalibrationConfig::pixel_quantile`]), computed by histogram refinement, exact,
    ///   without sorting the pixels.
    ///
    /// [`crate::ErrorKind::Config`] for fewer than [`MIN_NORMAL_IMAGES`] images, a map
    /// count that differs from the score count, an empty map, a NaN or infinite score or
    /// pixel, an invalid config, or an image threshold that is not positive (anomaly
    /// scores are squared distances, so that means the maps are all zero).
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

    /// Fits the image thresholds on a pool of out-of-sample normal scores (see
    /// [`Calibration::fit`] for the rules); `pixel_threshold` is the caller's quantile of
    /// the same images' normal pixels.
    ///
    /// [`crate::ErrorKind::Config`] for fewer than [`MIN_NORMAL_IMAGES`] scores, a NaN or
    /// infinite score or pixel threshold, an invalid config, or an image threshold that is
    /// not positive.
    pub fn fit_pool(
        pool: &NormalPool,
        pixel_threshold: f32,
        config: &CalibrationConfig,
    ) -> Result<Calibration> {
        config.validate()?;
        let normal_image_scores = pool.all();
        let normal_image_scores = normal_image_scores.as_slice();
        let n = normal_image_scores.len();
        if n < MIN_NORMAL_IMAGES {
            return Err(Error::config(format!(
                "calibration needs at least {MIN_NORMAL_IMAGES} normal images, got {n}"
            )));
        }
        if let Some(i) = normal_image_scores.iter().position(|s| !s.is_finite()) {
            return Err(Error::config(format!(
                "calibration: normal image {i} has score {}",
                normal_image_scores[i]
            )));
        }
        check_pixel_threshold(pixel_threshold).map_err(|e| Error::config(e.message()))?;

        let mut sorted = normal_image_scores.to_vec();
        sorted.sort_by(f32::total_cmp);
        let mean = sorted.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
        let var = sorted
            .iter()
            .map(|&s| (f64::from(s) - mean).powi(2))
            .sum::<f64>()
            / (n - 1) as f64;
        let std = var.sqrt();
        let k = threshold_rank(n, config.target_false_reject_rate);
        check_image_threshold(sorted[k - 1]).map_err(|e| Error::config(e.message()))?;
        let image_threshold = next_up(sorted[k - 1]);
        let fail = (f64::from(image_threshold) + config.review_band * std) as f32;
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
                image_threshold,
                false_reject_bound: (n + 1 - k) as f64 / (n + 1) as f64,
                review_threshold: image_threshold,
                fail_threshold: fail.max(image_threshold),
                pixel_threshold,
            },
        })
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

    /// The image threshold: the score that normalises to 1.0.
    pub fn image_threshold(&self) -> f32 {
        self.fields.image_threshold
    }

    /// The largest chance, as fitted, that a good image scores at or above the image
    /// threshold: the target rate when there were enough normal images, `1 / (n + 1)`
    /// when there were too few to reach it (see [`Calibration::fit`]).
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

    /// The decision for an image score.
    pub fn decide(&self, score: f32) -> Decision {
        Decision::from_score(
            score,
            self.fields.review_threshold,
            self.fields.fail_threshold,
        )
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
    /// nothing changes then.
    pub fn set_thresholds(&mut self, review: f32, fail: f32) -> Result<()> {
        check_band(review, fail)?;
        self.fields.review_threshold = review;
        self.fields.fail_threshold = fail;
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

    #[test]
    fn threshold_ranks() {
        assert_eq!(threshold_rank(3, 0.01), 3);
        assert_eq!(threshold_rank(98, 0.01), 98);
        assert_eq!(threshold_rank(99, 0.01), 99); // exactly 1 / (n + 1)
        assert_eq!(threshold_rank(199, 0.01), 198);
        assert_eq!(threshold_rank(200, 0.01), 199);
        assert_eq!(threshold_rank(9, 0.1), 9);
        assert_eq!(threshold_rank(19, 0.1), 18);
        assert_eq!(threshold_rank(4, 0.5), 3);
    }

    #[test]
    fn few_images_take_the_max() {
        let scores = [2.0, 4.0, 3.0, 1.0, 5.0];
        let c = fit(&scores, &CalibrationConfig::default()).unwrap();
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
    }

    #[test]
    fn many_images_take_the_conformal_order_statistic() {
        let scores: Vec<f32> = (1..=200).map(|i| i as f32).collect();
        let config = CalibrationConfig {
            pixel_quantile: 0.5,
            review_band: 0.0,
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
            ..Default::default()
        };
        let c = fit(&[1.0, 2.5, 3.0, 7.0], &config).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: Calibration = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["review_threshold"] = serde_json::json!(100.0);
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
