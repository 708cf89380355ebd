//! An inverted-file index over a neighbour bank: approximate nearest-neighbour search
//! whose cost grows with the square root of the bank instead of with the bank.
//!
//! The bank's tokens are clustered by k-means into about `sqrt(n)` cells; a query is
//! measured against the cells' centroids and then only against the tokens of its
//! `probes` nearest cells. Queries that probe the same cell are gathered and measured
//! against it with one GEMM, so the search keeps the blocked matrix products of the exact
//! search ([`super::neighbours::nearest_squared`]) instead of a per-query walk (a graph
//! index such as HNSW answers one query at a time, with scattered reads, which is the
//! wrong shape for 16,384 queries an image against a bank of a few thousand tokens).
//!
//! The distance found is never below the exact one (it is the distance to a real bank
//! token) and equals it whenever the nearest token lies in a probed cell.

use rayon::prelude::*;

use super::coreset::matmul_transposed;
use crate::predictor::rng::SplitMix64;

/// Lloyd iterations of the clustering: the cells only steer the search, so a rough
/// clustering costs little in recall and keeps building an index under a second.
const ITERATIONS: usize = 8;

/// Rows a cell the clustering learns from at most (every row is still assigned a cell).
const TRAINING_ROWS_PER_CELL: usize = 256;

/// Queries searched together: enough that each probed cell gathers several queries for
/// its GEMM, few enough that the blocks spread over the threads.
const QUERY_BLOCK: usize = 1024;

/// A bank's tokens grouped by cell, with the cells' centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct InvertedFile {
    dims: usize,
    /// `[cells, dims]`.
    centroids: Vec<f32>,
    centroid_norms: Vec<f32>,
    /// Cell `c`'s tokens are rows `offsets[c]..offsets[c + 1]` of `tokens`.
    offsets: Vec<usize>,
    /// The bank's tokens, `[n, dims]`, in cell order.
    tokens: Vec<f32>,
    norms: Vec<f32>,
}

/// The number of cells an index over `n` tokens uses: `round(sqrt(n))`, at least 1.
pub fn cells_for(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize).clamp(1, n.max(1))
}

fn squared_norms(rows: &[f32], dims: usize) -> Vec<f32> {
    rows.chunks_exact(dims)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect()
}

/// For each row of `rows` the index of its nearest centroid (ties to the lowest), on the
/// calling thread alone: [`InvertedFile::build`] runs inside a one-time initialisation
/// that other scoring threads may be waiting on, and a rayon join there could pick up one
/// of their jobs and re-enter that initialisation.
fn assign(rows: &[f32], centroids: &[f32], dims: usize) -> Vec<usize> {
    let cells = centroids.len() / dims;
    let norms = squared_norms(centroids, dims);
    let mut out = Vec::with_capacity(rows.len() / dims);
    for block in rows.chunks(QUERY_BLOCK * dims) {
        let dots = matmul_transposed(block, centroids, block.len() / dims, dims, cells);
        for row in dots.chunks_exact(cells) {
            let mut nearest = (f32::INFINITY, 0);
            for (c, (&dot, &norm)) in row.iter().zip(&norms).enumerate() {
                // The query's own norm is the same for every cell: left out.
                let d = norm - 2.0 * dot;
                if d < nearest.0 {
                    nearest = (d, c);
                }
            }
            out.push(nearest.1);
        }
    }
    out
}

