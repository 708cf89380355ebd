//! Training: images are added one at a time (each is tokenized once and cached), then
//! `fit` trains adapters, BOS vectors and predictors with AdamW on the mean of the anomaly
//! map over normal images. The model is touched only when training finishes: a cancelled
//! or failed training leaves it as it was.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::image::{ImageView, InputGeometry};
use crate::model::combine::resize_adjoint_of_ones;
use crate::model::neighbours::{BankLevels, NeighbourBank};
use crate::model::ScoreOptions;
use crate::model::{LevelParams, Model, Weights};
use crate::predictor::rng::SplitMix64;
use crate::score::{Calibration, NormalPool};
use crate::{Error, ErrorKind, Result};

use super::adamw::AdamW;
use super::cache::TokenCache;
use super::cross_fit::calibration_plan;
use super::predictor_training::start as start_training;

/// Where training is, for the progress callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Epochs in all.
    pub epochs: usize,
    /// Optimiser step within the whole training, from 1.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// This step's loss (mean of the anomaly map over the batch).
    pub loss: f64,
    /// Time since `fit` started.
    pub elapsed: Duration,
    /// Estimated time to the end, from the mean step time so far.
    pub remaining: Duration,
}

/// What a finished training did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Images trained on.
    pub train_images: usize,
    /// Indices (in the order added) of the images held back for calibration.
    pub calibration_images: Vec<usize>,
    /// Mean loss of each epoch.
    pub epoch_losses: Vec<f64>,
    /// Per epoch and level: the mean per-channel variance of the adapted tokens divided by
    /// that of the raw tokens, over the first training image (1.0 = no shrinkage; the
    /// adapters collapsing the features drive it towards 0).
    pub variance_ratios: Vec<Vec<f64>>,
    /// Wall time of `fit`.
    pub elapsed: Duration,
    /// The part of `elapsed` after the optimisation: the normal statistics, the
    /// cross-fitting and the calibration.
    pub calibration_elapsed: Duration,
    /// The out-of-sample normal scores the thresholds were fitted on, by where they came
    /// from (cross-fitted training images, held-out images).
    pub normal_pool: NormalPool,
    /// Token cache bytes in memory and spilled to disk.
    pub cache_bytes: (u64, u64),
}

/// The images a model will be trained on, tokenized as they are added, and any
/// known-defective examples that calibration scores and reports on.
pub struct TrainingSet {
    cache: TokenCache,
    values_per_image: usize,
    /// Known-defective examples' features and geometry (few, so kept in memory).
    defective: Vec<(Vec<f32>, InputGeometry)>,
}

impl TrainingSet {
    /// An empty set for `model` (its levels and input size decide what is cached).
    pub fn new(model: &Model) -> Self {
        let values = model.values_per_image();
        TrainingSet {
            cache: TokenCache::new(values, model.config().train.cache_limit_bytes)
                .with_disk_limit(model.config().train.cache_disk_limit_bytes),
            values_per_image: values,
            defective: Vec::new(),
        }
    }

    /// Images added so far.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether no image was added.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Token cache bytes `(in memory, spilled to disk)`.
    pub fn cache_bytes(&self) -> (u64, u64) {
        (self.cache.memory_bytes(), self.cache.spilled_bytes())
    }

    /// Tokenizes `images` with `model`'s backbone and caches their maps. The caller may
    /// drop the pixels afterwards.
    pub fn add(&mut self, model: &Model, images: &[ImageView]) -> Result<()> {
        if model.values_per_image() != self.values_per_image {
            return Err(Error::invalid_argument(
                "this training set was made for another model",
            ));
        }
        for (values, geometry) in model.features(images)? {
            self.cache.push(&values, geometry)?;
        }
        Ok(())
    }

