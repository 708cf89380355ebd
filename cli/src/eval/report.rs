//! The evaluation report: per category and method the six detection numbers, the
//! training time and the scoring time, breakdowns by defect type and size, and the means
//! over categories; as JSON and as Markdown tables with the methods side by side.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::decision_tables::{sum_tables, DecisionTable, DecisionTables, PoolChoice};
use super::metrics::Metrics;
use varad::score::{Decision, NormalPool};

impl std::iter::Sum for Decisions {
    fn sum<I: Iterator<Item = Decisions>>(iter: I) -> Decisions {
        iter.fold(Decisions::default(), Decisions::plus)
    }
}

/// The numbers of one subset of the defective images (one defect type or one size class),
/// each scored against all the good test images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// The defect type or size class.
    pub subset: String,
    /// Defective images in the subset.
    pub defective_images: usize,
    /// Pixel AUROC over the subset's images and the good images.
    pub pixel_auroc: Option<f64>,
    /// Pixel AP over the same pixels.
    pub pixel_ap: Option<f64>,
    /// Image AUROC: the subset's images against the good images.
    pub image_auroc: Option<f64>,
}

/// How many images got each decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Passed.
    pub pass: usize,
    /// Sent to review.
    pub review: usize,
    /// Failed.
    pub fail: usize,
}

impl Tally {
    /// Counts one decision.
    pub fn add(&mut self, d: Decision) {
        match d {
            Decision::Pass => self.pass += 1,
            Decision::Review => self.review += 1,
            Decision::Fail => self.fail += 1,
        }
    }

    /// Images counted.
    pub fn total(&self) -> usize {
        self.pass + self.review + self.fail
    }

    fn plus(self, o: Tally) -> Tally {
        Tally {
            pass: self.pass + o.pass,
            review: self.review + o.review,
            fail: self.fail + o.fail,
        }
    }
}

/// The decisions a line would have acted on, at the calibrated thresholds: of the good
/// test images and of the defective ones, how many passed, went to review, failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decisions {
    /// The good test images.
    pub good: Tally,
    /// The defective test images.
    pub defective: Tally,
}

impl Decisions {
    /// Good images failed, as a fraction of the good images (`None` without any).
    pub fn false_fail_rate(&self) -> Option<f64> {
        let n = self.good.total();
        (n > 0).then(|| self.good.fail as f64 / n as f64)
    }

    /// Defective images passed, as a fraction of the defective images.
    pub fn escape_rate(&self) -> Option<f64> {
        let n = self.defective.total();
        (n > 0).then(|| self.defective.pass as f64 / n as f64)
    }

    fn plus(self, o: Decisions) -> Decisions {
        Decisions {
            good: self.good.plus(o.good),
            defective: self.defective.plus(o.defective),
        }
    }
}

/// One method on one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// The method's name.
    pub method: String,
    /// Pixel-level metrics over all test pixels.
    pub pixel: Metrics,
    /// Image-level metrics over all test images.
    pub image: Metrics,
    /// Training wall time in seconds (backbone features and fitting; not file decoding).
    pub train_seconds: f64,
    /// Mean scoring wall time per test image in milliseconds, from decoded pixels to the
    /// smoothed map and image score (not decoding, not metrics): the category's backbone
    /// time per image ([`CategoryReport::backbone_ms_per_image`]) plus
    /// `ms_after_backbone`.
    pub ms_per_image: f64,
    /// Mean wall time per test image of the method's own work after the backbone, timed
    /// directly: every method scores the same backbone maps, computed once per image.
    #[serde(default)]
    pub ms_after_backbone: f64,
    /// By defect type.
    pub by_type: Vec<Breakdown>,
    /// By defect size class (from `defects.json`; empty without it).
    pub by_size: Vec<Breakdown>,
    /// The decisions at the calibrated thresholds, for a method scored with its
    /// calibration (VarAD with its configured map normalisation, and the baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Decisions>,
    /// For a method with a calibration: its decisions re-fitted per pool of normal scores
    /// and per review rate, against what each calibration promised.
    #[serde(default, skip_serializing_if = "DecisionTables::is_empty")]
    pub decision_tables: DecisionTables,
    /// For a method with a calibration: the out-of-sample normal scores it was fitted on,
    /// by source, and the good test images' scores, so the distributions can be compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal_scores: Option<NormalScores>,
    /// Seconds spent on the out-of-sample normal scores and the calibration, when timed
    /// apart from `train_seconds` (the baseline's cross-fitting and held-out scoring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_seconds: Option<f64>,
    /// VarAD only: the last epoch's mean training loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_loss: Option<f64>,
    /// VarAD only: per level, the adapted tokens' mean per-channel variance over the raw
    /// tokens' after training (1 = no shrinkage; well below 1 = the adapters collapse the
    /// features towards what is easy to predict).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variance_ratios: Vec<f64>,
}