impl InvertedFile {
    /// The index of `bank` (`[n, dims]`, `n >= 1`) in [`cells_for`]`(n)` cells, clustered
    /// from a seeded draw of starting centroids (the same bank always gives the same
    /// index). A cell left empty keeps its previous centroid. Runs on the calling thread
    /// only (see `assign`).
    pub fn build(bank: &[f32], dims: usize, seed: u64) -> InvertedFile {
        let n = bank.len() / dims;
        let cells = cells_for(n);
        // A seeded shuffle: its first `cells` rows start the centroids, and the clustering
        // learns from at most `TRAINING_ROWS_PER_CELL` rows a cell of it, which bounds the
        // cost on the largest banks; every row is assigned at the end.
        let training = n.min(cells * TRAINING_ROWS_PER_CELL);
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = SplitMix64::new(seed);
        for i in 0..training {
            let j = i + (rng.next_u64() % (n - i) as u64) as usize;
            order.swap(i, j);
        }
        let gathered: Vec<f32>;
        let sample: &[f32] = if training == n {
            bank
        } else {
            gathered = order[..training]
                .iter()
                .flat_map(|&r| bank[r * dims..(r + 1) * dims].iter().copied())
                .collect();
            &gathered
        };
        let mut centroids: Vec<f32> = order[..cells]
            .iter()
            .flat_map(|&r| bank[r * dims..(r + 1) * dims].iter().copied())
            .collect();
        let mut cell_of = assign(sample, &centroids, dims);
        for _ in 0..ITERATIONS {
            let mut sums = vec![0f64; cells * dims];
            let mut counts = vec![0usize; cells];
            for (row, &c) in sample.chunks_exact(dims).zip(&cell_of) {
                counts[c] += 1;
                for (s, &v) in sums[c * dims..(c + 1) * dims].iter_mut().zip(row) {
                    *s += v as f64;
                }
            }
            for c in (0..cells).filter(|&c| counts[c] > 0) {
                for (out, &s) in centroids[c * dims..(c + 1) * dims]
                    .iter_mut()
                    .zip(&sums[c * dims..(c + 1) * dims])
                {
                    *out = (s / counts[c] as f64) as f32;
                }
            }
            let next = assign(sample, &centroids, dims);
            if next == cell_of {
                break;
            }
            cell_of = next;
        }
        let cell_of = assign(bank, &centroids, dims);
        // Tokens in cell order (stable within a cell).
        let mut offsets = vec![0usize; cells + 1];
        for &c in &cell_of {
            offsets[c + 1] += 1;
        }
        for c in 0..cells {
            offsets[c + 1] += offsets[c];
        }
        let mut fill = offsets.clone();
        let mut tokens = vec![0f32; n * dims];
        for (row, &c) in bank.chunks_exact(dims).zip(&cell_of) {
            tokens[fill[c] * dims..(fill[c] + 1) * dims].copy_from_slice(row);
            fill[c] += 1;
        }
        InvertedFile {
            dims,
            centroid_norms: squared_norms(&centroids, dims),
            centroids,
            offsets,
            norms: squared_norms(&tokens, dims),
            tokens,
        }
    }

