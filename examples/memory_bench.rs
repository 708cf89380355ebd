//! Memory and throughput of several models of one backbone in one process, as on an
//! inspection PC with one model per camera (docs/performance.md, "Memory per camera").
//! Uses the public API only, so the same program measures any version of the library.
//!
//! ```text
//! memory_bench <backbone.onnx> [size] [counts] [images]
//!     for each model count in `counts` (default 1,2,4,8), in a fresh process: load that
//!     many models, score one image with each (one thread per model, all at once), and
//!     report the resident memory after scoring (idle) and its peak; then, with the last
//!     count's models, the images/s of one thread per model scoring `images` images each
//!     (default 4), against one thread scoring one model in the same run, and whether
//!     every map is bit-identical to the map one model alone gives
//! memory_bench --one <model file> <size> <count>
//!     one count's memory figures (what the first form runs in a child process)
//! ```
//!
//! Every camera's model is loaded from one model file: `VARAD_BENCH_MODEL` when it names
//! one, else a model the program trains first (one epoch on six textures; untrained models
//! refuse to score) and saves in the temporary folder.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use varad::image::{OwnedImage, PixelFormat};
use varad::model::ScoreOptions;
use varad::train::TrainingSet;
use varad::{Config, Model};

/// A grainy woven texture, RGB8, different per `seed`.
fn texture(size: u32, seed: u64) -> OwnedImage {
    let n = size as usize;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(n * n * 3);
    for y in 0..n {
        for x in 0..n {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let grain = (state >> 56) as f32 / 255.0 - 0.5;
            let v = 128.0
                + 70.0 * ((x as f32 + seed as f32) * 0.5).sin() * (y as f32 * 0.5).cos()
                + 30.0 * grain;
            let v = v.clamp(0.0, 255.0) as u8;
            data.extend_from_slice(&[v, v / 2 + 40, 255 - v]);
        }
    }
    OwnedImage::new(size, size, PixelFormat::Rgb8, data).expect("a valid image")
}

/// A field of /proc/self/status in MB (Linux; 0 elsewhere).
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The model file every camera loads: `VARAD_BENCH_MODEL`, or one trained here (one
/// epoch on six textures at `size`) and saved in the temporary folder.
fn model_file(backbone: &str, size: u32) -> Result<PathBuf, String> {
    if let Some(file) = std::env::var_os("VARAD_BENCH_MODEL") {
        return Ok(PathBuf::from(file));
    }
    let file =
        std::env::temp_dir().join(format!("varad-memory-bench-{}.varad", std::process::id()));
    let mut config = Config::new(backbone);
    config.input_size = Some((size, size));
    config.device = varad::Device::Cpu;
    config.train.epochs = 1;
    let mut model = Model::new(config).map_err(|e| e.to_string())?;
    let mut set = TrainingSet::new(&model);
    for seed in 100..106 {
        set.add(&model, &[texture(size, seed).view()])
            .map_err(|e| e.to_string())?;
    }
    model
        .fit(&set, |_| ControlFlow::Continue(()))
        .map_err(|e| e.to_string())?;
    model.save(&file).map_err(|e| e.to_string())?;
    Ok(file)
}

fn open_models(file: &Path, count: usize) -> Result<Vec<Model>, String> {
    (0..count)
        .map(|_| Model::load(file, &Default::default()).map_err(|e| e.to_string()))
        .collect()
}

/// Each model scores its images on a thread of its own, all at once; the maps per model.
fn score_all(models: &[Model], images: &[OwnedImage]) -> Result<Vec<Vec<Vec<f32>>>, String> {
    std::thread::scope(|s| {
        let runs: Vec<_> = models
            .iter()
            .map(|m| {
                s.spawn(move || {
                    images
                        .iter()
                        .map(|image| {
                            let r = m.score(&[image.view()], &ScoreOptions::default());
                            r.map(|mut r| r.remove(0).map).map_err(|e| e.to_string())
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a scoring thread panicked"))
            .collect()
    })
}

/// One count's memory figures, printed as one `RESULT` line.
fn one(file: &Path, size: u32, count: usize) -> Result<(), String> {
    let models = open_models(file, count)?;
    let loaded = status_mb("VmRSS:");
    score_all(&models, &[texture(size, 1)])?;
    let idle = status_mb("VmRSS:");
    let peak = status_mb("VmHWM:");
    println!("RESULT models={count} loaded_mb={loaded:.0} idle_mb={idle:.0} peak_mb={peak:.0}");
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    if args.get(1).map(String::as_str) == Some("--one") {
        let file = args.get(2).ok_or("--one needs a model file")?;
        let size = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1024);
        let count = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
        return one(Path::new(file), size, count);
    }
    let backbone = args
        .get(1)
        .ok_or("usage: memory_bench <backbone.onnx> [size] [counts] [images]")?;
    let size: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let counts: Vec<usize> = args
        .get(3)
        .map_or("1,2,4,8", String::as_str)
        .split(',')
        .map(|c| c.parse().map_err(|_| format!("bad count `{c}`")))
        .collect::<Result<_, _>>()?;
    let per_thread: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(4);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let file = model_file(backbone, size)?;
    let file_arg = file.to_str().ok_or("the model file's path is not UTF-8")?;
    println!("| models | RSS loaded (MB) | RSS idle after scoring (MB) | peak RSS (MB) |");
    println!("|---:|---:|---:|---:|");
    for &count in &counts {
        let out = std::process::Command::new(&exe)
            .args(["--one", file_arg, &size.to_string(), &count.to_string()])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .ok_or_else(|| {
                format!(
                    "count {count} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(k))
                .unwrap_or("?")
                .to_string()
        };
        println!(
            "| {count} | {} | {} | {} |",
            field("loaded_mb="),
            field("idle_mb="),
            field("peak_mb=")
        );
    }

    // Throughput: one thread per model, against one thread scoring one model.
    let count = *counts.iter().max().unwrap_or(&1);
    let models = open_models(&file, count)?;
    let images: Vec<OwnedImage> = (0..per_thread as u64)
        .map(|i| texture(size, 10 + i))
        .collect();
    let reference = score_all(&models[..1], &images)?.remove(0);
    let t = Instant::now();
    score_all(&models[..1], &images)?;
    let one_rate = per_thread as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let maps = score_all(&models, &images)?;
    let all_rate = (count * per_thread) as f64 / t.elapsed().as_secs_f64();
    let identical = maps.iter().all(|m| {
        m.iter().zip(&reference).all(|(a, b)| {
            a.iter()
                .map(|v| v.to_bits())
                .eq(b.iter().map(|v| v.to_bits()))
        })
    });
    println!();
    println!(
        "1 thread, 1 model: {one_rate:.2} images/s; {count} threads, {count} models: \
         {all_rate:.2} images/s ({:.2}x); maps bit-identical to one model alone: {}",
        all_rate / one_rate,
        if identical { "yes" } else { "NO" }
    );
    println!("RESULT one_images_per_s={one_rate:.3} all_images_per_s={all_rate:.3} identical={identical}");
    if std::env::var_os("VARAD_BENCH_MODEL").is_none() {
        // Ours, made above: nothing else uses it.
        let _ = std::fs::remove_file(&file);
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = run(&args) {
        eprintln!("memory_bench: {e}");
        std::process::exit(1);
    }
}
