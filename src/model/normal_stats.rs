//! What the prediction errors look like on normal images, and the map normalisations
//! built on it (an improvement over the paper; `MapNorm::None` is the paper's
//! map exactly).
//!
//! The paper's level map is the raw squared error `||r||^2` summed over channels, and the
//! levels are summed as they are. Two things make that map a poor score on its own: a
//! channel (and a level) with a large spread of errors on normal images dominates one
//! with a small spread whatever either says, and some grid positions (near the borders,
//! where a direction predicts from BOS padding only) err more on every normal image. So
//! after training, the model records per level, on its training images:
//! - the mean squared residual of each channel, `v_c`, and the mean of the raw map;
//! - the mean `mu(p)` and spread `sigma(p)` of the channel-whitened map
//!   `W(p) = mean_c r_c(p)^2 / v_c` at every grid position `p`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::neighbours::NeighbourBank;
use crate::{Error, ErrorKind, Result};

/// How a level's prediction residuals become its anomaly map before the levels are summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapNorm {
    /// The paper's map: `A_h = ||r||^2`, the levels summed as they are.
    #[default]
    None,
    /// `A_h = ||r||^2 / mean(A_h on normal images)`: every level weighs the same.
    Level,
    /// `A_h = mean_c r_c^2 / v_c`: every channel weighs the same (and so every level;
    /// the map is 1 on average on normal images).
    Channel,
    /// The channel-whitened map scored against its normal spread at its own position:
    /// `A_h(p) = (W(p) - mu(p)) / sqrt(sigma(p)^2 + s^2)`, `s` the median of `sigma`
    /// over the grid (so a position whose few normal samples happened to agree is not
    /// trusted beyond the level's typical spread).
    Position,
    /// [`MapNorm::Position`] two-sided, `|A_h(p)|`: a region that errs far *less* than
    /// normal there (a blank where a textured part belongs, which predicts itself) counts
    /// too.
    PositionTwoSided,
}

impl MapNorm {
    /// Every variant, in the order reports list them.
    pub const ALL: [MapNorm; 5] = [
        MapNorm::None,
        MapNorm::Level,
        MapNorm::Channel,
        MapNorm::Position,
        MapNorm::PositionTwoSided,
    ];

    /// The name used in configurations and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MapNorm::None => "none",
            MapNorm::Level => "level",
            MapNorm::Channel => "channel",
            MapNorm::Position => "position",
            MapNorm::PositionTwoSided => "position_two_sided",
        }
    }
}

impl std::fmt::Display for MapNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MapNorm {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        MapNorm::ALL
            .into_iter()
            .find(|n| n.name() == text)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown map normalisation `{text}`: expected none, level, channel, position or position_two_sided"
                ))
            })
    }
}

/// One level's error statistics on normal images.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelStats {
    /// Mean squared residual of each channel, `[C]`.
    pub channel_var: Vec<f32>,
    /// Mean of the raw map `||r||^2` over positions and images.
    pub level_mean: f32,
    /// Mean of the channel-whitened map at each grid position, `[h * w]`.
    pub position_mean: Vec<f32>,
    /// Standard deviation of the channel-whitened map at each grid position, `[h * w]`.
    pub position_std: Vec<f32>,
}

/// Every level's statistics, finest first.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalStats {
    /// One entry per used level.
    pub levels: Vec<LevelStats>,
    /// The nearest-neighbour term's memory banks, at most one per level, in level order;
    /// empty when training built none ([`crate::TrainConfig::neighbour_bank_tokens`]).
    pub neighbours: Vec<NeighbourBank>,
}

/// Smallest variance or spread divided by: keeps a dead channel (all residuals zero on
/// normal images) from turning into an infinite weight. Spreads derived from variances
/// are floored at its square root. Stored statistics below it are refused
/// ([`LevelStats::check`], [`NeighbourBank::check`]): training never records them, and
/// the scores they would give are meaningless.
pub(crate) const FLOOR: f64 = 1e-12;