    /// Tokenizes known-defective examples (images of bad parts) with `model`'s backbone.
    /// They are never trained on: training scores them with the finished model, reports
    /// how many pass, and with [`crate::score::CalibrationConfig::catch_known_defects`]
    /// lowers the review threshold until none does.
    pub fn add_defective(&mut self, model: &Model, images: &[ImageView]) -> Result<()> {
        if model.values_per_image() != self.values_per_image {
            return Err(Error::invalid_argument(
                "this training set was made for another model",
            ));
        }
        let features = model.features(images)?;
        self.defective.extend(features);
        Ok(())
    }

    /// Known-defective examples added so far.
    pub fn defective_len(&self) -> usize {
        self.defective.len()
    }

    /// The cached maps and geometry of image `index`.
    pub fn image(&self, index: usize) -> Result<(Vec<f32>, InputGeometry)> {
        let cached = self.cache.get(index)?;
        Ok((cached.values, cached.geometry))
    }

    /// Where image `index` landed in the input (its maps are not read).
    pub fn geometry(&self, index: usize) -> Result<InputGeometry> {
        self.cache.geometry(index)
    }
}

/// The images held back for calibration without cross-fitting: `max(min, round(fraction
/// * n))` of them, chosen by the seed, as `(train, held out)`. At least
/// [`crate::score::MIN_NORMAL_IMAGES`] must be held back and one image left to train on
/// ([`calibration_plan`] with 0 folds).
pub fn calibration_split(
    n: usize,
    fraction: f64,
    min: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    calibration_plan(n, fraction, min, 0, seed).map(|p| (p.train, p.held_out))
}