    /// The number of cells.
    pub fn cells(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Squared distance from each row of `queries` (`[m, dims]`) to its nearest bank
    /// token among the tokens of its `probes` nearest cells (all cells when `probes` is
    /// at least their number: then the search is exact), clamped at 0.
    pub fn nearest_squared(&self, queries: &[f32], probes: usize) -> Vec<f32> {
        let dims = self.dims;
        let cells = self.cells();
        let probes = probes.clamp(1, cells);
        let mut out = vec![f32::INFINITY; queries.len() / dims];
        out.par_chunks_mut(QUERY_BLOCK)
            .zip(queries.par_chunks(QUERY_BLOCK * dims))
            .for_each(|(best, block)| {
                let m = best.len();
                let query_norms = squared_norms(block, dims);
                // Each query's nearest cells, then the queries of each cell.
                let dots = matmul_transposed(block, &self.centroids, m, dims, cells);
                let mut by_cell: Vec<Vec<usize>> = vec![Vec::new(); cells];
                let mut ranked: Vec<(f32, usize)> = Vec::with_capacity(cells);
                for (q, row) in dots.chunks_exact(cells).enumerate() {
                    ranked.clear();
                    ranked.extend(
                        row.iter()
                            .zip(&self.centroid_norms)
                            .enumerate()
                            .map(|(c, (&dot, &norm))| (norm - 2.0 * dot, c)),
                    );
                    if probes < cells {
                        ranked.select_nth_unstable_by(probes - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    }
                    for &(_, c) in &ranked[..probes] {
                        by_cell[c].push(q);
                    }
                }
                let mut gathered = Vec::new();
                for (c, members) in by_cell.iter().enumerate() {
                    let (start, end) = (self.offsets[c], self.offsets[c + 1]);
                    if members.is_empty() || start == end {
                        continue;
                    }
                    gathered.clear();
                    for &q in members {
                        gathered.extend_from_slice(&block[q * dims..(q + 1) * dims]);
                    }
                    let size = end - start;
                    let dots = matmul_transposed(
                        &gathered,
                        &self.tokens[start * dims..end * dims],
                        members.len(),
                        dims,
                        size,
                    );
                    for (&q, row) in members.iter().zip(dots.chunks_exact(size)) {
                        let nearest = row
                            .iter()
                            .zip(&self.norms[start..end])
                            .map(|(&dot, &norm)| norm - 2.0 * dot)
                            .fold(f32::INFINITY, f32::min);
                        best[q] = best[q].min(query_norms[q] + nearest);
                    }
                }
                best.iter_mut().for_each(|b| *b = b.max(0.0));
            });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::neighbours::nearest_squared;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    /// Rows around 30 centres: the clustered shape real tokens have.
    fn clustered(rows: usize, dims: usize, seed: u64) -> Vec<f32> {
        let centres = noise(30 * dims, seed + 100);
        let spread = noise(rows * dims, seed);
        (0..rows * dims)
            .map(|i| centres[(i / dims * 7 % 30) * dims + i % dims] * 4.0 + spread[i] * 0.5)
            .collect()
    }

    #[test]
    fn probing_every_cell_is_the_exact_search() {
        let dims = 24;
        let bank = clustered(900, dims, 1);
        let queries = clustered(1500, dims, 2);
        let index = InvertedFile::build(&bank, dims, 7);
        assert_eq!(index.cells(), 30);
        let exact = nearest_squared(&queries, &bank, dims);
        let all = index.nearest_squared(&queries, index.cells());
        for (a, e) in all.iter().zip(&exact) {
            assert!((a - e).abs() <= 1e-3 * e.max(1.0), "{a} vs {e}");
        }
    }

    #[test]
    fn few_probes_never_undercut_and_mostly_find_the_nearest() {
        let dims = 40;
        let bank = clustered(4096, dims, 3);
        let queries = clustered(3000, dims, 4);
        let index = InvertedFile::build(&bank, dims, 9);
        assert_eq!(index, InvertedFile::build(&bank, dims, 9));
        let exact = nearest_squared(&queries, &bank, dims);
        let mut found = [0usize; 2];
        for (slot, probes) in [1, 8].into_iter().enumerate() {
            let approx = index.nearest_squared(&queries, probes);
            for (a, e) in approx.iter().zip(&exact) {
                assert!(*a >= e - 1e-3 * e.max(1.0), "probes {probes}: {a} below the exact {e}");
                if *a <= e + 1e-3 * e.max(1.0) {
                    found[slot] += 1;
                }
            }
        }
        // More probes find more; eight of 64 cells find nearly every nearest token.
        assert!(found[1] >= found[0], "{found:?}");
        assert!(found[1] as f64 >= 0.95 * 3000.0, "{found:?}");
    }

    #[test]
    fn a_bank_larger_than_the_clustering_learns_from_still_indexes_every_token() {
        // 70,000 tokens in 265 cells: the clustering learns from 256 a cell (67,840).
        let dims = 4;
        let bank = clustered(70_000, dims, 5);
        let index = InvertedFile::build(&bank, dims, 3);
        assert_eq!(index.cells(), 265);
        let mut held: Vec<&[f32]> = index.tokens.chunks_exact(dims).collect();
        let mut given: Vec<&[f32]> = bank.chunks_exact(dims).collect();
        let order = |a: &&[f32], b: &&[f32]| a.partial_cmp(b).unwrap();
        held.sort_by(order);
        given.sort_by(order);
        assert_eq!(held, given);
        let queries = clustered(500, dims, 6);
        let exact = nearest_squared(&queries, &bank, dims);
        for (a, e) in index.nearest_squared(&queries, 265).iter().zip(&exact) {
            assert!((a - e).abs() <= 1e-3 * e.max(1.0), "{a} vs {e}");
        }
    }

    #[test]
    fn a_bank_of_one_token_is_one_cell() {
        let index = InvertedFile::build(&[1.0, 2.0], 2, 0);
        assert_eq!(index.cells(), 1);
        assert_eq!(index.nearest_squared(&[1.0, 4.0, 1.0, 2.0], 8), vec![4.0, 0.0]);
    }
}
