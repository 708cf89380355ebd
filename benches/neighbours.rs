//! The nearest-neighbour term's speed at the default's shape (the stride-16 level of a
//! 1024 x 1024 input: 64 x 64 tokens of 112 channels, a bank of 1024 tokens): the pooling
//! against its definition, and the nearest distances (one GEMM per block of tokens)
//! against the plain per-pair loop, each pair measured in the same run. Then the term on
//! both levels of that input (stride 8: 128 x 128 tokens of 40 channels; stride 16) with
//! banks of 1024 and 2048 tokens a level, against the same exact search over the banks the
//! PatchCore baseline keeps at 36 training images (10% of their tokens: 58,983 at stride 8
//! and 14,746 at stride 16), also in the same run.
//!
//! Then the inverted-file search (8 probed cells) over banks of 4096 and 8192 tokens a
//! level against the exact search over the same banks and over the 1024-token banks, and
//! the greedy coreset selection with its triangle-inequality pruning against the plain
//! loop (the same choices), on clustered tokens of the stride-16 shape.
//!
//! `cargo bench --features internals --bench neighbours`; prints milliseconds (median)
//! and the ratios.

mod common;

use common::median_ms;

use varad::model::coreset::{greedy_coreset, greedy_coreset_naive};
use varad::model::inverted_file::InvertedFile;
use varad::model::neighbours::{nearest_squared, pool_tokens, pool_tokens_naive};
use varad::predictor::rng::SplitMix64;

/// Nearest squared distances the obvious way: every query against every bank row.
fn nearest_naive(queries: &[f32], bank: &[f32], dims: usize) -> Vec<f32> {
    queries
        .chunks_exact(dims)
        .map(|q| {
            bank.chunks_exact(dims)
                .map(|b| q.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>())
                .fold(f32::INFINITY, f32::min)
        })
        .collect()
}

/// Seeded uniform values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
}

/// Rows around 256 seeded centres, each centre a point of a 16-dimensional subspace: the
/// clustered, low-dimensional shape backbone tokens have (uniform noise, with nothing to
/// prune or cluster, would be the worst case of both).
fn clustered(rows: usize, dims: usize, seed: u64) -> Vec<f32> {
    let basis = values(16 * dims, seed);
    let weights = values(256 * 16, seed + 1);
    let centres: Vec<f32> = (0..256 * dims)
        .map(|i| {
            let (c, d) = (i / dims, i % dims);
            (0..16)
                .map(|j| weights[c * 16 + j] * basis[j * dims + d])
                .sum()
        })
        .collect();
    let spread = values(rows * dims, seed + 2);
    let mut rng = SplitMix64::new(seed + 3);
    let mut out = Vec::with_capacity(rows * dims);
    for r in 0..rows {
        let c = (rng.next_u64() % 256) as usize;
        out.extend((0..dims).map(|d| centres[c * dims + d] + 0.1 * spread[r * dims + d]));
    }
    out
}

/// Median milliseconds of the nearest distances of both levels' pooled tokens to banks of
/// `banks` tokens (stride 8, stride 16): exact with `probes` 0, else through an
/// inverted file probing `probes` cells (built before the timing).
fn both_levels_search_ms(runs: usize, banks: (usize, usize), probes: usize) -> f64 {
    let levels = [(40, (128, 128), banks.0), (112, (64, 64), banks.1)];
    let inputs: Vec<(usize, Vec<f32>, Vec<f32>, InvertedFile)> = levels
        .iter()
        .enumerate()
        .map(|(i, &(c, grid, n))| {
            let pooled = clustered(grid.0 * grid.1, c, 10 + i as u64);
            let bank = clustered(n, c, 10 + i as u64 + 100);
            let index = InvertedFile::build(&bank, c, 1);
            (c, pooled, bank, index)
        })
        .collect();
    median_ms(runs, || {
        for (c, pooled, bank, index) in &inputs {
            if probes == 0 {
                std::hint::black_box(nearest_squared(pooled, bank, *c));
            } else {
                std::hint::black_box(index.nearest_squared(pooled, probes));
            }
        }
    })
}

