//! The evaluation harness end to end on a generated MVTec-layout set with the tiny ViT:
//! both methods train and score, the report has every number in [0, 1], the breakdowns by
//! type and size are there, and PatchCore finds the planted, obvious defects. The tiny ViT
//! has random weights, so only what any sane feature extractor gives is asserted.

#[path = "../../tests/common/mod.rs"]
mod common;

use varad_cli::eval::dataset::{Dataset, Layout};
use varad_cli::eval::harness::{evaluate, EvalOptions};
use varad_cli::eval::metrics::Metrics;
use varad_cli::eval::report::Report;

fn in_unit(m: &Metrics, what: &str) {
    for v in [m.auroc, m.ap, m.max_f1] {
        let v = v.unwrap_or_else(|| panic!("{what}: undefined metric in {m:?}"));
        assert!((0.0..=1.0).contains(&v), "{what}: {m:?}");
    }
}

#[test]
fn both_methods_on_a_tiny_mvtec_set() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_mvtec(dir.path());
    let dataset = Dataset::open(dir.path(), &[]).unwrap();
    assert_eq!(dataset.layout, Layout::MvtecAd);
    let out = dir.path().join("out");
    let mut options = EvalOptions::new(common::tiny_config());
    options.montage_images = 4;
    options.montage_tile = 64;
    options.out_dir = Some(out.clone());
    let mut lines = Vec::new();
    let report = evaluate(&dataset, &options, &mut |l| lines.push(l.to_string())).unwrap();
    eprintln!("{}\n{}", lines.join("\n"), report.to_markdown());

    assert_eq!(report.methods, ["VarAD", "PatchCore"]);
    assert_eq!(report.layout, "mvtec_ad");
    let c = &report.categories[0];
    assert_eq!(
        (
            c.category.as_str(),
            c.train_images,
            c.test_good,
            c.test_defective
        ),
        ("stripes", 6, 3, 5)
    );
    assert!(c.backbone_ms_per_image > 0.0);
    for m in &c.methods {
        in_unit(&m.pixel, &m.method);
        in_unit(&m.image, &m.method);
        assert!(m.train_seconds > 0.0 && m.ms_per_image > 0.0, "{m:?}");
        assert!(
            m.ms_after_backbone > 0.0 && m.ms_after_backbone < m.ms_per_image,
            "{m:?}"
        );
        // One backbone run per image, shared by the methods.
        let whole = c.backbone_ms_per_image + m.ms_after_backbone;
        assert!((m.ms_per_image - whole).abs() < 1e-9 * whole, "{m:?}");
        let types: Vec<&str> = m.by_type.iter().map(|b| b.subset.as_str()).collect();
        assert_eq!(types, ["bar", "blob"]);
        let sizes: Vec<(&str, usize)> = m
            .by_size
            .iter()
            .map(|b| (b.subset.as_str(), b.defective_images))
            .collect();
        assert_eq!(sizes, [("large", 2), ("small", 3)]);
        for b in m.by_type.iter().chain(&m.by_size) {
            for v in [b.pixel_auroc, b.pixel_ap, b.image_auroc] {
                assert!(v.is_some_and(|v| (0.0..=1.0).contains(&v)), "{b:?}");
            }
        }
    }
    // VarAD decided every test image at its calibrated thresholds; the baseline has none.
    let decided = c.methods[0].decisions.expect("VarAD's decisions");
    assert_eq!(
        (decided.good.total(), decided.defective.total()),
        (c.test_good, c.test_defective)
    );
    assert_eq!(c.methods[1].decisions, None);
    let patchcore = &c.methods[1];
    assert!(
        patchcore.image.auroc.unwrap() > 0.5,
        "PatchCore image AUROC {:?}",
        patchcore.image
    );
    assert!(
        patchcore.pixel.auroc.unwrap() > 0.5,
        "{:?}",
        patchcore.pixel
    );
    assert_eq!(report.mean.len(), 2);
    assert!(out.join(c.montage.as_ref().unwrap()).is_file());
    let back: Report = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
}

#[test]
fn a_missing_mask_fails_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let cat = common::write_tiny_mvtec(dir.path());
    std::fs::remove_file(cat.join("ground_truth/bar/001_mask.png")).unwrap();
    let err = Dataset::open(dir.path(), &[]).unwrap_err();
    assert!(err.message().contains("test/bar/001.png"), "{err}");
}

#[test]
fn map_normalisations_are_rows_of_one_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_mvtec(dir.path());
    let dataset = Dataset::open(dir.path(), &[]).unwrap();
    let mut config = common::tiny_config();
    config.score.map_norm = varad::model::MapNorm::None;
    let mut options = EvalOptions::new(config);
    options.methods = vec![varad_cli::eval::harness::Method::Varad];
    options.montage_images = 0;
    options.map_norms = varad::model::MapNorm::ALL.to_vec();
    let report = evaluate(&dataset, &options, &mut |_| {}).unwrap();
    assert_eq!(
        report.methods,
        [
            "VarAD",
            "VarAD [map_norm=level]",
            "VarAD [map_norm=channel]",
            "VarAD [map_norm=position]",
            "VarAD [map_norm=position_two_sided]"
        ]
    );
    let rows = &report.categories[0].methods;
    // One training: the same training figures on every row, different maps.
    assert!(rows
        .iter()
        .all(|m| m.train_seconds == rows[0].train_seconds));
    assert!(rows.iter().all(|m| m.final_loss == rows[0].final_loss));
    for m in rows {
        in_unit(&m.pixel, &m.method);
    }
    assert!(rows[1..].iter().any(|m| m.pixel != rows[0].pixel));
}
