//! Helpers shared by the integration tests: a small configuration on the committed tiny
//! ViT, and generated textures.
#![allow(dead_code)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use varad::image::{ImageView, PixelFormat};
use varad::train::TrainingSet;
use varad::{Config, Device, Model};

/// The repository's root: these helpers serve the library's tests and the command-line
/// tool's (`cli/tests`), whose manifest folder is one level down.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if manifest.join("tests/data").is_dir() {
        manifest.to_path_buf()
    } else {
        manifest.parent().expect("cli/ has a parent").to_path_buf()
    }
}

/// The tiny ViT at 112 x 112 (an 8 x 8 grid), small predictor, three epochs.
pub fn tiny_config() -> Config {
    let mut c = Config::new(repo_root().join("tests/data/tiny_vit.onnx"));
    c.input_size = Some((112, 112));
    c.device = Device::Cpu;
    c.threads = 2;
    c.prediction_step = 2;
    c.d_state = 4;
    c.train.epochs = 3;
    c.train.learning_rate = 2e-3;
    c.seed = 5;
    c
}

/// Stripes with a phase from `seed`: a "normal" texture, RGB8, `size` x `size`.
pub fn texture(seed: u64, size: usize) -> Vec<u8> {
    let phase = (seed * 37 % 17) as usize;
    let mut out = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let v = if ((x + phase) / 6 + y / 9).is_multiple_of(2) {
                180
            } else {
                60
            };
            out.extend_from_slice(&[v, v / 2 + 20, 255 - v]);
        }
    }
    out
}

/// `n` textures of 128 x 128 added to a new training set of `model`.
pub fn training_set(model: &Model, n: u64) -> TrainingSet {
    let mut set = TrainingSet::new(model);
    for i in 0..n {
        let pixels = texture(i, 128);
        set.add(
            model,
            &[ImageView::packed(&pixels, 128, 128, PixelFormat::Rgb8).unwrap()],
        )
        .unwrap();
    }
    set
}

/// The bundled EfficientNet-Lite0 that `make setup` writes. Under `make test`
/// (VARAD_REQUIRE_BACKBONES=1) a missing file fails the test; elsewhere the test is skipped
/// with a message.
pub fn lite0() -> Option<PathBuf> {
    let path = repo_root().join(".deps/backbones/efficientnet_lite0.onnx");
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("VARAD_REQUIRE_BACKBONES").is_some() {
        panic!(
            "{} is missing: `make setup` should have written it",
            path.display()
        );
    }
    eprintln!("skipped: {} not found (run `make setup`)", path.display());
    None
}

/// A tiny-ViT model trained on six textures (and so calibrated).
pub fn trained_tiny_model() -> Model {
    let mut model = Model::new(tiny_config()).unwrap();
    let set = training_set(&model, 6);
    model.fit(&set, |_| ControlFlow::Continue(())).unwrap();
    model
}

/// Writes a tiny MVTec-AD-layout category `stripes` under `root`: six normal training
/// images and, for testing, three good ones, three with a dark blob and two with a bright
/// bar (112 x 112, RGB), with their masks and a `defects.json` giving size classes.
/// Returns the category folder.
pub fn write_tiny_mvtec(root: &Path) -> PathBuf {
    use varad::image::write_png;
    const S: usize = 112;
    let cat = root.join("stripes");
    let png = |path: PathBuf, pixels: &[u8], format: PixelFormat| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_png(
            &path,
            &ImageView::packed(pixels, S as u32, S as u32, format).unwrap(),
        )
        .unwrap();
    };
    for i in 0..6 {
        png(
            cat.join(format!("train/good/{i:03}.png")),
            &texture(i, S),
            PixelFormat::Rgb8,
        );
    }
    for i in 0..3 {
        png(
            cat.join(format!("test/good/{i:03}.png")),
            &texture(20 + i, S),
            PixelFormat::Rgb8,
        );
    }
    let mut defects = Vec::new();
    // (type, index, centre x, centre y, radius or half-length): blobs are discs, bars are
    // 6-pixel-high horizontal strips.
    let planted = [
        ("blob", 0, 40.0, 50.0, 18.0),
        ("blob", 1, 70.0, 60.0, 14.0),
        ("blob", 2, 56.0, 30.0, 7.0),
        ("bar", 0, 56.0, 56.0, 30.0),
        ("bar", 1, 40.0, 80.0, 20.0),
    ];
    for (kind, i, cx, cy, r) in planted {
        let mut pixels = texture(40 + i, S);
        let mut mask = vec![0u8; S * S];
        for y in 0..S {
            for x in 0..S {
                let (fx, fy) = (x as f32, y as f32);
                let inside = match kind {
                    "blob" => (fx - cx).powi(2) + (fy - cy).powi(2) < r * r,
                    _ => (fx - cx).abs() < r && (fy - cy).abs() < 3.0,
                };
                if inside {
                    mask[y * S + x] = 255;
                    let colour = if kind == "blob" {
                        [10, 200, 10]
                    } else {
                        [255, 255, 0]
                    };
                    pixels[(y * S + x) * 3..][..3].copy_from_slice(&colour);
                }
            }
        }
        let name = format!("{i:03}");
        png(
            cat.join(format!("test/{kind}/{name}.png")),
            &pixels,
            PixelFormat::Rgb8,
        );
        png(
            cat.join(format!("ground_truth/{kind}/{name}_mask.png")),
            &mask,
            PixelFormat::Mono8,
        );
        let area = mask.iter().filter(|&&m| m != 0).count();
        let class = if area < 300 { "small" } else { "large" };
        defects.push(format!(
            r#"{{"image": "test/{kind}/{name}.png", "type": "{kind}", "size_class": "{class}", "area": {area}, "area_fraction": {}}}"#,
            area as f64 / (S * S) as f64
        ));
    }
    std::fs::write(
        cat.join("defects.json"),
        format!("[{}]", defects.join(",\n")),
    )
    .unwrap();
    cat
}
