//! Out-of-sample normal scores for the training images themselves (cross-fitting, as in
//! CV+ and the jackknife+), so that calibration need not take images away from training.
//!
//! The training images are dealt into `K` folds. For each fold, everything that is fitted
//! to the images after training (each level's channel variances, level mean and position
//! statistics, and the neighbour bank) is fitted again without that fold, and the fold's
//! images are scored with those statistics. The predictor itself is trained once, on all
//! training images: refitting it per fold would cost `K` trainings. The model keeps the
//! statistics of all training images; the fold statistics only give the scores.
//!
//! The statistics cost no extra predictor passes: each of their two passes computes an
//! image's residuals once and feeds them to the statistics of all images and to the `K - 1`
//! leave-fold-out statistics the image belongs to. Scoring is one more pass.

use crate::model::normal_stats::{LevelStats, LevelStatsBuilder};
use crate::model::{Model, NormalStats, ScoreOptions, Weights};
use crate::score::{Calibration, NormalPool, StreamingQuantile, MIN_NORMAL_IMAGES};
use crate::{Error, Result};

use super::trainer::{shuffle, TrainingSet};

/// Fewest images each fold's statistics may be fitted on: a neighbour bank measures its
/// normal distances between images, and a position's spread needs two samples.
pub const MIN_IMAGES_PER_FOLD_FIT: usize = 2;

/// How the added images are used: which ones train, which are held out for calibration,
/// and how many cross-fitting folds the training images are dealt into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalibrationPlan {
    /// Indices (in the order added) of the images trained on, ascending.
    pub train: Vec<usize>,
    /// Indices of the images held back for calibration, ascending.
    pub held_out: Vec<usize>,
    /// Cross-fitting folds actually used (`min(cross_fit_folds, train.len())`); 0 = none.
    pub folds: usize,
}

impl CalibrationPlan {
    /// How many normal scores calibration will have.
    pub fn pool_size(&self) -> usize {
        self.held_out.len() + if self.folds > 0 { self.train.len() } else { 0 }
    }
}

/// The split of `n` added images: `max(min, round(fraction * n))` held back for
/// calibration (chosen by the seed) and the rest trained on, with the training images
/// cross-fitted in `min(folds, training images)` folds unless `folds` is 0. Checked before
/// any training, so a split that cannot calibrate is refused at once. Cross-fitting needs
/// every fold's statistics fitted on at least [`MIN_IMAGES_PER_FOLD_FIT`] training images
/// (and so gives at least [`MIN_NORMAL_IMAGES`] scores): with it, held-out images are
/// optional. With fewer training images than that, or `folds` 0, the held-out images
/// calibrate alone (the plan's `folds` is then 0): at least [`MIN_NORMAL_IMAGES`] of them
/// and one training image.
///
/// [`crate::ErrorKind::Config`] for a `folds` of 1, or for too few held-out images
/// without cross-fitting; [`crate::ErrorKind::InvalidArgument`] for too few images.
pub fn calibration_plan(
    n: usize,
    fraction: f64,
    min: usize,
    folds: usize,
    seed: u64,
) -> Result<CalibrationPlan> {
    let held = ((fraction * n as f64).round() as usize).max(min);
    if folds == 1 {
        return Err(Error::config(
            "cross_fit_folds 1 would fit each fold's statistics on no image: use 0 (off) or at least 2",
        ));
    }
    let trained = n.saturating_sub(held);
    let cross_fits = folds > 0 && trained >= fewest_to_cross_fit(folds);
    if !cross_fits {
        if folds == 0 && held < MIN_NORMAL_IMAGES {
            return Err(Error::config(format!(
                "{n} training images with calibration_fraction {fraction} and \
                 min_calibration_images {min} hold back {held} for calibration; the \
                 thresholds need at least {MIN_NORMAL_IMAGES}: raise min_calibration_images, \
                 or turn on cross_fit_folds to calibrate on the training images"
            )));
        }
        if held < MIN_NORMAL_IMAGES {
            let needed = held + fewest_to_cross_fit(folds);
            return Err(Error::invalid_argument(format!(
                "{n} training images: {held} are held back for calibration, fewer than the \
                 {MIN_NORMAL_IMAGES} the thresholds need, and cross-fitting the rest in \
                 {folds} folds needs at least {} to train on (each fold's statistics are \
                 fitted on the other folds' images, at least {MIN_IMAGES_PER_FOLD_FIT}), so \
                 at least {needed} are needed",
                needed - held
            )));
        }
        if n <= held {
            return Err(Error::invalid_argument(format!(
                "{n} training images: {held} are held back for calibration, so at least {} \
                 are needed",
                held + 1
            )));
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, seed ^ 0xC0FF_EE00);
    let mut held_out = order[..held].to_vec();
    let mut train = order[held..].to_vec();
    held_out.sort_unstable();
    train.sort_unstable();
    let folds = if cross_fits {
        folds.min(train.len())
    } else {
        0
    };
    let plan = CalibrationPlan {
        train,
        held_out,
        folds,
    };
    debug_assert!(plan.pool_size() >= MIN_NORMAL_IMAGES);
    Ok(plan)
}

/// Fewest training images for which `min(folds, images)` folds leave every fold's
/// complement at least [`MIN_IMAGES_PER_FOLD_FIT`] images.
fn fewest_to_cross_fit(folds: usize) -> usize {
    (MIN_IMAGES_PER_FOLD_FIT + 1..)
        .find(|&n| n - n.div_ceil(folds.min(n)) >= MIN_IMAGES_PER_FOLD_FIT)
        .expect("n - ceil(n / 2) grows without bound")
}

/// The fold of each of `n` images: dealt round-robin over a seeded shuffle, so the folds'
/// sizes differ by at most one and every image is in exactly one of the `folds` folds.
pub(crate) fn assign_folds(n: usize, folds: usize, seed: u64) -> Vec<usize> {
    assert!(folds > 0);
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, seed ^ 0xF01D_5EED);
    let mut fold_of = vec![0; n];
    for (position, &image) in order.iter().enumerate() {
        fold_of[image] = position % folds;
    }
    fold_of
}

