//! Evaluation: detection quality on labelled data sets, VarAD against a PatchCore
//! baseline on the same backbone (issue #6).
//!
//! - [`dataset`] reads the MVTec AD, VisA and BTAD layouts.
//! - [`metrics`] computes exact AUROC, AP and max-F1, per pixel and per image.
//! - [`patchcore`] is the baseline.
//! - [`harness`] trains each method per category, scores the test split and collects the
//!   numbers into a [`report::Report`] (JSON and Markdown) and a [`montage`] per category.
//!
//! Both methods are used through [`Scorer`], so the harness treats them alike.

pub mod dataset;
pub mod harness;
pub mod metrics;
pub mod montage;
pub mod patchcore;
pub mod report;

use crate::image::ImageView;
use crate::model::{Model, ScoreOptions, ScoreResult};
use crate::Result;

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
}

/// A trained detector the harness can score test images with.
pub trait Scorer {
    /// The method's name in reports.
    fn name(&self) -> &str;

    /// Anomaly maps and image scores of a batch.
    fn score_maps(&self, images: &[ImageView]) -> Result<Vec<ScoredMap>>;
}

impl From<ScoreResult> for ScoredMap {
    fn from(r: ScoreResult) -> Self {
        ScoredMap {
            map: r.map,
            width: r.width,
            height: r.height,
            image_score: r.image_score,
        }
    }
}

impl Scorer for Model {
    fn name(&self) -> &str {
        "VarAD"
    }

    fn score_maps(&self, images: &[ImageView]) -> Result<Vec<ScoredMap>> {
        Ok(self
            .score(images, &ScoreOptions::default())?
            .into_iter()
            .map(ScoredMap::from)
            .collect())
    }
}

impl<S: Scorer + ?Sized> Scorer for std::sync::Arc<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn score_maps(&self, images: &[ImageView]) -> Result<Vec<ScoredMap>> {
        (**self).score_maps(images)
    }
}
