//! Timings for the GPU check (`scripts/gpu-check.sh`); runs on any machine, and says
//! which device each stage used. Every result is one `RESULT key=value` line, which the
//! script gathers into its summary.
//!
//! ```text
//! gpu_bench predictor [grid] [channels] [levels]
//!     the predictor alone at ViT-S/14 shapes (73x73 grid at 1022 px, C = 384, 3 levels):
//!     scoring images/s and training seconds per image on CUDA, parity with the CPU
//! gpu_bench score <backbone.onnx> <size> <images>
//!     end to end through Model::score (preprocess, backbone, predictor, maps): images/s
//! gpu_bench train <backbone.onnx> <size> <images> <epochs>
//!     Model::fit on random images: token caching and training times
//! ```
//!
//! Device: `VARAD_DEVICE` (auto, cpu, cuda, cuda:N; default auto) for score and train.

use std::ops::ControlFlow;
use std::time::Instant;

use varad::config::TrainConfig;
use varad::cuda::{self, CudaAdamW, CudaPredictor};
use varad::image::{OwnedImage, PixelFormat};
use varad::model::ScoreOptions;
use varad::predictor::{Predictor, PredictorConfig};
use varad::train::TrainingSet;
use varad::{Config, Device, Model};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn random_images(n: usize, size: u32, seed: u64) -> Vec<OwnedImage> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            let data = (0..size as usize * size as usize * 3)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 56) as u8
                })
                .collect();
            OwnedImage::new(size, size, PixelFormat::Rgb8, data).expect("image")
        })
        .collect()
}

