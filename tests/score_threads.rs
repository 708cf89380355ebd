//! Scoring with one model from many threads at once gives exactly what serial scoring
//! gives; a model whose tokens spilled to disk trains exactly like one that kept them in
//! memory.

mod common;

use std::ops::ControlFlow;
use std::sync::Arc;

use common::{texture, tiny_config, trained_tiny_model, training_set};
use varad::image::{ImageView, PixelFormat};
use varad::model::ScoreOptions;
use varad::Model;

#[test]
fn many_threads_score_like_one() {
    let model = Arc::new(trained_tiny_model());
    let images: Vec<Vec<u8>> = (0..16)
        .map(|i| texture(200 + i, 96 + i as usize * 4))
        .collect();
    let score = |model: &Model, i: usize| {
        let side = 96 + i as u32 * 4;
        let view = ImageView::packed(&images[i], side, side, PixelFormat::Rgb8).unwrap();
        model
            .score(
                &[view],
                &ScoreOptions {
                    raw_map: true,
                    roi: None,
                    ..Default::default()
                },
            )
            .unwrap()
            .remove(0)
    };
    let count = images.len();
    let serial: Vec<_> = (0..count).map(|i| score(&model, i)).collect();
    let parallel: Vec<Vec<(usize, varad::model::ScoreResult)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let model = Arc::clone(&model);
                let score = &score;
                s.spawn(move || {
                    (0..count)
                        .filter(|i| i % 8 == t || i % 3 == t % 3)
                        .map(|i| (i, score(&model, i)))
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut compared = 0;
    for (i, result) in parallel.into_iter().flatten() {
        assert_eq!(result, serial[i], "image {i}");
        compared += 1;
    }
    assert!(compared > count);
}

#[test]
fn scoring_from_backbone_maps_is_scoring_from_pixels() {
    let model = trained_tiny_model();
    let pixels = texture(7, 112);
    let view = ImageView::packed(&pixels, 112, 112, PixelFormat::Rgb8).unwrap();
    let options = ScoreOptions {
        raw_map: true,
        ..Default::default()
    };
    let whole = model.score(&[view], &options).unwrap().remove(0);
    let (features, geometry) = model.features(&[view]).unwrap().remove(0);
    let from_maps = model
        .score_one_features(&features, &geometry, &options)
        .unwrap();
    assert_eq!(from_maps, whole);
    let err = model
        .score_one_features(&features[1..], &geometry, &options)
        .unwrap_err();
    assert_eq!(err.kind(), varad::ErrorKind::InvalidArgument, "{err}");
}

#[test]
fn spilled_tokens_train_like_cached_ones() {
    let in_memory = {
        let mut model = Model::new(tiny_config()).unwrap();
        let set = training_set(&model, 6);
        assert_eq!(set.cache_bytes().1, 0);
        model.fit(&set, |_| ControlFlow::Continue(())).unwrap();
        model
    };
    let mut config = tiny_config();
    config.train.cache_limit_bytes = 0;
    let mut spilled = Model::new(config).unwrap();
    let set = training_set(&spilled, 6);
    assert_eq!(set.cache_bytes().0, 0, "nothing in memory");
    assert!(set.cache_bytes().1 > 0, "everything on disk");
    spilled.fit(&set, |_| ControlFlow::Continue(())).unwrap();
    assert!(
        spilled.weights() == in_memory.weights(),
        "spilled and in-memory training differ"
    );
}
