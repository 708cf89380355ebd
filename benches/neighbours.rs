//! The nearest-neighbour term's speed at the default's shape (the stride-16 level of a
//! 1024 x 1024 input: 64 x 64 tokens of 112 channels, a bank of 1024 tokens): the pooling
//! against its definition, and the nearest distances (one GEMM per block of tokens)
//! against the plain per-pair loop, each pair measured in the same run.
//!
//! `cargo bench --features internals --bench neighbours`; prints milliseconds (median)
//! and the ratios.

mod common;

use common::median_ms;

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
}
