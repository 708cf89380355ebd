//! Scoring with a model: images to anomaly maps at their own size, image scores, and,
//! once calibrated, the decision and the defect regions.

use std::sync::Arc;

use crate::image::{ImageView, InputGeometry};
use crate::score::{assess, image_score, map_to_image, AssessOptions, Assessment, Calibration};
use crate::{Error, ErrorKind, Result};

use super::{MapNorm, MapSettings, Model, NeighbourTerm, NormalStats, Weights};

/// Per-call scoring options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScoreOptions<'a> {
    /// Also return the raw map on the finest token grid (before resizing and smoothing).
    pub raw_map: bool,
    /// Inspect only where this mask (one byte per image pixel, non-zero = inspect) is set;
    /// the image score and the regions ignore the rest. All images of the call must then
    /// have the mask's size.
    pub roi: Option<&'a [u8]>,
    /// Score with this map normalisation instead of the configured one (to compare them on
    /// one trained model). The calibration was made with the configured one, so with
    /// another the results carry no assessment.
    pub map_norm: Option<MapNorm>,
    /// Score with this nearest-neighbour weight instead of the configured one; as
    /// `map_norm`, the results then carry no assessment.
    pub neighbour_weight: Option<f32>,
    /// Score with this nearest-neighbour term instead of the configured one; as
    /// `map_norm`, the results then carry no assessment.
    pub neighbour_term: Option<NeighbourTerm>,
    /// Search the neighbour banks probing this many cells instead of the configured
    /// number (0 = exact); as `map_norm`, the results then carry no assessment.
    pub neighbour_probes: Option<usize>,
}

/// The raw anomaly map on the finest token grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GridMap {
    /// Grid rows.
    pub height: usize,
    /// Grid columns.
    pub width: usize,
    /// `height * width` values, row-major.
    pub values: Vec<f32>,
}

/// The result of scoring one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreResult {
    /// The anomaly map at the image's size, `height * width` values, row-major, smoothed.
    pub map: Vec<f32>,
    /// The image's width.
    pub width: usize,
    /// The image's height.
    pub height: usize,
    /// The image score under the configured policy (the map's maximum by default).
    pub image_score: f32,
    /// Normalised score, decision and defect regions; `None` only when scored with map
    /// settings other than the calibrated ones ([`ScoreOptions::map_norm`] and the
    /// neighbour overrides).
    pub assessment: Option<Assessment>,
    /// The raw token-grid map, when asked for.
    pub raw_map: Option<GridMap>,
}

impl Model {
    /// The calibration (thresholds from held-out normal images), if the model has one.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// Replaces the calibration (to change thresholds at run time without retraining).
    pub fn set_calibration(&mut self, calibration: Calibration) {
        self.calibration = Some(calibration);
    }

    /// Whether the model is trained: [`Model::fit`] ends by calibrating it, and the file of
    /// a trained model carries its calibration, so a model is trained exactly when it is
    /// calibrated. An untrained model's scores would mean nothing: [`Model::score`]
    /// refuses them.
    pub fn is_trained(&self) -> bool {
        self.calibration.is_some()
    }

