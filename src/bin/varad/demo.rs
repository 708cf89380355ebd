//! `varad demo`: the whole job on a real photograph. Crops of a texture photo are the
//! normal parts; test crops get planted defects (stains and scratches). The model trains
//! on the normal crops, scores the test crops, and writes a heatmap overlay per test image.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use varad::image::{read_image_file, write_png, ImageView, OwnedImage, PixelFormat};
use varad::model::ScoreOptions;
use varad::train::TrainingSet;
use varad::{Config, Device, Model, Result};

const CROP: usize = 384;

/// Arguments of `varad demo`.
#[derive(clap::Args)]
pub struct Args {
    /// The texture photograph (at least 384 x 384).
    #[arg(long, value_name = "FILE")]
    pub texture: std::path::PathBuf,
    /// The backbone ONNX file (its outputs must include stride8 and stride16).
    #[arg(long, value_name = "FILE")]
    pub backbone: std::path::PathBuf,
    /// Where to write the model and the pictures.
    #[arg(long, value_name = "DIR", default_value = "out/demo")]
    pub out: std::path::PathBuf,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: Device,
}

/// A small deterministic generator for crop positions and defects.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn grey(image: &OwnedImage) -> Vec<u8> {
    let view = image.view();
    let bpp = view.format().bytes_per_pixel();
    (0..view.height())
        .flat_map(|y| {
            let row = view.row(y);
            (0..view.width() as usize).map(move |x| row[x * bpp])
        })
        .collect()
}

fn crop(texture: &[u8], width: usize, rng: &mut Rng, height: usize) -> Vec<u8> {
    let x0 = (rng.unit() * (width - CROP) as f32) as usize;
    let y0 = (rng.unit() * (height - CROP) as f32) as usize;
    (0..CROP)
        .flat_map(|y| texture[(y0 + y) * width + x0..][..CROP].to_vec())
        .collect()
}

/// Plants a stain (even `kind`) or a scratch (odd) and returns its name.
fn plant(pixels: &mut [u8], rng: &mut Rng, kind: usize) -> &'static str {
    let (cx, cy) = (60.0 + rng.unit() * 264.0, 60.0 + rng.unit() * 264.0);
    if kind % 2 == 0 {
        let r = 8.0 + rng.unit() * 10.0;
        for y in 0..CROP {
            for x in 0..CROP {
                let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
                if d < r {
                    let p = &mut pixels[y * CROP + x];
                    *p = (*p as f32 * 0.35) as u8;
                }
            }
        }
        "stain"
    } else {
        let angle = rng.unit() * std::f32::consts::PI;
        let (dx, dy) = (angle.cos(), angle.sin());
        for t in -40..40 {
            for w in -1..=1 {
                let x = (cx + dx * t as f32 - dy * w as f32) as usize;
                let y = (cy + dy * t as f32 + dx * w as f32) as usize;
                if x < CROP && y < CROP {
                    pixels[y * CROP + x] = 250;
                }
            }
        }
        "scratch"
    }
}

