//! `varad train`: train a model on images of good parts and save it.

use std::ops::ControlFlow;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use varad::image::{read_image_file, ImageLimits};
use varad::train::TrainingSet;
use varad::{Model, Result};

use crate::calibration_report;
use crate::config_args::{collect_images, ConfigArgs};

/// Arguments of `varad train`.
#[derive(clap::Args)]
pub struct Args {
    /// The backbone ONNX file (required unless --config names one).
    #[arg(long, value_name = "FILE")]
    backbone: Option<PathBuf>,
    /// Where to write the model (.safetensors).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
    /// Images of bad parts (files or folders; may be repeated): never trained on, they
    /// are scored at calibration and the report says how many would pass; with
    /// --catch-known-defects the review threshold is lowered until none does.
    #[arg(long, value_name = "IMAGE_OR_DIR")]
    known_defects: Vec<PathBuf>,
    /// Images of good parts: files, or folders whose image files are all used. Part of
    /// them (10 %, at least 3) is held back to calibrate the thresholds.
    #[arg(required = true, value_name = "IMAGE_OR_DIR")]
    inputs: Vec<PathBuf>,
}

fn bar(len: usize, template: &str) -> ProgressBar {
    // indicatif draws only on a terminal, so logs and tests see just the summary.
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Trains, saves and prints the summary.
pub fn run(args: Args, runtime: Option<PathBuf>) -> Result<()> {
    let config = args
        .config
        .build(args.backbone.as_deref(), runtime.as_deref())?;
    let files = collect_images(&args.inputs)?;
    let defective = collect_images(&args.known_defects)?;
    let mut model = Model::new(config)?;
    let limits = ImageLimits {
        max_pixels: model.config().max_image_pixels,
    };
    let reading = bar(
        files.len(),
        "tokenizing {bar:30} {pos}/{len} images  {elapsed}",
    );
    let mut set = TrainingSet::new(&model);
    for path in &files {
        let image = read_image_file(path, &limits)?;
        set.add(&model, &[image.view()])
            .map_err(|e| e.context(path.display()))?;
        reading.inc(1);
    }
    for path in &defective {
        let image = read_image_file(path, &limits)?;
        set.add_defective(&model, &[image.view()])
            .map_err(|e| e.context(path.display()))?;
    }
    reading.finish_and_clear();
    let steps = bar(0, "training {bar:30} {pos}/{len} steps  {msg}");
    let report = model.fit(&set, |p| {
        steps.set_length(p.steps as u64);
        steps.set_position(p.step as u64);
        steps.set_message(format!(
            "epoch {}/{}  loss {:.4}  ETA {:.0}s",
            p.epoch,
            p.epochs,
            p.loss,
            p.remaining.as_secs_f64()
        ));
        ControlFlow::Continue(())
    })?;
    steps.finish_and_clear();
    model.save(&args.out)?;

    println!(
        "trained on {} images ({} held back for calibration) in {:.1}s",
        report.train_images,
        report.calibration_images.len(),
        report.elapsed.as_secs_f64()
    );
    let losses: Vec<String> = report
        .epoch_losses
        .iter()
        .map(|l| format!("{l:.4}"))
        .collect();
    println!("epoch losses: {}", losses.join(" "));
    if let Some(last) = report.variance_ratios.last() {
        let ratios: Vec<String> = last.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "adapted/raw token variance per level (1 = no shrinkage): {}",
            ratios.join(" ")
        );
    }
    if let Some(c) = model.calibration() {
        println!(
            "thresholds: image {:.4} (review {:.4}, fail {:.4}), pixel {:.4}",
            c.image_threshold(),
            c.review_threshold(),
            c.fail_threshold(),
            c.pixel_threshold()
        );
        println!("{}", calibration_report::format(&c.report()));
    }
    let (memory, spilled) = report.cache_bytes;
    println!(
        "token cache: {:.1} MiB in memory, {:.1} MiB spilled",
        memory as f64 / (1 << 20) as f64,
        spilled as f64 / (1 << 20) as f64
    );
    println!("model written to {}", args.out.display());
    Ok(())
}
