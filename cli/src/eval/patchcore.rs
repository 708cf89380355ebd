//! A PatchCore baseline (Roth et al., CVPR 2022) on the backbone maps the VarAD model uses,
//! so the two methods differ only in how they judge a token.
//!
//! Per level: every token is averaged with its 3 x 3 neighbourhood (zero padding counted,
//! as `AvgPool2d(3, 1, 1)`), the normal tokens of all training images form a memory bank
//! that greedy k-center coreset selection reduces (on a seeded random projection, for
//! speed), and a test token's score is its Euclidean distance to the nearest bank token.
//! The level maps are then combined exactly as VarAD's are (bilinear onto the finest grid,
//! summed), and the image map and image score are made by the same scoring stage.
//!
//! Calibrated like VarAD: [`PatchCore::cross_fit`] scores every training image out of
//! sample (its fold's memory banks are selected, by the same coreset rule, from the other
//! folds' images), and the harness adds held-out images scored against the final banks and
//! fits a [`Calibration`] on that pool.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use varad::image::{ImageView, InputGeometry};
use varad::model::combine::add_resized;
use varad::model::coreset::{greedy_coreset, matmul, project, random_projection};
pub use varad::model::neighbours::pool_tokens;
use varad::model::Model;
use varad::predictor::rng::SplitMix64;
use varad::score::{image_score, map_to_image, Calibration};
use varad::{Error, Result};

use super::{ScoredMap, Scorer};

/// How the memory bank is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchCoreConfig {
    /// Share of the training tokens kept in the bank, per level. Default 0.1 (the paper's
    /// 10 %).
    pub coreset_fraction: f64,
    /// At most this many bank tokens per level (`None`: no cap). Selection costs
    /// `tokens x bank x dims`, so a cap bounds the training time on large sets.
    pub max_bank: Option<usize>,
    /// Dimensions of the random projection the selection runs on. Default 128. Levels
    /// with no more channels than this are selected on their own features.
    pub projection_dims: usize,
    /// Seed of the projection and of the first bank token.
    pub seed: u64,
}

impl Default for PatchCoreConfig {
    fn default() -> Self {
        PatchCoreConfig {
            coreset_fraction: 0.1,
            max_bank: None,
            projection_dims: 128,
            seed: 0,
        }
    }
}

/// One level's memory bank: `len x dims` tokens, row-major, and their squared norms.
#[derive(Debug, Clone)]
struct Bank {
    dims: usize,
    tokens: Vec<f32>,
    norms: Vec<f32>,
}

/// The PatchCore baseline: a VarAD [`Model`] used only for its backbone and level layout,
/// and one memory bank per level.
pub struct PatchCore {
    model: Model,
    config: PatchCoreConfig,
    /// Pooled training tokens per level, `[n, C]`, until [`PatchCore::fit`]; each image
    /// adds a level's whole grid, in the order added.
    candidates: Vec<Vec<f32>>,
    /// Where each training image landed in the input, in the order added.
    geometries: Vec<InputGeometry>,
    banks: Vec<Bank>,
    calibration: Option<Calibration>,
}

impl std::fmt::Debug for PatchCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchCore")
            .field("config", &self.config)
            .field("bank_sizes", &self.bank_sizes())
            .finish_non_exhaustive()
    }
}

impl Bank {
    fn new(tokens: Vec<f32>, dims: usize) -> Bank {
        let norms = tokens
            .chunks_exact(dims)
            .map(|t| t.iter().map(|v| v * v).sum())
            .collect();
        Bank {
            dims,
            tokens,
            norms,
        }
    }

    fn len(&self) -> usize {
        self.norms.len()
    }

