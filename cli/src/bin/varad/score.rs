//! `varad score`: score images with a saved model; per image an anomaly-map PNG, a heatmap
//! overlay and a JSON verdict, and a summary of the run.

use std::path::{Path, PathBuf};

use serde_json::json;
use varad::image::{read_image_file, write_png, ImageLimits, ImageView, OwnedImage, PixelFormat};
use varad::model::{ScoreOptions, ScoreResult};
use varad::model_file::LoadOptions;
use varad::score::grey_levels;
use varad::{Device, Error, Model, Result};
use varad_cli::eval::montage::{heat_overlay, to_rgb8};

use crate::config_args::collect_images;
use crate::score_layout::{self, Existing, ImageOutputs};
use crate::score_summary::{Assessed, Summary, SummaryRow};

/// Arguments of `varad score`.
#[derive(clap::Args)]
pub struct Args {
    /// The model file.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Write each image's results and a run summary here. Without it, one JSON line per
    /// image is printed.
    ///
    /// The images' folders are mirrored below DIR, starting from --root (by default the
    /// deepest folder holding all the images): `test/good/000.png` and
    /// `test/crack/000.png` give `DIR/good/000.json` (the verdict), `DIR/good/000_map.png`
    /// (grey; mid-grey 128 = the pixel threshold, so brighter pixels are in defect
    /// regions) and `DIR/good/000_overlay.png`, and the same three under `DIR/crack/`.
    ///
    /// `DIR/results.csv` gets one row per image as soon as it is scored, with the columns
    /// path, score, normalised_score, decision, regions, p_value (the last four empty for
    /// an uncalibrated model; p_value is the conformal p-value of the score against the
    /// calibration's good-image scores: small is unlike any good part); a line per image
    /// is printed too.
    ///
    /// Two images that would write the same file, and results an earlier run left in DIR
    /// (unless --overwrite), are refused before any image is scored.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The folder whose layout is mirrored under --out; every image must lie below it
    /// [default: the deepest folder holding all the images].
    #[arg(long, value_name = "DIR", requires = "out")]
    root: Option<PathBuf>,
    /// Replace results an earlier run left in --out (without it, such a run is refused).
    #[arg(long, requires = "out")]
    overwrite: bool,
    /// The backbone file, if it is no longer where the model says (its SHA-256 must match).
    #[arg(long, value_name = "FILE")]
    backbone: Option<PathBuf>,
    /// Device: auto, cpu, cuda or cuda:N [default: the model's].
    #[arg(long)]
    device: Option<Device>,
    /// Worker threads, 0 = one per physical core [default: the model's].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Images to score: files or folders of images.
    #[arg(required = true, value_name = "IMAGE_OR_DIR")]
    images: Vec<PathBuf>,
}

/// Scores every image and writes or prints the results.
pub fn run(args: Args, runtime: Option<PathBuf>) -> Result<()> {
    let model = Model::load(
        &args.model,
        &LoadOptions {
            backbone: args.backbone.clone(),
            runtime_path: runtime,
            device: args.device,
            threads: args.threads,
        },
    )?;
    let files = collect_images(&args.images)?;
    let Some(out) = &args.out else {
        for path in &files {
            let (_, result) = score_one(&model, path)?;
            println!("{}", verdict(path, &result));
        }
        return Ok(());
    };
    let existing = if args.overwrite {
        Existing::Overwrite
    } else {
        Existing::Refuse
    };
    // Every output is known and checked before the first image is scored.
    let layout = score_layout::plan(&files, out, args.root.as_deref(), existing)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, "create", &e))?;
    let mut summary = Summary::create(&layout.summary, existing)?;
    for (path, outputs) in files.iter().zip(&layout.images) {
        let (image, result) = score_one(&model, path)?;
        write_results(&model, &image, &result, &verdict(path, &result), outputs)?;
        let shown = path.display().to_string();
        let assessed = result.assessment.as_ref().map(|a| Assessed {
            normalised_score: a.normalised_score,
            decision: a.decision,
            regions: a.regions_found,
            p_value: a.p_value,
        });
        summary.append(&SummaryRow {
            path: &shown,
            score: result.image_score,
            assessed,
        })?;
        println!(
            "{shown}: score {:.4}{}",
            result.image_score,
            assessed.map_or(", no decision (the model is not calibrated)".into(), |a| {
                format!(
                    ", normalised {:.3}, {:?}, {} regions",
                    a.normalised_score, a.decision, a.regions
                )
            })
        );
    }
    Ok(())
}

fn score_one(model: &Model, path: &Path) -> Result<(OwnedImage, ScoreResult)> {
    let limits = ImageLimits {
        max_pixels: model.config().max_image_pixels,
    };
    let image = read_image_file(path, &limits)?;
    let result = model
        .score(&[image.view()], &ScoreOptions::default())
        .map_err(|e| e.context(path.display()))?
        .remove(0);
    Ok((image, result))
}

fn verdict(path: &Path, result: &ScoreResult) -> serde_json::Value {
    let a = result.assessment.as_ref();
    json!({
        "image": path.display().to_string(),
        "width": result.width,
        "height": result.height,
        "score": result.image_score,
        "normalised_score": a.map(|a| a.normalised_score),
        "decision": a.map(|a| a.decision),
        "regions": a.map(|a| &a.regions),
        "regions_found": a.map(|a| a.regions_found),
        "p_value": a.map(|a| a.p_value),
    })
}

/// Writes the map, the overlay and the verdict, creating their folder.
fn write_results(
    model: &Model,
    image: &OwnedImage,
    result: &ScoreResult,
    verdict: &serde_json::Value,
    outputs: &ImageOutputs,
) -> Result<()> {
    if let Some(folder) = outputs.json.parent() {
        std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, "create", &e))?;
    }
    // Without a calibration the map is scaled by its own maximum.
    let (pixel_t, fail_t) = match model.calibration() {
        Some(c) => (c.pixel_threshold(), c.fail_threshold()),
        None => (result.image_score / 2.0, result.image_score),
    };
    // White at twice the pixel threshold: the threshold is mid-grey.
    let grey = grey_levels(&result.map, 2.0 * pixel_t);
    let (w, h) = (result.width as u32, result.height as u32);
    write_png(
        &outputs.map,
        &ImageView::packed(&grey, w, h, PixelFormat::Mono8)?,
    )?;
    let overlay = heat_overlay(&to_rgb8(&image.view()), &result.map, 0.0, 1.5 * fail_t);
    write_png(
        &outputs.overlay,
        &ImageView::packed(&overlay, w, h, PixelFormat::Rgb8)?,
    )?;
    let text = serde_json::to_string_pretty(verdict).expect("plain data");
    std::fs::write(&outputs.json, text + "\n").map_err(|e| Error::io(&outputs.json, "write", &e))
}
