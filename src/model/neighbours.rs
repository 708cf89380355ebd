//! A nearest-neighbour term fused into the anomaly map (an addition to the paper, off
//! with a weight of 0).
//!
//! The predictor judges a token by how well its context predicts it. That misses defects
//! that are predictable from their own surroundings but unlike anything on a normal part,
//! above all on parts that do not arrive registered (a blank where a tile belongs, on a
//! pattern whose position statistics no longer line up). A memory bank of normal tokens
//! catches those: a token's squared distance to its nearest bank token, on one level's
//! 3 x 3-averaged tokens, scored against the same distance on normal images
//! (leave-one-image-out, so a training token is not its own neighbour).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::coreset::matmul_transposed;
use super::inverted_file::InvertedFile;
use super::normal_stats::FLOOR;
use crate::predictor::rng::SplitMix64;
use crate::{Error, ErrorKind, Result};

/// How a neighbour bank's tokens are chosen from the training images' tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BankSelection {
    /// A seeded random draw: the bank samples the normal tokens in proportion, and a
    /// pattern rarer than one in `size` tokens may be left out.
    #[default]
    Random,
    /// Greedy k-center coreset selection ([`super::coreset`]): the bank covers every
    /// normal token as closely as its size allows, rare patterns included.
    Coreset,
}

impl BankSelection {
    /// The name used in configurations and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BankSelection::Random => "random",
            BankSelection::Coreset => "coreset",
        }
    }
}

impl std::str::FromStr for BankSelection {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "random" => Ok(BankSelection::Random),
            "coreset" => Ok(BankSelection::Coreset),
            other => Err(Error::config(format!(
                "unknown neighbour bank selection `{other}`: random or coreset"
            ))),
        }
    }
}

/// Which levels get a neighbour bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BankLevels {
    /// The coarsest level only.
    #[default]
    Coarsest,
    /// Every used level, each with its own bank of `neighbour_bank_tokens` tokens.
    All,
}

impl BankLevels {
    /// The name used in configurations and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BankLevels::Coarsest => "coarsest",
            BankLevels::All => "all",
        }
    }
}

impl std::str::FromStr for BankLevels {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "coarsest" => Ok(BankLevels::Coarsest),
            "all" => Ok(BankLevels::All),
            other => Err(Error::config(format!(
                "unknown neighbour bank levels `{other}`: coarsest or all"
            ))),
        }
    }
}

/// How a position's distance to the bank becomes the term's map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeighbourTerm {
    /// Standard deviations above the normal mean distance, 0 below it: a token closer
    /// to the bank than usual adds nothing.
    #[default]
    AboveNormal,
    /// The whole distance in standard deviations of the normal distances: the same
    /// ranking above the mean, and below it the closer token still ranks lower (the map
    /// stays non-negative; it is [`NeighbourTerm::AboveNormal`] without the floor, shifted
    /// by the normal mean's constant).
    Scaled,
}

impl NeighbourTerm {
    /// The name used in configurations and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NeighbourTerm::AboveNormal => "above_normal",
            NeighbourTerm::Scaled => "scaled",
        }
    }
}

impl std::str::FromStr for NeighbourTerm {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "above_normal" => Ok(NeighbourTerm::AboveNormal),
            "scaled" => Ok(NeighbourTerm::Scaled),
            other => Err(Error::config(format!(
                "unknown neighbour term `{other}`: above_normal or scaled"
            ))),
        }
    }
}

/// Width of the random projection coreset selection measures distances in: selection
/// touches every training token once per chosen token, and this bounds that work on wide
/// levels while keeping distances within a few percent.
const CORESET_PROJECTION: usize = 64;

/// A memory bank of normal tokens of one level and the distances seen on normal images.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourBank {
    /// The level (index into the model's levels) whose tokens the bank holds.
    pub level: usize,
    /// Channels of that level.
    pub dims: usize,
    /// The bank's tokens, `[n, dims]` row-major.
    pub tokens: Vec<f32>,
    /// Mean of the squared nearest-neighbour distance on normal images.
    pub mean: f32,
    /// Its standard deviation.
    pub std: f32,
    /// The approximate search's index over `tokens`, built on first use.
    pub index: SearchIndex,
}

