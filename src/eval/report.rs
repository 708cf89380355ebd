//! The evaluation report: per category and method the six detection numbers, the
//! training time and the scoring time, breakdowns by defect type and size, and the means
//! over categories; as JSON and as Markdown tables with the methods side by side.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::metrics::Metrics;

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
    /// Mean scoring wall time per test image in milliseconds (from decoded pixels to the
    /// smoothed map and image score; not decoding, not metrics).
    pub ms_per_image: f64,
    /// By defect type.
    pub by_type: Vec<Breakdown>,
    /// By defect size class (from `defects.json`; empty without it).
    pub by_size: Vec<Breakdown>,
    /// VarAD only: the last epoch's mean training loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_loss: Option<f64>,
    /// VarAD only: per level, the adapted tokens' mean per-channel variance over the raw
    /// tokens' after training (1 = no shrinkage; well below 1 = the adapters collapse the
    /// features towards what is easy to predict).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variance_ratios: Vec<f64>,
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
        s.push_str(
            "| category | method | P-AUROC | P-AP | P-F1max | I-AUROC | I-AP | I-F1max | train s | ms/img |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let mut row = |cat: &str, method: &str, p: &Metrics, i: &Metrics, t: f64, ms: f64| {
            let _ = writeln!(
                s,
                "| {cat} | {method} | {} | {} | {} | {} | {} | {} | {t:.1} | {ms:.1} |",
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
                    m.ms_per_image,
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
                    m.ms_per_image,
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
            by_type: vec![Breakdown {
                subset: "crack".into(),
                defective_images: 3,
                pixel_auroc: Some(0.9),
                pixel_ap: None,
                image_auroc: Some(1.0),
            }],
            by_size: Vec::new(),
            final_loss: None,
            variance_ratios: Vec::new(),
        }
    }

    #[test]
    fn means_skip_undefined_and_markdown_has_every_row() {
        let cat = |name: &str, a, b| CategoryReport {
            category: name.into(),
            train_images: 5,
            test_good: 2,
            test_defective: 3,
            methods: vec![result("VarAD", a), result("PatchCore", b)],
            montage: None,
        };
        let r = Report::new(
            "d".into(),
            "mvtec_ad".into(),
            vec!["VarAD".into(), "PatchCore".into()],
            vec![cat("a", Some(0.8), None), cat("b", Some(0.6), None)],
            serde_json::Value::Null,
        );
        assert!((r.mean[0].pixel.auroc.unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(r.mean[1].pixel.auroc, None);
        let md = r.to_markdown();
        assert!(md.contains("| a | VarAD | 80.0 | 50.0 | 25.0 |"), "{md}");
        assert!(md.contains("| **mean** | PatchCore | - |"), "{md}");
        assert!(
            md.contains("By defect type") && !md.contains("By defect size"),
            "{md}"
        );
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }
}