/// One level's statistics of all images and, at once, of every leave-fold-out subset:
/// each image's residuals go to the builder of all images and to the builders of the
/// folds it is not in. Each builder sees its images in the order they arrive, so its
/// statistics are exactly those of a [`LevelStatsBuilder`] fed only those images.
pub(crate) struct FoldedStatsBuilder {
    all: LevelStatsBuilder,
    without: Vec<LevelStatsBuilder>,
}

impl FoldedStatsBuilder {
    /// Builders for a level of `channels` channels on `len` positions, with `folds`
    /// leave-fold-out builders (0: only the statistics of all images).
    pub(crate) fn new(channels: usize, len: usize, folds: usize) -> Self {
        let builder = LevelStatsBuilder::new(channels, len);
        FoldedStatsBuilder {
            without: vec![builder.clone(); folds],
            all: builder,
        }
    }

    fn others(&mut self, fold: Option<usize>) -> impl Iterator<Item = &mut LevelStatsBuilder> {
        self.without
            .iter_mut()
            .enumerate()
            .filter(move |(f, _)| Some(*f) != fold)
            .map(|(_, b)| b)
    }

    /// First pass: the residuals of an image of `fold` (`None` without folds).
    pub(crate) fn add_first(&mut self, fold: Option<usize>, residuals: &[f32]) {
        self.all.add_first(residuals);
        for b in self.others(fold) {
            b.add_first(residuals);
        }
    }

    /// Ends the first pass of every builder.
    pub(crate) fn end_first(&mut self) -> Result<()> {
        self.all.end_first()?;
        self.without.iter_mut().try_for_each(|b| b.end_first())
    }

    /// Second pass: the same image's residuals again.
    pub(crate) fn add_second(&mut self, fold: Option<usize>, residuals: &[f32]) -> Result<()> {
        self.all.add_second(residuals)?;
        self.others(fold).try_for_each(|b| b.add_second(residuals))
    }

    /// The statistics of all images, and of all images but each fold's.
    pub(crate) fn finish(self) -> Result<(LevelStats, Vec<LevelStats>)> {
        Ok((
            self.all.finish()?,
            self.without
                .into_iter()
                .map(LevelStatsBuilder::finish)
                .collect::<Result<_>>()?,
        ))
    }
}