/// A method's normal image scores: those its calibration was fitted on, and the good test
/// images'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalScores {
    /// The calibration's pool: cross-fitted training images' and held-out images' scores.
    pub pool: NormalPool,
    /// The good test images' scores, in test order.
    pub test_good: Vec<f32>,
}

/// One category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryReport {
    /// The category's name.
    pub category: String,
    /// Normal training images.
    pub train_images: usize,
    /// Good test images.
    pub test_good: usize,
    /// Defective test images.
    pub test_defective: usize,
    /// One entry per method, in the order run.
    pub methods: Vec<MethodResult>,
    /// The backbone (preprocessing and the ONNX run) per test image, in ms; it runs once
    /// per test image and every method scores its maps.
    #[serde(default)]
    pub backbone_ms_per_image: f64,
    /// The montage picture, relative to the report's folder, if one was written.
    pub montage: Option<String>,
}

/// One method's means over the categories (a metric undefined in a category is left out
/// of its mean).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    /// The method's name.
    pub method: String,
    /// Mean pixel-level metrics.
    pub pixel: Metrics,
    /// Mean image-level metrics.
    pub image: Metrics,
    /// Mean training time, seconds.
    pub train_seconds: f64,
    /// Mean scoring time per image, milliseconds.
    pub ms_per_image: f64,
    /// Mean scoring time per image after the backbone, milliseconds.
    #[serde(default)]
    pub ms_after_backbone: f64,
    /// The decisions summed over the categories (when every category has them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Decisions>,
    /// The decision tables summed over the categories
    /// ([`super::decision_tables::sum_tables`]: those every category has).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decision_tables: Vec<DecisionTable>,
    /// Mean calibration seconds, over the categories that timed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_seconds: Option<f64>,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The data set's folder.
    pub data: String,
    /// Its layout (`mvtec_ad`, `visa`, `btad`).
    pub layout: String,
    /// The methods, in the order run.
    pub methods: Vec<String>,
    /// Per category.
    pub categories: Vec<CategoryReport>,
    /// Per method, the means over the categories.
    pub mean: Vec<MethodSummary>,
    /// The model configuration (JSON), so a result can be reproduced.
    pub config: serde_json::Value,
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn mean_metrics<'a>(all: impl Iterator<Item = &'a Metrics> + Clone) -> Metrics {
    Metrics {
        auroc: mean(all.clone().map(|m| m.auroc)),
        ap: mean(all.clone().map(|m| m.ap)),
        max_f1: mean(all.map(|m| m.max_f1)),
    }
}

/// A metric as a percentage with one decimal, `-` when undefined.
fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}", 100.0 * v))
}