    /// Euclidean distance from each query row (`[m, dims]`) to its nearest bank token:
    /// `||a||^2 + ||b||^2 - 2 a.b` from a GEMM per block, clamped at 0 (rounding can push
    /// it below), then the square root. Blocks of query rows run in parallel.
    fn nearest(&self, queries: &[f32]) -> Vec<f32> {
        const ROWS: usize = 128;
        const BANK: usize = 2048;
        let d = self.dims;
        let mut out = vec![f32::INFINITY; queries.len() / d];
        out.par_chunks_mut(ROWS)
            .zip(queries.par_chunks(ROWS * d))
            .for_each(|(best, q)| {
                let m = best.len();
                let qn: Vec<f32> = q
                    .chunks_exact(d)
                    .map(|r| r.iter().map(|v| v * v).sum())
                    .collect();
                for (bank, bn) in self.tokens.chunks(BANK * d).zip(self.norms.chunks(BANK)) {
                    let n = bn.len();
                    // The bank block transposed, so the GEMM is a plain [m,d] x [d,n].
                    let mut bt = vec![0f32; d * n];
                    for (j, row) in bank.chunks_exact(d).enumerate() {
                        for (i, &v) in row.iter().enumerate() {
                            bt[i * n + j] = v;
                        }
                    }
                    let dots = matmul(q, &bt, m, d, n);
                    for (i, b) in best.iter_mut().enumerate() {
                        let row = &dots[i * n..(i + 1) * n];
                        for (&dot, &norm) in row.iter().zip(bn) {
                            let dist = qn[i] + norm - 2.0 * dot;
                            if dist < *b {
                                *b = dist;
                            }
                        }
                    }
                }
                for b in best.iter_mut() {
                    *b = b.max(0.0).sqrt();
                }
            });
        out
    }
}

