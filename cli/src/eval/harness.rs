//! The evaluation run: per category, train each method on the normal training images,
//! score every test image with each, and turn the maps into metrics, breakdowns and a
//! montage.
//!
//! Both methods are calibrated the same way: on out-of-sample normal scores of their own
//! training images (cross-fitted) and of the held-out images, the same images for both
//! (VarAD's split, [`calibration_plan`]); each method's decision tables then re-fit its
//! thresholds on the cross-fitted scores alone and on the whole pool
//! ([`super::decision_tables`]).
//!
//! The test split is read once: each image is decoded, scored by every method, and its
//! pixel scores kept split by label and sorted (4 bytes a pixel per method; metrics over
//! any group of images merge the per-image runs, see [`super::metrics::union_metrics`]). Only tile-sized copies of the maps are kept for the
//! montage.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::dataset::{read_mask, Category, Dataset};
use super::decision_tables::decision_tables;
use super::metrics::{union_metrics, Metrics, ScoreSet};
use super::montage::{render, to_rgb8, MontageRow};
use super::patchcore::{PatchCore, PatchCoreConfig};
use super::report::{Breakdown, CategoryReport, Decisions, MethodResult, NormalScores, Report};
use super::{ScoredMap, Scorer};
use varad::image::{
    read_image_file, write_png, ImageLimits, ImageView, InputGeometry, OwnedImage, PixelFormat,
};
use varad::model::{MapNorm, NeighbourTerm, ScoreOptions};
use varad::score::{
    image_score, Calibration, CalibrationConfig, Decision, ImageScore, NormalPool,
    StreamingQuantile,
};
use varad::train::{calibration_plan, TrainingSet};
use varad::{Config, Error, Model, Result};

/// A detection method the harness can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// This library's model.
    Varad,
    /// The PatchCore baseline on the same backbone levels.
    PatchCore,
}

impl Method {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Varad => "VarAD",
            Method::PatchCore => "PatchCore",
        }
    }
}

/// What to run and where to write pictures.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The model configuration; PatchCore uses its backbone, levels, input size, smoothing
    /// and image-score policy.
    pub config: Config,
    /// The methods, in report order.
    pub methods: Vec<Method>,
    /// The baseline's settings.
    pub patchcore: PatchCoreConfig,
    /// Test images shown per montage (spread over the test list); 0 = no montage.
    pub montage_images: usize,
    /// Montage tile side in pixels.
    pub montage_tile: usize,
    /// Where montages are written (`montage_<category>.png`); `None` = not written.
    pub out_dir: Option<PathBuf>,
    /// Also score VarAD with these map normalisations (one report row each, from the
    /// same trained model; the configured one is the plain `VarAD` row).
    pub map_norms: Vec<MapNorm>,
    /// Also score VarAD with these nearest-neighbour weights, each with the configured
    /// term and with every term of `neighbour_terms` (a row each, same trained model).
    pub neighbour_weights: Vec<f32>,
    /// Also score VarAD with these nearest-neighbour terms, each with the configured
    /// weight and with every weight of `neighbour_weights`.
    pub neighbour_terms: Vec<NeighbourTerm>,
    /// Also score VarAD searching its neighbour banks with these numbers of probed cells
    /// (0 = exact), each with the configured weight and term (a row each).
    pub neighbour_probes: Vec<usize>,
    /// Also report VarAD with the image score the mean of the map's top k pixels, for
    /// each k here (a row each, the configured model's maps, without decisions).
    pub top_k: Vec<usize>,
    /// Folds the PatchCore baseline's training images are cross-fitted in for its
    /// calibration (0: none, its held-out images alone calibrate it). Default: the folds
    /// of the configuration's training, so both methods are calibrated the same way.
    pub cross_fit_folds: usize,
}