/// The normal statistics the model keeps (fitted on all training images) and those each
/// fold's images are scored with (fitted without them).
pub(crate) struct FittedStats {
    /// Of all training images: the model's.
    pub(crate) all: NormalStats,
    /// Per fold, fitted on the other folds' images; empty without cross-fitting.
    pub(crate) without_fold: Vec<NormalStats>,
    /// The fold of each training image, in the order of the plan's `train`.
    pub(crate) fold_of: Vec<usize>,
}

impl Model {
    /// The normal statistics of the trained model on the plan's training images, and,
    /// when the plan cross-fits, those of every leave-fold-out subset of them (see the
    /// module's documentation), the folds dealt by `fold_seed`. Held-out calibration
    /// images are not used, so their scores stay an independent sample.
    pub(crate) fn fit_normal_stats(
        &self,
        weights: &Weights,
        set: &TrainingSet,
        plan: &CalibrationPlan,
        fold_seed: u64,
    ) -> Result<FittedStats> {
        let images = &plan.train;
        let fold_of = if plan.folds > 0 {
            assign_folds(images.len(), plan.folds, fold_seed)
        } else {
            Vec::new()
        };
        let fold = |position: usize| fold_of.get(position).copied();
        let gpu = self.gpu_predictors(weights)?;
        let mut builders: Vec<FoldedStatsBuilder> = self
            .layout()
            .iter()
            .map(|l| FoldedStatsBuilder::new(l.channels, l.grid.0 * l.grid.1, plan.folds))
            .collect();
        for pass in 0..2 {
            for (position, &i) in images.iter().enumerate() {
                let features = set.image(i)?.0;
                let mut offset = 0;
                for (h, (layout, params)) in self.layout().iter().zip(&weights.levels).enumerate() {
                    let n = layout.values();
                    let level_features = &features[offset..offset + n];
                    offset += n;
                    let residuals = self.install(|| {
                        self.level_residuals(
                            gpu.as_deref().map(|g| g.as_slice()),
                            h,
                            params,
                            level_features,
                        )
                    })?;
                    match pass {
                        0 => builders[h].add_first(fold(position), &residuals),
                        _ => builders[h].add_second(fold(position), &residuals)?,
                    }
                }
            }
            if pass == 0 {
                for b in &mut builders {
                    b.end_first()?;
                }
            }
        }
        let mut all = Vec::with_capacity(builders.len());
        let mut without: Vec<Vec<LevelStats>> = vec![Vec::new(); plan.folds];
        for b in builders {
            let (level_all, level_without) = b.finish()?;
            all.push(level_all);
            for (f, stats) in level_without.into_iter().enumerate() {
                without[f].push(stats);
            }
        }
        let (banks, mut fold_banks) = self.neighbour_banks_with_folds(set, images, &fold_of)?;
        // A fold with no image gets no statistics of its own either.
        fold_banks.resize(plan.folds, Vec::new());
        let without_fold = without
            .into_iter()
            .zip(fold_banks)
            .map(|(levels, neighbours)| NormalStats { levels, neighbours })
            .collect();
        Ok(FittedStats {
            all: NormalStats {
                levels: all,
                neighbours: banks,
            },
            without_fold,
            fold_of,
        })
    }