impl Report {
    /// A report of `categories`, with the means computed.
    pub fn new(
        data: String,
        layout: String,
        methods: Vec<String>,
        categories: Vec<CategoryReport>,
        config: serde_json::Value,
    ) -> Report {
        let mean = methods
            .iter()
            .map(|name| {
                let results: Vec<&MethodResult> = categories
                    .iter()
                    .flat_map(|c| c.methods.iter().filter(|m| &m.method == name))
                    .collect();
                let n = results.len().max(1) as f64;
                MethodSummary {
                    method: name.clone(),
                    pixel: mean_metrics(results.iter().map(|r| &r.pixel)),
                    image: mean_metrics(results.iter().map(|r| &r.image)),
                    train_seconds: results.iter().map(|r| r.train_seconds).sum::<f64>() / n,
                    ms_per_image: results.iter().map(|r| r.ms_per_image).sum::<f64>() / n,
                    ms_after_backbone: results.iter().map(|r| r.ms_after_backbone).sum::<f64>() / n,
                    decisions: results
                        .iter()
                        .map(|r| r.decisions)
                        .sum::<Option<Decisions>>(),
                    decision_tables: if results.is_empty() {
                        Vec::new()
                    } else {
                        let tables: Vec<&[DecisionTable]> = results
                            .iter()
                            .map(|r| r.decision_tables.tables.as_slice())
                            .collect();
                        sum_tables(&tables)
                    },
                    calibration_seconds: mean(results.iter().map(|r| r.calibration_seconds)),
                }
            })
            .collect();
        Report {
            data,
            layout,
            methods,
            categories,
            mean,
            config,
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report is plain data")
    }

    /// The main table (one row per category and method, then the means) and the
    /// breakdown tables, in Markdown. Metrics are percentages.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Data: `{}` ({})\n", self.data, self.layout);
        if let Some(line) = settings_line(&self.config, None) {
            let _ = writeln!(s, "{line}\n");
        }
        s.push_str(
            "| category | method | P-AUROC | P-AP | P-F1max | I-AUROC | I-AP | I-F1max | train s | ms/img | ms/img after backbone |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let mut row = |cat: &str,
                       method: &str,
                       p: &Metrics,
                       i: &Metrics,
                       t: f64,
                       (ms, after): (f64, f64)| {
            let _ = writeln!(
                s,
                "| {cat} | {method} | {} | {} | {} | {} | {} | {} | {t:.1} | {ms:.1} | {after:.1} |",
                pct(p.auroc),
                pct(p.ap),
                pct(p.max_f1),
                pct(i.auroc),
                pct(i.ap),
                pct(i.max_f1)
            );
        };
        for c in &self.categories {
            for m in &c.methods {
                row(
                    &c.category,
                    &m.method,
                    &m.pixel,
                    &m.image,
                    m.train_seconds,
                    (m.ms_per_image, m.ms_after_backbone),
                );
            }
        }
        if self.categories.len() > 1 {
            for m in &self.mean {
                row(
                    "**mean**",
                    &m.method,
                    &m.pixel,
                    &m.image,
                    m.train_seconds,
                    (m.ms_per_image, m.ms_after_backbone),
                );
            }
        }
        for (title, pick) in [
            (
                "defect type",
                (|m: &MethodResult| &m.by_type) as fn(&MethodResult) -> &Vec<Breakdown>,
            ),
            ("defect size", |m: &MethodResult| &m.by_size),
        ] {
            if self
                .categories
                .iter()
                .all(|c| c.methods.iter().all(|m| pick(m).is_empty()))
            {
                continue;
            }
            let _ = writeln!(
                s,
                "\nBy {title} (each subset against all good images):\n\n\
                 | category | {title} | images | method | P-AUROC | P-AP | I-AUROC |\n\
                 |---|---|---:|---|---:|---:|---:|"
            );
            for c in &self.categories {
                for m in &c.methods {
                    for b in pick(m) {
                        let _ = writeln!(
                            s,
                            "| {} | {} | {} | {} | {} | {} | {} |",
                            c.category,
                            b.subset,
                            b.defective_images,
                            m.method,
                            pct(b.pixel_auroc),
                            pct(b.pixel_ap),
                            pct(b.image_auroc)
                        );
                    }
                }
            }
        }
        s.push_str(&self.decisions_markdown());
        s.push_str(&self.decision_tables_markdown());
        let montages: Vec<&str> = self
            .categories
            .iter()
            .filter_map(|c| c.montage.as_deref())
            .collect();
        if !montages.is_empty() {
            let _ = writeln!(
                s,
                "\nMontages (rows: test images; columns: image with the ground truth in red, then {}): {}",
                self.methods.join(", "),
                montages.join(", ")
            );
        }
        s
    }
}

impl Report {
    /// The decision table: per category and method with a calibration, then summed over
    /// the categories; empty when no method has one.
    fn decisions_markdown(&self) -> String {
        let mut s = String::new();
        let rows: Vec<(&str, &str, Decisions)> = self
            .categories
            .iter()
            .flat_map(|c| {
                c.methods
                    .iter()
                    .filter_map(|m| Some((c.category.as_str(), m.method.as_str(), m.decisions?)))
            })
            .chain(
                self.mean
                    .iter()
                    .filter(|_| self.categories.len() > 1)
                    .filter_map(|m| Some(("**all**", m.method.as_str(), m.decisions?))),
            )
            .collect();
        if rows.is_empty() {
            return s;
        }
        s.push_str(
            "\nDecisions at the calibrated thresholds (images; false fails: good images failed; \
             escapes: defective images passed):\n\n\
             | category | method | good PASS | good REVIEW | good FAIL | defective PASS | defective REVIEW | defective FAIL | false fails % | escapes % |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (category, method, d) in rows {
            let _ = writeln!(
                s,
                "| {category} | {method} | {} | {} | {} | {} | {} | {} | {} | {} |",
                d.good.pass,
                d.good.review,
                d.good.fail,
                d.defective.pass,
                d.defective.review,
                d.defective.fail,
                pct(d.false_fail_rate()),
                pct(d.escape_rate())
            );
        }
        s
    }
}

/// A rate as a percentage with two decimals.
fn pct2(v: f64) -> String {
    format!("{:.2}", 100.0 * v)
}

/// A promise and its check, in one cell: `expected (95% UB up)*` where `*` marks an
/// extrapolated threshold.
fn promise_cell(r: &super::decision_tables::RateCheck) -> String {
    format!(
        "{} (UB {}){}",
        pct2(r.expected),
        pct2(r.upper_bound),
        if r.extrapolated { "*" } else { "" }
    )
}

/// An observed rate with its interval and whether the promise lies inside it.
fn observed_cell(r: &super::decision_tables::RateCheck) -> String {
    format!(
        "{}/{} = {} [{}, {}] {}",
        r.observed,
        r.good,
        pct(r.observed_rate()),
        pct(Some(r.interval[0])),
        pct(Some(r.interval[1])),
        if r.consistent { "yes" } else { "NO" }
    )
}

impl Report {
    /// The decision tables: per category the configured rates, then summed over the
    /// categories at every rate; empty when no method has them.
    fn decision_tables_markdown(&self) -> String {
        let mut s = String::new();
        let mut rows: Vec<(&str, &str, &DecisionTable)> = Vec::new();
        for c in &self.categories {
            for m in &c.methods {
                for t in m.decision_tables.tables.iter().filter(|t| t.configured) {
                    rows.push((&c.category, &m.method, t));
                }
            }
        }
        if self.categories.len() > 1 {
            for pool in PoolChoice::ALL {
                for m in &self.mean {
                    for t in m.decision_tables.iter().filter(|t| t.pool == pool) {
                        rows.push(("**all**", &m.method, t));
                    }
                }
            }
        }
        let notes: Vec<String> = self
            .categories
            .iter()
            .flat_map(|c| {
                c.methods.iter().flat_map(move |m| {
                    m.decision_tables
                        .unavailable
                        .iter()
                        .map(move |u| format!("- {} / {}: {u}", c.category, m.method))
                })
            })
            .collect();
        if rows.is_empty() && notes.is_empty() {
            return s;
        }
        s.push_str(
            "\nDecision tables: each method calibrated on its cross-fitted normal scores alone \
             and on those plus the held-out images' (n = cross-fitted + held-out). Promised: the \
             calibration report's expected rate % (95% upper bound; * extrapolated by the \
             log-normal tail). Observed on the good test parts: flagged (REVIEW or FAIL) and \
             FAIL, with the 95% Clopper-Pearson interval and whether the promise lies in it. \
             Escapes: defective parts passed.\n\n\
             | category | method | calibration | n | review rate | good PASS / REVIEW / FAIL | promised review % | observed flagged % [95%] ok | promised fail % | observed fail % [95%] ok | escapes |\n\
             |---|---|---|---|---:|---:|---:|---|---:|---|---:|\n",
        );
        for (category, method, t) in rows {
            let g = t.decisions.good;
            let _ = writeln!(
                s,
                "| {category} | {method} | {} | {} + {} | {} | {} / {} / {} | {} | {} | {} | {} | {} = {} % |",
                t.pool.name(),
                t.cross_fitted,
                t.held_out,
                pct2(t.review.requested),
                g.pass,
                g.review,
                g.fail,
                promise_cell(&t.review),
                observed_cell(&t.review),
                promise_cell(&t.fail),
                observed_cell(&t.fail),
                t.decisions.defective.pass,
                pct(t.decisions.escape_rate())
            );
        }
        if !notes.is_empty() {
            let _ = writeln!(s, "\nNot calibrated:\n\n{}", notes.join("\n"));
        }
        s
    }
}

/// One line naming the settings that define a run (those the paper ablates and ours),
/// read from a stored configuration: levels, input size (or `input`, for a sweep),
/// prediction step, scan directions, adapters, detached target, context mean, epochs.
/// `None` when `config` is not a configuration object. Fields a configuration from before
/// an option existed lacks read as that option's default.
pub fn settings_line(config: &serde_json::Value, input: Option<&str>) -> Option<String> {
    let c = config.as_object()?;
    let flag = |name: &str, default: bool| c.get(name).and_then(|v| v.as_bool()).unwrap_or(default);
    let list = |v: Option<&serde_json::Value>| -> Option<Vec<String>> {
        v?.as_array().map(|a| {
            a.iter()
                .map(|x| x.as_str().map_or(x.to_string(), String::from))
                .collect()
        })
    };
    let levels = match list(c.get("levels")) {
        Some(l) if !l.is_empty() => l.join(","),
        _ => "all".into(),
    };
    let input = match input {
        Some(text) => text.to_string(),
        None => match c.get("input_size").and_then(|v| v.as_array()) {
            Some(wh) if wh.len() == 2 => format!("{}x{}", wh[0], wh[1]),
            _ => "the backbone's preferred".into(),
        },
    };
    let step = c
        .get("prediction_step")
        .map_or("?".into(), |v| v.to_string());
    let directions = list(c.get("directions")).map_or("0,1,2,3".into(), |d| d.join(","));
    let epochs = c
        .get("train")
        .and_then(|t| t.get("epochs"))
        .map_or("?".into(), |v| v.to_string());
    let on_off = |b: bool| if b { "on" } else { "off" };
    Some(format!(
        "Settings: levels {levels}; input {input}; prediction step {step}; directions {directions}; \
         adapters {}; detach_target {}; context_mean {}; epochs {epochs}",
        on_off(flag("adapters", true)),
        flag("detach_target", false),
        flag("context_mean", false),
    ))
}

/// One category and method at one input size of a resolution sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    /// The input size, `WxH`.
    pub input_size: String,
    /// The category, or `mean` for the means over the categories.
    pub category: String,
    /// The method's name.
    pub method: String,
    /// Pixel AUROC over all test pixels.
    pub pixel_auroc: Option<f64>,
    /// Pixel AP.
    pub pixel_ap: Option<f64>,
    /// Pixel max-F1.
    pub pixel_max_f1: Option<f64>,
    /// Image AUROC.
    pub image_auroc: Option<f64>,
    /// Mean scoring time per test image, milliseconds.
    pub ms_per_image: f64,
}