/// Blends a jet-like colour map of `map` (0 at the model's threshold's lower end) over the
/// grey image, and outlines the defect regions.
fn overlay(pixels: &[u8], map: &[f32], scale: f32, regions: &[varad::score::Region]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pixels.len() * 3);
    for (&p, &m) in pixels.iter().zip(map) {
        let t = (m / scale).clamp(0.0, 1.0);
        let channel = |centre: f32| 255.0 * (1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0);
        let heat = [channel(3.0), channel(2.0), channel(1.0)];
        for h in heat {
            out.push((0.55 * p as f32 + 0.45 * h) as u8);
        }
    }
    for r in regions {
        for x in r.x..r.x + r.width {
            for y in [r.y, r.y + r.height - 1] {
                let i = (y as usize * CROP + x as usize) * 3;
                out[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        for y in r.y..r.y + r.height {
            for x in [r.x, r.x + r.width - 1] {
                let i = (y as usize * CROP + x as usize) * 3;
                out[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
    }
    out
}

/// Runs the demo: trains on crops of `texture` with `backbone`, writes pictures to `out`.
pub fn run(texture: &Path, backbone: &Path, out: &Path, device: Device) -> Result<()> {
    let start = Instant::now();
    let photo = read_image_file(texture, &Default::default())?;
    let (width, height) = (photo.width() as usize, photo.height() as usize);
    if width < CROP || height < CROP {
        return Err(varad::Error::invalid_argument(format!(
            "{} is {width}x{height}; the demo needs at least {CROP}x{CROP}",
            texture.display()
        )));
    }
    let texture_pixels = grey(&photo);
    std::fs::create_dir_all(out).map_err(|e| varad::Error::io(out, "create", &e))?;
    let mut config = Config::new(backbone);
    config.input_size = Some((CROP as u32, CROP as u32));
    config.levels = vec!["stride8".into(), "stride16".into()];
    config.device = device;
    config.train.epochs = 5;
    let mut model = Model::new(config)?;
    println!(
        "backbone {} on {}, input {CROP}x{CROP}",
        model.tokenizer().backbone().spec().name,
        model.tokenizer().backbone().device().active
    );

    let mut rng = Rng(2024);
    let mut set = TrainingSet::new(&model);
    for _ in 0..20 {
        let pixels = crop(&texture_pixels, width, &mut rng, height);
        set.add(
            &model,
            &[ImageView::packed(
                &pixels,
                CROP as u32,
                CROP as u32,
                PixelFormat::Mono8,
            )?],
        )?;
    }
    let report = model.fit(&set, |p| {
        if p.step % 10 == 0 || p.step == p.steps {
            println!(
                "  epoch {}/{} step {}/{} loss {:.3} ({:.0}s, about {:.0}s left)",
                p.epoch,
                p.epochs,
                p.step,
                p.steps,
                p.loss,
                p.elapsed.as_secs_f64(),
                p.remaining.as_secs_f64()
            );
        }
        ControlFlow::Continue(())
    })?;
    println!(
        "trained on {} images, calibrated on {} in {:.1}s",
        report.train_images,
        report.calibration_images.len(),
        report.elapsed.as_secs_f64()
    );
    let model_path = out.join("model.safetensors");
    model.save(&model_path)?;
    let calibration = model.calibration().expect("fit calibrates").clone();
    let scale = calibration.fail_threshold() * 1.5;

    println!(
        "\n{:<24} {:>10} {:>10}  decision  regions",
        "test image", "score", "normalised"
    );
    let (mut normal, mut anomalous) = (Vec::new(), Vec::new());
    for i in 0..12 {
        let mut pixels = crop(&texture_pixels, width, &mut rng, height);
        let kind = if i % 2 == 0 {
            "good"
        } else {
            plant(&mut pixels, &mut rng, i / 2)
        };
        let view = ImageView::packed(&pixels, CROP as u32, CROP as u32, PixelFormat::Mono8)?;
        let result = model.score(&[view], &ScoreOptions::default())?.remove(0);
        let a = result.assessment.as_ref().expect("calibrated");
        let name = format!("test_{i:02}_{kind}.png");
        let picture = overlay(&pixels, &result.map, scale, &a.regions);
        write_png(
            out.join(&name),
            &ImageView::packed(&picture, CROP as u32, CROP as u32, PixelFormat::Rgb8)?,
        )?;
        println!(
            "{name:<24} {:>10.2} {:>10.3}  {:<8}  {}",
            result.image_score,
            a.normalised_score,
            format!("{:?}", a.decision),
            a.regions.len()
        );
        if kind == "good" {
            normal.push(result.image_score)
        } else {
            anomalous.push(result.image_score)
        }
    }
    let pairs = normal.len() * anomalous.len();
    let wins: f64 = anomalous
        .iter()
        .flat_map(|a| {
            normal.iter().map(move |n| {
                if a > n {
                    1.0
                } else if a == n {
                    0.5
                } else {
                    0.0
                }
            })
        })
        .sum();
    println!(
        "\nimage AUROC on the test crops: {:.3}",
        wins / pairs as f64
    );
    println!(
        "model: {}\npictures: {}/test_*.png (heat over the image, white boxes = defect regions)",
        model_path.display(),
        out.display()
    );
    println!("total {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}