impl EvalOptions {
    /// Both methods, 12-image montages of 256-pixel tiles, nothing written.
    pub fn new(config: Config) -> Self {
        EvalOptions {
            methods: vec![Method::Varad, Method::PatchCore],
            patchcore: PatchCoreConfig::default(),
            montage_images: 12,
            montage_tile: 256,
            out_dir: None,
            cross_fit_folds: config.train.cross_fit_folds,
            config,
            map_norms: Vec::new(),
            neighbour_weights: Vec::new(),
            neighbour_terms: Vec::new(),
            neighbour_probes: Vec::new(),
            top_k: Vec::new(),
        }
    }
}

fn read(path: &Path) -> Result<OwnedImage> {
    read_image_file(path, &ImageLimits::default())
}

/// VarAD scored with other map settings than it was calibrated with (a report row of its
/// own, without decisions).
struct VaradVariant {
    model: Arc<Model>,
    map_norm: Option<MapNorm>,
    neighbour_weight: Option<f32>,
    neighbour_term: Option<NeighbourTerm>,
    neighbour_probes: Option<usize>,
    /// The image score as the mean of the map's top k pixels instead of the configured
    /// policy.
    top_k: Option<usize>,
    name: String,
}

impl VaradVariant {
    /// `model` scored as configured, under the row name `name`: each variant changes one
    /// or two of the settings from here.
    fn named(model: &Arc<Model>, name: String) -> VaradVariant {
        VaradVariant {
            model: Arc::clone(model),
            map_norm: None,
            neighbour_weight: None,
            neighbour_term: None,
            neighbour_probes: None,
            top_k: None,
            name,
        }
    }
}

impl Scorer for VaradVariant {
    fn name(&self) -> &str {
        &self.name
    }

    fn score_features(&self, features: &[f32], geometry: &InputGeometry) -> Result<ScoredMap> {
        let options = ScoreOptions {
            map_norm: self.map_norm,
            neighbour_weight: self.neighbour_weight,
            neighbour_term: self.neighbour_term,
            neighbour_probes: self.neighbour_probes,
            ..Default::default()
        };
        let mut scored = self
            .model
            .score_one_features(features, geometry, &options)
            .map(ScoredMap::from)?;
        if let Some(k) = self.top_k {
            scored.image_score = image_score(&scored.map, None, ImageScore::TopKMean { k })?;
            scored.decision = None;
        }
        Ok(scored)
    }
}

/// A trained method with its training time: one scorer, or for VarAD one per map
/// normalisation asked for.
struct Trained {
    scorers: Vec<Box<dyn Scorer>>,
    seconds: f64,
    final_loss: Option<f64>,
    variance_ratios: Vec<f64>,
    /// Time spent on out-of-sample normal scores and the calibration, when measured apart
    /// from `seconds`.
    calibration_seconds: Option<f64>,
}

/// Which of `n` training images train and which are held back for calibration, as VarAD's
/// training splits them (so both methods see the same images): `(train, held out)`.
fn held_out_split(n: usize, config: &Config) -> Result<(Vec<usize>, Vec<usize>)> {
    let t = &config.train;
    let plan = calibration_plan(
        n,
        t.calibration_fraction,
        t.min_calibration_images,
        t.cross_fit_folds,
        config.seed,
    )?;
    Ok((plan.train, plan.held_out))
}

/// The pixel threshold of a calibration on `maps`: the `q`-quantile of all their pixels
/// (rank `ceil(q * N)`, no interpolation; the largest pixel at `q = 1`), the rule VarAD's
/// calibration uses.
fn pixel_quantile(maps: &[&[f32]], q: f64) -> Result<f32> {
    let n: usize = maps.iter().map(|m| m.len()).sum();
    if n == 0 {
        return Err(Error::config("calibration: the normal maps are empty"));
    }
    let mut quantile = StreamingQuantile::new(n, q);
    for map in maps {
        quantile.push(map)?;
    }
    quantile.finish()
}