/// One defect size class of one category and method at one input size: how small defects
/// fare against the resolution (the paper's Fig. 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSizeRow {
    /// The input size, `WxH`.
    pub input_size: String,
    /// The category, or `mean` for the means over the categories.
    pub category: String,
    /// The method's name.
    pub method: String,
    /// The defect size class (`small`, `medium`, `large`).
    pub size_class: String,
    /// Defective images in the class (summed over categories for `mean`).
    pub defective_images: usize,
    /// Pixel AUROC of the class's images and the good images.
    pub pixel_auroc: Option<f64>,
    /// Pixel AP over the same pixels.
    pub pixel_ap: Option<f64>,
    /// Image AUROC: the class's images against the good images.
    pub image_auroc: Option<f64>,
}

/// A resolution sweep: the same evaluation at several input sizes, the headline numbers
/// and the defect-size breakdown side by side. Each size's full [`Report`] is written
/// separately; this keeps what the comparison needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// The data set's folder.
    pub data: String,
    /// Its layout.
    pub layout: String,
    /// The methods, in the order run.
    pub methods: Vec<String>,
    /// The input sizes, `WxH`, in the order run.
    pub input_sizes: Vec<String>,
    /// Per input size, category (then the means, with several categories) and method.
    pub rows: Vec<SweepRow>,
    /// Per input size, category (then the means), method and defect size class.
    pub by_size: Vec<SweepSizeRow>,
    /// The configuration shared by every run (its `input_size` left out).
    pub config: serde_json::Value,
}

