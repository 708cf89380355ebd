//! `varad bench`: time each stage of scoring one image (decode, preprocess, backbone,
//! predictor, post-processing) on generated images, and report the medians.

use std::path::PathBuf;
use std::time::Instant;

use varad::image::{
    read_image_file, to_backbone_input, write_png, ImageLimits, ImageView, PixelFormat,
};
use varad::score::{
    assess, check_model_map, image_score, map_to_image, AssessOptions, Calibration,
};
use varad::{Error, Model, Result};

use crate::config_args::{parse_size, ConfigArgs};

/// Arguments of `varad bench`.
#[derive(clap::Args)]
pub struct Args {
    /// The backbone ONNX file.
    #[arg(long, value_name = "FILE")]
    backbone: PathBuf,
    /// Image size, WxH; also the backbone input size unless --input-size says otherwise.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    size: (u32, u32),
    /// Timed images (each a different generated texture, after one warm-up run); the
    /// medians are reported.
    #[arg(long, value_name = "N", default_value = "5")]
    images: usize,
    #[command(flatten)]
    config: ConfigArgs,
}

/// A woven texture with grain, RGB8, different per `seed`.
fn texture(w: usize, h: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let grain = (state >> 56) as f32 / 255.0 - 0.5;
            let v = 128.0
                + 70.0 * ((x as f32 + seed as f32) * 0.5).sin() * (y as f32 * 0.5).cos()
                + 30.0 * grain;
            let v = v.clamp(0.0, 255.0) as u8;
            out.extend_from_slice(&[v, v / 2 + 40, 255 - v]);
        }
    }
    out
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Runs the benchmark and prints a table of the medians.
pub fn run(args: Args, runtime: Option<PathBuf>) -> Result<()> {
    if args.images == 0 {
        return Err(Error::invalid_argument("--images must be at least 1"));
    }
    let mut config = args
        .config
        .build(Some(&args.backbone), runtime.as_deref())?;
    if config.input_size.is_none() {
        config.input_size = Some(args.size);
    }
    let model = Model::new(config)?;
    let (w, h) = (args.size.0 as usize, args.size.1 as usize);
    let dir = tempfile_dir()?;
    let input = *model.tokenizer().input();
    let (gh, gw) = model.finest_grid();
    let sigma = model.config().score.sigma;
    let policy = model.config().score.calibration.score_policy;
    // Stage times per run, milliseconds: decode, preprocess, backbone, predictor, post.
    let mut times: Vec<[f64; 5]> = Vec::new();
    let mut maps = Vec::new();
    for run in 0..=args.images {
        let path = dir.join(format!("bench_{run}.png"));
        let pixels = texture(w, h, run as u64);
        write_png(
            &path,
            &ImageView::packed(&pixels, w as u32, h as u32, PixelFormat::Rgb8)?,
        )?;
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let image = read_image_file(&path, &ImageLimits::default())?;
        let decode = ms(t);
        let t = Instant::now();
        let mut batch = vec![0f32; input.buffer_len()?];
        let geometry = to_backbone_input(&image.view(), &input, &mut batch)?;
        let preprocess = ms(t);
        let t = Instant::now();
        let levels = model.tokenizer().backbone().run(
            &batch,
            1,
            input.height as usize,
            input.width as usize,
        )?;
        let backbone = ms(t);
        let t = Instant::now();
        let features: Vec<f32> = model
            .layout()
            .iter()
            .flat_map(|l| levels[l.output].image(0).iter().copied())
            .collect();
        let weights = model.weights().clone();
        let raw = model.install(|| model.raw_map_with(&weights, &features))?;
        let predictor = ms(t);
        let t = Instant::now();
        let map = model.install(|| map_to_image(&raw, gh, gw, &geometry, sigma))?;
        check_model_map(&map, w)?;
        let score = image_score(&map, None, policy)?;
        let post = ms(t);
        if run > 0 {
            times.push([decode, preprocess, backbone, predictor, post]);
        }
        maps.push((score, map));
        let _ = std::fs::remove_file(&path);
    }
    // The assessment (decision and regions) needs thresholds: calibrate on the bench's own
    // maps (the numbers are meaningless, the work is the same) and time it separately.
    let scores: Vec<f32> = maps.iter().map(|m| m.0).collect();
    let refs: Vec<&[f32]> = maps.iter().map(|m| m.1.as_slice()).collect();
    let mut assess_ms = Vec::new();
    if let Ok(calibration) = Calibration::fit(&scores, &refs, &model.config().score.calibration) {
        for (_, map) in maps.iter().skip(1) {
            let t = Instant::now();
            model.install(|| assess(map, w, h, &calibration, &AssessOptions::default()))?;
            assess_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let _ = std::fs::remove_dir(&dir);
    let bb = model.tokenizer().backbone();
    println!(
        "backbone {} on {}, image {w}x{h}, input {}x{}, levels {}, {} threads, median of {} runs",
        bb.spec().name,
        bb.device().active,
        input.width,
        input.height,
        model
            .layout()
            .iter()
            .map(|l| format!("{} {}x{}x{}", l.name, l.channels, l.grid.0, l.grid.1))
            .collect::<Vec<_>>()
            .join(", "),
        bb.intra_threads(),
        times.len()
    );
    let names = [
        "decode (PNG)",
        "preprocess",
        "backbone",
        "predictor (raw map)",
        "post (upsample+smooth+score)",
    ];
    let mut total = 0.0;
    println!("| stage | ms |\n|---|---:|");
    for (i, name) in names.iter().enumerate() {
        let m = median(&mut times.iter().map(|t| t[i]).collect::<Vec<_>>());
        total += m;
        println!("| {name} | {m:.2} |");
    }
    if !assess_ms.is_empty() {
        let m = median(&mut assess_ms);
        total += m;
        println!("| post (decision+regions) | {m:.2} |");
    }
    println!("| **total** | {total:.2} |");
    println!(
        "images/s (one at a time, all stages): {:.2}",
        1000.0 / total
    );
    Ok(())
}

/// A fresh folder for the generated PNG files.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("varad-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", &e))?;
    Ok(dir)
}