    /// The out-of-sample normal scores (each training image's with its fold's statistics,
    /// each held-out image's with the model's) and the pixel quantile of all their maps,
    /// taken as the maps are made (one map in memory at a time), then the thresholds.
    pub(crate) fn calibrate_on_pool(
        &self,
        weights: &Weights,
        stats: &FittedStats,
        set: &TrainingSet,
        plan: &CalibrationPlan,
    ) -> Result<(Calibration, NormalPool)> {
        let config = &self.config().score.calibration;
        let cross_fitted: Vec<(usize, &NormalStats)> = if plan.folds > 0 {
            plan.train
                .iter()
                .zip(&stats.fold_of)
                .map(|(&i, &f)| (i, &stats.without_fold[f]))
                .collect()
        } else {
            Vec::new()
        };
        let held_out: Vec<(usize, &NormalStats)> =
            plan.held_out.iter().map(|&i| (i, &stats.all)).collect();
        let mut pixels = 0usize;
        for &(i, _) in cross_fitted.iter().chain(&held_out) {
            let g = set.geometry(i)?;
            pixels += g.image_width as usize * g.image_height as usize;
        }
        if pixels == 0 {
            return Err(Error::config("calibration: a normal map is empty"));
        }
        let mut quantile = StreamingQuantile::new(pixels, config.pixel_quantile);
        let mut score = |images: &[(usize, &NormalStats)]| -> Result<Vec<f32>> {
            images
                .iter()
                .map(|&(i, image_stats)| {
                    let (values, geometry) = set.image(i)?;
                    let result = self.install(|| {
                        self.score_features(
                            weights,
                            Some(image_stats),
                            &values,
                            &geometry,
                            &ScoreOptions::default(),
                        )
                    })?;
                    if result.map.is_empty() {
                        return Err(Error::config("calibration: a normal map is empty"));
                    }
                    quantile.push(&result.map)?;
                    Ok(result.image_score)
                })
                .collect()
        };
        let pool = NormalPool {
            cross_fitted: score(&cross_fitted)?,
            held_out: score(&held_out)?,
            folds: plan.folds,
        };
        let pixel_threshold = quantile.finish()?;
        let calibration = Calibration::fit_pool(&pool, pixel_threshold, config)?;
        Ok((calibration, pool))
    }
}

