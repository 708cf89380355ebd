//! Scoring speed: the map at image size (grid 64 x 64 over a 1024 x 1024 input, to a
//! 2448 x 2048 image, sigma 4), regions and calibration, against slow twins in the same run.
//!
//! `cargo bench --features internals --bench score [-- FILTER]`; prints milliseconds (median) and ratios.
//! The fully naive twin (f64, direct 2D Gaussian) takes seconds and runs once.

mod common;

use common::median_ms;

use std::time::Instant;

use varad::image::{InputGeometry, InputSpec, ResizeMode};
use varad::score::reference::map_to_image_naive;
use varad::score::{
    assess, gaussian_smooth, map_to_image, resize_bilinear, AssessOptions, Calibration,
    CalibrationConfig,
};

fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect()
}

fn main() {
    // `cargo test --all-targets` runs this unoptimised and without `--bench`: check that it
    // works on a small case instead of spending minutes on the naive twin.
    if !std::env::args().any(|a| a == "--bench") {
        let g = InputGeometry::new(50, 40, &InputSpec::new(32, 32));
        let fast = map_to_image(&noise(16, 1), 4, 4, &g, 2.0).unwrap();
        let slow = map_to_image_naive(&noise(16, 1), 4, 4, &g, 2.0);
        assert_eq!(fast.len(), slow.len());
        println!(
            "score bench: smoke run only (use `cargo bench --features internals --bench score`)"
        );
        return;
    }
    let threads = rayon::current_num_threads();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.iter().all(|f| name.contains(f.as_str()));
    println!("rayon threads: {threads}");
    let (gh, gw) = (64, 64);
    let grid = noise(gh * gw, 1);
    let (iw, ih) = (2448u32, 2048u32);

    for mode in [ResizeMode::Stretch, ResizeMode::KeepAspect] {
        let name = format!("map_to_image 64x64 -> {iw}x{ih} sigma 4 {mode:?}");
        if !wanted(&name) {
            continue;
        }
        let g = InputGeometry::new(iw, ih, &InputSpec::new(1024, 1024).with_mode(mode));
        let fast = median_ms(9, || {
            map_to_image(&grid, gh, gw, &g, 4.0).unwrap();
        });
        let fast1 = one.install(|| {
            median_ms(5, || {
                map_to_image(&grid, gh, gw, &g, 4.0).unwrap();
            })
        });
        // The straightforward fast path: f32 resize to the input, crop, resize to the
        // image, separable smoothing.
        let staged = || {
            let input = resize_bilinear(&grid, gh, gw, 1024, 1024).unwrap();
            let r = g.rect;
            let crop: Vec<f32> = (r.y..r.y + r.height)
                .flat_map(|y| {
                    let row = y as usize * 1024 + r.x as usize;
                    input[row..row + r.width as usize].iter().copied()
                })
                .collect();
            let image = resize_bilinear(
                &crop,
                r.height as usize,
                r.width as usize,
                ih as usize,
                iw as usize,
            )
            .unwrap();
            gaussian_smooth(&image, ih as usize, iw as usize, 4.0).unwrap();
        };
        let staged_ms = median_ms(3, staged);
        let t = Instant::now();
        one.install(|| map_to_image_naive(&grid, gh, gw, &g, 4.0));
        let naive = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "{name}: {fast:7.2} ms ({threads} threads), {fast1:7.2} ms (1 thread); \
             staged f32 separable {staged_ms:7.1} ms ({:.1}x); naive f64 2D {naive:8.0} ms \
             (1 thread, {:.0}x the 1-thread fast path)",
            staged_ms / fast,
            naive / fast1
        );
    }

    let name = "assess 2448x2048 (Max, regions)";
    if wanted(name) {
        let g = InputGeometry::new(iw, ih, &InputSpec::new(1024, 1024));
        let maps: Vec<Vec<f32>> = (0..3)
            .map(|i| map_to_image(&noise(gh * gw, 10 + i), gh, gw, &g, 4.0).unwrap())
            .collect();
        let refs: Vec<&[f32]> = maps.iter().map(|m| m.as_slice()).collect();
        let scores: Vec<f32> = maps
            .iter()
            .map(|m| m.iter().copied().fold(0.0, f32::max))
            .collect();
        let config = CalibrationConfig {
            pixel_quantile: 0.99,
            ..Default::default()
        };
        let fit_ms = median_ms(3, || {
            Calibration::fit(&scores, &refs, &config).unwrap();
        });
        let c = Calibration::fit(&scores, &refs, &config).unwrap();
        let map = &maps[0];
        let mut found = 0;
        let ms = median_ms(9, || {
            found = assess(map, iw as usize, ih as usize, &c, &AssessOptions::default())
                .unwrap()
                .regions_found;
        });
        println!(
            "{name}: {ms:7.2} ms ({found} regions above the 0.99 pixel quantile); \
             calibration fit on 3 maps (0.99 pixel quantile): {fit_ms:7.2} ms"
        );
    }
}