fn train(
    method: Method,
    category: &Category,
    options: &EvalOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Trained> {
    let mut busy = Duration::ZERO;
    match method {
        Method::Varad => {
            let mut model = Model::new(options.config.clone())?;
            let mut set = TrainingSet::new(&model);
            for path in &category.train {
                let image = read(path)?;
                let start = Instant::now();
                set.add(&model, &[image.view()])
                    .map_err(|e| e.context(path.display()))?;
                busy += start.elapsed();
            }
            let start = Instant::now();
            let report = model.fit(&set, |p| {
                if p.step == p.steps || p.step % (p.steps / p.epochs).max(1) == 0 {
                    log(&format!(
                        "  VarAD epoch {}/{} loss {:.4} ({:.0}s, about {:.0}s left)",
                        p.epoch,
                        p.epochs,
                        p.loss,
                        p.elapsed.as_secs_f64(),
                        p.remaining.as_secs_f64()
                    ));
                }
                ControlFlow::Continue(())
            })?;
            busy += start.elapsed();
            log(&format!(
                "  VarAD trained on {} images ({} held back for calibration) in {:.1}s",
                report.train_images,
                report.calibration_images.len(),
                busy.as_secs_f64()
            ));
            let model = Arc::new(model);
            let configured = model.config().score.map_norm;
            let mut scorers: Vec<Box<dyn Scorer>> = vec![Box::new(Arc::clone(&model))];
            for &norm in options.map_norms.iter().filter(|&&n| n != configured) {
                scorers.push(Box::new(VaradVariant {
                    map_norm: Some(norm),
                    ..VaradVariant::named(&model, format!("VarAD [map_norm={norm}]"))
                }));
            }
            let score = &model.config().score;
            // Each setting asked for, besides the configured one (None), once.
            fn others<T: Copy + PartialEq>(asked: &[T], configured: T) -> Vec<Option<T>> {
                std::iter::once(None)
                    .chain(asked.iter().filter(|&&v| v != configured).map(|&v| Some(v)))
                    .collect()
            }
            let weights = others(&options.neighbour_weights, score.neighbour_weight);
            let terms = others(&options.neighbour_terms, score.neighbour_term);
            for &weight in &weights {
                for &term in &terms {
                    let mut changed = Vec::new();
                    if let Some(w) = weight {
                        changed.push(format!("neighbour_weight={w}"));
                    }
                    if let Some(t) = term {
                        changed.push(format!("neighbour_term={}", t.name()));
                    }
                    if changed.is_empty() {
                        continue;
                    }
                    scorers.push(Box::new(VaradVariant {
                        neighbour_weight: weight,
                        neighbour_term: term,
                        ..VaradVariant::named(&model, format!("VarAD [{}]", changed.join(", ")))
                    }));
                }
            }
            for probes in others(&options.neighbour_probes, score.neighbour_probes)
                .into_iter()
                .flatten()
            {
                scorers.push(Box::new(VaradVariant {
                    neighbour_probes: Some(probes),
                    ..VaradVariant::named(&model, format!("VarAD [neighbour_probes={probes}]"))
                }));
            }
            for &k in &options.top_k {
                scorers.push(Box::new(VaradVariant {
                    top_k: Some(k),
                    ..VaradVariant::named(&model, format!("VarAD [image_score=top_{k}_mean]"))
                }));
            }
            Ok(Trained {
                scorers,
                seconds: busy.as_secs_f64(),
                final_loss: report.epoch_losses.last().copied(),
                variance_ratios: report.variance_ratios.last().cloned().unwrap_or_default(),
                calibration_seconds: Some(report.calibration_elapsed.as_secs_f64()),
            })
        }
        Method::PatchCore => {
            let model = Model::new(options.config.clone())?;
            let mut pc = PatchCore::new(model, options.patchcore.clone())?;
            let (train, held_out) = held_out_split(category.train.len(), &options.config)?;
            for &i in &train {
                let path = &category.train[i];
                let image = read(path)?;
                let start = Instant::now();
                pc.add(&[image.view()])
                    .map_err(|e| e.context(path.display()))?;
                busy += start.elapsed();
            }
            let mut calibrating = Duration::ZERO;
            let mut held_features = Vec::new();
            for &i in &held_out {
                let path = &category.train[i];
                let image = read(path)?;
                let start = Instant::now();
                held_features.extend(
                    pc.model()
                        .features(&[image.view()])
                        .map_err(|e| e.context(path.display()))?,
                );
                calibrating += start.elapsed();
            }
            let start = Instant::now();
            let folds = options.cross_fit_folds.min(train.len());
            let cross_fitted = if folds >= 2 {
                pc.cross_fit(folds)?
            } else {
                Vec::new()
            };
            let cross_fit_time = start.elapsed();
            calibrating += cross_fit_time;
            let start = Instant::now();
            pc.fit()?;
            busy += start.elapsed();
            let start = Instant::now();
            let calibration = calibrate_baseline(
                &pc,
                &cross_fitted,
                folds,
                &held_features,
                &options.config.score.calibration,
            )
            .map_err(|e| e.context("PatchCore calibration"))?;
            let pool = calibration.pool().clone();
            pc.set_calibration(calibration);
            calibrating += start.elapsed();
            log(&format!(
                "  PatchCore memory banks {:?} tokens from {} images ({} held back for calibration), \
                 built in {:.1}s; calibrated on {} cross-fitted ({} folds, {:.1}s) and {} held-out scores in {:.1}s",
                pc.bank_sizes(),
                train.len(),
                held_out.len(),
                busy.as_secs_f64(),
                pool.cross_fitted.len(),
                pool.folds,
                cross_fit_time.as_secs_f64(),
                pool.held_out.len(),
                calibrating.as_secs_f64()
            ));
            Ok(Trained {
                scorers: vec![Box::new(pc)],
                seconds: busy.as_secs_f64(),
                final_loss: None,
                variance_ratios: Vec::new(),
                calibration_seconds: Some(calibrating.as_secs_f64()),
            })
        }
    }
}

/// The baseline's calibration, fitted as VarAD's is: on its cross-fitted training images'
/// scores (`folds` folds; none when empty) and the held-out images' scores against its
/// final banks, with the pixel threshold by the same quantile rule over their maps.
fn calibrate_baseline(
    pc: &PatchCore,
    cross_fitted: &[ScoredMap],
    folds: usize,
    held_out: &[(Vec<f32>, InputGeometry)],
    config: &CalibrationConfig,
) -> Result<Calibration> {
    let held: Vec<ScoredMap> = held_out
        .iter()
        .map(|(features, geometry)| pc.score_features(features, geometry))
        .collect::<Result<_>>()?;
    let maps: Vec<&[f32]> = cross_fitted
        .iter()
        .chain(&held)
        .map(|s| s.map.as_slice())
        .collect();
    let pool = NormalPool {
        cross_fitted: cross_fitted.iter().map(|s| s.image_score).collect(),
        held_out: held.iter().map(|s| s.image_score).collect(),
        folds: if cross_fitted.is_empty() { 0 } else { folds },
    };
    Calibration::fit_pool(&pool, pixel_quantile(&maps, config.pixel_quantile)?, config)
}

/// One method's scores over the test split.
#[derive(Default)]
struct Collected {
    /// Per test image, its pixels split by label.
    pixels: Vec<ScoreSet>,
    /// Per test image, its image score.
    images: Vec<f32>,
    /// Per test image, its decision at the calibrated thresholds, if the method has them.
    decisions: Vec<Option<Decision>>,
    /// Time spent scoring after the backbone.
    after_backbone: Duration,
}

/// Metrics over the test images `chosen` (indices into the test list); the per-image
/// pixel sets are merged, not copied.
fn subset_metrics(
    c: &Collected,
    category: &Category,
    chosen: &[usize],
) -> Result<(Metrics, Metrics)> {
    let pixels: Vec<&ScoreSet> = chosen.iter().map(|&i| &c.pixels[i]).collect();
    let mut images = ScoreSet::new();
    for &i in chosen {
        images.push(c.images[i], category.test[i].is_anomalous());
    }
    Ok((union_metrics(&pixels)?, images.metrics()?))
}

fn breakdown(
    c: &Collected,
    category: &Category,
    key: impl Fn(usize) -> Option<String>,
) -> Result<Vec<Breakdown>> {
    let good: Vec<usize> = (0..category.test.len())
        .filter(|&i| !category.test[i].is_anomalous())
        .collect();
    let keys: BTreeSet<String> = (0..category.test.len()).filter_map(&key).collect();
    keys.into_iter()
        .map(|k| {
            let mine: Vec<usize> = (0..category.test.len())
                .filter(|&i| key(i).as_ref() == Some(&k))
                .collect();
            let chosen: Vec<usize> = mine.iter().chain(&good).copied().collect();
            let (p, i) = subset_metrics(c, category, &chosen)?;
            Ok(Breakdown {
                subset: k,
                defective_images: mine.len(),
                pixel_auroc: p.auroc,
                pixel_ap: p.ap,
                image_auroc: i.auroc,
            })
        })
        .collect()
}

/// The decision table of a method that decided every test image.
fn decisions(c: &Collected, category: &Category) -> Option<Decisions> {
    let mut out = Decisions::default();
    for (d, sample) in c.decisions.iter().zip(&category.test) {
        let tally = if sample.is_anomalous() {
            &mut out.defective
        } else {
            &mut out.good
        };
        tally.add((*d)?);
    }
    Some(out)
}

/// Evaluates one category: trains every method, scores the test split, and (with an
/// output folder) writes its montage.
pub fn evaluate_category(
    category: &Category,
    options: &EvalOptions,
    log: &mut dyn FnMut(&str),
) -> Result<CategoryReport> {
    if options.methods.is_empty() {
        return Err(Error::invalid_argument("no method to evaluate"));
    }
    let mut trained = Vec::new();
    for &method in &options.methods {
        log(&format!("[{}] training {}", category.name, method.name()));
        trained.push(train(method, category, options, log)?);
    }
    let n = category.test.len();
    let shown: BTreeSet<usize> = match options.montage_images.min(n) {
        0 => BTreeSet::new(),
        k => (0..k).map(|i| i * n / k).collect(),
    };
    // One row per scorer, each with its method's training figures.
    let scorers: Vec<(&Trained, &dyn Scorer)> = trained
        .iter()
        .flat_map(|t| t.scorers.iter().map(move |s| (t, s.as_ref())))
        .collect();
    let mut collected: Vec<Collected> = (0..scorers.len()).map(|_| Collected::default()).collect();
    // The backbone runs once per test image; each method scores its level maps and is
    // timed alone, so the report can say what each costs after it.
    let backbone = Model::new(options.config.clone())?;
    let mut backbone_time = Duration::ZERO;
    let mut rows = Vec::new();
    log(&format!("[{}] scoring {n} test images", category.name));
    for (index, sample) in category.test.iter().enumerate() {
        let image = read(&sample.path)?;
        let view = image.view();
        let mask = match &sample.mask {
            Some(path) => Some(read_mask(path, image.width(), image.height())?),
            None => None,
        };
        let start = Instant::now();
        let (features, geometry) = backbone
            .features(&[view])
            .map_err(|e| e.context(sample.path.display()))?
            .remove(0);
        backbone_time += start.elapsed();
        let mut maps = Vec::new();
        for ((_, scorer), c) in scorers.iter().zip(&mut collected) {
            let start = Instant::now();
            let scored = scorer
                .score_features(&features, &geometry)
                .map_err(|e| e.context(sample.path.display()))?;
            c.after_backbone += start.elapsed();
            let mut pixels = ScoreSet::new();
            pixels.extend_map(&scored.map, mask.as_deref())?;
            pixels
                .sort()
                .map_err(|e| e.context(sample.path.display()))?;
            c.pixels.push(pixels);
            c.images.push(scored.image_score);
            c.decisions.push(scored.decision);
            if shown.contains(&index) {
                maps.push(scored.map);
            }
        }
        if shown.contains(&index) {
            let refs: Vec<&[f32]> = maps.iter().map(|m| m.as_slice()).collect();
            rows.push(MontageRow::new(
                &to_rgb8(&view),
                mask.as_deref(),
                &refs,
                image.width() as usize,
                image.height() as usize,
                options.montage_tile,
            ));
        }
    }
    let all: Vec<usize> = (0..n).collect();
    let anomalous: Vec<bool> = category.test.iter().map(|s| s.is_anomalous()).collect();
    let mut methods = Vec::new();
    for ((t, scorer), c) in scorers.iter().zip(&collected) {
        let (pixel, image) = subset_metrics(c, category, &all)?;
        methods.push(MethodResult {
            method: scorer.name().to_string(),
            pixel,
            image,
            train_seconds: t.seconds,
            ms_per_image: (backbone_time + c.after_backbone).as_secs_f64() * 1000.0 / n as f64,
            ms_after_backbone: c.after_backbone.as_secs_f64() * 1000.0 / n as f64,
            by_type: breakdown(c, category, |i| {
                let s = &category.test[i];
                s.is_anomalous().then(|| s.defect_type.clone())
            })?,
            by_size: breakdown(c, category, |i| category.test[i].size_class.clone())?,
            decisions: decisions(c, category),
            decision_tables: scorer
                .calibration()
                .map(|cal| decision_tables(cal, &c.images, &anomalous))
                .unwrap_or_default(),
            normal_scores: scorer.calibration().map(|cal| NormalScores {
                pool: cal.pool().clone(),
                test_good: c
                    .images
                    .iter()
                    .zip(&anomalous)
                    .filter(|(_, &bad)| !bad)
                    .map(|(&s, _)| s)
                    .collect(),
            }),
            calibration_seconds: t.calibration_seconds,
            final_loss: t.final_loss,
            variance_ratios: t.variance_ratios.clone(),
        });
    }
    let montage = match (&options.out_dir, rows.is_empty()) {
        (Some(dir), false) => {
            let name = format!("montage_{}.png", category.name.replace(['/', '\\'], "_"));
            let (pixels, w, h) = render(&rows, options.montage_tile);
            write_png(
                dir.join(&name),
                &ImageView::packed(&pixels, w as u32, h as u32, PixelFormat::Rgb8)?,
            )?;
            Some(name)
        }
        _ => None,
    };
    Ok(CategoryReport {
        category: category.name.clone(),
        train_images: category.train.len(),
        test_good: category.test.iter().filter(|s| !s.is_anomalous()).count(),
        test_defective: category.test.iter().filter(|s| s.is_anomalous()).count(),
        methods,
        backbone_ms_per_image: backbone_time.as_secs_f64() * 1000.0 / n as f64,
        montage,
    })
}

/// Evaluates every category of `dataset` and builds the report. `log` receives progress
/// lines.
pub fn evaluate(
    dataset: &Dataset,
    options: &EvalOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Report> {
    if let Some(dir) = &options.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", &e))?;
    }
    let categories = dataset
        .categories
        .iter()
        .map(|c| evaluate_category(c, options, log))
        .collect::<Result<Vec<_>>>()?;
    let layout = serde_json::to_value(dataset.layout)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    Ok(Report::new(
        dataset.root.display().to_string(),
        layout,
        categories
            .first()
            .map(|c| c.methods.iter().map(|m| m.method.clone()).collect())
            .unwrap_or_default(),
        categories,
        serde_json::to_value(&options.config).unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_threshold_is_the_rank_ceil_q_n_of_all_pixels() {
        let a = [5.0, 1.0, 3.0];
        let b = [2.0, 4.0, 6.0, 0.0];
        let maps: Vec<&[f32]> = vec![&a, &b];
        // 7 pixels 0..6: q = 1 is the largest, q = 0.5 rank ceil(3.5) = 4 (value 3).
        assert_eq!(pixel_quantile(&maps, 1.0).unwrap(), 6.0);
        assert_eq!(pixel_quantile(&maps, 0.5).unwrap(), 3.0);
        assert_eq!(pixel_quantile(&maps, 1e-9).unwrap(), 0.0);
        assert!(pixel_quantile(&[], 1.0).is_err());
    }
}
