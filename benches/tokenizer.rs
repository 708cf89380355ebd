//! Tokenizer overhead: the library's backbone run (input wrapping, ONNX Runtime, output
//! copy and checks) against the `onnxruntime` Python API running the same file on the same
//! input with the same intra-op threads, measured in the same run, alternating the two so
//! that machine noise hits both. Prints the ratio (target <= 1.05) and images/s.
//!
//! Run: `cargo bench --bench tokenizer` (after `make setup`). Arguments after `--`:
//! backbone files to measure (default: the bundled EfficientNet-Lite0 and the tiny ViT).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use varad::backbone::{Backbone, BackboneOptions};
use varad::Device;

/// Rounds and runs per round: a full measurement under `cargo bench`, one quick pass
/// when `cargo test --all-targets` runs this file as a smoke test.
fn rounds_and_reps() -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (3, 5)
    } else {
        (1, 1)
    }
}

fn bench_input(batch: usize, height: usize, width: usize) -> Vec<f32> {
    (0..batch * 3 * height * width)
        .map(|i| ((i as u64 * 7919) % 1000) as f32 / 1000.0)
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN timings"));
    values[values.len() / 2]
}

fn python_median_ms(
    root: &Path,
    model: &Path,
    size: (usize, usize),
    threads: usize,
    reps: usize,
) -> f64 {
    let output = Command::new(root.join(".deps/venv/bin/python"))
        .arg(root.join("scripts/bench_ort_python.py"))
        .arg(model)
        .args([
            "--width",
            &size.0.to_string(),
            "--height",
            &size.1.to_string(),
        ])
        .args([
            "--threads",
            &threads.to_string(),
            "--reps",
            &reps.to_string(),
        ])
        .output()
        .expect("run the Python baseline (make setup installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python baseline failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected baseline output: {text}"))
}

fn bench(root: &Path, model: &Path) {
    let backbone = Backbone::open(
        model,
        &BackboneOptions {
            device: Device::Cpu,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let spec = backbone.spec();
    // The paper's 1024 x 1024, rounded to the backbone's input multiple (1022 for a ViT/14).
    let side = 1024 / spec.input_multiple * spec.input_multiple;
    let size = (side, side);
    let threads = backbone.intra_threads();
    let input = bench_input(1, side, side);
    for _ in 0..2 {
        backbone.run(&input, 1, side, side).expect("warm-up run");
    }
    let (rounds, reps) = rounds_and_reps();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..rounds {
        theirs.push(python_median_ms(root, model, size, threads, reps));
        let mut times: Vec<f64> = (0..reps)
            .map(|_| {
                let start = Instant::now();
                let maps = backbone.run(&input, 1, side, side).expect("run");
                std::hint::black_box(maps);
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        ours.push(median(&mut times));
    }
    let ours_ms = median(&mut ours);
    let theirs_ms = median(&mut theirs);
    let shapes: Vec<String> = backbone
        .run(&input, 1, side, side)
        .expect("run")
        .iter()
        .map(|m| format!("{}x{}x{}", m.channels, m.height, m.width))
        .collect();
    println!(
        "{:<22} {side}x{side}  intra-op threads {threads}  varad {ours_ms:8.2} ms ({:6.2} img/s)  \
         onnxruntime-python {theirs_ms:8.2} ms ({:6.2} img/s)  ratio {:.3}  outputs {}",
        spec.name,
        1000.0 / ours_ms,
        1000.0 / theirs_ms,
        ours_ms / theirs_ms,
        shapes.join(", ")
    );
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    let models = if args.is_empty() {
        vec![
            root.join(".deps/backbones/efficientnet_lite0.onnx"),
            root.join("tests/data/tiny_vit.onnx"),
        ]
    } else {
        args
    };
    let (rounds, reps) = rounds_and_reps();
    println!("tokenizer benchmark: median of {rounds} rounds x {reps} runs, batch 1, CPU");
    for model in models {
        if model.is_file() {
            bench(&root, &model);
        } else {
            println!("{}: not found (run `make setup`), skipped", model.display());
        }
    }
}
