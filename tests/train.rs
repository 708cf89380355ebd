//! Training end to end on the committed tiny ViT: the loss falls, training is
//! deterministic, a cancelled training leaves the model as it was, bad configs are named.

use std::ops::ControlFlow;

mod common;

use common::{tiny_config as config, training_set};
use varad::{ErrorKind, Model};

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
    assert!(
        a.weights() == b.weights(),
        "same images, config, seed and threads must give the same weights"
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
    assert!(
        model.weights() == &before,
        "a cancelled training changed the weights"
    );
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