pub(super) fn shuffle(items: &mut [usize], seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Whether a parameter takes weight decay: matrices do; biases, norms, BOS vectors and
/// the SSM's `A_log` and `D` do not (as mamba_ssm marks them).
fn decays(name: &str) -> bool {
    name.ends_with("in_proj.weight")
        || name.ends_with("x_proj.weight")
        || name.ends_with("dt_proj.weight")
        || name.ends_with("out_proj.weight")
        || name.ends_with("conv1d.weight")
        || name == "adapter_weight"
}

/// Flattened views of the adapter and BOS tensors of `levels` (the trainer's AdamW;
/// each predictor's tensors are updated on its own device), with their names, in a fixed
/// order. Without `adapters` the adapter tensors are left out: they keep their zero
/// initialisation (no gradient step, no weight decay).
fn params_mut(levels: &mut [LevelParams], adapters: bool) -> Vec<(String, &mut [f32])> {
    let mut out = Vec::new();
    for level in levels.iter_mut() {
        if adapters {
            out.push((
                "adapter_weight".to_string(),
                level.adapter_weight.as_mut_slice(),
            ));
            out.push((
                "adapter_bias".to_string(),
                level.adapter_bias.as_mut_slice(),
            ));
        }
        out.push(("bos".to_string(), level.bos.as_mut_slice()));
    }
    out
}

impl Model {
    /// Trains on `set` (holding back calibration images; the split is checked first, see
    /// [`calibration_plan`]), reporting every step to `progress`, which can stop training
    /// by returning `ControlFlow::Break`. Then fits the normal statistics on the training
    /// images and the thresholds on the out-of-sample normal scores: the held-out images'
    /// and, with [`crate::TrainConfig::cross_fit_folds`], the training images' own,
    /// cross-fitted (`src/train/cross_fit.rs`). On success the new weights replace the
    /// model's; on cancellation (`ErrorKind::Cancelled`) or any error the model is
    /// unchanged.
    pub fn fit(
        &mut self,
        set: &TrainingSet,
        mut progress: impl FnMut(&Progress) -> ControlFlow<()>,
    ) -> Result<TrainReport> {
        let start = Instant::now();
        let t = self.config().train.clone();
        let plan = calibration_plan(
            set.len(),
            t.calibration_fraction,
            t.min_calibration_images,
            t.cross_fit_folds,
            self.config().seed,
        )?;
        // A rate the calibration would refuse is refused before any optimisation.
        self.config()
            .score
            .calibration
            .check_pool_size(plan.pool_size())?;
        let train = plan.train.clone();
        let mut levels = self.weights().levels.clone();
        let adapters = self.config().adapters;
        let lengths: Vec<usize> = params_mut(&mut levels, adapters)
            .iter()
            .map(|(_, p)| p.len())
            .collect();
        let decay: Vec<bool> = params_mut(&mut levels, adapters)
            .iter()
            .map(|(n, _)| decays(n))
            .collect();
        let mut optimiser = AdamW::new(&t, &lengths);
        let batches_per_epoch = train.len().div_ceil(t.batch_size);
        let steps = batches_per_epoch * t.epochs;
        let finest = self.finest_grid();
        let pixels = (finest.0 * finest.1) as f64;
        let level_weights: Vec<Vec<f32>> = self
            .layout()
            .iter()
            .map(|l| resize_adjoint_of_ones(l.grid, finest))
            .collect();
        let detach = self.config().detach_target;
        let mut epoch_losses = Vec::with_capacity(t.epochs);
        let mut variance_ratios = Vec::with_capacity(t.epochs);
        let mut step = 0;
        // Per level, the predictor's training state on the device chosen for the model's
        // predictors, kept from the first step to the last.
        let device = self.predictor_gpu().cloned();
        let mut predictors = levels
            .iter()
            .map(|l| start_training(device.as_ref(), &l.predictor, &t, decays))
            .collect::<Result<Vec<_>>>()?;
        for epoch in 1..=t.epochs {
            let mut order = train.clone();
            shuffle(&mut order, self.config().seed.wrapping_add(epoch as u64));
            let mut epoch_loss = 0.0;
            for batch in order.chunks(t.batch_size) {
                step += 1;
                let b = batch.len();
                let images: Vec<Vec<f32>> = batch
                    .iter()
                    .map(|&i| set.image(i).map(|x| x.0))
                    .collect::<Result<_>>()?;
                let mut loss = 0.0f64;
                let mut grads: Vec<Vec<f32>> = Vec::new();
                let mut offset = 0;
                for (h, layout) in self.layout().iter().enumerate() {
                    let n = layout.values();
                    let features: Vec<f32> = images
                        .iter()
                        .flat_map(|v| v[offset..offset + n].iter().copied())
                        .collect();
                    offset += n;
                    // The loss is the mean over images and finest pixels of sum_h up(A_h):
                    // linear in A_h, with derivative up^T(1) / (B P).
                    let scale = (1.0 / (b as f64 * pixels)) as f32;
                    let per_image: Vec<f32> = level_weights[h].iter().map(|w| w * scale).collect();
                    let map_grad: Vec<f32> =
                        (0..b).flat_map(|_| per_image.iter().copied()).collect();
                    let level = &levels[h];
                    let predictor = &mut predictors[h];
                    let (maps, g) = self.install(|| {
                        // Forward, backward and recycling run one after the other.
                        let predictor = std::cell::RefCell::new(predictor);
                        level.train_step_with(
                            &layout.scans,
                            &features,
                            b,
                            &map_grad,
                            detach,
                            |s, bb, l| Ok((predictor.borrow_mut().forward_train(s, bb, l)?, ())),
                            |(), d| Ok((predictor.borrow_mut().backward(d)?, ())),
                            |used| predictor.borrow_mut().recycle(used),
                        )
                    })?;
                    loss += maps
                        .iter()
                        .zip(&map_grad)
                        .map(|(a, w)| (*a as f64) * (*w as f64))
                        .sum::<f64>();
                    if adapters {
                        grads.push(g.adapter_weight);
                        grads.push(g.adapter_bias);
                    }
                    grads.push(g.bos);
                }
                if !loss.is_finite() {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        format!("training diverged at epoch {epoch}, step {step}: loss {loss}; try a smaller learning rate"),
                    ));
                }
                {
                    let mut params = params_mut(&mut levels, adapters);
                    let mut slices: Vec<&mut [f32]> =
                        params.iter_mut().map(|(_, p)| &mut **p).collect();
                    let grad_refs: Vec<&[f32]> = grads.iter().map(|g| g.as_slice()).collect();
                    optimiser.step(&mut slices, &grad_refs, &decay);
                }
                for p in &mut predictors {
                    p.step()?;
                }
                epoch_loss += loss;
                let elapsed = start.elapsed();
                let remaining = elapsed.mul_f64((steps - step) as f64 / step as f64);
                let report = Progress {
                    epoch,
                    epochs: t.epochs,
                    step,
                    steps,
                    loss,
                    elapsed,
                    remaining,
                };
                if progress(&report).is_break() {
                    return Err(Error::new(
                        ErrorKind::Cancelled,
                        format!("training cancelled at epoch {epoch}, step {step}"),
                    ));
                }
            }
            epoch_losses.push(epoch_loss / batches_per_epoch as f64);
            // The CPU copies of the predictors catch up once per epoch (and so at the end).
            for (level, p) in levels.iter_mut().zip(&predictors) {
                level.predictor = p.predictor()?;
            }
            variance_ratios.push(self.variance_ratios(&levels, &set.image(train[0])?.0));
        }
        let optimised = start.elapsed();
        let weights = Weights { levels };
        let stats = self.fit_normal_stats(&weights, set, &plan, self.config().seed)?;
        let (mut calibration, normal_pool) =
            self.calibrate_on_pool(&weights, &stats, set, &plan)?;
        let defect_scores = set
            .defective
            .iter()
            .map(|(values, geometry)| {
                self.install(|| {
                    self.score_features(
                        &weights,
                        Some(&stats.all),
                        values,
                        geometry,
                        &ScoreOptions::default(),
                    )
                })
                .map(|r| r.image_score)
            })
            .collect::<Result<Vec<f32>>>()?;
        calibration.set_known_defects(&defect_scores)?;
        log_extrapolation(&calibration);
        let elapsed = start.elapsed();
        let report = TrainReport {
            train_images: train.len(),
            calibration_images: plan.held_out,
            epoch_losses,
            variance_ratios,
            elapsed,
            calibration_elapsed: elapsed - optimised,
            normal_pool,
            cache_bytes: set.cache_bytes(),
        };
        self.set_weights(weights)?;
        self.set_normal_stats(stats.all)?;
        self.set_calibration(calibration);
        Ok(report)
    }

    /// The nearest-neighbour memory banks on the configured levels' tokens of the
    /// training images `images` (held-out calibration images are not used, as for the
    /// other statistics), in level order, and for each fold of those images (`fold_of[k]`
    /// is `images[k]`'s fold; empty: no folds) the banks without that fold's images, from
    /// the same selection ([`NeighbourBank::build_with_folds`]): `(all, without[fold])`.
    /// No banks when the configuration asks for none, or where fewer than two images
    /// remain: a bank's normal distances are measured between images.
    pub(super) fn neighbour_banks_with_folds(
        &self,
        set: &TrainingSet,
        images: &[usize],
        fold_of: &[usize],
    ) -> Result<(Vec<NeighbourBank>, Vec<Vec<NeighbourBank>>)> {
        let train = &self.config().train;
        let folds = fold_of.iter().max().map_or(0, |&f| f + 1);
        if train.neighbour_bank_tokens == 0 || images.len() < 2 {
            return Ok((Vec::new(), vec![Vec::new(); folds]));
        }
        let coarsest = self.layout().len() - 1;
        let levels = match train.neighbour_bank_levels {
            BankLevels::Coarsest => coarsest..coarsest + 1,
            BankLevels::All => 0..coarsest + 1,
        };
        let mut all = Vec::new();
        let mut without = vec![Vec::new(); folds];
        for level in levels {
            let range = self.level_range(level);
            let layout = &self.layout()[level];
            // The coarsest level keeps the seed it always had, so its bank is the same.
            let seed = self.config().seed
                ^ ((coarsest - level) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (bank, fold_banks) = self.install(|| {
                NeighbourBank::build_with_folds(
                    level,
                    images.len(),
                    (layout.channels, layout.grid),
                    (train.neighbour_bank_tokens, train.neighbour_bank_selection),
                    seed,
                    fold_of,
                    |i| Ok(set.image(images[i])?.0[range.clone()].to_vec()),
                )
            })?;
            all.push(bank);
            for (f, b) in fold_banks.into_iter().enumerate() {
                without[f].extend(b);
            }
        }
        Ok((all, without))
    }

    /// Per level: mean per-channel variance of the adapted tokens over that of the raw
    /// tokens, for one image's concatenated maps.
    fn variance_ratios(&self, levels: &[LevelParams], features: &[f32]) -> Vec<f64> {
        let mut offset = 0;
        self.layout()
            .iter()
            .zip(levels)
            .map(|(layout, params)| {
                let len = layout.grid.0 * layout.grid.1;
                let n = layout.channels * len;
                let tokens = params.to_token_major(&features[offset..offset + n], 1, len);
                offset += n;
                let adapted = params.adapt(&tokens, len);
                mean_channel_variance(&adapted, layout.channels)
                    / mean_channel_variance(&tokens, layout.channels).max(1e-30)
            })
            .collect()
    }
}