    /// [`ErrorKind::NotTrained`] unless the model is trained.
    fn check_trained(&self) -> Result<()> {
        if self.is_trained() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::NotTrained,
            "the model is untrained: its map and score would mean nothing; train it first, \
             or load a trained model's file",
        ))
    }

    /// Scores a batch of images. Takes `&self`: any number of threads may score with one
    /// model at once, and each gets exactly what a serial call would.
    /// [`ErrorKind::NotTrained`] for an untrained model.
    pub fn score(&self, images: &[ImageView], options: &ScoreOptions) -> Result<Vec<ScoreResult>> {
        if let Some(roi) = options.roi {
            for (i, image) in images.iter().enumerate() {
                let pixels = image.width() as usize * image.height() as usize;
                if roi.len() != pixels {
                    return Err(Error::invalid_argument(format!(
                        "image {i} is {}x{} ({pixels} pixels) but the ROI mask has {} bytes",
                        image.width(),
                        image.height(),
                        roi.len()
                    )));
                }
            }
        }
        self.check_batch_memory(images)?;
        let features = self.features(images)?;
        // After the images' checks (the tokenizer's): they hold whatever state the model
        // is in.
        self.check_trained()?;
        features
            .iter()
            .map(|(values, geometry)| self.score_one_features(values, geometry, options))
            .collect()
    }

    /// Scores one image from its backbone level maps, concatenated as [`Model::features`]
    /// gives them (`values_per_image` floats), in the model's thread pool: what
    /// [`Model::score`] does after the backbone. [`ErrorKind::NotTrained`] for an untrained
    /// model.
    pub fn score_one_features(
        &self,
        features: &[f32],
        geometry: &InputGeometry,
        options: &ScoreOptions,
    ) -> Result<ScoreResult> {
        self.check_trained()?;
        self.check_feature_count(features)?;
        let weights = Arc::clone(&self.weights);
        let stats = self.normal_stats().map(|s| s.as_ref());
        self.install(|| self.score_features(&weights, stats, features, geometry, options))
    }

    /// [`ErrorKind::InvalidArgument`] unless `features` holds one image's level maps
    /// (`values_per_image` floats), for whatever scores them.
    pub fn check_feature_count(&self, features: &[f32]) -> Result<()> {
        if features.len() != self.values_per_image() {
            return Err(Error::invalid_argument(format!(
                "{} feature values given, but this model's levels hold {} per image",
                features.len(),
                self.values_per_image()
            )));
        }
        Ok(())
    }

    /// The memory a scoring call on `images` needs at its peak, estimated from sizes
    /// alone, checked against `score.max_batch_bytes` before any work
    /// ([`ErrorKind::BatchTooLarge`]). Per image: the backbone input (3 planes of f32),
    /// the used levels' backbone outputs and our copy of them (f32, counted twice), and at
    /// the image's size the map, its smoothing scratch and the result (3 f32 a pixel).
    fn check_batch_memory(&self, images: &[ImageView]) -> Result<()> {
        let input = self.tokenizer().input();
        let input_bytes = 3 * 4 * u64::from(input.width) * u64::from(input.height);
        let feature_bytes = 2 * 4 * self.values_per_image() as u64;
        let needed = images.iter().fold(0u64, |sum, image| {
            let pixels = u64::from(image.width()) * u64::from(image.height());
            sum.saturating_add(input_bytes + feature_bytes)
                .saturating_add(pixels.saturating_mul(12))
        });
        let limit = self.config.score.max_batch_bytes;
        if needed > limit {
            return Err(Error::new(
                ErrorKind::BatchTooLarge,
                format!(
                    "scoring these {} images at once needs about {needed} bytes, more than \
                     the limit of {limit} bytes (max_batch_bytes): score fewer or smaller \
                     images per call, or raise the limit",
                    images.len()
                ),
            ));
        }
        Ok(())
    }

    /// Scores one image's cached level maps with `weights` and normal statistics `stats`
    /// (training uses this for calibration images, before the model holds either).
    pub(crate) fn score_features(
        &self,
        weights: &Weights,
        stats: Option<&NormalStats>,
        features: &[f32],
        geometry: &InputGeometry,
        options: &ScoreOptions,
    ) -> Result<ScoreResult> {
        let (grid_h, grid_w) = self.finest_grid();
        let configured = MapSettings::configured(&self.config);
        let settings = MapSettings {
            map_norm: options.map_norm.unwrap_or(configured.map_norm),
            neighbour_weight: options
                .neighbour_weight
                .unwrap_or(configured.neighbour_weight),
            neighbour_term: options.neighbour_term.unwrap_or(configured.neighbour_term),
            neighbour_probes: options
                .neighbour_probes
                .unwrap_or(configured.neighbour_probes),
        };
        let raw = self.raw_map_normalised(weights, stats, &settings, features)?;
        let map = map_to_image(&raw, grid_h, grid_w, geometry, self.config.score.sigma)?;
        // A NaN here is the model's (its weights or statistics), not the caller's.
        crate::score::check_model_map(&map, geometry.image_width as usize)?;
        let (width, height) = (
            geometry.image_width as usize,
            geometry.image_height as usize,
        );
        let policy = self.config.score.calibration.score_policy;
        let image_score = image_score(&map, options.roi, policy)?;
        if !image_score.is_finite() {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("the anomaly map has a non-finite score {image_score}"),
            ));
        }
        let assessment = match &self.calibration {
            Some(calibration) if settings == configured => Some(assess(
                &map,
                width,
                height,
                calibration,
                &AssessOptions {
                    min_region_area: self.config.score.min_region_area,
                    roi: options.roi,
                    ..Default::default()
                },
            )?),
            _ => None,
        };
        Ok(ScoreResult {
            map,
            width,
            height,
            image_score,
            assessment,
            raw_map: options.raw_map.then_some(GridMap {
                height: grid_h,
                width: grid_w,
                values: raw,
            }),
        })
    }
}
