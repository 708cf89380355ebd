//! Cross-fitted normal scores against held-out and new good images, and what cross-fitting
//! costs (docs/performance.md). For every category of a set in the MVTec-AD layout
//! (`make_synthetic_set.py` writes one), trains one model without cross-fitting, then,
//! on the same trained predictor, cross-fits the training images in each requested number
//! of folds, and prints one JSON line per category: the cross-fitted scores per fold
//! count, the held-out images' scores, the training images' in-sample scores (the model's
//! own statistics), the good test images' scores, and the wall times.
//!
//! ```text
//! cross_fit_study <set> <backbone.onnx> [folds, default 5,10] [threads, default 2]
//! ```
//!
//! `CATEGORIES=a,b` limits the run to those categories; `NEIGHBOUR_WEIGHT=0` scores
//! without the neighbour term; `FOLD_SEEDS=2,3` cross-fits again with the folds dealt by
//! those seeds (training deals them by seed 1).
//!
//! The configuration is the README results' (`make results`): levels stride8,stride16,
//! input 1024 x 1024, CPU, seed 1, the library's defaults otherwise.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use varad::image::{read_image_file, ImageLimits};
use varad::model::ScoreOptions;
use varad::train::TrainingSet;
use varad::{Config, Device, Model};

fn pngs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "png"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn scores(model: &Model, paths: &[PathBuf]) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for p in paths {
        let image = read_image_file(p, &ImageLimits::default())?;
        let result = model.score(&[image.view()], &ScoreOptions::default())?;
        out.push(result[0].image_score);
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: cross_fit_study <set> <backbone.onnx> [folds] [threads]");
        std::process::exit(2);
    }
    let root = Path::new(&args[1]);
    let folds: Vec<usize> = args
        .get(3)
        .map_or("5,10", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let threads: usize = args.get(4).map_or(Ok(2), |t| t.parse())?;
    let mut categories: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("train/good").is_dir())
        .filter(|p| {
            std::env::var("CATEGORIES").map_or(true, |c| {
                c.split(',').any(|c| p.file_name().is_some_and(|n| n == c))
            })
        })
        .collect();
    categories.sort();
    for category in categories {
        let name = category.file_name().unwrap().to_string_lossy().to_string();
        let mut config = Config::new(&args[2]);
        config.levels = vec!["stride8".into(), "stride16".into()];
        config.input_size = Some((1024, 1024));
        config.device = Device::Cpu;
        config.threads = threads;
        config.seed = 1;
        config.train.cross_fit_folds = 0;
        if let Ok(w) = std::env::var("NEIGHBOUR_WEIGHT") {
            config.score.neighbour_weight = w.parse()?;
        }
        let mut model = Model::new(config)?;
        let train_paths = pngs(&category.join("train/good"));
        let mut set = TrainingSet::new(&model);
        for p in &train_paths {
            let image = read_image_file(p, &ImageLimits::default())?;
            set.add(&model, &[image.view()])?;
        }
        let report = model.fit(&set, |_| ControlFlow::Continue(()))?;
        let held: Vec<usize> = report.calibration_images.clone();
        let trained: Vec<PathBuf> = (0..train_paths.len())
            .filter(|i| !held.contains(i))
            .map(|i| train_paths[i].clone())
            .collect();
        let in_sample = scores(&model, &trained)?;
        let test = scores(&model, &pngs(&category.join("test/good")))?;
        let mut cross = Vec::new();
        for &k in &folds {
            let start = Instant::now();
            let pool = model.cross_fitted_pool(&set, k, 1)?;
            let seconds = start.elapsed().as_secs_f64();
            cross.push(serde_json::json!({
                "folds": pool.folds,
                "scores": pool.cross_fitted,
                "held_out": pool.held_out,
                "seconds": seconds,
            }));
        }
        // The same fold count dealt by other seeds: how much the scores (and their
        // maximum, the threshold at these sizes) depend on the deal.
        let mut reseeded = Vec::new();
        if let Ok(seeds) = std::env::var("FOLD_SEEDS") {
            for seed in seeds.split(',') {
                let seed: u64 = seed.parse()?;
                for &k in &folds {
                    let pool = model.cross_fitted_pool(&set, k, seed)?;
                    reseeded.push(serde_json::json!({
                        "folds": pool.folds, "seed": seed, "scores": pool.cross_fitted,
                    }));
                }
            }
        }
        let line = serde_json::json!({
            "reseeded": reseeded,
            "category": name,
            "set": root.display().to_string(),
            "fit_seconds": report.elapsed.as_secs_f64(),
            "calibration_seconds": report.calibration_elapsed.as_secs_f64(),
            "held_out_indices": held,
            "held_out": report.normal_pool.held_out,
            "in_sample": in_sample,
            "test_good": test,
            "cross_fitted": cross,
        });
        println!("{line}");
    }
    Ok(())
}