/// Says, through the library's log, when a threshold rests on the log-normal tail rather
/// than on the scores alone: a host that reads only the thresholds learns it there.
fn log_extrapolation(calibration: &Calibration) {
    let report = calibration.report();
    for (name, rate) in [("review", &report.review), ("fail", &report.fail)] {
        if rate.extrapolated {
            log::warn!(
                "the {name} threshold for a rate of {} is extrapolated by a log-normal tail \
                 (an assumption): {} normal scores support rates down to {:.4} on their own; \
                 {} good images would support it",
                rate.requested,
                report.normal_scores,
                report.achievable_rate,
                rate.images_needed
            );
        }
    }
}

fn mean_channel_variance(tokens: &[f32], c: usize) -> f64 {
    let rows = (tokens.len() / c) as f64;
    let mut sum = vec![0f64; c];
    let mut sq = vec![0f64; c];
    for row in tokens.chunks_exact(c) {
        for (i, &v) in row.iter().enumerate() {
            sum[i] += v as f64;
            sq[i] += (v as f64) * (v as f64);
        }
    }
    (0..c)
        .map(|i| sq[i] / rows - (sum[i] / rows).powi(2))
        .sum::<f64>()
        / c as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_split_is_seeded_and_sized() {
        let (train, cal) = calibration_split(40, 0.1, 3, 7).unwrap();
        assert_eq!(cal.len(), 4);
        assert_eq!(train.len(), 36);
        assert_eq!(calibration_split(40, 0.1, 3, 7).unwrap().1, cal);
        assert_ne!(calibration_split(40, 0.1, 3, 8).unwrap().1, cal);
        assert_eq!(calibration_split(5, 0.1, 3, 0).unwrap().1.len(), 3);
        let err = calibration_split(3, 0.1, 3, 0).unwrap_err();
        assert!(err.message().contains("at least 4"), "{err}");
        // min 0 leaves the count to the fraction; fewer than the thresholds need is a
        // configuration error before any training.
        assert_eq!(calibration_split(40, 0.1, 0, 7).unwrap().1.len(), 4);
        let err = calibration_split(20, 0.1, 0, 7).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(err.message().contains("min_calibration_images"), "{err}");
    }

    #[test]
    fn weight_decay_only_on_matrices() {
        assert!(decays("layers.0.mixer.in_proj.weight"));
        assert!(decays("adapter_weight"));
        assert!(!decays("layers.0.mixer.A_log"));
        assert!(!decays("layers.0.mixer.D"));
        assert!(!decays("layers.0.norm.weight"));
        assert!(!decays("bos"));
    }
}