impl SweepReport {
    /// The sweep of `runs`: each input size (`WxH`) with its report, in order.
    pub fn new(runs: &[(String, &Report)]) -> SweepReport {
        let mut rows = Vec::new();
        let mut by_size = Vec::new();
        for (size, report) in runs {
            for c in &report.categories {
                for m in &c.methods {
                    rows.push(SweepRow {
                        input_size: size.clone(),
                        category: c.category.clone(),
                        method: m.method.clone(),
                        pixel_auroc: m.pixel.auroc,
                        pixel_ap: m.pixel.ap,
                        pixel_max_f1: m.pixel.max_f1,
                        image_auroc: m.image.auroc,
                        ms_per_image: m.ms_per_image,
                    });
                    by_size.extend(m.by_size.iter().map(|b| SweepSizeRow {
                        input_size: size.clone(),
                        category: c.category.clone(),
                        method: m.method.clone(),
                        size_class: b.subset.clone(),
                        defective_images: b.defective_images,
                        pixel_auroc: b.pixel_auroc,
                        pixel_ap: b.pixel_ap,
                        image_auroc: b.image_auroc,
                    }));
                }
            }
            if report.categories.len() < 2 {
                continue;
            }
            for m in &report.mean {
                rows.push(SweepRow {
                    input_size: size.clone(),
                    category: "mean".into(),
                    method: m.method.clone(),
                    pixel_auroc: m.pixel.auroc,
                    pixel_ap: m.pixel.ap,
                    pixel_max_f1: m.pixel.max_f1,
                    image_auroc: m.image.auroc,
                    ms_per_image: m.ms_per_image,
                });
                let classes: Vec<&Breakdown> = report
                    .categories
                    .iter()
                    .flat_map(|c| c.methods.iter().filter(|r| r.method == m.method))
                    .flat_map(|r| &r.by_size)
                    .collect();
                let mut names: Vec<&str> = classes.iter().map(|b| b.subset.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                for name in names {
                    let mine: Vec<&&Breakdown> =
                        classes.iter().filter(|b| b.subset == name).collect();
                    by_size.push(SweepSizeRow {
                        input_size: size.clone(),
                        category: "mean".into(),
                        method: m.method.clone(),
                        size_class: name.to_string(),
                        defective_images: mine.iter().map(|b| b.defective_images).sum(),
                        pixel_auroc: mean(mine.iter().map(|b| b.pixel_auroc)),
                        pixel_ap: mean(mine.iter().map(|b| b.pixel_ap)),
                        image_auroc: mean(mine.iter().map(|b| b.image_auroc)),
                    });
                }
            }
        }
        let first = runs.first().map(|(_, r)| *r);
        let mut config = first.map_or(serde_json::Value::Null, |r| r.config.clone());
        if let Some(c) = config.as_object_mut() {
            c.remove("input_size");
        }
        SweepReport {
            data: first.map_or_else(String::new, |r| r.data.clone()),
            layout: first.map_or_else(String::new, |r| r.layout.clone()),
            methods: first.map_or_else(Vec::new, |r| r.methods.clone()),
            input_sizes: runs.iter().map(|(s, _)| s.clone()).collect(),
            rows,
            by_size,
            config,
        }
    }

    /// The sweep as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the sweep is plain data")
    }

