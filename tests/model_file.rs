//! The model file: a trained model saved and loaded scores bit-identically; every kind of
//! mismatch is refused with a message naming it; saving never leaves a half-written file.

mod common;

use std::path::{Path, PathBuf};

use common::{texture, trained_tiny_model};
use varad::image::{ImageView, PixelFormat};
use varad::model::{MapNorm, ScoreOptions};
use varad::model_file::LoadOptions;
use varad::{ErrorKind, Model};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("varad-model-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn scores(model: &Model) -> Vec<varad::model::ScoreResult> {
    let pixels = texture(99, 150);
    let view = ImageView::packed(&pixels, 150, 150, PixelFormat::Rgb8).unwrap();
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
}

#[test]
fn save_load_scores_bit_identically() {
    let dir = temp_dir("roundtrip");
    let model = trained_tiny_model();
    assert!(model.calibration().is_some());
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    // Saving again over the file works and leaves no temporary file behind.
    model.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("model.safetensors")]);

    let loaded = Model::load(&path, &LoadOptions::default()).unwrap();
    assert!(loaded.weights() == model.weights(), "loaded weights differ");
    assert_eq!(loaded.calibration(), model.calibration());
    assert_eq!(loaded.config(), model.config());
    assert!(model.normal_stats().is_some());
    assert_eq!(loaded.normal_stats(), model.normal_stats());
    let (a, b) = (scores(&model), scores(&loaded));
    assert_eq!(a, b);
    assert!(a[0].assessment.is_some());
    std::fs::remove_dir_all(dir).unwrap();
}

fn rewrite(
    path: &Path,
    out: &Path,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>, &mut String),
) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut json = meta.metadata().as_ref().unwrap()["varad"].clone();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors, &mut json);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let out_bytes =
        safetensors::tensor::serialize(views, Some([("varad".to_string(), json)].into())).unwrap();
    std::fs::write(out, out_bytes).unwrap();
}

