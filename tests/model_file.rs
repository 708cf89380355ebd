//! The model file: a trained model saved and loaded scores bit-identically; every kind of
//! mismatch is refused with a message naming it; saving never leaves a half-written file.

mod common;

use std::path::{Path, PathBuf};

use common::{texture, tiny_config, trained_tiny_model, training_set};
use varad::image::{ImageView, PixelFormat};
use varad::model::{BankLevels, BankSelection, MapNorm, NeighbourTerm, ScoreOptions};
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
    // The same model gives the same bytes (the header's order does not depend on the
    // process's hash seeds).
    let again = dir.join("again.safetensors");
    for _ in 0..4 {
        loaded.save(&again).unwrap();
        assert!(std::fs::read(&again).unwrap() == std::fs::read(&path).unwrap());
    }
    std::fs::remove_file(&again).unwrap();
    assert_eq!(loaded.calibration(), model.calibration());
    assert_eq!(loaded.config(), model.config());
    assert!(model.normal_stats().is_some());
    assert_eq!(loaded.normal_stats(), model.normal_stats());
    let (a, b) = (scores(&model), scores(&loaded));
    assert_eq!(a, b);
    assert!(a[0].assessment.is_some());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Rewrites the model file `path` into `out` after `edit` changed its tensors (name,
/// dtype, shape, bytes) and metadata JSON, and makes the checksums match again, as a
/// careful hand edit would: so what is refused is refused by the checks behind the
/// checksums. A JSON without tensor checksums (format 1) is written without any.
fn rewrite(
    path: &Path,
    out: &Path,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>, &mut String),
) {
    rewrite_raw(path, out, |tensors, json| {
        edit(tensors, json);
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        if value.get("tensor_sha256").is_some() {
            value["tensor_sha256"] = tensors
                .iter()
                .map(|(n, _, _, b)| (n.clone(), sha256_hex(b).into()))
                .collect::<serde_json::Map<_, _>>()
                .into();
            *json = value.to_string();
        }
        if json.contains("\"tensor_sha256\"") {
            JsonDigest::Matching
        } else {
            JsonDigest::Absent
        }
    });
}

/// The SHA-256 of `bytes` in lowercase hex, as the file records it.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What [`rewrite_raw`] writes as the metadata JSON's own checksum.
#[derive(PartialEq)]
enum JsonDigest {
    /// The SHA-256 of the edited JSON.
    Matching,
    /// None (as format 1 has it).
    Absent,
    /// The original file's, whatever the edit did.
    Original,
}

/// Rewrites the model file `path` into `out` after `edit`, with the metadata JSON's own
/// checksum as `edit` asks. Tensor checksums are left as `edit` leaves them.
fn rewrite_raw(
    path: &Path,
    out: &Path,
    edit: impl FnOnce(
        &mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
        &mut String,
    ) -> JsonDigest,
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
    let digest = edit(&mut tensors, &mut json);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let mut entries = std::collections::HashMap::new();
    let original = meta.metadata().as_ref().unwrap().get("varad.sha256");
    match (digest, original) {
        (JsonDigest::Matching, _) => {
            entries.insert("varad.sha256".to_string(), sha256_hex(json.as_bytes()));
        }
        (JsonDigest::Original, Some(sha)) => {
            entries.insert("varad.sha256".to_string(), sha.clone());
        }
        _ => {}
    }
    entries.insert("varad".to_string(), json);
    let out_bytes = safetensors::tensor::serialize(views, Some(entries)).unwrap();
    std::fs::write(out, out_bytes).unwrap();
}