    /// The headline table (one row per category, method and input size, the sizes of
    /// one method next to each other) and, per defect size class, pixel AUROC and AP
    /// with one column per input size. Metrics are percentages.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let sizes = self.input_sizes.join(", ");
        let _ = writeln!(
            s,
            "Resolution sweep on `{}` ({}): input sizes {sizes}\n",
            self.data, self.layout
        );
        if let Some(line) = settings_line(&self.config, Some(&sizes)) {
            let _ = writeln!(s, "{line}\n");
        }
        s.push_str(
            "| category | method | input | P-AUROC | P-AP | P-F1max | I-AUROC | ms/img |\n\
             |---|---|---|---:|---:|---:|---:|---:|\n",
        );
        for category in distinct(self.rows.iter().map(|r| &r.category)) {
            for (method, size) in self
                .methods
                .iter()
                .flat_map(|m| self.input_sizes.iter().map(move |s| (m, s)))
            {
                for r in self.rows.iter().filter(|r| {
                    &r.input_size == size && &r.category == category && &r.method == method
                }) {
                    let _ = writeln!(
                        s,
                        "| {category} | {method} | {size} | {} | {} | {} | {} | {:.1} |",
                        pct(r.pixel_auroc),
                        pct(r.pixel_ap),
                        pct(r.pixel_max_f1),
                        pct(r.image_auroc),
                        r.ms_per_image
                    );
                }
            }
        }
        if self.by_size.is_empty() {
            return s;
        }
        type Pick = fn(&SweepSizeRow) -> Option<f64>;
        for (title, pick) in [
            ("Pixel AUROC", (|r: &SweepSizeRow| r.pixel_auroc) as Pick),
            ("Pixel AP", |r: &SweepSizeRow| r.pixel_ap),
        ] {
            let _ = writeln!(
                s,
                "\n{title} by defect size and input size (each size class against all good images):\n\n\
                 | category | method | defect size | images | {} |\n\
                 |---|---|---|---:|{}",
                self.input_sizes.join(" | "),
                "---:|".repeat(self.input_sizes.len())
            );
            let mut keys = Vec::new();
            for category in distinct(self.by_size.iter().map(|r| &r.category)) {
                for method in &self.methods {
                    let mut classes = distinct(
                        self.by_size
                            .iter()
                            .filter(|r| &r.category == category && &r.method == method)
                            .map(|r| &r.size_class),
                    );
                    classes.sort_by(|a, b| class_order(a, b));
                    keys.extend(classes.into_iter().map(|c| (category, method, c)));
                }
            }
            for (category, method, class) in keys {
                let cells: Vec<&SweepSizeRow> = self
                    .by_size
                    .iter()
                    .filter(|r| {
                        &r.category == category && &r.method == method && &r.size_class == class
                    })
                    .collect();
                let images = cells.first().map_or(0, |r| r.defective_images);
                let values: Vec<String> = self
                    .input_sizes
                    .iter()
                    .map(|size| {
                        cells
                            .iter()
                            .find(|r| &r.input_size == size)
                            .map_or("-".into(), |r| pct(pick(r)))
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "| {category} | {method} | {class} | {images} | {} |",
                    values.join(" | ")
                );
            }
        }
        s
    }
}

