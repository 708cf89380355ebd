//! Helpers shared by the integration tests: a small configuration on the committed tiny
//! ViT, and generated textures.
#![allow(dead_code)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use varad::image::{ImageView, PixelFormat};
use varad::train::TrainingSet;
use varad::{Config, Device, Model};

/// The tiny ViT at 112 x 112 (an 8 x 8 grid), small predictor, three epochs.
pub fn tiny_config() -> Config {
    let mut c = Config::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_vit.onnx"));
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
            let v = if ((x + phase) / 6 + y / 9) % 2 == 0 {
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
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/backbones/efficientnet_lite0.onnx");
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