impl NormalStats {
    /// Statistics that leave the channel-whitened map as it is (unit variances, zero
    /// position means, unit spreads) for levels of `(channels, grid positions)`: what
    /// benchmarks of untrained models score with, at the normalisations' real cost.
    pub fn neutral(levels: impl IntoIterator<Item = (usize, usize)>) -> Self {
        NormalStats {
            levels: levels
                .into_iter()
                .map(|(c, len)| LevelStats {
                    channel_var: vec![1.0; c],
                    level_mean: 1.0,
                    position_mean: vec![0.0; len],
                    position_std: vec![1.0; len],
                })
                .collect(),
            neighbours: Vec::new(),
        }
    }
}

impl LevelStats {
    /// The level's map under `norm` from its residuals `[L, C]` (token-major).
    pub fn map(&self, norm: MapNorm, residuals: &[f32], c: usize) -> Vec<f32> {
        match norm {
            MapNorm::None => super::level::squared_norms(residuals, c),
            MapNorm::Level => {
                let scale = 1.0 / (self.level_mean as f64).max(FLOOR);
                super::level::squared_norms(residuals, c)
                    .into_iter()
                    .map(|v| (v as f64 * scale) as f32)
                    .collect()
            }
            MapNorm::Channel => self.whitened(residuals, c),
            MapNorm::Position | MapNorm::PositionTwoSided => {
                let two_sided = norm == MapNorm::PositionTwoSided;
                let spread = median(&self.position_std) as f64;
                let mut map = self.whitened(residuals, c);
                map.par_iter_mut()
                    .zip(&self.position_mean)
                    .zip(&self.position_std)
                    .with_min_len(POSITIONS_PER_TASK)
                    .for_each(|((v, &mu), &sigma)| {
                        let s = (sigma as f64).hypot(spread).max(FLOOR.sqrt());
                        let z = (*v as f64 - mu as f64) / s;
                        *v = if two_sided { z.abs() } else { z } as f32;
                    });
                map
            }
        }
    }

    /// `W(p) = mean_c r_c(p)^2 / v_c`.
    fn whitened(&self, residuals: &[f32], c: usize) -> Vec<f32> {
        let weights: Vec<f32> = self
            .channel_var
            .iter()
            .map(|&v| (1.0 / ((v as f64).max(FLOOR) * c as f64)) as f32)
            .collect();
        residuals
            .par_chunks_exact(c)
            .with_min_len(POSITIONS_PER_TASK)
            .map(|r| r.iter().zip(&weights).map(|(&x, &w)| w * x * x).sum())
            .collect()
    }

    /// Checks the statistics a stored model scores with (a model file is untrusted
    /// input): the shapes against a level of `c` channels on a grid of `len` positions,
    /// every value finite, and what the maps divide by or subtract:
    /// - every channel variance and the level mean at least `FLOOR`, 1e-12 (training records
    ///   mean squared residuals, which are above it on any real backbone);
    /// - every position mean at least 0 (a mean of the non-negative whitened map);
    /// - every position spread at least 0, and their median (the level's typical spread,
    ///   added to every position's, see [`MapNorm::Position`]) at least `sqrt(FLOOR)`.
    ///   A single position may have no spread: a region that is identical on every
    ///   training image (a saturated background) does, and the median stands in for it.
    ///
    /// [`ErrorKind::ModelFile`]; the message starts with the field's name
    /// (`channel_var`, `level_mean`, `position_mean`, `position_std`).
    pub fn check(&self, c: usize, len: usize) -> Result<()> {
        let first_bad = |values: &[f32], ok: &dyn Fn(f32) -> bool| {
            values.iter().position(|&v| !ok(v)).map(|i| (i, values[i]))
        };
        let finite = |v: f32| v.is_finite();
        let problem = if self.channel_var.len() != c {
            Some(format!(
                "channel_var has {} values for {c} channels",
                self.channel_var.len()
            ))
        } else if self.position_mean.len() != len || self.position_std.len() != len {
            Some(format!(
                "position_mean / position_std have {} / {} values for a grid of {len}",
                self.position_mean.len(),
                self.position_std.len()
            ))
        } else if let Some((i, v)) = first_bad(&self.channel_var, &finite) {
            Some(format!("channel_var[{i}] is a non-finite value ({v})"))
        } else if !self.level_mean.is_finite() {
            Some(format!(
                "level_mean is a non-finite value ({})",
                self.level_mean
            ))
        } else if let Some((i, v)) = first_bad(&self.position_mean, &finite) {
            Some(format!("position_mean[{i}] is a non-finite value ({v})"))
        } else if let Some((i, v)) = first_bad(&self.position_std, &finite) {
            Some(format!("position_std[{i}] is a non-finite value ({v})"))
        } else if let Some((i, v)) = first_bad(&self.channel_var, &|v| v as f64 >= FLOOR) {
            Some(format!(
                "channel_var[{i}] is {v}, below the floor {FLOOR} of a variance"
            ))
        } else if (self.level_mean as f64) < FLOOR {
            Some(format!(
                "level_mean is {}, below the floor {FLOOR}",
                self.level_mean
            ))
        } else if let Some((i, v)) = first_bad(&self.position_mean, &|v| v >= 0.0) {
            Some(format!(
                "position_mean[{i}] is {v}: a mean of a non-negative map cannot be negative"
            ))
        } else if let Some((i, v)) = first_bad(&self.position_std, &|v| v >= 0.0) {
            Some(format!(
                "position_std[{i}] is {v}: a spread cannot be negative"
            ))
        } else if len > 0 && (median(&self.position_std) as f64) < FLOOR.sqrt() {
            Some(format!(
                "position_std has a median of {}, below the floor {} of a spread",
                median(&self.position_std),
                FLOOR.sqrt()
            ))
        } else {
            None
        };
        match problem {
            Some(p) => Err(Error::new(ErrorKind::ModelFile, p)),
            None => Ok(()),
        }
    }
}