impl Model {
    /// The normal pool the trained model's own weights give on `set` (the set it was
    /// trained on, with its configuration's split) when cross-fitted in `folds` folds
    /// dealt by `fold_seed` (training deals them by the configuration's seed), without
    /// training again: for measuring cross-fitting against held-out and new good images,
    /// its stability and its cost, on one trained predictor. The model is not changed.
    ///
    /// [`crate::ErrorKind::NotTrained`] for an untrained model; the split's errors.
    #[cfg(feature = "internals")]
    pub fn cross_fitted_pool(
        &self,
        set: &TrainingSet,
        folds: usize,
        fold_seed: u64,
    ) -> Result<NormalPool> {
        if self.calibration().is_none() {
            return Err(Error::new(
                crate::ErrorKind::NotTrained,
                "cross-fitted scores need a trained model",
            ));
        }
        let t = &self.config().train;
        let plan = calibration_plan(
            set.len(),
            t.calibration_fraction,
            t.min_calibration_images,
            folds,
            self.config().seed,
        )?;
        let weights = self.weights();
        let stats = self.fit_normal_stats(weights, set, &plan, fold_seed)?;
        Ok(self.calibrate_on_pool(weights, &stats, set, &plan)?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::rng::SplitMix64;

    #[test]
    fn folds_are_seeded_balanced_and_cover_every_image_once() {
        for (n, k) in [(9, 5), (9, 9), (10, 3), (200, 10), (3, 2)] {
            let folds = assign_folds(n, k, 11);
            assert_eq!(folds.len(), n);
            let mut sizes = vec![0usize; k];
            for &f in &folds {
                sizes[f] += 1;
            }
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1 && *lo >= 1, "n {n} k {k}: {sizes:?}");
            assert_eq!(assign_folds(n, k, 11), folds);
        }
        assert_ne!(assign_folds(40, 5, 11), assign_folds(40, 5, 12));
    }

    fn residuals(seed: u64, len: usize, c: usize) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..len * c)
            .map(|i| ((rng.next_u64() as f64 / u64::MAX as f64) - 0.5) as f32 * (i % c + 1) as f32)
            .collect()
    }

    #[test]
    fn leave_fold_out_statistics_are_those_of_the_other_folds_images() {
        let (len, c, k) = (6, 3, 3);
        let images: Vec<Vec<f32>> = (0..8).map(|i| residuals(40 + i, len, c)).collect();
        let folds = assign_folds(images.len(), k, 3);
        let mut folded = FoldedStatsBuilder::new(c, len, k);
        for (r, &f) in images.iter().zip(&folds) {
            folded.add_first(Some(f), r);
        }
        folded.end_first().unwrap();
        for (r, &f) in images.iter().zip(&folds) {
            folded.add_second(Some(f), r).unwrap();
        }
        let (all, without) = folded.finish().unwrap();
        let direct = |keep: &dyn Fn(usize) -> bool| {
            let mut b = LevelStatsBuilder::new(c, len);
            let chosen: Vec<&Vec<f32>> = images
                .iter()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(_, r)| r)
                .collect();
            chosen.iter().for_each(|r| b.add_first(r));
            b.end_first().unwrap();
            chosen.iter().for_each(|r| b.add_second(r).unwrap());
            b.finish().unwrap()
        };
        assert_eq!(all, direct(&|_| true));
        assert_eq!(without.len(), k);
        for (f, stats) in without.iter().enumerate() {
            assert_eq!(*stats, direct(&|i| folds[i] != f), "fold {f}");
            assert_ne!(*stats, all);
        }
        // Without folds it is the plain builder.
        let mut plain = FoldedStatsBuilder::new(c, len, 0);
        images.iter().for_each(|r| plain.add_first(None, r));
        plain.end_first().unwrap();
        images
            .iter()
            .for_each(|r| plain.add_second(None, r).unwrap());
        let (only, none) = plain.finish().unwrap();
        assert_eq!(only, all);
        assert!(none.is_empty());
    }

    #[test]
    fn plans_hold_back_what_the_configuration_asks_and_refuse_what_cannot_calibrate() {
        // Without cross-fitting: today's split.
        let p = calibration_plan(40, 0.1, 3, 0, 7).unwrap();
        assert_eq!((p.train.len(), p.held_out.len(), p.folds), (36, 4, 0));
        assert_eq!(p.pool_size(), 4);
        let err = calibration_plan(20, 0.1, 0, 0, 7).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(err.message().contains("cross_fit_folds"), "{err}");
        // With it, held-out images are optional and every training image is scored.
        let p = calibration_plan(12, 0.0, 0, 5, 7).unwrap();
        assert_eq!((p.train.len(), p.held_out.len(), p.folds), (12, 0, 5));
        assert_eq!(p.pool_size(), 12);
        let p = calibration_plan(12, 0.1, 3, 5, 7).unwrap();
        assert_eq!((p.train.len(), p.held_out.len(), p.pool_size()), (9, 3, 12));
        assert_eq!(
            p.held_out,
            calibration_plan(12, 0.1, 3, 0, 7).unwrap().held_out
        );
        // More folds than training images: one image per fold (the jackknife).
        assert_eq!(calibration_plan(12, 0.0, 0, 64, 7).unwrap().folds, 12);
        // Three training images: three folds leave two per fold, two folds leave one.
        assert_eq!(calibration_plan(3, 0.0, 0, 3, 7).unwrap().pool_size(), 3);
        let err = calibration_plan(3, 0.0, 0, 2, 7).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.message().contains("at least 4 are needed"), "{err}");
        let err = calibration_plan(2, 0.0, 0, 5, 7).unwrap_err();
        assert!(err.message().contains("at least 3 are needed"), "{err}");
        let err = calibration_plan(4, 0.0, 2, 5, 7).unwrap_err();
        assert!(err.message().contains("2 are held back"), "{err}");
        assert!(err.message().contains("at least 5 are needed"), "{err}");
        assert_eq!(calibration_plan(5, 0.0, 2, 5, 7).unwrap().pool_size(), 5);
        // Too few training images to cross-fit, but held-out images enough to calibrate:
        // they calibrate alone, as without cross-fitting.
        let p = calibration_plan(5, 0.0, 3, 5, 7).unwrap();
        assert_eq!((p.train.len(), p.folds, p.pool_size()), (2, 0, 3));
        let err = calibration_plan(3, 0.0, 3, 5, 7).unwrap_err();
        assert!(err.message().contains("at least 4 are needed"), "{err}");
        let err = calibration_plan(40, 0.0, 0, 1, 7).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
    }

    #[test]
    fn fewest_training_images_per_fold_count() {
        assert_eq!(fewest_to_cross_fit(2), 4);
        assert_eq!(fewest_to_cross_fit(3), 3);
        assert_eq!(fewest_to_cross_fit(10), 3);
    }
}
