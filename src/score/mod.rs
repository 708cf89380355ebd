//! Scoring: from the raw anomaly map on the backbone's token grid to what inspection
//! software consumes.
//!
//! - [`resize_bilinear`] brings a coarser level's map onto the finest token grid (the
//!   model layer sums the levels).
//! - [`map_to_image`] turns the grid map into the map at the image's own size, smoothed
//!   ([`gaussian_smooth`] is the same smoothing for maps already at their size).
//! - [`image_score`] reduces a map to one number ([`ImageScore`]).
//! - [`Calibration::fit`] derives thresholds from held-out normal images.
//! - [`assess`] gives the score, its normalised value, the [`Decision`] and the defect
//!   [`Region`]s of one image.
//!
//! This stage knows nothing of the predictor or of C. Its parallel loops run on the
//! current rayon pool, so a caller bounds the threads by installing its own pool; every
//! result is bit-identical for any thread count.
//!
//! ```
//! use varad::image::{InputGeometry, InputSpec};
//! use varad::score::{assess, image_score, map_to_image, AssessOptions, Calibration,
//!                    CalibrationConfig, Decision, DEFAULT_SIGMA_PX};
//!
//! // A 4 x 4 token map over a 64 x 64 input, for a 100 x 80 image.
//! let geometry = InputGeometry::new(100, 80, &InputSpec::new(64, 64));
//! let normal: Vec<Vec<f32>> = (0..5)
//!     .map(|i| map_to_image(&[1.0 + 0.1 * i as f32; 16], 4, 4, &geometry, DEFAULT_SIGMA_PX))
//!     .collect::<Result<_, _>>()?;
//! let config = CalibrationConfig::default();
//! let scores: Vec<f32> = normal
//!     .iter()
//!     .map(|m| image_score(m, None, config.score_policy))
//!     .collect::<Result<_, _>>()?;
//! let maps: Vec<&[f32]> = normal.iter().map(|m| m.as_slice()).collect();
//! let calibration = Calibration::fit(&scores, &maps, &config)?;
//!
//! let mut grid = [1.0f32; 16];
//! grid[5] = 9.0; // a defect
//! let map = map_to_image(&grid, 4, 4, &geometry, DEFAULT_SIGMA_PX)?;
//! let verdict = assess(&map, 100, 80, &calibration, &AssessOptions::default())?;
//! assert_eq!(verdict.decision, Decision::Fail);
//! assert_eq!(verdict.regions.len(), 1);
//! # Ok::<(), varad::Error>(())
//! ```

mod assess;
pub(crate) mod axis;
mod calibration;
mod conformal;
mod decision;
mod heatmap;
mod image_map;
mod image_score;
mod quantile;
#[cfg(any(test, feature = "internals"))]
pub mod reference;
mod regions;
// Only the score bench's staged baseline resizes whole maps; the library's own path
// (`map_to_image`) resamples once, cropped, at the image size.
#[cfg(any(test, feature = "internals"))]
mod resize;
mod roi;
mod smooth;
#[cfg(test)]
mod test_util;

pub use assess::{assess, AssessOptions, Assessment};
pub use calibration::{
    BeyondData, Calibration, CalibrationConfig, CalibrationReport, NormalPool, RateReport,
    ScoreStats, MIN_NORMAL_IMAGES, REPORT_CONFIDENCE,
};
pub use decision::Decision;
pub use heatmap::grey_levels;
pub use image_map::map_to_image;
pub use image_score::{check_model_map, image_score, ImageScore};
// The evaluation harness calibrates its baseline with the same pixel rule.
#[cfg(feature = "internals")]
pub use conformal::beta_quantile;
#[cfg(feature = "internals")]
pub use quantile::StreamingQuantile;
#[cfg(not(feature = "internals"))]
pub(crate) use quantile::StreamingQuantile;
pub use regions::{find_regions, Region};
#[cfg(any(test, feature = "internals"))]
pub use resize::resize_bilinear;
pub use roi::check_roi;
pub use smooth::{gaussian_smooth, kernel_radius, DEFAULT_SIGMA_PX, MAX_SIGMA_PX};
