//! One image's map to the verdict inspection software acts on.

use serde::{Deserialize, Serialize};

use super::calibration::Calibration;
use super::decision::Decision;
use super::image_score::image_score;
use super::regions::{find_regions, Region};
use super::roi::check_roi;
use crate::{Error, Result};

/// Per-call options of [`assess`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssessOptions<'a> {
    /// Regions smaller than this many pixels are dropped. Default 1 (keep all).
    pub min_region_area: usize,
    /// At most this many regions are returned (the highest peaks). Default 256: enough for
    /// any real part, and a bound for callers with fixed buffers (C).
    pub max_regions: usize,
    /// Which pixels are inspected: image-size, row-major, nonzero = inspect. `None`
    /// (default) inspects all.
    pub roi: Option<&'a [u8]>,
}

impl Default for AssessOptions<'_> {
    fn default() -> Self {
        AssessOptions {
            min_region_area: 1,
            max_regions: 256,
            roi: None,
        }
    }
}

/// The verdict on one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// The image score, by the calibration's policy, inside the ROI.
    pub image_score: f32,
    /// `image_score / image_threshold`: 1.0 is the threshold (see
    /// [`Calibration::normalised`]).
    pub normalised_score: f32,
    /// Pass, review or fail, from the calibration's thresholds.
    pub decision: Decision,
    /// The image score's conformal p-value against the calibration's normal scores
    /// ([`Calibration::p_value`]): small is unlike any good part.
    #[serde(default = "one")]
    pub p_value: f64,
    /// Defect regions, highest peak first, at most `max_regions`.
    pub regions: Vec<Region>,
    /// How many regions met the minimum area, including any beyond `max_regions`.
    pub regions_found: usize,
}

fn one() -> f64 {
    1.0
}

/// Assesses the row-major `width` x `height` anomaly `map` at image size (after smoothing,
/// as [`super::map_to_image`] makes it) with `calibration`.
///
/// The image score uses the calibration's [`Calibration::score_policy`] (thresholds only
/// mean something for scores made the same way). With an ROI, both the image score and the
/// regions consider only the pixels inside it, so a hot spot outside the ROI can neither
/// fail the part nor show as a region; the calibration's normal scores should then have
/// been computed with the same ROI. Regions are the 8-connected components of pixels
/// strictly above the pixel threshold ([`find_regions`]).
///
/// [`crate::ErrorKind::InvalidArgument`] if `map.len() != width * height`, the map is
/// empty or has a NaN, or the ROI has the wrong size or selects nothing.
pub fn assess(
    map: &[f32],
    width: usize,
    height: usize,
    calibration: &Calibration,
    options: &AssessOptions<'_>,
) -> Result<Assessment> {
    if width.checked_mul(height) != Some(map.len()) || map.is_empty() {
        return Err(Error::invalid_argument(format!(
            "a {width} x {height} anomaly map needs {} values, got {}",
            width.saturating_mul(height),
            map.len()
        )));
    }
    check_roi(options.roi, width, height)?;
    let score = image_score(map, options.roi, calibration.score_policy())?;
    let mut regions = find_regions(
        map,
        width,
        height,
        calibration.pixel_threshold(),
        options.roi,
        options.min_region_area,
    )?;
    let regions_found = regions.len();
    regions.truncate(options.max_regions);
    Ok(Assessment {
        image_score: score,
        normalised_score: calibration.normalised(score),
        decision: calibration.decide(score),
        p_value: calibration.p_value(score),
        regions,
        regions_found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{CalibrationConfig, ImageScore};
    use crate::ErrorKind;

    fn calibration(policy: ImageScore) -> Calibration {
        let scores = [1.0, 1.1, 1.2, 1.3, 1.4];
        let maps: Vec<Vec<f32>> = scores.iter().map(|&s| vec![0.5, s]).collect();
        let refs: Vec<&[f32]> = maps.iter().map(|m| m.as_slice()).collect();
        let config = CalibrationConfig {
            score_policy: policy,
            // 5 scores: the largest is the review threshold for rates of 1/6 and more.
            target_false_reject_rate: 0.2,
            target_false_fail_rate: 0.0,
            ..Default::default()
        };
        Calibration::fit(&scores, &refs, &config).unwrap()
    }

    #[test]
    fn pass_review_fail_with_regions() {
        let c = calibration(ImageScore::Max);
        assert_eq!(c.pixel_threshold(), 1.4);
        assert!(c.review_threshold() > 1.4 && c.review_threshold() < 1.4001);
        let fail = c.fail_threshold();
        let (w, h) = (6, 4);
        let mut map = vec![0.2f32; w * h];
        let a = assess(&map, w, h, &c, &AssessOptions::default()).unwrap();
        assert_eq!((a.decision, a.regions_found), (Decision::Pass, 0));
        assert!((a.normalised_score - 0.2 / 1.4).abs() < 1e-6);
        assert_eq!(a.p_value, 1.0);
        // The highest normal image passes and shows no region.
        map[3] = 1.4;
        let a = assess(&map, w, h, &c, &AssessOptions::default()).unwrap();
        assert_eq!((a.decision, a.regions_found), (Decision::Pass, 0));

        map[7] = 1.45;
        let a = assess(&map, w, h, &c, &AssessOptions::default()).unwrap();
        assert_eq!(a.decision, Decision::Review);
        assert_eq!(a.regions.len(), 1);
        assert_eq!((a.regions[0].peak_x, a.regions[0].peak_y), (1, 1));

        map[22] = fail + 1.0;
        map[23] = 2.0;
        let options = AssessOptions {
            max_regions: 1,
            ..Default::default()
        };
        let a = assess(&map, w, h, &c, &options).unwrap();
        assert_eq!(a.decision, Decision::Fail);
        assert_eq!(
            (a.regions_found, a.regions.len(), a.regions[0].area),
            (2, 1, 2)
        );
        assert_eq!(a.image_score, fail + 1.0);

        // Outside the ROI the fail spot does not count.
        let mut roi = vec![1u8; w * h];
        roi[22] = 0;
        roi[23] = 0;
        let options = AssessOptions {
            roi: Some(&roi),
            ..Default::default()
        };
        let a = assess(&map, w, h, &c, &options).unwrap();
        assert_eq!(
            (a.decision, a.regions_found, a.image_score),
            (Decision::Review, 1, 1.45)
        );
    }

    #[test]
    fn uses_the_calibration_policy() {
        let c = calibration(ImageScore::TopKMean { k: 2 });
        let map = [0.0, 1.0, 3.0, 0.0];
        let a = assess(&map, 2, 2, &c, &AssessOptions::default()).unwrap();
        assert_eq!(a.image_score, 2.0);
    }

    #[test]
    fn bad_input_is_refused() {
        let c = calibration(ImageScore::Max);
        let kind = |r: Result<Assessment>| r.unwrap_err().kind();
        let o = AssessOptions::default();
        assert_eq!(
            kind(assess(&[0.0; 5], 2, 3, &c, &o)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kind(assess(&[], 0, 0, &c, &o)), ErrorKind::InvalidArgument);
        assert_eq!(
            kind(assess(&[0.0, f32::NAN], 2, 1, &c, &o)),
            ErrorKind::InvalidArgument
        );
        let roi = [1u8; 3];
        let o = AssessOptions {
            roi: Some(&roi),
            ..o
        };
        assert_eq!(
            kind(assess(&[0.0; 2], 2, 1, &c, &o)),
            ErrorKind::InvalidArgument
        );
    }
}