fn device_from_env() -> Device {
    std::env::var("VARAD_DEVICE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Device::Auto)
}

fn err(e: varad::Error) -> String {
    e.to_string()
}

fn predictor_bench(args: &[String]) -> Result<(), String> {
    let grid: usize = arg(args, 2, 73);
    let channels: usize = arg(args, 3, 384);
    let levels: usize = arg(args, 4, 3);
    let len = grid * grid;
    let batch = 4; // the four scan directions of one image
    println!("predictor: grid {grid}x{grid} (L = {len}), C = {channels}, {levels} levels");
    let cfg = PredictorConfig::new(channels);
    let cpu: Vec<Predictor> = (0..levels)
        .map(|h| Predictor::init(cfg, h as u64).map_err(err))
        .collect::<Result<_, _>>()?;
    let x: Vec<f32> = (0..batch * len * channels)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let dev = match cuda::device(0) {
        Ok(d) => d,
        Err(e) => {
            println!("RESULT predictor_cuda=unavailable");
            return Err(format!("no CUDA: {}", e.message()));
        }
    };
    let cc = dev.compute_capability();
    println!(
        "GPU: {} (sm_{}{}), kernels for {}",
        dev.name(),
        cc.0,
        cc.1,
        dev.arch()
    );
    let gpu: Vec<CudaPredictor> = cpu
        .iter()
        .map(|p| CudaPredictor::from_predictor(&dev, p).map_err(err))
        .collect::<Result<_, _>>()?;
    let run = |n: usize| -> Result<f64, String> {
        let t = Instant::now();
        for _ in 0..n {
            for p in &gpu {
                p.forward(&x, batch, len).map_err(err)?;
            }
        }
        Ok(t.elapsed().as_secs_f64() / n as f64)
    };
    run(1)?; // allocator warm-up
    let per_image = run(10)?;
    println!("RESULT predictor_score_images_per_s={:.1}", 1.0 / per_image);
    // Parity on the real shape, one level: the CPU's forward against the GPU's.
    let t = Instant::now();
    let want = cpu[0].forward(&x, batch, len).map_err(err)?;
    let cpu_s = t.elapsed().as_secs_f64();
    let got = gpu[0].forward(&x, batch, len).map_err(err)?;
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let diff = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("RESULT predictor_cpu_level_s={cpu_s:.3}");
    println!("RESULT predictor_parity_rel_err={:.2e}", diff / scale);
    // Training: forward_train + backward + AdamW per level for a batch of images.
    let train_batch = TrainConfig::default().batch_size;
    let xt: Vec<f32> = x
        .iter()
        .cycle()
        .take(train_batch * x.len())
        .copied()
        .collect();
    let mut gpu_train: Vec<CudaPredictor> = cpu
        .iter()
        .map(|p| CudaPredictor::from_predictor(&dev, p).map_err(err))
        .collect::<Result<_, _>>()?;
    let mut opts: Vec<CudaAdamW> = gpu_train
        .iter()
        .map(|p| CudaAdamW::new(&TrainConfig::default(), p).map_err(err))
        .collect::<Result<_, _>>()?;
    let decay: Vec<bool> = cpu[0]
        .tensors()
        .iter()
        .map(|t| t.0.ends_with("proj.weight") || t.0.ends_with("conv1d.weight"))
        .collect();
    let gout = vec![1e-3f32; xt.len()];
    let mut step = |n: usize| -> Result<f64, String> {
        let t = Instant::now();
        for _ in 0..n {
            for (p, o) in gpu_train.iter_mut().zip(&mut opts) {
                let (_, tape) = p
                    .forward_train(&xt, train_batch * batch, len)
                    .map_err(err)?;
                let (_, g) = p.backward(&tape, &gout).map_err(err)?;
                o.step(p, &g, &decay).map_err(err)?;
            }
        }
        Ok(t.elapsed().as_secs_f64() / n as f64)
    };
    step(1)?;
    let per_image = step(5)? / train_batch as f64;
    println!("RESULT predictor_train_s_per_image={per_image:.4}");
    println!("RESULT predictor_train_10x200_s={:.1}", per_image * 2000.0);
    Ok(())
}

fn model(backbone: &str, size: u32, epochs: usize) -> Result<Model, String> {
    let mut config = Config::new(backbone);
    config.input_size = Some((size, size));
    config.device = device_from_env();
    config.train = TrainConfig {
        epochs,
        ..TrainConfig::default()
    };
    Model::new(config).map_err(err)
}

fn stem(path: &str) -> String {
    std::path::Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn score_bench(args: &[String]) -> Result<(), String> {
    let backbone = args.get(2).ok_or("score needs a backbone")?;
    let size: u32 = arg(args, 3, 1022);
    let n: usize = arg(args, 4, 32);
    let m = model(backbone, size, 1)?;
    let dev = m.tokenizer().backbone().device();
    println!("backbone device: {dev:?}");
    let name = stem(backbone);
    println!("RESULT backbone_{name}_device={}", dev.active);
    let pd = m.predictor_device();
    println!("predictor device: {pd:?}");
    println!("RESULT predictor_device={}", pd.active);
    let images = random_images(n.clamp(1, 8), size, 7);
    let views: Vec<_> = images.iter().map(|i| i.view()).collect();
    m.score(&views[..1], &ScoreOptions::default())
        .map_err(err)?;
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let k = (n - done).min(views.len());
        m.score(&views[..k], &ScoreOptions::default())
            .map_err(err)?;
        done += k;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "RESULT score_{name}_{size}_images_per_s={:.2}",
        n as f64 / s
    );
    // The backbone alone, to see where the time goes.
    let t = Instant::now();
    m.features(&views).map_err(err)?;
    println!(
        "RESULT backbone_{name}_{size}_images_per_s={:.2}",
        views.len() as f64 / t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn train_bench(args: &[String]) -> Result<(), String> {
    let backbone = args.get(2).ok_or("train needs a backbone")?;
    let size: u32 = arg(args, 3, 1022);
    let n: usize = arg(args, 4, 200);
    let epochs: usize = arg(args, 5, 10);
    let mut m = model(backbone, size, epochs)?;
    let images = random_images(n, size, 11);
    let views: Vec<_> = images.iter().map(|i| i.view()).collect();
    let t = Instant::now();
    let mut set = TrainingSet::new(&m);
    for chunk in views.chunks(8) {
        set.add(&m, chunk).map_err(err)?;
    }
    println!(
        "RESULT train_cache_{n}_images_s={:.1}",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let report = m
        .fit(&set, |p| {
            if p.step == p.steps || p.step % 50 == 0 {
                println!(
                    "epoch {}/{} step {}/{} loss {:.4e} ({:.1} s)",
                    p.epoch,
                    p.epochs,
                    p.step,
                    p.steps,
                    p.loss,
                    p.elapsed.as_secs_f64()
                );
            }
            ControlFlow::Continue(())
        })
        .map_err(err)?;
    println!("{report:?}");
    println!(
        "RESULT train_fit_{epochs}x{n}_s={:.1}",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let r = match args.get(1).map(String::as_str) {
        Some("predictor") => predictor_bench(&args),
        Some("score") => score_bench(&args),
        Some("train") => train_bench(&args),
        _ => Err("usage: gpu_bench predictor|score|train ... (see the source)".to_string()),
    };
    if let Err(e) = r {
        eprintln!("gpu_bench: {e}");
        std::process::exit(1);
    }
}