/// A bank's [`InvertedFile`], built from its tokens the first time a search probes it and
/// shared by every scoring thread after that. A cache: two banks are equal when their
/// tokens and statistics are, whether or not either has built it.
#[derive(Default)]
pub struct SearchIndex(once_cell::sync::OnceCell<InvertedFile>);

impl SearchIndex {
    /// The index of `tokens`, built now if it was not (single-threaded, so no scoring
    /// thread waiting for it can be drawn into building it). Only its bank calls it, with
    /// its own tokens ([`NeighbourBank::search_index`]).
    fn get(&self, tokens: &[f32], dims: usize) -> &InvertedFile {
        // A fixed seed: the same bank always clusters the same way.
        self.0.get_or_init(|| InvertedFile::build(tokens, dims, 0x1f1e))
    }
}

impl Clone for SearchIndex {
    fn clone(&self) -> Self {
        SearchIndex(self.0.clone())
    }
}

impl PartialEq for SearchIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "SearchIndex(built)" } else { "SearchIndex(not built)" })
    }
}

/// `[C, h, w]` channel-major level map to `[h * w, C]` tokens, each the mean of its 3 x 3
/// neighbourhood with zeros outside the grid (divided by 9 everywhere, as PyTorch's
/// `AvgPool2d(3, stride=1, padding=1)` with its default `count_include_pad`).
///
/// Per channel in parallel, as a horizontal then a vertical 3-tap sum (6 additions a value
/// instead of 8 scattered reads), then one transpose to token-major: scoring runs it on
/// every image.
pub fn pool_tokens(map: &[f32], channels: usize, (h, w): (usize, usize)) -> Vec<f32> {
    let len = h * w;
    let mut planes = vec![0f32; channels * len];
    planes
        .par_chunks_mut(len.max(1))
        .zip(map.par_chunks(len.max(1)))
        .for_each(|(out, plane)| {
            let mut rows = vec![0f32; len];
            for (row_out, row) in rows.chunks_exact_mut(w).zip(plane.chunks_exact(w)) {
                // Interior columns as three shifted slices (vectorised); the edges have
                // one neighbour.
                if w >= 3 {
                    for (((o, a), b), c) in row_out[1..w - 1]
                        .iter_mut()
                        .zip(&row[..w - 2])
                        .zip(&row[1..w - 1])
                        .zip(&row[2..])
                    {
                        *o = a + b + c;
                    }
                }
                row_out[0] = row[0] + if w > 1 { row[1] } else { 0.0 };
                if w > 1 {
                    row_out[w - 1] = row[w - 2] + row[w - 1];
                }
            }
            let zeros = vec![0f32; w];
            for y in 0..h {
                let up = if y > 0 { &rows[(y - 1) * w..y * w] } else { &zeros[..] };
                let down = if y + 1 < h { &rows[(y + 1) * w..(y + 2) * w] } else { &zeros[..] };
                let centre = &rows[y * w..(y + 1) * w];
                for (((o, a), b), c) in out[y * w..(y + 1) * w]
                    .iter_mut()
                    .zip(up)
                    .zip(centre)
                    .zip(down)
                {
                    *o = (a + b + c) / 9.0;
                }
            }
        });
    let mut out = vec![0f32; len * channels];
    const TOKENS: usize = 64;
    out.par_chunks_mut(TOKENS * channels.max(1))
        .enumerate()
        .for_each(|(block, chunk)| {
            // Contiguous reads of each plane's stretch; the writes stay inside this chunk.
            let first = block * TOKENS;
            let tokens = chunk.len() / channels;
            for c in 0..channels {
                let source = &planes[c * len + first..c * len + first + tokens];
                for (i, &v) in source.iter().enumerate() {
                    chunk[i * channels + c] = v;
                }
            }
        });
    out
}

