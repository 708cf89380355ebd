//! The evaluation harness end to end on a generated MVTec-layout set with the tiny ViT:
//! both methods train and score, the report has every number in [0, 1], the breakdowns by
//! type and size are there, and PatchCore finds the planted, obvious defects. The tiny ViT
//! has random weights, so only what any sane feature extractor gives is asserted.

#[path = "../../tests/common/mod.rs"]
mod common;

use varad_cli::eval::dataset::{Dataset, Layout};
use varad_cli::eval::decision_tables::{DecisionTable, PoolChoice};
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
    // Both methods decided every test image at their calibrated thresholds.
    for m in &c.methods {
        let decided = m.decisions.expect("decisions");
        assert_eq!(
            (decided.good.total(), decided.defective.total()),
            (c.test_good, c.test_defective),
            "{}",
            m.method
        );
    }
    decision_tables_add_up(&report);
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

/// Both methods have decision tables, calibrated the same way: the held-out images are
/// the same 3 for both, PatchCore's 3 training images are cross-fitted (VarAD's are once
/// its training cross-fits; until then its "cross-fitted only" tables are reported as
/// unavailable), every table's decisions add up to the test split, the configured
/// whole-pool table decides as the method itself did, and the sums over categories are
/// there.
fn decision_tables_add_up(report: &Report) {
    let c = &report.categories[0];
    for m in &c.methods {
        let t = &m.decision_tables;
        let whole: Vec<&DecisionTable> = t
            .tables
            .iter()
            .filter(|t| t.pool == PoolChoice::CrossFittedAndHeldOut)
            .collect();
        // The configured 1% and the grid's 5% and 10%.
        let rates: Vec<f64> = whole.iter().map(|t| t.review.requested).collect();
        assert_eq!(rates, [0.01, 0.05, 0.1], "{}", m.method);
        assert!(whole[0].configured && !whole[1].configured);
        assert_eq!(
            whole[0].decisions,
            m.decisions.unwrap(),
            "{}: the configured table is the method's own calibration",
            m.method
        );
        for table in &t.tables {
            let d = table.decisions;
            assert_eq!(
                (
                    d.good.pass + d.good.review + d.good.fail,
                    d.defective.total()
                ),
                (c.test_good, c.test_defective),
                "{}",
                m.method
            );
            assert_eq!(table.review.observed, d.good.review + d.good.fail);
            assert_eq!(
                (table.fail.observed, table.review.good),
                (d.good.fail, c.test_good)
            );
            let [lo, hi] = table.review.interval;
            assert!(
                lo <= hi && (0.0..=1.0).contains(&lo) && hi <= 1.0,
                "{table:?}"
            );
            if table.pool == PoolChoice::CrossFittedAndHeldOut {
                assert_eq!(table.held_out, 3, "{}: the same held-out images", m.method);
            }
            assert_eq!(
                table.normal_scores,
                table.cross_fitted + table.held_out,
                "{table:?}"
            );
        }
        let cross_only: Vec<&DecisionTable> = t
            .tables
            .iter()
            .filter(|t| t.pool == PoolChoice::CrossFitted)
            .collect();
        if whole[0].cross_fitted >= 3 {
            assert_eq!(cross_only.len(), 3, "{}", m.method);
            assert!(cross_only
                .iter()
                .all(|t| t.held_out == 0 && t.normal_scores == whole[0].cross_fitted));
        } else {
            assert!(cross_only.is_empty());
            assert!(!t.unavailable.is_empty(), "{}", m.method);
        }
    }
    for m in &c.methods {
        let normal = m.normal_scores.as_ref().expect("normal scores");
        assert_eq!(normal.test_good.len(), c.test_good);
        assert_eq!(normal.pool.held_out.len(), 3);
    }
    let patchcore = &c.methods[1].decision_tables.tables;
    assert_eq!(patchcore.len(), 6, "PatchCore: both pools at 3 rates");
    assert_eq!(patchcore[0].cross_fitted, 3);
    assert!(c.methods[1].calibration_seconds.unwrap() > 0.0);
    for (summary, m) in report.mean.iter().zip(&c.methods) {
        assert_eq!(
            summary.decision_tables.len(),
            m.decision_tables.tables.len()
        );
        assert_eq!(
            summary.decision_tables[0].decisions,
            m.decision_tables.tables[0].decisions
        );
    }
    assert!(report
        .to_markdown()
        .contains("| stripes | PatchCore | cross-fitted only | 3 + 0 | 1.00 |"));
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
