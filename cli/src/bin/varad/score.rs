//! `varad score`: score images with a saved model; per image an anomaly-map PNG, a heatmap
//! overlay and a JSON verdict.

use std::path::{Path, PathBuf};

use serde_json::json;
use varad::image::{read_image_file, write_png, ImageLimits, ImageView, PixelFormat};
use varad::model::ScoreOptions;
use varad::model_file::LoadOptions;
use varad::score::grey_levels;
use varad::{Device, Error, Model, Result};
use varad_cli::eval::montage::{heat_overlay, to_rgb8};

use crate::config_args::collect_images;

/// Arguments of `varad score`.
#[derive(clap::Args)]
pub struct Args {
    /// The model file.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Write `<name>_map.png` (grey; mid-grey 128 = the pixel threshold, so brighter
    /// pixels are in defect regions), `<name>_overlay.png` and `<name>.json` per image
    /// here. Without it, one JSON line per image is printed.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
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

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
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
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", &e))?;
    }
    let limits = ImageLimits {
        max_pixels: model.config().max_image_pixels,
    };
    for path in &files {
        let image = read_image_file(path, &limits)?;
        let result = model
            .score(&[image.view()], &ScoreOptions::default())
            .map_err(|e| e.context(path.display()))?
            .remove(0);
        let a = result.assessment.as_ref();
        let verdict = json!({
            "image": path.display().to_string(),
            "width": result.width,
            "height": result.height,
            "score": result.image_score,
            "normalised_score": a.map(|a| a.normalised_score),
            "decision": a.map(|a| a.decision),
            "regions": a.map(|a| &a.regions),
        });
        let Some(dir) = &args.out else {
            println!("{verdict}");
            continue;
        };
        let name = stem(path);
        // Without a calibration the map is scaled by its own maximum.
        let (pixel_t, fail_t) = match model.calibration() {
            Some(c) => (c.pixel_threshold(), c.fail_threshold()),
            None => (result.image_score / 2.0, result.image_score),
        };
        // White at twice the pixel threshold: the threshold is mid-grey.
        let grey = grey_levels(&result.map, 2.0 * pixel_t);
        let (w, h) = (result.width as u32, result.height as u32);
        write_png(
            dir.join(format!("{name}_map.png")),
            &ImageView::packed(&grey, w, h, PixelFormat::Mono8)?,
        )?;
        let overlay = heat_overlay(&to_rgb8(&image.view()), &result.map, 0.0, 1.5 * fail_t);
        write_png(
            dir.join(format!("{name}_overlay.png")),
            &ImageView::packed(&overlay, w, h, PixelFormat::Rgb8)?,
        )?;
        let json_path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(&verdict).expect("plain data");
        std::fs::write(&json_path, text + "\n").map_err(|e| Error::io(&json_path, "write", &e))?;
        println!(
            "{}: score {:.4}{}",
            path.display(),
            result.image_score,
            a.map_or(String::new(), |a| format!(
                ", normalised {:.3}, {:?}, {} regions",
                a.normalised_score,
                a.decision,
                a.regions.len()
            ))
        );
    }
    Ok(())
}
