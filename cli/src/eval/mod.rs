//! Evaluation: detection quality on labelled data sets, VarAD against a PatchCore
//! baseline on the same backbone.
//!
//! - [`dataset`] reads the MVTec AD, VisA and BTAD layouts.
//! - [`decision_tables`] re-fits each method's calibration on its stored normal scores
//!   and sets the decisions on the test split against what the calibration promised.
//! - [`metrics`] computes exact AUROC, AP and max-F1, per pixel and per image.
//! - [`patchcore`] is the baseline.
//! - [`harness`] trains each method per category, scores the test split and collects the
//!   numbers into a [`report::Report`] (JSON and Markdown) and a [`montage`] per category.
//!
//! Both methods are used through [`Scorer`], so the harness treats them alike.

pub mod dataset;
pub mod decision_tables;
pub mod harness;
pub mod metrics;
pub mod montage;
pub mod patchcore;
pub mod report;

use varad::image::InputGeometry;
use varad::model::{Model, ScoreOptions, ScoreResult};
use varad::score::{Calibration, Decision};
use varad::Result;

/// One image's anomaly map at the image's size, smoothed, and its image score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredMap {
    /// `height * width` values, row-major.
    pub map: Vec<f32>,
    /// The image's width.
    pub width: usize,
    /// The image's height.
    pub height: usize,
    /// The image score (the map's maximum by default).
    pub image_score: f32,
    /// Pass, review or fail at the method's calibrated thresholds; `None` for a method
    /// or map normalisation without a calibration.
    pub decision: Option<Decision>,
}

/// A trained detector the harness can score test images with.
///
/// Every detector of a run is built on the same backbone and configuration, so the
/// harness runs the backbone once per test image and hands its level maps to each
/// detector: what a method costs after the backbone is timed directly, and every method
/// sees the same maps.
pub trait Scorer {
    /// The method's name in reports.
    fn name(&self) -> &str;

    /// One image's anomaly map and image score from its backbone level maps, concatenated
    /// as [`Model::features`] gives them for the detector's configuration.
    fn score_features(&self, features: &[f32], geometry: &InputGeometry) -> Result<ScoredMap>;

    /// The calibration the decisions are made with, if the method has one whose image
    /// scores it applies to (its normal scores by source, so the decision tables can
    /// re-fit it).
    fn calibration(&self) -> Option<&Calibration> {
        None
    }
}

impl From<ScoreResult> for ScoredMap {
    fn from(r: ScoreResult) -> Self {
        ScoredMap {
            map: r.map,
            width: r.width,
            height: r.height,
            image_score: r.image_score,
            decision: r.assessment.map(|a| a.decision),
        }
    }
}

impl Scorer for Model {
    fn name(&self) -> &str {
        "VarAD"
    }

    fn score_features(&self, features: &[f32], geometry: &InputGeometry) -> Result<ScoredMap> {
        self.score_one_features(features, geometry, &ScoreOptions::default())
            .map(ScoredMap::from)
    }

    fn calibration(&self) -> Option<&Calibration> {
        Model::calibration(self)
    }
}

impl<S: Scorer + ?Sized> Scorer for std::sync::Arc<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn score_features(&self, features: &[f32], geometry: &InputGeometry) -> Result<ScoredMap> {
        (**self).score_features(features, geometry)
    }

    fn calibration(&self) -> Option<&Calibration> {
        (**self).calibration()
    }
}
