//! Training end to end on the committed tiny ViT: the loss falls, training is
//! deterministic, a cancelled training leaves the model as it was, bad configs are named.

use std::ops::ControlFlow;
use std::path::Path;

use varad::image::{ImageView, PixelFormat};
use varad::train::TrainingSet;
use varad::{Config, Device, ErrorKind, Model};

fn config() -> Config {
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

/// Stripes with a random phase: a "normal" texture.
fn texture(seed: u64, size: usize) -> Vec<u8> {
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

fn training_set(model: &Model, n: u64) -> TrainingSet {
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

#[test]
fn loss_falls_and_training_is_deterministic() {
    let mut a = Model::new(config()).unwrap();
    let set = training_set(&a, 8);
    let report = a.fit(&set, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(report.train_images, 5);
    assert_eq!(report.calibration_images.len(), 3);
    let losses = &report.epoch_losses;
    assert!(
        losses.last().unwrap() < &(losses[0] * 0.9),
        "loss did not fall: {losses:?}"
    );
    assert_eq!(report.variance_ratios.len(), 3);

    let mut b = Model::new(config()).unwrap();
    let report_b = b
        .fit(&training_set(&b, 8), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(report.epoch_losses, report_b.epoch_losses);
    assert_eq!(
        a.weights(),
        b.weights(),
        "same images, config, seed and threads: same weights"
    );
}

#[test]
fn cancelling_leaves_the_model_unchanged() {
    let mut model = Model::new(config()).unwrap();
    let set = training_set(&model, 6);
    let before = model.weights().clone();
    let mut calls = 0;
    let err = model
        .fit(&set, |p| {
            calls += 1;
            assert!(p.step <= p.steps && p.epoch <= p.epochs && p.loss.is_finite());
            if p.step == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert_eq!(calls, 2);
    assert_eq!(model.weights(), &before);
}

#[test]
fn bad_configs_are_named() {
    let mut c = config();
    c.prediction_step = 8; // the 8 x 8 grid of a 112 x 112 input needs m < 8
    let err = Model::new(c).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("m = 8"), "{err}");

    let mut c = config();
    c.input_size = Some((100, 112));
    assert_eq!(Model::new(c).unwrap_err().kind(), ErrorKind::Config);

    let mut c = config();
    c.train.epochs = 0;
    assert!(Model::new(c).unwrap_err().message().contains("epochs is 0"));

    let mut c = config();
    c.levels = vec!["block9".into()];
    let err = Model::new(c).unwrap_err();
    assert!(
        err.message()
            .contains("its outputs are block1, block2, block3"),
        "{err}"
    );

    let mut model = Model::new(config()).unwrap();
    let set = training_set(&model, 3);
    let err = model.fit(&set, |_| ControlFlow::Continue(())).unwrap_err();
    assert!(err.message().contains("at least 4"), "{err}");
}