/// Turns a model file into one of format 1, as varad 1.0 wrote it: no checksums.
fn make_format1(path: &Path, out: &Path) {
    rewrite_raw(path, out, |_, json| {
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        value.as_object_mut().unwrap().remove("tensor_sha256");
        value["format_version"] = 1.into();
        *json = value.to_string();
        JsonDigest::Absent
    });
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
    let next = varad::model_file::FORMAT_VERSION + 1;
    rewrite(&path, &newer, |_, json| {
        *json = json.replace(
            &format!("\"format_version\":{}", next - 1),
            &format!("\"format_version\":{next}"),
        )
    });
    let err = load(&newer);
    assert!(
        err.message().contains(&format!(
            "format version {next} was written by a newer varad"
        )),
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

/// Removes the neighbour banks' records (if any) from a model file's metadata JSON.
fn drop_neighbour_record(json: &mut String) {
    let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
    value.as_object_mut().unwrap().remove("neighbour_banks");
    *json = value.to_string();
}

/// The tensor of the tiny model's first bank (on its finest level; by default every level
/// has one).
const BANK_TENSOR: &str = "normal_stats.neighbours.0.tokens";

/// A tiny model trained with 1.2's neighbour settings: one randomly drawn bank on the
/// coarsest level, the term above the normal mean.
fn trained_tiny_model_of_1_2() -> Model {
    trained_tiny_model_with(|config| {
        config.train.neighbour_bank_selection = BankSelection::Random;
        config.train.neighbour_bank_levels = BankLevels::Coarsest;
        config.score.neighbour_term = NeighbourTerm::AboveNormal;
        config.score.neighbour_probes = 0;
    })
}

/// A tiny model trained on 6 textures with the tiny configuration as `change` leaves it.
fn trained_tiny_model_with(change: impl FnOnce(&mut varad::Config)) -> Model {
    let mut config = tiny_config();
    change(&mut config);
    let mut model = Model::new(config).unwrap();
    let set = training_set(&model, 6);
    model
        .fit(&set, |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    model
}

#[test]
fn the_neighbour_bank_is_saved_checked_and_weighted() {
    let dir = temp_dir("bank");
    let model = trained_tiny_model();
    let banks = &model
        .normal_stats()
        .expect("training records the normal statistics")
        .neighbours;
    let levels: Vec<usize> = banks.iter().map(|b| b.level).collect();
    assert_eq!(
        levels,
        (0..model.layout().len()).collect::<Vec<_>>(),
        "training builds a bank on every level by default"
    );
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
    // Overriding the weight per call scores as a model configured with it, without a
    // decision (the calibration was made with the configured weight).
    let overridden_with =
        |weight: Option<f32>, term: Option<NeighbourTerm>, probes: Option<usize>| {
            let pixels = texture(99, 150);
            let view = ImageView::packed(&pixels, 150, 150, PixelFormat::Rgb8).unwrap();
            let options = ScoreOptions {
                raw_map: true,
                neighbour_weight: weight,
                neighbour_term: term,
                neighbour_probes: probes,
                ..Default::default()
            };
            loaded.score(&[view], &options).unwrap().remove(0)
        };
    let overridden = |weight, term| overridden_with(weight, term, None);
    // The configured search probes some cells; probing every cell is the exact search
    // (0), up to the rounding of the blocked products; either carries no decision.
    assert!(loaded.config().score.neighbour_probes > 0);
    let exact = overridden_with(None, None, Some(0));
    let every_cell = overridden_with(None, None, Some(1 << 16));
    assert!(exact.assessment.is_none() && every_cell.assessment.is_none());
    for (e, a) in exact
        .raw_map
        .unwrap()
        .values
        .iter()
        .zip(&every_cell.raw_map.unwrap().values)
    {
        assert!((e - a).abs() <= 1e-3 * (1.0 + e.abs()), "{e} vs {a}");
    }
    let two_per_call = overridden(Some(2.0), None);
    assert_eq!(two_per_call.raw_map.unwrap().values, two);
    assert!(two_per_call.assessment.is_none());
    assert!(overridden(Some(1.0), None).assessment.is_some());
    // The default term is `scaled`; the other one per call changes the map.
    assert_eq!(loaded.config().score.neighbour_term, NeighbourTerm::Scaled);
    let above = overridden(None, Some(NeighbourTerm::AboveNormal));
    assert!(above.assessment.is_none());
    assert_ne!(above.raw_map.unwrap().values, one);
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
    rewrite(&path, &missing, |t, _| t.retain(|(n, ..)| n != BANK_TENSOR));
    let err = load(&missing).unwrap_err();
    assert!(
        err.message().contains(&format!("{BANK_TENSOR} is missing")),
        "{err}"
    );
    let nan = dir.join("nan.safetensors");
    rewrite(&path, &nan, |t, _| {
        let e = t.iter_mut().find(|(n, ..)| n == BANK_TENSOR).unwrap();
        e.3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let err = load(&nan).unwrap_err();
    assert!(
        err.message().contains(&format!(
            "{BANK_TENSOR} holds a non-finite value (NaN) at index 0"
        )),
        "{err}"
    );
    let wrong_level = dir.join("level.safetensors");
    rewrite(&path, &wrong_level, |_, json| {
        *json = json.replace(
            "\"neighbour_banks\":[{\"level\":0",
            "\"neighbour_banks\":[{\"level\":7",
        );
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
            .contains(&format!("unexpected tensors {BANK_TENSOR}")),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_format_3_file_with_its_single_bank_still_loads() {
    // What varad 1.2 wrote: format 3, the bank's record under `neighbours`, its tensor
    // `normal_stats.neighbours.tokens`, a configuration without the bank's selection,
    // levels and term.
    let dir = temp_dir("format3");
    let model = trained_tiny_model_of_1_2();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let old = dir.join("old.safetensors");
    rewrite(&path, &old, |t, json| {
        t.iter_mut()
            .find(|(n, ..)| n == "normal_stats.neighbours.2.tokens")
            .unwrap()
            .0 = "normal_stats.neighbours.tokens".to_string();
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        let o = v.as_object_mut().unwrap();
        let bank = o.remove("neighbour_banks").unwrap()[0].clone();
        o.insert("neighbours".into(), bank);
        o.insert("format_version".into(), 3.into());
        for field in ["neighbour_bank_selection", "neighbour_bank_levels"] {
            o["config"]["train"].as_object_mut().unwrap().remove(field);
        }
        for field in ["neighbour_term", "neighbour_probes"] {
            o["config"]["score"].as_object_mut().unwrap().remove(field);
        }
        *json = v.to_string();
    });
    let loaded = Model::load(&old, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.normal_stats(), model.normal_stats());
    assert_eq!(loaded.config(), model.config());
    assert_eq!(scores(&loaded), scores(&model));
    // Both forms at once are refused.
    let both = dir.join("both.safetensors");
    rewrite(&old, &both, |_, json| {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        let bank = v["neighbours"].clone();
        v["neighbour_banks"] = vec![bank].into();
        *json = v.to_string();
    });
    let err = Model::load(&both, &LoadOptions::default()).unwrap_err();
    assert!(
        err.message().contains("both a format 3 neighbour bank"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_format_4_file_loads_with_the_exact_search_it_was_calibrated_with() {
    // What varad 1.3 wrote: format 4, no `neighbour_probes` in the configuration.
    let dir = temp_dir("format4");
    let model = trained_tiny_model_with(|config| config.score.neighbour_probes = 0);
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let old = dir.join("old.safetensors");
    rewrite(&path, &old, |_, json| {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        let o = v.as_object_mut().unwrap();
        o.insert("format_version".into(), 4.into());
        o["config"]["score"]
            .as_object_mut()
            .unwrap()
            .remove("neighbour_probes")
            .unwrap();
        *json = v.to_string();
    });
    let loaded = Model::load(&old, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.config().score.neighbour_probes, 0);
    assert_eq!(loaded.config(), model.config());
    assert_eq!(scores(&loaded), scores(&model));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn coreset_banks_on_every_level_round_trip() {
    let dir = temp_dir("banks");
    let mut config = tiny_config();
    config.train.neighbour_bank_selection = BankSelection::Coreset;
    config.train.neighbour_bank_levels = BankLevels::All;
    config.score.neighbour_term = NeighbourTerm::Scaled;
    let mut model = Model::new(config).unwrap();
    let set = training_set(&model, 6);
    model
        .fit(&set, |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    let banks = &model.normal_stats().unwrap().neighbours;
    let levels: Vec<usize> = banks.iter().map(|b| b.level).collect();
    assert_eq!(levels, (0..model.layout().len()).collect::<Vec<_>>());
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let loaded = Model::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.normal_stats(), model.normal_stats());
    assert_eq!(loaded.config(), model.config());
    assert_eq!(scores(&loaded), scores(&model));
    // Banks out of level order are refused.
    let swapped = dir.join("swapped.safetensors");
    rewrite(&path, &swapped, |_, json| {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["neighbour_banks"].as_array_mut().unwrap().swap(0, 1);
        *json = v.to_string();
    });
    let err = Model::load(&swapped, &LoadOptions::default()).unwrap_err();
    assert!(err.message().contains("level order"), "{err}");
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

/// Loads `path` with the default options.
fn load_default(path: &Path) -> varad::Result<Model> {
    Model::load(path, &LoadOptions::default())
}

/// The byte range of every tensor's data in a model file, by name, sorted by offset.
fn tensor_ranges(bytes: &[u8]) -> Vec<(String, std::ops::Range<usize>)> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut ranges: Vec<_> = st
        .iter()
        .map(|(name, view)| {
            let start = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
            (name.to_string(), start..start + view.data().len())
        })
        .collect();
    ranges.sort_by_key(|(_, r)| r.start);
    ranges
}

/// The byte range of the metadata JSON (the string under `varad` in the header).
fn metadata_range(bytes: &[u8]) -> std::ops::Range<usize> {
    let (n, _) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let header = &bytes[8..8 + n];
    let key = b"\"varad\":\"";
    let first = header.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let mut end = first;
    while header[end] != b'"' {
        end += if header[end] == b'\\' { 2 } else { 1 };
    }
    8 + first..8 + end
}

#[test]
fn every_flipped_byte_is_refused_naming_its_tensor() {
    let dir = temp_dir("flips");
    let model = trained_tiny_model();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let ranges = tensor_ranges(&bytes);
    // Every tensor the model has is covered, and the data ends the file.
    assert!(ranges.len() > 40, "{} tensors", ranges.len());
    assert_eq!(ranges.last().unwrap().1.end, bytes.len());
    let flipped = dir.join("flipped.safetensors");
    // The error of loading the file with one bit of byte `i` flipped.
    let load_flipped = |i: usize, what: &str| {
        let mut b = bytes.clone();
        b[i] ^= 1 << (i % 8);
        std::fs::write(&flipped, &b).unwrap();
        load_default(&flipped)
            .err()
            .unwrap_or_else(|| panic!("a flip at byte {i} of {what} loaded"))
    };
    let mut tried = 0;
    for (name, range) in &ranges {
        // The first and last byte of every tensor, and every 257th byte between.
        let mut offsets: Vec<usize> = range.clone().step_by(257).collect();
        offsets.push(range.end - 1);
        for i in offsets {
            let err = load_flipped(i, name);
            assert_eq!(
                err.kind(),
                ErrorKind::ModelFile,
                "byte {i} of {name}: {err}"
            );
            assert!(
                err.message()
                    .contains(&format!("tensor {name} does not match its SHA-256")),
                "byte {i} of {name}: {err}"
            );
            tried += 1;
        }
    }
    // The metadata JSON: every 13th byte and its last.
    let json = metadata_range(&bytes);
    let mut offsets: Vec<usize> = json.clone().step_by(13).collect();
    offsets.push(json.end - 1);
    for i in offsets {
        let err = load_flipped(i, "the metadata");
        assert_eq!(err.kind(), ErrorKind::ModelFile, "byte {i}: {err}");
        tried += 1;
    }
    eprintln!("{tried} flips, all refused");
    // The unflipped file still loads.
    std::fs::write(&flipped, &bytes).unwrap();
    load_default(&flipped).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Sets every value (or the value at `index`) of tensor `name` to `value`.
fn set_values(
    tensors: &mut [(String, safetensors::Dtype, Vec<usize>, Vec<u8>)],
    name: &str,
    index: Option<usize>,
    value: f32,
) {
    let t = tensors.iter_mut().find(|(n, ..)| n == name).unwrap();
    for (i, chunk) in t.3.chunks_exact_mut(4).enumerate() {
        if index.is_none_or(|j| j == i) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
    }
}

#[test]
fn zero_negative_and_nan_statistics_are_refused_behind_valid_checksums() {
    let dir = temp_dir("semantic");
    let model = trained_tiny_model();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let edited = dir.join("edited.safetensors");
    let cases: Vec<(&str, Option<usize>, f32, &str)> = vec![
        (
            "normal_stats.0.position_std",
            None,
            0.0,
            "normal_stats.0.position_std has a median of 0",
        ),
        (
            "normal_stats.1.position_std",
            None,
            -1.0,
            "normal_stats.1.position_std[0] is -1",
        ),
        (
            "normal_stats.2.position_std",
            Some(3),
            -1.0,
            "normal_stats.2.position_std[3] is -1",
        ),
        (
            "normal_stats.0.channel_var",
            None,
            0.0,
            "normal_stats.0.channel_var[0] is 0, below the floor",
        ),
        (
            "normal_stats.1.channel_var",
            Some(5),
            0.0,
            "normal_stats.1.channel_var[5] is 0",
        ),
        (
            "normal_stats.2.channel_var",
            Some(1),
            -2.0,
            "normal_stats.2.channel_var[1] is -2",
        ),
        (
            "normal_stats.0.level_mean",
            None,
            0.0,
            "normal_stats.0.level_mean is 0",
        ),
        (
            "normal_stats.1.position_mean",
            Some(2),
            -1.0,
            "normal_stats.1.position_mean[2] is -1",
        ),
        (
            "normal_stats.0.position_std",
            Some(7),
            f32::INFINITY,
            "normal_stats.0.position_std holds a non-finite value (inf) at index 7",
        ),
        (
            "adapters.0.weight",
            Some(5),
            f32::NAN,
            "adapters.0.weight holds a non-finite value (NaN) at index 5",
        ),
        (
            "adapters.2.bias",
            Some(0),
            f32::NAN,
            "adapters.2.bias holds a non-finite value",
        ),
        (
            "bos.1",
            Some(0),
            f32::NEG_INFINITY,
            "bos.1 holds a non-finite value",
        ),
        (
            "predictors.1.layers.0.mixer.A_log",
            Some(9),
            f32::NAN,
            "predictors.1.layers.0.mixer.A_log holds a non-finite value",
        ),
        (
            BANK_TENSOR,
            Some(11),
            f32::NAN,
            "normal_stats.neighbours.0.tokens holds a non-finite value",
        ),
    ];
    for (name, index, value, expected) in cases {
        rewrite(&path, &edited, |t, _| set_values(t, name, index, value));
        let err = load_default(&edited)
            .err()
            .unwrap_or_else(|| panic!("{name}[{index:?}] = {value} loaded"));
        assert_eq!(err.kind(), ErrorKind::ModelFile, "{err}");
        assert!(err.message().contains(expected), "{name}: {err}");
        assert!(!err.message().contains("SHA-256"), "checksums fixed: {err}");
    }
    // The neighbour bank's spread and mean live in the metadata.
    for (field, value, expected) in [
        ("std", "0.0", "neighbour bank: std 0"),
        ("std", "-1.0", "neighbour bank: std -1"),
        ("mean", "-1.0", "neighbour bank: mean -1"),
    ] {
        rewrite(&path, &edited, |_, json| {
            let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
            v["neighbour_banks"][0][field] = serde_json::from_str(value).unwrap();
            *json = v.to_string();
        });
        let err = load_default(&edited).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelFile, "{err}");
        assert!(err.message().contains(expected), "{field}: {err}");
    }
    // Calibration values that do not fit together.
    for (pointer, value) in [
        ("/calibration/normal_scores/min", "-5.0"),
        ("/calibration/normal_scores/std", "-1.0"),
        ("/calibration/false_reject_bound", "0.0"),
        ("/calibration/image_threshold", "0.0"),
    ] {
        rewrite(&path, &edited, |_, json| {
            let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
            *v.pointer_mut(pointer).unwrap() = serde_json::from_str(value).unwrap();
            *json = v.to_string();
        });
        let err = load_default(&edited).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelFile, "{pointer}: {err}");
        assert!(
            err.message().contains("calibration") || err.message().contains("threshold"),
            "{pointer}: {err}"
        );
    }
    // One position without spread is what a region identical on every training image
    // gives: the level's median spread stands in for it, and the file loads.
    rewrite(&path, &edited, |t, _| {
        set_values(t, "normal_stats.0.position_std", Some(4), 0.0)
    });
    load_default(&edited).unwrap();
    // The edit helper keeps an unedited file loadable (it is the checks that refuse).
    rewrite(&path, &edited, |_, _| {});
    assert_eq!(scores(&load_default(&edited).unwrap()), scores(&model));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn checksums_cannot_be_left_out_of_a_checksummed_file() {
    let dir = temp_dir("stripped");
    let model = trained_tiny_model();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let edited = dir.join("edited.safetensors");
    // The metadata's own digest dropped.
    rewrite_raw(&path, &edited, |_, _| JsonDigest::Absent);
    let err = load_default(&edited).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelFile, "{err}");
    assert!(
        err.message().contains("`varad.sha256`) is missing"),
        "{err}"
    );
    // The tensor digests dropped (the metadata's digest made to match).
    rewrite_raw(&path, &edited, |_, json| {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v.as_object_mut().unwrap().remove("tensor_sha256");
        *json = v.to_string();
        JsonDigest::Matching
    });
    let err = load_default(&edited).unwrap_err();
    assert!(err.message().contains("the metadata has none"), "{err}");
    // One tensor's digest dropped.
    rewrite_raw(&path, &edited, |_, json| {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["tensor_sha256"].as_object_mut().unwrap().remove("bos.0");
        *json = v.to_string();
        JsonDigest::Matching
    });
    let err = load_default(&edited).unwrap_err();
    assert!(
        err.message()
            .contains("tensor bos.0 has no recorded SHA-256"),
        "{err}"
    );
    // A metadata edit without fixing its digest.
    rewrite_raw(&path, &edited, |_, json| {
        *json = json.replace("\"review_band\":3.0", "\"review_band\":2.0");
        assert!(json.contains("\"review_band\":2.0"));
        JsonDigest::Original
    });
    let err = load_default(&edited).unwrap_err();
    assert!(
        err.message()
            .contains("the metadata does not match its SHA-256"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Collects the log records of this test binary (the library logs through `log`).
struct Captured;
static LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        LOG.lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

#[test]
fn a_format1_file_loads_unverified_with_a_warning_and_resaving_adds_checksums() {
    static LOGGER: Captured = Captured;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    let dir = temp_dir("format1");
    let model = trained_tiny_model();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let old = dir.join("old.safetensors");
    make_format1(&path, &old);
    let loaded = load_default(&old).unwrap();
    assert_eq!(scores(&loaded), scores(&model));
    assert_eq!(loaded.normal_stats(), model.normal_stats());
    let warning = LOG
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains(&old.display().to_string()))
        .cloned()
        .expect("a warning naming the file");
    assert!(warning.starts_with("WARN"), "{warning}");
    assert!(warning.contains("carries no checksums"), "{warning}");
    assert!(
        warning.contains("saving the model again adds them"),
        "{warning}"
    );
    // Saved again, it carries them.
    let resaved = dir.join("resaved.safetensors");
    loaded.save(&resaved).unwrap();
    let channels: Vec<usize> = model.layout().iter().map(|l| l.channels).collect();
    let parsed = varad::model_file::parse(&std::fs::read(&resaved).unwrap(), &channels).unwrap();
    assert!(parsed.verified);
    assert!(
        !varad::model_file::parse(&std::fs::read(&old).unwrap(), &channels)
            .unwrap()
            .verified
    );
    // The semantic checks run on a format-1 file too.
    let edited = dir.join("edited.safetensors");
    rewrite(&old, &edited, |t, _| {
        set_values(t, "normal_stats.1.position_std", None, -1.0)
    });
    let err = load_default(&edited).unwrap_err();
    assert!(
        err.message()
            .contains("normal_stats.1.position_std[0] is -1"),
        "{err}"
    );
    // A format-1 file that claims checksums is inconsistent.
    rewrite_raw(&path, &edited, |_, json| {
        *json = json.replace(
            &format!("\"format_version\":{}", varad::model_file::FORMAT_VERSION),
            "\"format_version\":1",
        );
        JsonDigest::Matching
    });
    let err = load_default(&edited).unwrap_err();
    assert!(
        err.message().contains("format 1 records no checksums"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_model_that_could_not_be_loaded_again_is_not_saved() {
    let dir = temp_dir("unsaveable");
    let mut model = Model::new(common::tiny_config()).unwrap();
    let mut weights = (**model.weights()).clone();
    weights.levels[1].adapter_weight[3] = f32::NAN;
    model.set_weights(weights).unwrap();
    let path = dir.join("model.safetensors");
    let err = model.save(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelFile, "{err}");
    assert!(
        err.message()
            .contains("adapters.1.weight holds a non-finite value (NaN) at index 3"),
        "{err}"
    );
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Known-defective examples are scored when training ends, can lower the review
/// threshold, and every calibration figure (the report included) survives the file.
#[test]
fn calibration_with_known_defects_round_trips() {
    let dir = temp_dir("known-defects");
    let mut config = common::tiny_config();
    config.score.calibration.catch_known_defects = true;
    let mut model = Model::new(config).unwrap();
    let mut set = common::training_set(&model, 6);
    // A bright square on the normal stripes: clearly unlike them.
    let mut pixels = texture(3, 128);
    for y in 40..80 {
        for x in 40..80 {
            pixels[(y * 128 + x) * 3..(y * 128 + x) * 3 + 3].copy_from_slice(&[255, 255, 255]);
        }
    }
    let defect = ImageView::packed(&pixels, 128, 128, PixelFormat::Rgb8).unwrap();
    set.add_defective(&model, &[defect]).unwrap();
    assert_eq!(set.defective_len(), 1);
    model
        .fit(&set, |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    let calibration = model.calibration().unwrap();
    let report = calibration.report();
    assert_eq!((report.known_defects, report.escapes), (1, 0));
    let defect_score = calibration.known_defects()[0];
    assert!(calibration.review_threshold() <= defect_score);
    assert!(report.review.expected > 0.0 && report.review.expected <= 1.0);
    assert!(report.review.upper_bound >= report.review.conformal_rate);
    assert_eq!(report.normal_scores, calibration.pool().len());
    // The scored example is decided as it was calibrated.
    let scored = model
        .score(&[defect], &ScoreOptions::default())
        .unwrap()
        .remove(0);
    let assessment = scored.assessment.unwrap();
    assert_ne!(assessment.decision, varad::score::Decision::Pass);
    assert!((assessment.p_value - 1.0 / (report.normal_scores + 1) as f64).abs() < 1e-12);

    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let loaded = Model::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.calibration(), model.calibration());
    assert_eq!(loaded.calibration().unwrap().report(), report);
    std::fs::remove_dir_all(&dir).unwrap();
}
