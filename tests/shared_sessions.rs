//! Models of one backbone share its ONNX Runtime sessions: eight models loaded from one
//! file run on one pool of sessions, score bit for bit what one model alone scores while
//! all eight score at once, and the sessions go with the last model; a pool that grows
//! past one session gives every run what one run alone gives. One test in its own
//! binary, so that no other test's backbones are counted.

mod common;

use varad::backbone::{live_pools, Backbone, BackboneOptions};
use varad::image::{ImageView, PixelFormat};
use varad::model::ScoreOptions;
use varad::model_file::LoadOptions;
use varad::{Device, Model};

const MODELS: usize = 8;
const IMAGES: usize = 6;

fn maps(model: &Model, images: &[Vec<u8>], order: impl Iterator<Item = usize>) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); images.len()];
    for i in order {
        let view = ImageView::packed(&images[i], 128, 128, PixelFormat::Rgb8).unwrap();
        let result = model.score(&[view], &ScoreOptions::default()).unwrap();
        out[i] = result[0].map.iter().map(|v| v.to_bits()).collect();
    }
    out
}

#[test]
fn models_of_one_backbone_share_sessions_score_alike_and_free_them() {
    assert_eq!(live_pools(), 0);
    let trained = common::trained_tiny_model();
    assert_eq!(live_pools(), 1);
    let file =
        std::env::temp_dir().join(format!("varad-shared-{}.safetensors", std::process::id()));
    trained.save(&file).unwrap();
    let images: Vec<Vec<u8>> = (0..IMAGES as u64)
        .map(|i| common::texture(200 + i, 128))
        .collect();
    let alone = maps(&trained, &images, 0..IMAGES);

    let models: Vec<Model> = (0..MODELS)
        .map(|_| Model::load(&file, &LoadOptions::default()).unwrap())
        .collect();
    std::fs::remove_file(&file).unwrap();
    let backbone = trained.tokenizer().backbone();
    for m in &models {
        assert!(m.tokenizer().backbone().shares_sessions_with(backbone));
    }
    assert_eq!(live_pools(), 1, "one pool for nine models of one backbone");

    // All eight at once, each in its own order, several rounds: every map is the one the
    // model alone gave.
    std::thread::scope(|s| {
        for (t, m) in models.iter().enumerate() {
            let (images, alone) = (&images, &alone);
            s.spawn(move || {
                for round in 0..3 {
                    let order = (0..IMAGES).map(|i| (i + t + round) % IMAGES);
                    assert!(maps(m, images, order) == *alone, "model {t}, round {round}");
                }
            });
        }
    });
    // The pool grew only as far as the cores can use, whatever the number of models.
    let opened = backbone.sessions_opened();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!((1..=cores).contains(&opened), "{opened} sessions");

    // Another thread count is another key: a pool of its own.
    let mut config = common::tiny_config();
    config.threads = 1;
    let other = Model::new(config).unwrap();
    assert!(!other.tokenizer().backbone().shares_sessions_with(backbone));
    assert_eq!(live_pools(), 2);

    drop(other);
    assert_eq!(live_pools(), 1);
    drop(models);
    assert_eq!(live_pools(), 1, "the first model still holds the pool");
    drop(trained);
    assert_eq!(live_pools(), 0, "the sessions went with the last model");

    // One intra-op thread per run: a pool that grows to a session per core under runs
    // from several threads at once, and whose runs all give what one run alone gives.
    let options = BackboneOptions {
        device: Device::Cpu,
        intra_threads: Some(1),
        ..Default::default()
    };
    let path = common::repo_root().join("tests/data/tiny_vit.onnx");
    let backbones: Vec<Backbone> = (0..4)
        .map(|_| Backbone::open(&path, &options).unwrap())
        .collect();
    assert_eq!(live_pools(), 1);
    let input: Vec<f32> = (0..3 * 112 * 112).map(|i| (i % 97) as f32 / 97.0).collect();
    let expected = backbones[0].run(&input, 1, 112, 112).unwrap();
    std::thread::scope(|s| {
        for b in &backbones {
            let (input, expected) = (&input, &expected);
            s.spawn(move || {
                for _ in 0..20 {
                    assert!(b.run(input, 1, 112, 112).unwrap() == *expected);
                }
            });
        }
    });
    let opened = backbones[0].sessions_opened();
    assert!((1..=cores).contains(&opened), "{opened} sessions");
    drop(backbones);
    assert_eq!(live_pools(), 0);
}