/// The distinct values in order of first appearance.
fn distinct<'a>(values: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let mut out: Vec<&String> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Defect size classes from small to large, then any others by name.
fn class_order(a: &str, b: &str) -> std::cmp::Ordering {
    let rank = |name: &str| match name {
        "small" => 0,
        "medium" => 1,
        "large" => 2,
        _ => 3,
    };
    rank(a).cmp(&rank(b)).then(a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(method: &str, auroc: Option<f64>) -> MethodResult {
        let m = Metrics {
            auroc,
            ap: Some(0.5),
            max_f1: Some(0.25),
        };
        MethodResult {
            method: method.into(),
            pixel: m,
            image: m,
            train_seconds: 2.0,
            ms_per_image: 10.0,
            ms_after_backbone: 4.0,
            by_type: vec![Breakdown {
                subset: "crack".into(),
                defective_images: 3,
                pixel_auroc: Some(0.9),
                pixel_ap: None,
                image_auroc: Some(1.0),
            }],
            by_size: Vec::new(),
            decisions: None,
            decision_tables: DecisionTables::default(),
            normal_scores: None,
            calibration_seconds: None,
            final_loss: None,
            variance_ratios: Vec::new(),
        }
    }

    /// A category of 5 training images and `(good, defective)` test images.
    fn category(name: &str, test: (usize, usize), methods: Vec<MethodResult>) -> CategoryReport {
        CategoryReport {
            category: name.into(),
            train_images: 5,
            test_good: test.0,
            test_defective: test.1,
            methods,
            backbone_ms_per_image: 6.0,
            montage: None,
        }
    }

    fn two_method_report(categories: Vec<CategoryReport>) -> Report {
        Report::new(
            "d".into(),
            "mvtec_ad".into(),
            vec!["VarAD".into(), "PatchCore".into()],
            categories,
            serde_json::Value::Null,
        )
    }

    #[test]
    fn the_decision_table_counts_each_category_and_sums_them() {
        let decided = |good: [usize; 3], defective: [usize; 3]| {
            let tally = |[pass, review, fail]: [usize; 3]| Tally { pass, review, fail };
            MethodResult {
                decisions: Some(Decisions {
                    good: tally(good),
                    defective: tally(defective),
                }),
                ..result("VarAD", Some(0.9))
            }
        };
        let cat = |name: &str, varad: MethodResult| {
            category(name, (4, 5), vec![varad, result("PatchCore", Some(0.8))])
        };
        let r = two_method_report(vec![
            cat("a", decided([3, 1, 0], [1, 1, 3])),
            cat("b", decided([2, 0, 2], [0, 0, 5])),
        ]);
        let all = r.mean[0].decisions.unwrap();
        assert_eq!((all.good.pass, all.good.review, all.good.fail), (5, 1, 2));
        assert_eq!(all.defective.total(), 10);
        assert_eq!(all.false_fail_rate(), Some(0.25));
        assert_eq!(all.escape_rate(), Some(0.1));
        // PatchCore has no calibration: no decisions, no row.
        assert_eq!(r.mean[1].decisions, None);
        let md = r.to_markdown();
        assert!(
            md.contains("| a | VarAD | 3 | 1 | 0 | 1 | 1 | 3 | 0.0 | 20.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| b | VarAD | 2 | 0 | 2 | 0 | 0 | 5 | 50.0 | 0.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| **all** | VarAD | 5 | 1 | 2 | 1 | 1 | 8 | 25.0 | 10.0 |"),
            "{md}"
        );
        assert!(!md.contains("| PatchCore | 0 |"), "{md}");
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn means_skip_undefined_and_markdown_has_every_row() {
        let cat = |name: &str, a, b| {
            category(
                name,
                (2, 3),
                vec![result("VarAD", a), result("PatchCore", b)],
            )
        };
        let r = two_method_report(vec![cat("a", Some(0.8), None), cat("b", Some(0.6), None)]);
        assert!((r.mean[0].pixel.auroc.unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(r.mean[1].pixel.auroc, None);
        let md = r.to_markdown();
        assert!(md.contains("| a | VarAD | 80.0 | 50.0 | 25.0 |"), "{md}");
        assert!(md.contains("| **mean** | PatchCore | - |"), "{md}");
        assert!(
            md.contains("By defect type") && !md.contains("By defect size"),
            "{md}"
        );
        assert!(!md.contains("Decisions at"), "no method decided: {md}");
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    fn sized(method: &str, small: f64, large: f64) -> MethodResult {
        let class = |subset: &str, v: f64| Breakdown {
            subset: subset.into(),
            defective_images: 2,
            pixel_auroc: Some(v),
            pixel_ap: Some(v / 2.0),
            image_auroc: Some(v),
        };
        MethodResult {
            by_size: vec![class("large", large), class("small", small)],
            ..result(method, Some(small))
        }
    }

    fn report_at(size: (u32, u32), small: f64) -> Report {
        let mut config = varad::Config::new("b.onnx");
        config.input_size = Some(size);
        config.directions = vec![0, 2];
        config.adapters = false;
        let cat = |name: &str| CategoryReport {
            category: name.into(),
            train_images: 5,
            test_good: 2,
            test_defective: 4,
            methods: vec![sized("VarAD", small, 0.9), sized("PatchCore", 0.5, 0.8)],
            backbone_ms_per_image: 6.0,
            montage: None,
        };
        Report::new(
            "d".into(),
            "mvtec_ad".into(),
            vec!["VarAD".into(), "PatchCore".into()],
            vec![cat("a"), cat("b")],
            serde_json::to_value(&config).unwrap(),
        )
    }

    #[test]
    fn the_markdown_names_the_settings() {
        let md = report_at((256, 256), 0.6).to_markdown();
        assert!(
            md.contains(
                "Settings: levels all; input 256x256; prediction step 4; directions 0,2; \
                 adapters off; detach_target false; context_mean false; epochs 10"
            ),
            "{md}"
        );
        // A configuration from before the ablation options: their defaults.
        let mut old = serde_json::to_value(varad::Config::new("b.onnx")).unwrap();
        let map = old.as_object_mut().unwrap();
        map.remove("directions");
        map.remove("adapters");
        let line = settings_line(&old, None).unwrap();
        assert!(line.contains("directions 0,1,2,3; adapters on"), "{line}");
        assert!(line.contains("input the backbone's preferred"), "{line}");
        assert_eq!(settings_line(&serde_json::Value::Null, None), None);
    }

    #[test]
    fn a_sweep_puts_the_sizes_side_by_side() {
        let (a, b) = (report_at((256, 256), 0.6), report_at((512, 512), 0.8));
        let sweep = SweepReport::new(&[("256x256".into(), &a), ("512x512".into(), &b)]);
        assert_eq!(sweep.input_sizes, ["256x256", "512x512"]);
        // 2 sizes x (2 categories + mean) x 2 methods.
        assert_eq!(sweep.rows.len(), 12);
        // ... and 2 size classes each.
        assert_eq!(sweep.by_size.len(), 24);
        assert!(sweep.config.get("input_size").is_none());
        let mean_small = sweep
            .by_size
            .iter()
            .find(|r| r.category == "mean" && r.method == "VarAD" && r.size_class == "small")
            .unwrap();
        assert_eq!(mean_small.defective_images, 4);
        assert!((mean_small.pixel_auroc.unwrap() - 0.6).abs() < 1e-12);

        let md = sweep.to_markdown();
        assert!(md.contains("input sizes 256x256, 512x512"), "{md}");
        assert!(
            md.contains("| a | VarAD | 256x256 | 60.0 | 50.0 | 25.0 | 60.0 | 10.0 |"),
            "{md}"
        );
        assert!(md.contains("| a | VarAD | 512x512 | 80.0 |"), "{md}");
        assert!(
            md.contains("| defect size | images | 256x256 | 512x512 |"),
            "{md}"
        );
        // Small before large; the small defects gain from the resolution.
        assert!(
            md.contains("| a | VarAD | small | 2 | 60.0 | 80.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| mean | PatchCore | large | 4 | 80.0 | 80.0 |"),
            "{md}"
        );
        let small = md.find("| b | VarAD | small |").unwrap();
        let large = md.find("| b | VarAD | large |").unwrap();
        assert!(small < large, "{md}");
        assert!(md.contains("Pixel AP by defect size"), "{md}");
        let back: SweepReport = serde_json::from_str(&sweep.to_json()).unwrap();
        assert_eq!(back, sweep);
    }
}