/// [`pool_tokens`] straight from its definition, in f64: each token reads its 3 x 3
/// neighbours. The twin the fast code is tested and benchmarked against.
#[cfg(any(test, feature = "internals"))]
pub fn pool_tokens_naive(map: &[f32], channels: usize, (h, w): (usize, usize)) -> Vec<f32> {
    let mut out = vec![0f32; h * w * channels];
    for c in 0..channels {
        let plane = &map[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0f64;
                for yy in y.saturating_sub(1)..(y + 2).min(h) {
                    for xx in x.saturating_sub(1)..(x + 2).min(w) {
                        sum += plane[yy * w + xx] as f64;
                    }
                }
                out[(y * w + x) * channels + c] = (sum / 9.0) as f32;
            }
        }
    }
    out
}

/// Squared Euclidean distance from each row of `queries` (`[m, dims]`) to its nearest row
/// of `bank` (`[n, dims]`, `n >= 1`): `||a||^2 + ||b||^2 - 2 a.b` from one GEMM per block
/// of queries, clamped at 0 (rounding can push it below). Blocks run in parallel.
pub fn nearest_squared(queries: &[f32], bank: &[f32], dims: usize) -> Vec<f32> {
    const ROWS: usize = 256;
    let n = bank.len() / dims;
    let bank_norms: Vec<f32> = bank
        .chunks_exact(dims)
        .map(|t| t.iter().map(|v| v * v).sum())
        .collect();
    let mut out = vec![f32::INFINITY; queries.len() / dims];
    out.par_chunks_mut(ROWS)
        .zip(queries.par_chunks(ROWS * dims))
        .for_each(|(best, q)| {
            let dots = matmul_transposed(q, bank, best.len(), dims, n);
            for ((b, row), query) in best
                .iter_mut()
                .zip(dots.chunks_exact(n))
                .zip(q.chunks_exact(dims))
            {
                let qn: f32 = query.iter().map(|v| v * v).sum();
                let nearest = row
                    .iter()
                    .zip(&bank_norms)
                    .map(|(&dot, &norm)| qn + norm - 2.0 * dot)
                    .fold(f32::INFINITY, f32::min);
                *b = nearest.max(0.0);
            }
        });
    out
}

/// The bank of `tokens` (each from image `source[t]`) with the mean and spread of the
/// `included` images' distances to the bank tokens of the *other* included images
/// (`own(i)` gives image `i`'s pooled tokens).
fn leave_one_out<'a>(
    level: usize,
    dims: usize,
    tokens: &[f32],
    source: &[usize],
    included: &[bool],
    own: &impl Fn(usize) -> Result<std::borrow::Cow<'a, [f32]>>,
) -> Result<NeighbourBank> {
    let mut sum = 0f64;
    let mut sq = 0f64;
    let mut count = 0usize;
    for i in (0..included.len()).filter(|&i| included[i]) {
        let others: Vec<f32> = tokens
            .chunks_exact(dims)
            .zip(source)
            .filter(|(_, &s)| s != i)
            .flat_map(|(t, _)| t)
            .copied()
            .collect();
        if others.is_empty() {
            continue;
        }
        for d in nearest_squared(&own(i)?, &others, dims) {
            sum += d as f64;
            sq += d as f64 * d as f64;
            count += 1;
        }
    }
    if count == 0 {
        return Err(Error::invalid_argument(
            "every neighbour-bank token came from one image: give the bank more tokens",
        ));
    }
    let mean = sum / count as f64;
    let std = (sq / count as f64 - mean * mean).max(0.0).sqrt();
    Ok(NeighbourBank {
        level,
        dims,
        tokens: tokens.to_vec(),
        mean: mean as f32,
        std: std as f32,
        index: SearchIndex::default(),
    })
}