/// Distance of each query row to its nearest bank row, the slow, obvious way (for tests).
pub fn nearest_brute_force(queries: &[f32], bank: &[f32], dims: usize) -> Vec<f32> {
    queries
        .chunks_exact(dims)
        .map(|q| {
            bank.chunks_exact(dims)
                .map(|b| {
                    q.iter()
                        .zip(b)
                        .map(|(x, y)| ((x - y) as f64).powi(2))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min)
                .sqrt() as f32
        })
        .collect()
}

/// The nearest-neighbour distances of `queries` to `bank` (both `[rows, dims]`), computed
/// as the baseline computes them (GEMM, parallel).
pub fn nearest_distances(queries: &[f32], bank: &[f32], dims: usize) -> Vec<f32> {
    Bank::new(bank.to_vec(), dims).nearest(queries)
}

impl PatchCore {
    /// A baseline on `model`'s backbone and levels (its weights are not used).
    pub fn new(model: Model, config: PatchCoreConfig) -> Result<PatchCore> {
        if !(config.coreset_fraction > 0.0 && config.coreset_fraction <= 1.0) {
            return Err(Error::config(format!(
                "coreset fraction {} must be in (0, 1]",
                config.coreset_fraction
            )));
        }
        if config.projection_dims == 0 {
            return Err(Error::config("projection dimensions must be at least 1"));
        }
        let levels = model.layout().len();
        Ok(PatchCore {
            model,
            config,
            candidates: vec![Vec::new(); levels],
            geometries: Vec::new(),
            banks: Vec::new(),
            calibration: None,
        })
    }

    /// The model whose backbone this baseline uses.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Per level, the pooled `[h * w, C]` tokens of one image's concatenated level maps
    /// (as [`Model::features`] gives them).
    fn pooled_levels(&self, features: &[f32]) -> Vec<Vec<f32>> {
        let mut offset = 0;
        self.model
            .layout()
            .iter()
            .map(|l| {
                let n = l.values();
                let pooled = pool_tokens(&features[offset..offset + n], l.channels, l.grid);
                offset += n;
                pooled
            })
            .collect()
    }

    /// Adds normal training images to the memory-bank candidates.
    pub fn add(&mut self, images: &[ImageView]) -> Result<()> {
        if !self.banks.is_empty() {
            return Err(Error::invalid_argument("PatchCore is already fitted"));
        }
        for (features, geometry) in self.model.features(images)? {
            let pooled = self.pooled_levels(&features);
            for (bank, tokens) in self.candidates.iter_mut().zip(pooled) {
                bank.extend_from_slice(&tokens);
            }
            self.geometries.push(geometry);
        }
        Ok(())
    }

    /// Training images added so far.
    pub fn len(&self) -> usize {
        self.geometries.len()
    }

    /// Whether no training image was added.
    pub fn is_empty(&self) -> bool {
        self.geometries.is_empty()
    }

    /// Image `i`'s pooled tokens in each level (a slice of the candidates).
    fn image_tokens(&self, i: usize) -> Vec<&[f32]> {
        self.candidates
            .iter()
            .zip(self.model.layout())
            .map(|(tokens, l)| {
                let per_image = l.values();
                &tokens[i * per_image..(i + 1) * per_image]
            })
            .collect()
    }

    /// Out-of-sample maps and scores of the training images, in the order added (call
    /// before [`PatchCore::fit`]): the images are dealt into `min(folds, images)` folds
    /// (seeded by the configuration's seed), and each fold's images are scored against
    /// memory banks selected, by the same coreset rule as the final banks, from the other
    /// folds' tokens alone. Costs one coreset selection per fold over `(K - 1) / K` of
    /// the tokens, and one scoring pass over the training images.
    ///
    /// [`varad::ErrorKind::InvalidArgument`] for fewer than 2 folds or training images,
    /// or after `fit`.
    pub fn cross_fit(&self, folds: usize) -> Result<Vec<ScoredMap>> {
        let n = self.len();
        let folds = folds.min(n);
        if folds < 2 {
            return Err(Error::invalid_argument(format!(
                "cross-fitting needs at least 2 folds and 2 training images (got {folds} folds of {n} images)"
            )));
        }
        if !self.banks.is_empty() {
            return Err(Error::invalid_argument(
                "PatchCore is already fitted: its training tokens are gone",
            ));
        }
        let fold_of = deal_folds(n, folds, self.config.seed);
        let mut out: Vec<Option<ScoredMap>> = vec![None; n];
        for fold in 0..folds {
            let (inside, outside): (Vec<usize>, Vec<usize>) =
                (0..n).partition(|&i| fold_of[i] == fold);
            let others: Vec<Vec<f32>> = (0..self.candidates.len())
                .map(|h| {
                    outside
                        .iter()
                        .flat_map(|&i| self.image_tokens(i)[h].iter().copied())
                        .collect()
                })
                .collect();
            let banks = self.model.install(|| self.select_banks(&others));
            for i in inside {
                let pooled = self.image_tokens(i);
                let scored = self
                    .model
                    .install(|| self.score_pooled(&banks, &pooled, &self.geometries[i]))?;
                out[i] = Some(scored);
            }
        }
        Ok(out
            .into_iter()
            .map(|s| s.expect("every image is in a fold"))
            .collect())
    }

    /// Reduces the candidates to the memory banks by coreset selection.
    pub fn fit(&mut self) -> Result<()> {
        if self.candidates.iter().all(|c| c.is_empty()) {
            return Err(Error::invalid_argument(
                "PatchCore was given no training images",
            ));
        }
        let candidates = std::mem::take(&mut self.candidates);
        self.banks = self.model.install(|| self.select_banks(&candidates));
        Ok(())
    }

    /// Each level's memory bank from its `[n, C]` candidate tokens, by coreset selection.
    fn select_banks(&self, candidates: &[Vec<f32>]) -> Vec<Bank> {
        let config = &self.config;
        candidates
            .iter()
            .zip(self.model.layout())
            .enumerate()
            .map(|(h, (tokens, level))| {
                let dims = level.channels;
                let n = tokens.len() / dims;
                let mut k = ((config.coreset_fraction * n as f64).ceil() as usize).max(1);
                if let Some(cap) = config.max_bank {
                    k = k.min(cap.max(1));
                }
                let seed = config.seed ^ (h as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let start = (SplitMix64::new(seed).next_u64() % n as u64) as usize;
                let chosen = if k >= n {
                    (0..n).collect()
                } else if dims > config.projection_dims {
                    let p = random_projection(dims, config.projection_dims, seed);
                    let projected = project(tokens, &p, dims, config.projection_dims);
                    greedy_coreset(&projected, config.projection_dims, k, start)
                } else {
                    greedy_coreset(tokens, dims, k, start)
                };
                let bank: Vec<f32> = chosen
                    .iter()
                    .flat_map(|&i| tokens[i * dims..(i + 1) * dims].iter().copied())
                    .collect();
                Bank::new(bank, dims)
            })
            .collect()
    }

    /// Thresholds for the decisions: [`Scorer::score_features`] then decides every image
    /// (fitted by the harness on this baseline's out-of-sample normal scores).
    pub fn set_calibration(&mut self, calibration: Calibration) {
        self.calibration = Some(calibration);
    }

    /// Tokens in each level's memory bank.
    pub fn bank_sizes(&self) -> Vec<usize> {
        self.banks.iter().map(Bank::len).collect()
    }

    /// The raw map on the finest grid of one image's pooled level tokens against `banks`.
    fn raw_map(&self, banks: &[Bank], pooled: &[&[f32]]) -> Vec<f32> {
        let finest = self.model.finest_grid();
        let mut total = vec![0f32; finest.0 * finest.1];
        for ((pooled, bank), level) in pooled.iter().zip(banks).zip(self.model.layout()) {
            let map = bank.nearest(pooled);
            add_resized(&map, level.grid, &mut total, finest);
        }
        total
    }

    /// One image's map and score against `banks`, decided when calibrated.
    fn score_pooled(
        &self,
        banks: &[Bank],
        pooled: &[&[f32]],
        geometry: &InputGeometry,
    ) -> Result<ScoredMap> {
        let (gh, gw) = self.model.finest_grid();
        let config = self.model.config();
        let map = map_to_image(
            &self.raw_map(banks, pooled),
            gh,
            gw,
            geometry,
            config.score.sigma,
        )?;
        let score = image_score(&map, None, config.score.calibration.score_policy)?;
        Ok(ScoredMap {
            map,
            width: geometry.image_width as usize,
            height: geometry.image_height as usize,
            image_score: score,
            decision: self.calibration.as_ref().map(|c| c.decide(score)),
        })
    }

    fn score_one(&self, features: &[f32], geometry: &InputGeometry) -> Result<ScoredMap> {
        let pooled = self.pooled_levels(features);
        let refs: Vec<&[f32]> = pooled.iter().map(|p| p.as_slice()).collect();
        self.score_pooled(&self.banks, &refs, geometry)
    }
}

/// Image `i`'s fold, for `n` images dealt into `folds` folds in an order shuffled by
/// `seed`: fold sizes differ by at most one.
pub fn deal_folds(n: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed ^ 0xF01D_5EED);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut fold_of = vec![0; n];
    for (position, &i) in order.iter().enumerate() {
        fold_of[i] = position % folds.max(1);
    }
    fold_of
}

impl Scorer for PatchCore {
    fn name(&self) -> &str {
        "PatchCore"
    }

    fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    fn score_features(&self, features: &[f32], geometry: &InputGeometry) -> Result<ScoredMap> {
        if self.banks.is_empty() {
            return Err(Error::invalid_argument("PatchCore is not fitted"));
        }
        self.model.check_feature_count(features)?;
        self.model.install(|| self.score_one(features, geometry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..n).map(|_| rng.next_f64() as f32 - 0.5).collect()
    }

    #[test]
    fn nearest_neighbour_matches_brute_force() {
        for (m, n, d) in [(1, 1, 3), (37, 5000, 24), (300, 77, 130)] {
            let q = noise(m * d, 1);
            let b = noise(n * d, 2);
            let fast = nearest_distances(&q, &b, d);
            let slow = nearest_brute_force(&q, &b, d);
            for (f, s) in fast.iter().zip(&slow) {
                assert!((f - s).abs() < 1e-3 * s.max(1.0), "{m} {n} {d}: {f} vs {s}");
            }
        }
        // A query in the bank is at distance 0, not NaN.
        let b = noise(10 * 8, 3);
        let d = nearest_distances(&b[16..24], &b, 8);
        assert!(d[0].is_finite() && d[0] < 1e-3, "{d:?}");
    }

    #[test]
    fn folds_are_seeded_and_balanced() {
        let folds = deal_folds(11, 5, 3);
        assert_eq!(folds, deal_folds(11, 5, 3));
        assert_ne!(folds, deal_folds(11, 5, 4));
        let mut sizes = [0; 5];
        for &f in &folds {
            sizes[f] += 1;
        }
        assert_eq!(sizes.iter().sum::<usize>(), 11);
        assert!(sizes.iter().all(|&s| s == 2 || s == 3), "{sizes:?}");
        assert_eq!(deal_folds(3, 5, 0).iter().max(), Some(&2));
    }
}