fn median(values: &[f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    // The element a sort would put in the middle, found without sorting (every map).
    let mut values = values.to_vec();
    let middle = values.len() / 2;
    *values.select_nth_unstable_by(middle, f32::total_cmp).1
}

/// Grid positions per task of the maps' passes (a few microseconds of work each).
const POSITIONS_PER_TASK: usize = 1024;

/// Collects one level's statistics in two passes over the same normal images: the first
/// gives the channel variances and the raw mean, the second (which needs them) the
/// position statistics of the whitened map.
#[derive(Debug, Clone)]
pub struct LevelStatsBuilder {
    channels: usize,
    len: usize,
    channel_sq: Vec<f64>,
    raw_sum: f64,
    first_pass_images: usize,
    first: Option<LevelStats>,
    position_sum: Vec<f64>,
    position_sq: Vec<f64>,
    second_pass_images: usize,
}

impl LevelStatsBuilder {
    /// An empty builder for a level of `channels` channels on a grid of `len` positions.
    pub fn new(channels: usize, len: usize) -> Self {
        LevelStatsBuilder {
            channels,
            len,
            channel_sq: vec![0.0; channels],
            raw_sum: 0.0,
            first_pass_images: 0,
            first: None,
            position_sum: vec![0.0; len],
            position_sq: vec![0.0; len],
            second_pass_images: 0,
        }
    }

    /// First pass: one image's residuals `[L, C]`.
    pub fn add_first(&mut self, residuals: &[f32]) {
        debug_assert_eq!(residuals.len(), self.len * self.channels);
        for row in residuals.chunks_exact(self.channels) {
            for (sum, &r) in self.channel_sq.iter_mut().zip(row) {
                let sq = r as f64 * r as f64;
                *sum += sq;
                self.raw_sum += sq;
            }
        }
        self.first_pass_images += 1;
    }

    /// Ends the first pass; from here on [`LevelStatsBuilder::add_second`] takes the same
    /// images again.
    pub fn end_first(&mut self) -> Result<()> {
        let tokens = (self.first_pass_images * self.len) as f64;
        if tokens == 0.0 {
            return Err(Error::invalid_argument(
                "normal-image statistics need at least one image",
            ));
        }
        self.first = Some(LevelStats {
            channel_var: self
                .channel_sq
                .iter()
                .map(|&s| (s / tokens) as f32)
                .collect(),
            level_mean: (self.raw_sum / tokens) as f32,
            position_mean: vec![0.0; self.len],
            position_std: vec![1.0; self.len],
        });
        Ok(())
    }

    /// Second pass: the same image's residuals again.
    pub fn add_second(&mut self, residuals: &[f32]) -> Result<()> {
        let first = self.first.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                "second statistics pass before the first ended",
            )
        })?;
        let whitened = first.whitened(residuals, self.channels);
        for ((s, q), &w) in self
            .position_sum
            .iter_mut()
            .zip(&mut self.position_sq)
            .zip(&whitened)
        {
            *s += w as f64;
            *q += w as f64 * w as f64;
        }
        self.second_pass_images += 1;
        Ok(())
    }

    /// The statistics. With a single image the spread is unknown and taken as 1 (the
    /// whitened map's mean on normal images).
    pub fn finish(self) -> Result<LevelStats> {
        let mut stats = self.first.ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                "statistics finished before the first pass ended",
            )
        })?;
        let n = self.second_pass_images as f64;
        if n == 0.0 {
            return Err(Error::new(
                ErrorKind::Internal,
                "statistics finished without the second pass",
            ));
        }
        for p in 0..self.len {
            let mean = self.position_sum[p] / n;
            stats.position_mean[p] = mean as f32;
            stats.position_std[p] = if n > 1.0 {
                // Sample variance; clamped at zero against rounding.
                ((self.position_sq[p] - n * mean * mean) / (n - 1.0))
                    .max(0.0)
                    .sqrt() as f32
            } else {
                1.0
            };
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn residuals(seed: u64, len: usize, c: usize) -> Vec<f32> {
        let mut rng = crate::predictor::rng::SplitMix64::new(seed);
        (0..len * c)
            .map(|i| {
                let scale = (i % c + 1) as f64; // channel k has spread k + 1
                ((rng.next_u64() as f64 / u64::MAX as f64) - 0.5) as f32 * scale as f32
            })
            .collect()
    }

    fn stats(images: &[Vec<f32>], len: usize, c: usize) -> LevelStats {
        let mut b = LevelStatsBuilder::new(c, len);
        for r in images {
            b.add_first(r);
        }
        b.end_first().unwrap();
        for r in images {
            b.add_second(r).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn none_is_the_plain_squared_norm() {
        let (len, c) = (7, 3);
        let r = residuals(1, len, c);
        let s = stats(std::slice::from_ref(&r), len, c);
        let want: Vec<f32> = r
            .chunks_exact(c)
            .map(|row| row.iter().map(|&x| x * x).sum())
            .collect();
        assert_eq!(s.map(MapNorm::None, &r, c), want);
    }

    #[test]
    fn statistics_match_a_slow_computation() {
        let (len, c) = (5, 4);
        let images: Vec<Vec<f32>> = (0..3).map(|i| residuals(10 + i, len, c)).collect();
        let s = stats(&images, len, c);
        for ch in 0..c {
            let mut sum = 0.0f64;
            for r in &images {
                for p in 0..len {
                    sum += (r[p * c + ch] as f64).powi(2);
                }
            }
            let want = sum / (3 * len) as f64;
            assert!((s.channel_var[ch] as f64 - want).abs() < 1e-6 * want.max(1e-6));
        }
        // Whitened maps by hand, then per-position mean and sample std.
        let w: Vec<Vec<f64>> = images
            .iter()
            .map(|r| {
                (0..len)
                    .map(|p| {
                        (0..c)
                            .map(|ch| (r[p * c + ch] as f64).powi(2) / s.channel_var[ch] as f64)
                            .sum::<f64>()
                            / c as f64
                    })
                    .collect()
            })
            .collect();
        for p in 0..len {
            let mean = w.iter().map(|m| m[p]).sum::<f64>() / 3.0;
            let var = w.iter().map(|m| (m[p] - mean).powi(2)).sum::<f64>() / 2.0;
            assert!((s.position_mean[p] as f64 - mean).abs() < 1e-5, "{p}");
            assert!((s.position_std[p] as f64 - var.sqrt()).abs() < 1e-5, "{p}");
        }
        // The whitened map averages 1 over the images it was fitted on.
        let all: f64 = images
            .iter()
            .flat_map(|r| s.map(MapNorm::Channel, r, c))
            .map(|v| v as f64)
            .sum();
        assert!((all / (3 * len) as f64 - 1.0).abs() < 1e-5);
        let level: f64 = images
            .iter()
            .flat_map(|r| s.map(MapNorm::Level, r, c))
            .map(|v| v as f64)
            .sum();
        assert!((level / (3 * len) as f64 - 1.0).abs() < 1e-5);
    }

    #[test]
    fn position_scores_against_each_positions_normal_spread() {
        // Position 0 always errs ten times more on normal images: the position map does
        // not flag it, the channel map does.
        let (len, c) = (6, 2);
        let images: Vec<Vec<f32>> = (0..8)
            .map(|i| {
                let mut r = residuals(20 + i, len, c);
                r[0] *= 10.0;
                r[1] *= 10.0;
                r
            })
            .collect();
        let s = stats(&images, len, c);
        let normal = residuals(99, len, c);
        let mut flagged = normal.clone();
        flagged[0] *= 10.0;
        flagged[1] *= 10.0;
        let channel = s.map(MapNorm::Channel, &flagged, c);
        let position = s.map(MapNorm::Position, &flagged, c);
        let max_other = |m: &[f32]| m[1..].iter().cloned().fold(f32::MIN, f32::max);
        assert!(channel[0] > max_other(&channel));
        assert!(position[0] < 3.0, "{position:?}");
        // A real outlier at position 3 stands out in the position map.
        let mut bad = normal;
        bad[3 * c] = 40.0;
        let position = s.map(MapNorm::Position, &bad, c);
        let top = position
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(top, 3, "{position:?}");
        // A position that errs far less than it normally does: only the two-sided map
        // flags it.
        let mut quiet = residuals(98, len, c);
        quiet[4 * c] = 0.0;
        quiet[4 * c + 1] = 0.0;
        let one = s.map(MapNorm::Position, &quiet, c);
        let two = s.map(MapNorm::PositionTwoSided, &quiet, c);
        assert!(one[4] < 0.0, "{one:?}");
        assert_eq!(two[4], one[4].abs());
        assert!(two.iter().all(|&v| v >= 0.0));
    }

    #[test]
    fn a_single_image_gives_unit_spread_and_names_parse() {
        let (len, c) = (4, 2);
        let s = stats(&[residuals(3, len, c)], len, c);
        assert!(s.position_std.iter().all(|&v| v == 1.0));
        for n in MapNorm::ALL {
            assert_eq!(n.name().parse::<MapNorm>().unwrap(), n);
        }
        assert!("zscore".parse::<MapNorm>().is_err());
        assert!(s.check(c, len).is_ok());
        assert!(s.check(c + 1, len).is_err());
        let mut broken = s.clone();
        broken.position_std[1] = f32::NAN;
        assert!(broken.check(c, len).is_err());
    }

    #[test]
    fn check_refuses_what_the_maps_cannot_divide_by() {
        let (len, c) = (6, 3);
        let images: Vec<Vec<f32>> = (0..4).map(|i| residuals(30 + i, len, c)).collect();
        let s = stats(&images, len, c);
        s.check(c, len).unwrap();
        let refused = |edit: &dyn Fn(&mut LevelStats), field: &str| {
            let mut broken = s.clone();
            edit(&mut broken);
            let err = broken.check(c, len).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ModelFile);
            assert!(err.message().starts_with(field), "{err}");
        };
        refused(
            &|b| b.channel_var[1] = 0.0,
            "channel_var[1] is 0, below the floor",
        );
        refused(&|b| b.channel_var[0] = -1.0, "channel_var[0] is -1");
        refused(
            &|b| b.channel_var[2] = f32::INFINITY,
            "channel_var[2] is a non-finite",
        );
        refused(&|b| b.level_mean = 0.0, "level_mean is 0");
        refused(&|b| b.level_mean = f32::NAN, "level_mean is a non-finite");
        refused(&|b| b.position_mean[3] = -0.5, "position_mean[3] is -0.5");
        refused(&|b| b.position_std[2] = -1.0, "position_std[2] is -1");
        refused(
            &|b| b.position_std.fill(0.0),
            "position_std has a median of 0",
        );
        refused(
            &|b| b.position_std.fill(1e-7),
            "position_std has a median of",
        );
        // One position without spread is what a region identical on every training image
        // gives; the level's median spread stands in for it.
        let mut one = s.clone();
        one.position_std[0] = 0.0;
        one.check(c, len).unwrap();
        assert!(one
            .map(MapNorm::Position, &images[0], c)
            .iter()
            .all(|v| v.is_finite() && v.abs() < 1e3));
        // Neutral statistics pass.
        NormalStats::neutral([(c, len)]).levels[0]
            .check(c, len)
            .unwrap();
    }
}