/// Median milliseconds of the nearest distances of both levels' pooled tokens to banks of
/// `banks` tokens (stride 8, stride 16).
fn both_levels_ms(runs: usize, banks: (usize, usize)) -> f64 {
    let levels = [(40, (128, 128), banks.0), (112, (64, 64), banks.1)];
    let inputs: Vec<(usize, Vec<f32>, Vec<f32>)> = levels
        .iter()
        .enumerate()
        .map(|(i, &(c, grid, n))| {
            let map = values(c * grid.0 * grid.1, 10 + i as u64);
            (c, pool_tokens(&map, c, grid), values(n * c, 20 + i as u64))
        })
        .collect();
    median_ms(runs, || {
        for (c, pooled, bank) in &inputs {
            std::hint::black_box(nearest_squared(pooled, bank, *c));
        }
    })
}

fn main() {
    println!("rayon threads: {}", rayon::current_num_threads());
    let (channels, grid, bank_tokens) = (112, (64, 64), 1024);
    let mut rng = SplitMix64::new(1);
    let map: Vec<f32> = (0..channels * grid.0 * grid.1)
        .map(|_| rng.uniform(-1.0, 1.0) as f32)
        .collect();
    let bank: Vec<f32> = (0..bank_tokens * channels)
        .map(|_| rng.uniform(-1.0, 1.0) as f32)
        .collect();
    let fast = median_ms(21, || {
        std::hint::black_box(pool_tokens(&map, channels, grid));
    });
    let naive = median_ms(5, || {
        std::hint::black_box(pool_tokens_naive(&map, channels, grid));
    });
    println!(
        "pool 3x3, {channels} x {}x{}: {fast:.2} ms, definition {naive:.2} ms: {:.1}x",
        grid.0,
        grid.1,
        naive / fast
    );
    let pooled = pool_tokens(&map, channels, grid);
    let fast = median_ms(21, || {
        std::hint::black_box(nearest_squared(&pooled, &bank, channels));
    });
    let naive = median_ms(3, || {
        std::hint::black_box(nearest_naive(&pooled, &bank, channels));
    });
    println!(
        "nearest of {} tokens in a bank of {bank_tokens}: {fast:.2} ms, per-pair loop {naive:.2} ms: {:.1}x",
        grid.0 * grid.1,
        naive / fast
    );
    let baseline = both_levels_ms(3, (58_983, 14_746));
    for tokens in [1024, 2048] {
        let ours = both_levels_ms(11, (tokens, tokens));
        println!(
            "both levels, banks of {tokens}: {ours:.2} ms; the baseline's banks (58983 + 14746): {baseline:.2} ms: {:.1}x",
            baseline / ours
        );
    }
    let exact_small = both_levels_search_ms(11, (1024, 1024), 0);
    for tokens in [4096, 8192] {
        let exact = both_levels_search_ms(5, (tokens, tokens), 0);
        let approximate = both_levels_search_ms(11, (tokens, tokens), 8);
        println!(
            "both levels, clustered banks of {tokens}: inverted file (8 probes) {approximate:.2} ms, exact {exact:.2} ms: {:.1}x; exact over banks of 1024: {exact_small:.2} ms",
            exact / approximate
        );
    }
    let (rows, dims, picks) = (147_456, 64, 1024);
    let tokens = clustered(rows, dims, 30);
    let pruned = median_ms(3, || {
        std::hint::black_box(greedy_coreset(&tokens, dims, picks, 0));
    });
    let plain = median_ms(1, || {
        std::hint::black_box(greedy_coreset_naive(&tokens, dims, picks, 0));
    });
    println!(
        "coreset of {picks} from {rows} clustered tokens of {dims}: pruned {pruned:.0} ms, plain loop {plain:.0} ms: {:.1}x",
        plain / pruned
    );
}