#[test]
fn mismatches_are_refused_and_named() {
    let dir = temp_dir("mismatch");
    let model = trained_tiny_model();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let load = |p: &Path| Model::load(p, &LoadOptions::default()).unwrap_err();

    let missing = dir.join("missing.safetensors");
    rewrite(&path, &missing, |t, _| t.retain(|(n, ..)| n != "bos.1"));
    let err = load(&missing);
    assert_eq!(err.kind(), ErrorKind::ModelFile);
    assert!(err.message().contains("bos.1 is missing"), "{err}");

    let shape = dir.join("shape.safetensors");
    rewrite(&path, &shape, |t, _| {
        let e = t
            .iter_mut()
            .find(|(n, ..)| n == "predictors.0.layers.0.mixer.D")
            .unwrap();
        e.2 = vec![e.2[0] / 2, 2];
    });
    let err = load(&shape);
    assert!(
        err.message().contains("layers.0.mixer.D has shape"),
        "{err}"
    );

    let extra = dir.join("extra.safetensors");
    rewrite(&path, &extra, |t, _| {
        t.push(("stray".into(), safetensors::Dtype::F32, vec![1], vec![0; 4]))
    });
    assert!(load(&extra).message().contains("unexpected tensors stray"));

    let newer = dir.join("newer.safetensors");
    rewrite(&path, &newer, |_, json| {
        *json = json.replace("\"format_version\":1", "\"format_version\":2")
    });
    let err = load(&newer);
    assert!(
        err.message()
            .contains("format version 2 was written by a newer varad"),
        "{err}"
    );

    let other_backbone = dir.join("other.onnx");
    let mut onnx = std::fs::read(&model.config().backbone).unwrap();
    onnx.extend_from_slice(b"\0");
    std::fs::write(&other_backbone, onnx).unwrap();
    let err = Model::load(
        &path,
        &LoadOptions {
            backbone: Some(other_backbone),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelFile);
    assert!(err.message().contains("another backbone file"), "{err}");

    let truncated = dir.join("truncated.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(load(&truncated).kind(), ErrorKind::ModelFile);

    let not_model = dir.join("not.safetensors");
    std::fs::write(&not_model, b"hello").unwrap();
    assert_eq!(load(&not_model).kind(), ErrorKind::ModelFile);
    assert_eq!(load(&dir.join("absent.safetensors")).kind(), ErrorKind::Io);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Scores of `model` under every map normalisation (overriding the configured one).
fn scores_by_norm(model: &Model) -> Vec<Vec<f32>> {
    scores_by_norm_checked(model)
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

/// Removes the statistics flag and the neighbour bank's record from a model file's
/// metadata JSON, as a file from before either existed has it.
fn drop_stats_record(json: &mut String) {
    *json = json.replace(",\"normal_stats\":true", "");
    drop_neighbour_record(json);
}

/// Removes the neighbour bank's record (if any) from a model file's metadata JSON.
fn drop_neighbour_record(json: &mut String) {
    if let Some(start) = json.find(",\"neighbours\":{") {
        let end = start + json[start..].find('}').unwrap() + 1;
        json.replace_range(start..end, "");
    }
}

#[test]
fn the_neighbour_bank_is_saved_checked_and_weighted() {
    let dir = temp_dir("bank");
    let model = trained_tiny_model();
    let bank = model
        .normal_stats()
        .and_then(|s| s.neighbours.as_ref())
        .expect("training builds a bank by default");
    assert_eq!(bank.level, model.layout().len() - 1);
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let loaded = Model::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.normal_stats(), model.normal_stats());
    assert_eq!(scores(&loaded), scores(&model));

    // The weight is the term's: 0 scores without it, 2 adds it twice.
    let raw = |weight: f32| {
        let mut config = loaded.config().clone();
        config.score.neighbour_weight = weight;
        let mut m = Model::new(config).unwrap();
        m.set_weights((**loaded.weights()).clone()).unwrap();
        m.set_normal_stats((**loaded.normal_stats().unwrap()).clone())
            .unwrap();
        m.set_calibration(loaded.calibration().unwrap().clone());
        scores(&m)[0].raw_map.clone().unwrap().values
    };
    let (off, one, two) = (raw(0.0), raw(1.0), raw(2.0));
    assert_ne!(off, one);
    for ((o, a), b) in off.iter().zip(&one).zip(&two) {
        assert!(
            (2.0 * (a - o) - (b - o)).abs() <= 1e-4 * (1.0 + b.abs()),
            "{o} {a} {b}"
        );
    }
    // The paper's map never has it.
    assert_eq!(scores_by_norm(&loaded)[0], scores_by_norm(&model)[0]);

    let load = |p: &Path| Model::load(p, &LoadOptions::default());
    let missing = dir.join("missing.safetensors");
    rewrite(&path, &missing, |t, _| {
        t.retain(|(n, ..)| n != "normal_stats.neighbours.tokens")
    });
    let err = load(&missing).unwrap_err();
    assert!(
        err.message()
            .contains("normal_stats.neighbours.tokens is missing"),
        "{err}"
    );
    let nan = dir.join("nan.safetensors");
    rewrite(&path, &nan, |t, _| {
        let e = t
            .iter_mut()
            .find(|(n, ..)| n == "normal_stats.neighbours.tokens")
            .unwrap();
        e.3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let err = load(&nan).unwrap_err();
    assert!(
        err.message().contains("neighbour bank: a non-finite value"),
        "{err}"
    );
    let wrong_level = dir.join("level.safetensors");
    rewrite(&path, &wrong_level, |_, json| {
        *json = json.replace("\"neighbours\":{\"level\":2", "\"neighbours\":{\"level\":7");
    });
    let err = load(&wrong_level).unwrap_err();
    assert!(
        err.message().contains("a neighbour bank on level 7 of 3"),
        "{err}"
    );
    // A bank without its record is an unexpected tensor.
    let unannounced = dir.join("unannounced.safetensors");
    rewrite(&path, &unannounced, |_, json| drop_neighbour_record(json));
    let err = load(&unannounced).unwrap_err();
    assert!(
        err.message()
            .contains("unexpected tensors normal_stats.neighbours.tokens"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn normal_statistics_are_saved_checked_and_optional() {
    let dir = temp_dir("stats");
    let model = trained_tiny_model();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let loaded = Model::load(&path, &LoadOptions::default()).unwrap();
    let before = scores_by_norm(&model);
    assert_eq!(before, scores_by_norm(&loaded));
    // The normalisations give different maps (they are not a no-op).
    for i in 1..before.len() {
        assert_ne!(before[0], before[i], "{}", MapNorm::ALL[i]);
    }

    let load = |p: &Path| Model::load(p, &LoadOptions::default());
    // A dropped statistics tensor is named.
    let dropped = dir.join("dropped.safetensors");
    rewrite(&path, &dropped, |t, _| {
        t.retain(|(n, ..)| n != "normal_stats.1.position_std")
    });
    let err = load(&dropped).unwrap_err();
    assert!(
        err.message()
            .contains("normal_stats.1.position_std is missing"),
        "{err}"
    );
    // A non-finite statistic is refused.
    let nan = dir.join("nan.safetensors");
    rewrite(&path, &nan, |t, _| {
        let e = t
            .iter_mut()
            .find(|(n, ..)| n == "normal_stats.0.channel_var")
            .unwrap();
        e.3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let err = load(&nan).unwrap_err();
    assert!(err.message().contains("non-finite"), "{err}");

    // A file from before the statistics existed: no flag, no tensors. It loads, scores
    // exactly as before with the paper's map, and names what the others need.
    let old = dir.join("old.safetensors");
    rewrite(&path, &old, |t, json| {
        t.retain(|(n, ..)| !n.starts_with("normal_stats."));
        drop_stats_record(json);
    });
    let old = load(&old).unwrap();
    assert!(old.normal_stats().is_none());
    let r = scores_by_norm_checked(&old);
    assert_eq!(r[0].as_ref().unwrap(), &before[0]);
    let err = r[3].as_ref().unwrap_err();
    assert!(
        err.message().contains("needs the normal-image statistics"),
        "{err}"
    );

    // A model configured to score with a normalisation, saved with its statistics.
    let mut config = common::tiny_config();
    config.score.map_norm = MapNorm::Position;
    let mut model = Model::new(config).unwrap();
    let set = common::training_set(&model, 6);
    model
        .fit(&set, |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    model.save(&path).unwrap();
    let loaded = load(&path).unwrap();
    assert_eq!(loaded.config().score.map_norm, MapNorm::Position);
    let (a, b) = (scores(&model), scores(&loaded));
    assert_eq!(loaded.normal_stats(), model.normal_stats());
    assert_eq!(loaded.calibration(), model.calibration());
    assert!(a == b, "scores differ after loading");
    // Calibrated with the position maps, so the configured scoring is assessed; another
    // normalisation is not.
    assert!(a[0].assessment.is_some());
    assert!(b[0].map == scores_by_norm(&loaded)[3]);
    let inconsistent = dir.join("inconsistent.safetensors");
    rewrite(&path, &inconsistent, |t, json| {
        t.retain(|(n, ..)| !n.starts_with("normal_stats."));
        drop_stats_record(json);
    });
    // It loads, and scoring says what is missing.
    let pixels = texture(1, 150);
    let err = load(&inconsistent)
        .unwrap()
        .score(
            &[ImageView::packed(&pixels, 150, 150, PixelFormat::Rgb8).unwrap()],
            &ScoreOptions::default(),
        )
        .unwrap_err();
    assert!(err.message().contains("from before they existed"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn scores_by_norm_checked(model: &Model) -> Vec<varad::Result<Vec<f32>>> {
    let pixels = texture(99, 150);
    let view = ImageView::packed(&pixels, 150, 150, PixelFormat::Rgb8).unwrap();
    MapNorm::ALL
        .iter()
        .map(|&n| {
            model
                .score(
                    &[view],
                    &ScoreOptions {
                        map_norm: Some(n),
                        ..Default::default()
                    },
                )
                .map(|mut r| r.remove(0).map)
        })
        .collect()
}

#[test]
fn a_model_with_two_directions_and_no_adapters_reloads_identically() {
    let dir = temp_dir("directions");
    let mut config = common::tiny_config();
    config.directions = vec![2, 1];
    config.adapters = false;
    config.train.epochs = 1;
    let mut model = Model::new(config).unwrap();
    let set = common::training_set(&model, 6);
    model
        .fit(&set, |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let loaded = Model::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.config().directions, [1, 2]);
    assert!(!loaded.config().adapters);
    assert_eq!(loaded.layout()[0].scans.directions(), &[1, 2]);
    assert!(loaded.weights() == model.weights(), "loaded weights differ");
    assert_eq!(scores(&model), scores(&loaded));
    std::fs::remove_dir_all(dir).unwrap();
}
