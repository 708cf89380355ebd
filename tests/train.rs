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
    assert!(Model::new(c)
        .unwrap_err()
        .message()
        .contains("train.epochs 0 is not in"));

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

#[test]
fn without_adapters_only_bos_and_predictors_train() {
    let mut c = config();
    c.adapters = false;
    c.train.epochs = 2;
    let mut model = Model::new(c).unwrap();
    let before = model.weights().clone();
    let set = training_set(&model, 6);
    let report = model.fit(&set, |_| ControlFlow::Continue(())).unwrap();
    // The adapters are the identity throughout, so the features never shrink.
    assert!(
        report.variance_ratios.iter().flatten().all(|&r| r == 1.0),
        "{:?}",
        report.variance_ratios
    );
    for (after, start) in model.weights().levels.iter().zip(&before.levels) {
        assert!(after.adapter_weight.iter().all(|&v| v == 0.0));
        assert!(after.adapter_bias.iter().all(|&v| v == 0.0));
        assert_ne!(
            after.predictor, start.predictor,
            "the predictor did not train"
        );
        assert_ne!(after.bos, start.bos, "the BOS vector did not train");
    }
}

#[test]
fn a_subset_of_directions_trains_and_is_stored_ascending() {
    let mut c = config();
    c.directions = vec![2, 0];
    c.train.epochs = 1;
    let mut model = Model::new(c).unwrap();
    assert_eq!(model.config().directions, [0, 2]);
    assert_eq!(model.layout()[0].scans.directions(), &[0, 2]);
    let set = training_set(&model, 5);
    let report = model.fit(&set, |_| ControlFlow::Continue(())).unwrap();
    assert!(report.epoch_losses[0].is_finite());

    let mut c = config();
    c.directions = vec![1, 4];
    let err = Model::new(c).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("direction 4"), "{err}");
}

#[test]
fn cross_fitting_calibrates_without_held_out_images() {
    let mut c = config();
    c.train.calibration_fraction = 0.0;
    c.train.min_calibration_images = 0;
    c.train.cross_fit_folds = 3;
    let mut model = Model::new(c).unwrap();
    let set = training_set(&model, 6);
    let report = model.fit(&set, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(report.train_images, 6);
    assert!(report.calibration_images.is_empty());
    let pool = &report.normal_pool;
    assert_eq!((pool.folds, pool.cross_fitted.len()), (3, 6));
    assert!(pool.held_out.is_empty());
    assert!(pool.cross_fitted.iter().all(|s| s.is_finite()));
    assert!(report.calibration_elapsed <= report.elapsed);
    let calibration = model.calibration().expect("calibrated");
    assert_eq!(calibration.normal_scores().count, 6);
    // Every training image is scored by statistics fitted without it: not the score the
    // trained model (statistics of all six) gives it.
    let in_sample: Vec<f32> = (0..6)
        .map(|i| {
            let (values, geometry) = set.image(i).unwrap();
            model
                .score_one_features(&values, &geometry, &Default::default())
                .unwrap()
                .image_score
        })
        .collect();
    assert!(
        pool.cross_fitted
            .iter()
            .zip(&in_sample)
            .all(|(a, b)| a != b),
        "{:?} vs {in_sample:?}",
        pool.cross_fitted
    );

    // Held-out images join the pool.
    let mut c = config();
    c.train.cross_fit_folds = 2;
    let mut model = Model::new(c).unwrap();
    let report = model
        .fit(&training_set(&model, 8), |_| ControlFlow::Continue(()))
        .unwrap();
    let pool = &report.normal_pool;
    assert_eq!(
        (pool.folds, pool.cross_fitted.len(), pool.held_out.len()),
        (2, 5, 3)
    );
    assert_eq!(model.calibration().unwrap().normal_scores().count, 8);
}

#[test]
fn a_pool_too_small_to_calibrate_is_refused_before_training() {
    let refused = |folds: usize, images: u64| {
        let mut c = config();
        c.train.calibration_fraction = 0.0;
        c.train.min_calibration_images = 0;
        c.train.cross_fit_folds = folds;
        let mut model = Model::new(c).unwrap();
        let set = training_set(&model, images);
        let mut steps = 0;
        let err = model
            .fit(&set, |_| {
                steps += 1;
                ControlFlow::Continue(())
            })
            .unwrap_err();
        assert_eq!(steps, 0, "refused after {steps} steps");
        assert!(model.calibration().is_none());
        err
    };
    let err = refused(5, 2);
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("at least 3 are needed"), "{err}");
    let err = refused(2, 3);
    assert!(err.message().contains("at least 4 are needed"), "{err}");
    // Neither held-out images nor cross-fitting: nothing to calibrate on.
    let err = refused(0, 8);
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("cross_fit_folds"), "{err}");
}