impl NeighbourBank {
    /// A bank of at most `size` tokens chosen by `selection` from the pooled tokens of
    /// `images` normal images, and the mean and spread of each image's distances to the
    /// bank tokens drawn from the *other* images. `image(i)` gives image `i`'s level map
    /// `[dims, grid.0, grid.1]`; a random draw asks for each image twice, one at a time, so
    /// the images need not all be in memory; a coreset holds every image's pooled tokens
    /// while it selects.
    ///
    /// [`ErrorKind::InvalidArgument`] with fewer than two images (no other image to be
    /// the neighbour of) or `size` 0; `image`'s errors.
    pub fn build(
        level: usize,
        images: usize,
        shape: (usize, (usize, usize)),
        bank: (usize, BankSelection),
        seed: u64,
        image: impl Fn(usize) -> Result<Vec<f32>>,
    ) -> Result<NeighbourBank> {
        let (all, _) = Self::build_with_folds(level, images, shape, bank, seed, &[], image)?;
        Ok(all)
    }

    /// [`NeighbourBank::build`], and with it, for each fold `f` of the images
    /// (`fold_of[i]` is image `i`'s fold; empty: no folds), the bank without that fold's
    /// images: the same selection's tokens that came from the other folds, with the normal
    /// distances measured again on the other folds' images. One selection serves every
    /// fold, so cross-fitting costs no selection of its own; a fold's bank is the one the
    /// full bank would be had the fold's images never been seen, except that the tokens
    /// it loses are not replaced by others of the remaining images (its distances are, if
    /// anything, a little larger: the calibration errs towards fewer false alarms).
    ///
    /// A fold that leaves fewer than two images gets no bank (`None`): no other image
    /// could be a neighbour.
    ///
    /// Errors as [`NeighbourBank::build`], and [`ErrorKind::InvalidArgument`] when
    /// `fold_of` is neither empty nor one fold an image.
    pub fn build_with_folds(
        level: usize,
        images: usize,
        (dims, grid): (usize, (usize, usize)),
        (size, selection): (usize, BankSelection),
        seed: u64,
        fold_of: &[usize],
        image: impl Fn(usize) -> Result<Vec<f32>>,
    ) -> Result<(NeighbourBank, Vec<Option<NeighbourBank>>)> {
        if images < 2 || size == 0 {
            return Err(Error::invalid_argument(format!(
                "a neighbour bank needs at least 2 images and 1 token, got {images} images and {size} tokens"
            )));
        }
        if !fold_of.is_empty() && fold_of.len() != images {
            return Err(Error::invalid_argument(format!(
                "neighbour bank folds: {} fold numbers for {images} images",
                fold_of.len()
            )));
        }
        let len = grid.0 * grid.1;
        let pooled = |i: usize| -> Result<Vec<f32>> {
            let map = image(i)?;
            if map.len() != dims * len {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("neighbour bank: image {i} has {} values, expected {}", map.len(), dims * len),
                ));
            }
            Ok(pool_tokens(&map, dims, grid))
        };
        let total = images * len;
        let size = size.min(total);
        // The chosen tokens in (image, position) order, with the image each came from.
        let mut tokens = Vec::with_capacity(size * dims);
        let mut source = Vec::with_capacity(size);
        // A coreset holds every image's pooled tokens; the leave-one-out passes below read
        // them from there instead of pooling each image again.
        let mut all = Vec::new();
        match selection {
            BankSelection::Random => {
                // A seeded partial Fisher-Yates shuffle over every (image, position).
                let mut order: Vec<usize> = (0..total).collect();
                let mut rng = SplitMix64::new(seed);
                for i in 0..size {
                    let j = i + (rng.next_u64() % (total - i) as u64) as usize;
                    order.swap(i, j);
                }
                let mut drawn = order[..size].to_vec();
                drawn.sort_unstable();
                let mut next = 0;
                for i in 0..images {
                    let mine = drawn[next..].iter().take_while(|&&t| t / len == i).count();
                    if mine == 0 {
                        continue;
                    }
                    let own = pooled(i)?;
                    for &t in &drawn[next..next + mine] {
                        let p = t % len;
                        tokens.extend_from_slice(&own[p * dims..(p + 1) * dims]);
                        source.push(i);
                    }
                    next += mine;
                }
            }
            BankSelection::Coreset => {
                all.reserve_exact(total * dims);
                for i in 0..images {
                    all.extend_from_slice(&pooled(i)?);
                }
                for t in super::coreset::select(&all, dims, size, CORESET_PROJECTION, seed) {
                    tokens.extend_from_slice(&all[t * dims..(t + 1) * dims]);
                    source.push(t / len);
                }
            }
        }
        let own = |i: usize| -> Result<std::borrow::Cow<'_, [f32]>> {
            Ok(if all.is_empty() {
                std::borrow::Cow::Owned(pooled(i)?)
            } else {
                std::borrow::Cow::Borrowed(&all[i * len * dims..(i + 1) * len * dims])
            })
        };
        let every: Vec<bool> = vec![true; images];
        let full = leave_one_out(level, dims, &tokens, &source, &every, &own)?;
        let folds = fold_of.iter().max().map_or(0, |&f| f + 1);
        let mut without = Vec::with_capacity(folds);
        for f in 0..folds {
            let kept: Vec<bool> = fold_of.iter().map(|&g| g != f).collect();
            if kept.iter().filter(|&&k| k).count() < 2 {
                without.push(None);
                continue;
            }
            let (fold_tokens, fold_source): (Vec<&[f32]>, Vec<usize>) = tokens
                .chunks_exact(dims)
                .zip(&source)
                .filter(|(_, &s)| kept[s])
                .map(|(t, &s)| (t, s))
                .unzip();
            let fold_tokens: Vec<f32> = fold_tokens.concat();
            without.push(Some(leave_one_out(
                level,
                dims,
                &fold_tokens,
                &fold_source,
                &kept,
                &own,
            )?));
        }
        Ok((full, without))
    }

    /// The bank's inverted-file index, built on the first call (a model builds it when its
    /// statistics are set, so that no scored part waits for it).
    pub fn search_index(&self) -> &InvertedFile {
        self.index.get(&self.tokens, self.dims)
    }

    /// The number of tokens in the bank.
    pub fn len(&self) -> usize {
        self.tokens.len() / self.dims.max(1)
    }

    /// Whether the bank holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The term's map on the level's grid for one image's level map `[dims, h, w]`: each
    /// position's squared distance to the bank in standard deviations of the normal
    /// distances, as `term` says ([`NeighbourTerm`]). The distance is exact with `probes`
    /// 0, else searched in the bank's [`InvertedFile`] probing `probes` cells (exact too
    /// when that is every cell). Never negative: calibration takes the map's largest value
    /// on normal images as the unit of the score.
    pub fn map(
        &self,
        level_map: &[f32],
        grid: (usize, usize),
        term: NeighbourTerm,
        probes: usize,
    ) -> Vec<f32> {
        let pooled = pool_tokens(level_map, self.dims, grid);
        let spread = (self.std as f64).max(FLOOR);
        let offset = match term {
            NeighbourTerm::AboveNormal => self.mean as f64,
            NeighbourTerm::Scaled => 0.0,
        };
        let distances = if probes == 0 {
            nearest_squared(&pooled, &self.tokens, self.dims)
        } else {
            self.search_index().nearest_squared(&pooled, probes)
        };
        distances
            .into_iter()
            .map(|d| ((d as f64 - offset) / spread).max(0.0) as f32)
            .collect()
    }

    /// Checks the bank against a model of `levels` levels whose bank level has `dims`
    /// channels (a model file is untrusted input): every token and the normal distance
    /// statistics finite, the mean distance at least 0 (a mean of squared distances), and
    /// the spread [`NeighbourBank::map`] divides by at least the floor it uses there
    /// (`FLOOR`, 1e-12). [`ErrorKind::ModelFile`], naming the field.
    pub fn check(&self, levels: usize, dims: usize) -> Result<()> {
        let problem = if self.level >= levels {
            Some(format!("level {} of {levels}", self.level))
        } else if self.dims != dims || self.dims == 0 || !self.tokens.len().is_multiple_of(dims) {
            Some(format!(
                "{} values of {} channels for a level of {dims}",
                self.tokens.len(),
                self.dims
            ))
        } else if self.is_empty() {
            Some("no token".to_string())
        } else if let Some(i) = self.tokens.iter().position(|v| !v.is_finite()) {
            Some(format!(
                "tokens hold a non-finite value ({}) at index {i}",
                self.tokens[i]
            ))
        } else if !(self.mean.is_finite() && self.mean >= 0.0) {
            Some(format!(
                "mean {}: a mean squared distance must be finite and at least 0",
                self.mean
            ))
        } else if !(self.std.is_finite() && self.std as f64 >= FLOOR) {
            Some(format!(
                "std {}: the spread must be finite and at least the floor {FLOOR}",
                self.std
            ))
        } else {
            None
        };
        match problem {
            Some(p) => Err(Error::new(
                ErrorKind::ModelFile,
                format!("neighbour bank: {p}"),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(queries: &[f32], bank: &[f32], dims: usize) -> Vec<f64> {
        queries
            .chunks_exact(dims)
            .map(|q| {
                bank.chunks_exact(dims)
                    .map(|b| q.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum())
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    #[test]
    fn nearest_matches_brute_force() {
        let dims = 7;
        // 600 queries: more than one parallel block, and a partial last one.
        let queries = values(600 * dims, 1);
        let bank = values(37 * dims, 2);
        let fast = nearest_squared(&queries, &bank, dims);
        let slow = brute(&queries, &bank, dims);
        for (f, s) in fast.iter().zip(&slow) {
            assert!((*f as f64 - s).abs() <= 1e-5 * (1.0 + s), "{f} vs {s}");
        }
        // A query that is a bank token is at distance 0.
        assert_eq!(nearest_squared(&bank[..dims], &bank, dims)[0], 0.0);
    }

    #[test]
    fn pooling_is_avgpool_3x3_with_zero_padding() {
        // One channel, 2 x 3: the corner sees 4 values, the edge middle 6, all over 9.
        let map = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let p = pool_tokens(&map, 1, (2, 3));
        assert_eq!(p[0], (1.0 + 2.0 + 4.0 + 5.0) / 9.0);
        assert_eq!(p[1], 21.0 / 9.0);
        // Channels stay apart and come out token-major.
        let p = pool_tokens(&[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0], 2, (2, 2));
        assert_eq!(p, [4.0 / 9.0, 8.0 / 9.0].repeat(4));
        // Against the definition on grids of every small shape (one row, one column, odd
        // and even sides) and more tokens than one parallel block.
        for (c, h, w) in [(3, 1, 1), (2, 1, 5), (2, 6, 1), (5, 7, 9), (4, 12, 11)] {
            let map = values(c * h * w, (c * h * w) as u64);
            let fast = pool_tokens(&map, c, (h, w));
            let slow = pool_tokens_naive(&map, c, (h, w));
            for (f, s) in fast.iter().zip(&slow) {
                assert!((f - s).abs() <= 1e-6, "{c}x{h}x{w}: {f} vs {s}");
            }
        }
    }

    #[test]
    fn a_coreset_bank_keeps_the_rare_normal_pattern_a_random_draw_misses() {
        // Four normal images of small noise; one of them has a bright 1-token spot (a rare
        // but normal pattern). A 12-token coreset holds tokens of that spot; a 12-token
        // random draw of the 144 tokens (seeded) holds none.
        let (dims, grid) = (3, (6, 6));
        let len = grid.0 * grid.1;
        let mut normal: Vec<Vec<f32>> = (0..4)
            .map(|i| values(dims * len, 20 + i).iter().map(|v| v * 0.05).collect())
            .collect();
        for c in 0..dims {
            normal[2][c * len + 3 * grid.1 + 3] = 5.0;
        }
        let build = |selection| {
            NeighbourBank::build(0, 4, (dims, grid), (12, selection), 5, |i| {
                Ok(normal[i].clone())
            })
            .unwrap()
        };
        let bright = |bank: &NeighbourBank| {
            bank.tokens
                .chunks_exact(dims)
                .filter(|t| t.iter().all(|&v| v > 0.3))
                .count()
        };
        let coreset = build(BankSelection::Coreset);
        assert_eq!(coreset.len(), 12);
        assert!(bright(&coreset) >= 1, "{:?}", coreset.tokens);
        assert_eq!(coreset, build(BankSelection::Coreset));
        coreset.check(1, dims).unwrap();
        let random = build(BankSelection::Random);
        assert_eq!(bright(&random), 0, "{:?}", random.tokens);
        // The tokens are pooled tokens of the images.
        let pooled: Vec<Vec<f32>> = normal.iter().map(|m| pool_tokens(m, dims, grid)).collect();
        for t in coreset.tokens.chunks_exact(dims) {
            assert!(pooled.iter().any(|p| p.chunks_exact(dims).any(|q| q == t)));
        }
    }

    #[test]
    fn a_fold_bank_keeps_the_other_folds_tokens_and_measures_the_other_folds_images() {
        // Six images in three folds; image 4 (fold 1) is unlike the others. Without fold
        // 1 the bank holds no token of images 1 and 4, and its normal distances, measured
        // between the four remaining images alone, are those of a bank built from them
        // with the same tokens.
        let (dims, grid) = (3, (5, 5));
        let len = grid.0 * grid.1;
        let maps: Vec<Vec<f32>> = (0..6)
            .map(|i| {
                let scale = if i == 4 { 3.0 } else { 0.1 };
                values(dims * len, 40 + i).iter().map(|v| v * scale).collect()
            })
            .collect();
        let fold_of = [0, 1, 2, 0, 1, 2];
        for selection in [BankSelection::Coreset, BankSelection::Random] {
            let (all, folds) = NeighbourBank::build_with_folds(
                0,
                6,
                (dims, grid),
                (60, selection),
                3,
                &fold_of,
                |i| Ok(maps[i].clone()),
            )
            .unwrap();
            assert_eq!(
                all,
                NeighbourBank::build(0, 6, (dims, grid), (60, selection), 3, |i| Ok(maps[i].clone()))
                    .unwrap()
            );
            assert_eq!(folds.len(), 3);
            let pooled: Vec<Vec<f32>> = maps.iter().map(|m| pool_tokens(m, dims, grid)).collect();
            let from = |t: &[f32]| (0..6).find(|&i| pooled[i].chunks_exact(dims).any(|q| q == t)).unwrap();
            let without = folds[1].as_ref().unwrap();
            assert!(without.len() < all.len());
            assert!(without.tokens.chunks_exact(dims).all(|t| fold_of[from(t)] != 1));
            // The remaining images are closer to each other than image 4 is to anything.
            assert!(without.mean < all.mean, "{} vs {}", without.mean, all.mean);
            for t in all.tokens.chunks_exact(dims).filter(|t| fold_of[from(t)] != 1) {
                assert!(without.tokens.chunks_exact(dims).any(|q| q == t));
            }
        }
        // A fold that leaves one image gets no bank.
        let (_, folds) = NeighbourBank::build_with_folds(0, 2, (dims, grid), (10, BankSelection::Coreset), 3, &[0, 1], |i| Ok(maps[i].clone())).unwrap();
        assert!(folds.iter().all(Option::is_none));
        assert!(NeighbourBank::build_with_folds(0, 6, (dims, grid), (10, BankSelection::Coreset), 3, &[0, 1], |i| Ok(maps[i].clone())).is_err());
    }

    #[test]
    fn bank_scores_the_unfamiliar_high_and_is_seeded() {
        let (dims, grid) = (3, (6, 6));
        let len = grid.0 * grid.1;
        // Normal images: small noise around 0.
        let normal: Vec<Vec<f32>> = (0..4)
            .map(|i| values(dims * len, 10 + i).iter().map(|v| v * 0.1).collect())
            .collect();
        let build = |images: usize, size: usize, seed: u64| {
            NeighbourBank::build(
                1,
                images,
                (dims, grid),
                (size, BankSelection::Random),
                seed,
                |i| Ok(normal[i].clone()),
            )
        };
        let bank = build(4, 50, 3).unwrap();
        assert_eq!(bank.len(), 50);
        assert_eq!(bank, build(4, 50, 3).unwrap());
        assert_ne!(bank, build(4, 50, 4).unwrap());
        bank.check(2, dims).unwrap();
        assert!(bank.check(1, dims).is_err());
        assert!(bank.check(2, dims + 1).is_err());
        for (mean, std, field) in [
            (bank.mean, 0.0, "std 0"),
            (bank.mean, -1.0, "std -1"),
            (bank.mean, f32::NAN, "std NaN"),
            (-1.0, bank.std, "mean -1"),
            (f32::INFINITY, bank.std, "mean inf"),
        ] {
            let broken = NeighbourBank {
                mean,
                std,
                ..bank.clone()
            };
            let err = broken.check(2, dims).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ModelFile);
            assert!(err.message().contains(field), "{err}");
        }
        let mut broken = bank.clone();
        broken.tokens[4] = f32::NAN;
        assert!(broken.check(2, dims).unwrap_err().message().contains("index 4"));
        // A new normal image scores near 0 on average; one with a bright patch scores far
        // above the normal spread there, and only there.
        let fresh: Vec<f32> = values(dims * len, 99).iter().map(|v| v * 0.1).collect();
        let normal_map = bank.map(&fresh, grid, NeighbourTerm::AboveNormal, 0);
        let mean = normal_map.iter().sum::<f32>() / len as f32;
        assert!(mean < 1.5, "normal mean {mean}");
        assert!(normal_map.iter().all(|&v| v >= 0.0));
        let mut defect = fresh.clone();
        for c in 0..dims {
            defect[c * len + 2 * grid.1 + 2] = 2.0;
        }
        let defect_map = bank.map(&defect, grid, NeighbourTerm::AboveNormal, 0);
        let peak = defect_map
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        // The pooling spreads the patch over its 3 x 3 neighbourhood: the peak is there.
        let (y, x) = (peak.0 / grid.1, peak.0 % grid.1);
        assert!(y.abs_diff(2) <= 1 && x.abs_diff(2) <= 1, "peak at {y},{x}");
        assert!(*peak.1 > 10.0, "defect peak {}", peak.1);
        // Far from the patch the map is as on the normal image.
        assert_eq!(defect_map[len - 1], normal_map[len - 1]);
        // The scaled term is the same distance without the floor, shifted by the normal
        // mean: equal where the floor does not bite, never negative, and it still ranks
        // positions the floor flattened.
        let scaled = bank.map(&fresh, grid, NeighbourTerm::Scaled, 0);
        let shift = bank.mean / bank.std;
        let mut flattened = 0;
        for (a, s) in normal_map.iter().zip(&scaled) {
            assert!(*s >= 0.0);
            if *a > 0.0 {
                assert!((s - a - shift).abs() <= 1e-4 * s.max(1.0), "{s} vs {a} + {shift}");
            } else {
                assert!(*s <= shift + 1e-4);
                flattened += 1;
            }
        }
        let distinct: std::collections::BTreeSet<u32> = scaled
            .iter()
            .zip(&normal_map)
            .filter(|(_, a)| **a == 0.0)
            .map(|(s, _)| s.to_bits())
            .collect();
        assert!(flattened > 1 && distinct.len() > 1, "{flattened} {}", distinct.len());
        assert!(build(1, 50, 3).is_err());
        assert!(build(4, 0, 3).is_err());
        // The drawn tokens are pooled tokens of the images.
        let pooled: Vec<Vec<f32>> = normal.iter().map(|m| pool_tokens(m, dims, grid)).collect();
        for t in bank.tokens.chunks_exact(dims) {
            assert!(pooled.iter().any(|p| p.chunks_exact(dims).any(|q| q == t)));
        }
    }
}
