//! The command-line tool as a user runs it: help for every subcommand, a bad argument
//! (one error line, non-zero exit), and train + score on a tiny generated set.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

fn varad(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_varad"))
        .args(args)
        .output()
        .expect("the varad binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_covers_every_subcommand() {
    let out = varad(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for sub in ["info", "train", "score", "eval", "bench"] {
        assert!(help.contains(sub), "{sub} missing from:\n{help}");
    }
    for (sub, flags) in [
        (
            "train",
            &[
                "--backbone",
                "--out",
                "--epochs",
                "--levels",
                "--input-size",
                "--step",
                "--device",
                "--threads",
                "--seed",
                "--detach-target",
                "--context-mean",
                "--directions",
                "--adapters",
                "--config",
                "--cross-fit-folds",
                "--target-false-reject-rate",
                "--target-false-fail-rate",
                "--beyond-data",
                "--catch-known-defects",
                "--known-defects",
            ][..],
        ),
        (
            "score",
            &["--model", "--out", "--root", "--overwrite", "results.csv"][..],
        ),
        (
            "eval",
            &[
                "--data",
                "--category",
                "--method",
                "--coreset-fraction",
                "--patchcore-cross-fit-folds",
                "--montage",
                "--epochs",
                "--input-size",
                "--input-sizes",
                "--directions",
                "--adapters",
            ][..],
        ),
        (
            "bench",
            &["--size", "--images", "--device", "--threads"][..],
        ),
        ("info", &["--backbone", "--model"][..]),
    ] {
        let out = varad(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
        let help = text(&out.stdout);
        for flag in flags {
            assert!(
                help.contains(flag),
                "`varad {sub} --help` lacks {flag}:\n{help}"
            );
        }
    }
}

fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line:\n{err}");
    assert!(err.starts_with("varad: "), "{err}");
    err
}

#[test]
fn bad_arguments_give_one_line() {
    let err = one_line_error(&varad(&["train", "--bogus"]));
    assert!(err.contains("--bogus"), "{err}");
    let err = one_line_error(&varad(&[
        "eval", "--data", "x", "--out", "y", "--method", "all",
    ]));
    assert!(err.contains("all"), "{err}");
    let err = one_line_error(&varad(&["bench", "--backbone", "b.onnx", "--size", "12"]));
    assert!(err.contains("512x512"), "{err}");
    let err = one_line_error(&varad(&[
        "score",
        "--model",
        "/surely/missing.safetensors",
        "a.png",
    ]));
    assert!(err.contains("missing.safetensors"), "{err}");
    let err = one_line_error(&varad(&["score", "--model", "m", "--overwrite", "a.png"]));
    assert!(err.contains("--out <DIR>"), "{err}");
    let err = one_line_error(&varad(&[
        "eval",
        "--data",
        "/surely/missing",
        "--out",
        "y",
        "--backbone",
        "b.onnx",
    ]));
    assert!(err.contains("/surely/missing"), "{err}");
}

/// Trains a model on the tiny set written into `dir` (2 epochs, three images held back
/// for the calibration) and returns the set's category folder and the model file.
fn train_tiny_model(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cat = common::write_tiny_mvtec(dir);
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        serde_json::to_string(&common::tiny_config()).unwrap(),
    )
    .unwrap();
    let model = dir.join("model.safetensors");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = varad(&[
        "train",
        "--config",
        &s(&config),
        "--epochs",
        "2",
        "--out",
        &s(&model),
        &s(&cat.join("train/good")),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(
        summary.contains("trained on 3 images (3 held back"),
        "{summary}"
    );
    assert!(summary.contains("epoch losses"), "{summary}");
    assert!(model.is_file());
    (cat, model)
}

#[test]
fn train_then_score() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, model) = train_tiny_model(dir.path());
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let blob = cat.join("test/blob/000.png");
    let good = cat.join("test/good/000.png");
    let out = varad(&["score", "--model", &s(&model), &s(&blob), &s(&good)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for v in &lines {
        assert!(v["score"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["normalised_score"].is_number(), "{v}");
        assert!(v["decision"].is_string() && v["regions"].is_array(), "{v}");
    }

    let pictures = dir.path().join("scored");
    let out = varad(&[
        "score",
        "--model",
        &s(&model),
        "--out",
        &s(&pictures),
        &s(&blob),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for name in ["000_map.png", "000_overlay.png", "000.json", "results.csv"] {
        assert!(pictures.join(name).is_file(), "{name}");
    }
    let line = text(&out.stdout);
    assert!(
        line.starts_with(&format!("{}: score ", blob.display())) && line.contains("regions"),
        "{line}"
    );
    let map =
        varad::image::read_image_file(pictures.join("000_map.png"), &Default::default()).unwrap();
    assert_eq!((map.width(), map.height()), (112, 112));
}

/// Every file under `dir` with its bytes, by path.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    files
}

/// The fields of one CSV line (RFC 4180 quoting, no line breaks inside fields).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[test]
fn score_keeps_every_result_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, model) = train_tiny_model(dir.path());
    let s = |p: &Path| p.to_str().unwrap().to_string();
    // Three images named 000.png in three folders, one whose name needs CSV quoting.
    let odd_name = if cfg!(unix) {
        "bar, \"copy\""
    } else {
        "bar, copy"
    };
    let odd = cat.join("test").join(odd_name);
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::copy(cat.join("test/bar/000.png"), odd.join("000.png")).unwrap();
    let inputs = [
        cat.join("test/good/000.png"),
        cat.join("test/blob/000.png"),
        odd.join("000.png"),
    ];
    let score = |out: &Path, extra: &[&str], images: &[std::path::PathBuf]| {
        let mut args = vec![
            "score".to_string(),
            "--model".into(),
            s(&model),
            "--out".into(),
            s(out),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend(images.iter().map(|p| s(p)));
        varad(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = dir.path().join("scored");
    let run = score(&out, &[], &inputs);
    assert!(run.status.success(), "{}", text(&run.stderr));

    let mut verdicts = Vec::new();
    for (folder, input) in ["good", "blob", odd_name].iter().zip(&inputs) {
        for name in ["000.json", "000_map.png", "000_overlay.png"] {
            assert!(out.join(folder).join(name).is_file(), "{folder}/{name}");
        }
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(folder).join("000.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["image"], s(input), "{folder}");
        verdicts.push(json);
    }
    // 3 folders with 3 results each, and the summary.
    assert_eq!(snapshot(&out).len(), 10);

    let summary = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines[0],
        "path,score,normalised_score,decision,regions,p_value"
    );
    assert_eq!(lines.len(), 4, "{summary}");
    for ((line, input), json) in lines[1..].iter().zip(&inputs).zip(&verdicts) {
        let row = csv_fields(line);
        assert_eq!(row.len(), 6, "{line}");
        let p_value: f64 = row[5].parse().unwrap();
        assert_eq!(p_value, json["p_value"].as_f64().unwrap(), "{line}");
        assert!(p_value > 0.0 && p_value <= 1.0, "{line}");
        assert_eq!(row[0], s(input), "{line}");
        let score: f32 = row[1].parse().unwrap();
        assert_eq!(score as f64, json["score"].as_f64().unwrap(), "{line}");
        let normalised: f32 = row[2].parse().unwrap();
        assert_eq!(
            normalised as f64,
            json["normalised_score"].as_f64().unwrap(),
            "{line}"
        );
        assert_eq!(row[3], json["decision"].as_str().unwrap(), "{line}");
        assert_eq!(
            row[4].parse::<u64>().unwrap(),
            json["regions_found"].as_u64().unwrap(),
            "{line}"
        );
    }
    let printed = text(&run.stdout);
    let printed: Vec<&str> = printed.lines().collect();
    assert_eq!(printed.len(), 3, "{printed:?}");
    for (line, input) in printed.iter().zip(&inputs) {
        assert!(line.starts_with(&format!("{}: score ", s(input))), "{line}");
        assert!(
            ["Pass", "Review", "Fail"].iter().any(|d| line.contains(d)),
            "{line}"
        );
    }

    // A second run into the same folder is refused and changes nothing.
    let before = snapshot(&out);
    let err = one_line_error(&score(&out, &[], &inputs));
    assert!(
        err.contains("already holds results") && err.contains("--overwrite"),
        "{err}"
    );
    assert!(
        snapshot(&out) == before,
        "a refused run changed {}",
        out.display()
    );
    // Unless asked to overwrite: the summary then holds this run's rows only.
    let run = score(&out, &["--overwrite"], &inputs[..2]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let summary = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(summary.lines().count(), 3, "{summary}");

    // Collisions are refused before any work: no output folder is even created.
    let fresh = dir.path().join("fresh");
    let err = one_line_error(&score(
        &fresh,
        &[],
        &[inputs[0].clone(), cat.join("test/good")],
    ));
    assert!(err.contains("is given twice"), "{err}");
    let twin = cat.join("test/good/000.jpg");
    std::fs::copy(&inputs[0], &twin).unwrap();
    let err = one_line_error(&score(&fresh, &[], &[inputs[0].clone(), twin]));
    assert!(
        err.contains("would both write") && err.contains("000.json"),
        "{err}"
    );
    assert!(!fresh.exists());
}

/// A tiny MVTec-layout set in a temporary folder, with the tiny ViT's configuration as a
/// JSON file there.
fn tiny_set_and_config() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_mvtec(dir.path());
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::to_string(&common::tiny_config()).unwrap(),
    )
    .unwrap();
    (dir, config)
}

#[test]
fn eval_and_bench_on_the_tiny_vit() {
    let (dir, config) = tiny_set_and_config();
    let out = dir.path().join("report");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let run = varad(&[
        "eval",
        "--data",
        &s(dir.path()),
        "--config",
        &s(&config),
        "--out",
        &s(&out),
        "--method",
        "patchcore",
        "--category",
        "stripes",
        "--montage",
        "3",
        "--tile",
        "32",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let table = text(&run.stdout);
    assert!(table.contains("| stripes | PatchCore |"), "{table}");
    assert!(!table.contains("VarAD"), "{table}");
    for name in ["report.json", "report.md", "montage_stripes.png"] {
        assert!(out.join(name).is_file(), "{name}");
    }

    let tiny = common::repo_root().join("tests/data/tiny_vit.onnx");
    let run = varad(&[
        "bench",
        "--backbone",
        &s(&tiny),
        "--size",
        "112x112",
        "--images",
        "3",
        "--device",
        "cpu",
        "--threads",
        "2",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let table = text(&run.stdout);
    for stage in [
        "decode",
        "preprocess",
        "backbone",
        "predictor",
        "post",
        "images/s",
    ] {
        assert!(table.contains(stage), "{stage} missing:\n{table}");
    }
}

#[test]
fn ablation_flags_are_checked() {
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--backbone", "b.onnx", "--out", "m.safetensors"];
        args.extend_from_slice(extra);
        args.push("/surely/missing.png");
        varad(&args)
    };
    let err = one_line_error(&train(&["--directions", "0,5"]));
    assert!(err.contains("`5` is not a scan direction"), "{err}");
    let err = one_line_error(&train(&["--directions", "1,2,1"]));
    assert!(err.contains("name a direction twice"), "{err}");
    let err = one_line_error(&train(&["--directions", ""]));
    assert!(err.contains("no scan direction given"), "{err}");
    let err = one_line_error(&train(&["--adapters", "maybe"]));
    assert!(err.contains("maybe"), "{err}");
    // Valid flags get past parsing to the missing image.
    let err = one_line_error(&train(&["--directions", "3,0", "--adapters", "false"]));
    assert!(err.contains("missing.png"), "{err}");
    let err = one_line_error(&train(&["--adapters", "--directions", "2"]));
    assert!(err.contains("missing.png"), "{err}");
    let err = one_line_error(&train(&["--neighbour-weight=-1"]));
    assert!(
        err.contains("score.neighbour_weight -1 is not in [0, 100]"),
        "{err}"
    );
    let err = one_line_error(&train(&["--neighbour-bank-tokens", "99999999"]));
    assert!(
        err.contains("train.neighbour_bank_tokens 99999999"),
        "{err}"
    );
    let err = one_line_error(&train(&[
        "--neighbour-weight",
        "0.5",
        "--neighbour-bank-tokens",
        "0",
    ]));
    assert!(err.contains("missing.png"), "{err}");

    let err = one_line_error(&varad(&[
        "eval",
        "--data",
        "x",
        "--out",
        "y",
        "--backbone",
        "b.onnx",
        "--input-size",
        "112x112",
        "--input-sizes",
        "84x84,112x112",
    ]));
    assert!(
        err.contains("--input-size")
            && err.contains("--input-sizes")
            && err.contains("cannot be used with"),
        "{err}"
    );
    let err = one_line_error(&varad(&[
        "eval",
        "--data",
        "x",
        "--out",
        "y",
        "--backbone",
        "b.onnx",
        "--input-sizes",
        "84x84,112",
    ]));
    assert!(err.contains("`112` is not a size"), "{err}");
}

#[test]
fn out_of_range_settings_are_refused_before_any_image_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--backbone", "b.onnx", "--out", "m.safetensors"];
        args.extend_from_slice(extra);
        args.push("/surely/missing.png");
        varad(&args)
    };
    for (flags, named) in [
        (
            &["--epochs", "0"][..],
            "train.epochs 0 is not in [1, 10000]",
        ),
        (&["--threads", "5000"], "threads 5000 is not in [0, 1024]"),
        (&["--step", "0"], "prediction_step 0"),
        (&["--input-size", "20000x64"], "input_size.width 20000"),
        (&["--neighbour-weight", "NaN"], "score.neighbour_weight NaN"),
        (
            &["--neighbour-weight", "1000"],
            "score.neighbour_weight 1000",
        ),
        (&["--device", "cuda:5000"], "the CUDA device index 5000"),
    ] {
        let err = one_line_error(&train(flags));
        assert!(err.contains(named), "{flags:?}: {err}");
        assert!(!err.contains("missing.png"), "{flags:?}: {err}");
    }

    // A configuration file's values, every part of it.
    let mut config = common::tiny_config();
    config.score.sigma = 5000.0;
    config.train.learning_rate = f64::MAX;
    config.score.calibration.pixel_quantile = 2.0;
    let config_file = dir.path().join("config.json");
    std::fs::write(&config_file, serde_json::to_string(&config).unwrap()).unwrap();
    let err = one_line_error(&train(&["--config", &s(&config_file)]));
    for named in [
        "score.sigma 5000 is not in [0, 1000]",
        "train.learning_rate",
        "score.calibration.pixel_quantile 2",
    ] {
        assert!(err.contains(named), "{named}: {err}");
    }

    // `score`'s flags over a saved model's settings.
    let model = dir.path().join("model.safetensors");
    common::trained_tiny_model().save(&model).unwrap();
    let err = one_line_error(&varad(&[
        "score",
        "--model",
        &s(&model),
        "--threads",
        "5000",
        "/surely/missing.png",
    ]));
    assert!(err.contains("threads 5000 is not in [0, 1024]"), "{err}");
}

#[test]
fn eval_sweeps_input_sizes() {
    let (dir, config) = tiny_set_and_config();
    let out = dir.path().join("sweep");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let run = varad(&[
        "eval",
        "--data",
        &s(dir.path()),
        "--config",
        &s(&config),
        "--out",
        &s(&out),
        "--epochs",
        "1",
        "--directions",
        "0,2",
        "--adapters",
        "false",
        "--montage",
        "0",
        "--input-sizes",
        "84x84,112x112",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    for size in ["84x84", "112x112"] {
        for name in ["report.json", "report.md"] {
            assert!(out.join(size).join(name).is_file(), "{size}/{name}");
        }
        let md = std::fs::read_to_string(out.join(size).join("report.md")).unwrap();
        assert!(
            md.contains(&format!(
                "input {size}; prediction step 2; directions 0,2; adapters off; \
                 detach_target false; context_mean false; epochs 1"
            )),
            "{md}"
        );
    }
    let md = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    eprintln!("{md}");
    assert_eq!(text(&run.stdout).trim(), md.trim());
    for needle in [
        "input sizes 84x84, 112x112",
        "| stripes | VarAD | 84x84 |",
        "| stripes | VarAD | 112x112 |",
        "| stripes | PatchCore | 112x112 |",
        "| defect size | images | 84x84 | 112x112 |",
        "| stripes | VarAD | small | 3 |",
        "| stripes | PatchCore | large | 2 |",
    ] {
        assert!(md.contains(needle), "{needle} missing:\n{md}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(json["input_sizes"], serde_json::json!(["84x84", "112x112"]));
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for size in ["84x84", "112x112"] {
        let n = |key: &str| {
            json[key]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["input_size"] == size)
                .count()
        };
        assert_eq!((n("rows"), n("by_size")), (2, 4), "{size}");
    }
    for r in rows {
        for key in ["pixel_auroc", "pixel_ap", "pixel_max_f1", "image_auroc"] {
            assert!(
                r[key].as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)),
                "{r}"
            );
        }
        assert!(r["ms_per_image"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn train_prints_the_calibration_report_and_info_reads_it_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cat = common::write_tiny_mvtec(dir.path());
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::to_string(&common::tiny_config()).unwrap(),
    )
    .unwrap();
    let model = dir.path().join("model.safetensors");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = varad(&[
        "train",
        "--config",
        &s(&config),
        "--epochs",
        "2",
        "--target-false-fail-rate",
        "0.002",
        "--beyond-data",
        "log_normal_tail",
        "--cross-fit-folds",
        "3",
        "--known-defects",
        &s(&cat.join("test/blob")),
        "--catch-known-defects",
        "--out",
        &s(&model),
        &s(&cat.join("train/good")),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let blobs = std::fs::read_dir(cat.join("test/blob")).unwrap().count();
    for needle in [
        "  review: requested 1.0%, threshold ".to_string(),
        "; the rate needs 99 good images (299 for 95% confidence)".to_string(),
        "  fail: requested 0.2%, threshold ".to_string(),
        // 3 scores cannot support 0.2% without the tail.
        "expected 0.2% (extrapolated: assumes a log-normal tail)".to_string(),
        "; the rate needs 499 good images (1497 for 95% confidence)".to_string(),
        format!("  known defects: {blobs} scored, 0 escape (pass at the review threshold)"),
        // Caught: the review threshold came down to the lowest known defect's score.
        "  review threshold lowered from ".to_string(),
    ] {
        assert!(printed.contains(&needle), "{needle}:\n{printed}");
    }
    // n good-image scores: the 3 held-out images and any training images cross-fitted.
    let first = printed
        .lines()
        .find(|l| l.starts_with("calibration: "))
        .unwrap_or_else(|| panic!("no calibration line:\n{printed}"));
    let numbers: Vec<usize> = first
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .take(4)
        .map(|w| w.parse().unwrap())
        .collect();
    let [n, cross_fitted, _folds, held_out] = numbers[..] else {
        panic!("{first}")
    };
    assert_eq!((n, held_out), (cross_fitted + held_out, 3), "{first}");
    assert!(
        first.contains(&format!(
            "good-image scores ({cross_fitted} training images cross-fitted in "
        )) && first.contains(&format!(
            "without extrapolating rates down to {:.1}%",
            100.0 / (n + 1) as f64
        )),
        "{first}"
    );
    let block: Vec<&str> = printed
        .lines()
        .skip_while(|l| !l.starts_with("calibration: "))
        .take_while(|l| l.starts_with("calibration: ") || l.starts_with("  "))
        .collect();
    assert!(block.len() >= 4, "{printed}");

    // `varad info --model` prints the same block from the file.
    let info = varad(&["info", "--device", "cpu", "--model", &s(&model)]);
    assert!(info.status.success(), "{}", text(&info.stderr));
    let info = text(&info.stdout);
    assert!(
        info.contains(&format!("model {}\n{}\n", s(&model), block.join("\n"))),
        "train printed:\n{}\ninfo printed:\n{info}",
        block.join("\n")
    );

    // A rate the images cannot support, with extrapolation refused: stopped before
    // training, saying how many images it needs.
    let err = one_line_error(&varad(&[
        "train",
        "--config",
        &s(&config),
        "--beyond-data",
        "refuse",
        "--out",
        &s(&dir.path().join("refused.safetensors")),
        &s(&cat.join("train/good")),
    ]));
    assert!(err.contains("needs at least 99 good images"), "{err}");
    assert!(!dir.path().join("refused.safetensors").exists());
    let err = one_line_error(&varad(&[
        "train",
        "--config",
        &s(&config),
        "--beyond-data",
        "guess",
        "--out",
        "m",
        "x.png",
    ]));
    assert!(err.contains("guess"), "{err}");
}
