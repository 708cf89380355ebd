//! One level's prediction residuals at the bundled backbone's 1024 x 1024 grids
//! (EfficientNet-Lite0: stride 8, 40 channels on 128 x 128; stride 16, 112 channels on
//! 64 x 64), four directions, one image, 2 threads:
//!
//! - baseline: each direction's sequence built and run through the predictor, with fresh
//!   buffers every call (how scoring worked before the shared path and the workspaces);
//! - shared: [`LevelParams::residuals`] as scoring runs it, the directions sharing RMSNorm,
//!   in_proj and out_proj, with one kept [`Workspace`].
//!
//! Prints the medians and their ratio, and the largest difference between the two
//! (rounding only). `cargo bench --features internals --bench level`.

mod common;

use common::median_ms;

use varad::model::level::LevelParams;
use varad::model::scan::Scans;
use varad::predictor::{PredictorConfig, Workspace};

fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool");
    pool.install(|| {
        println!("| level | baseline ms | shared ms | baseline / shared | max rel. difference |");
        println!("|---|---:|---:|---:|---:|");
        for (name, c, side) in [("stride8", 40usize, 128usize), ("stride16", 112, 64)] {
            let level = LevelParams::<f32>::init(PredictorConfig::new(c), 7).expect("level");
            let scans = Scans::new(side, side, 4).expect("scans");
            let mut s = 0x2545_F491u32;
            let features: Vec<f32> = (0..c * side * side)
                .map(|_| {
                    s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
                })
                .collect();
            let baseline = || {
                level
                    .residuals_with(&scans, &features, 1, |x, b, l| {
                        level.predictor.forward_in_place(x, b, l)
                    })
                    .expect("baseline")
            };
            let mut ws = Workspace::default();
            let mut shared = || {
                level
                    .residuals(&scans, &features, 1, &mut ws)
                    .expect("shared")
            };
            let (want, got) = (baseline(), shared());
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = want
                .iter()
                .zip(&got)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
                / scale;
            let t_base = median_ms(7, || {
                baseline();
            });
            let t_shared = median_ms(7, || {
                shared();
            });
            println!(
                "| {name} ({c} x {side} x {side}) | {t_base:.1} | {t_shared:.1} | {:.2} | {diff:.1e} |",
                t_base / t_shared
            );
        }
    });
}
