//! The model file: a trained model saved and loaded scores bit-identically; every kind of
//! mismatch is refused with a message naming it; saving never leaves a half-written file.

mod common;

use std::path::{Path, PathBuf};

use common::{texture, trained_tiny_model};
use varad::image::{ImageView, PixelFormat};
use varad::model::ScoreOptions;
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
