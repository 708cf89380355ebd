//! Detection metrics: AUROC, average precision (scikit-learn's definition) and the best F1
//! over all thresholds, exact and with ties handled as those definitions require.
//!
//! Scores are kept in two plain `Vec<f32>`, one for positives and one for negatives: the
//! label is which vector a score is in, so a pixel costs 4 bytes (a category of 40
//! one-megapixel images is 160 MB) and no per-pixel object is ever made. Each vector is
//! sorted once; one merged walk from the highest score down visits every distinct
//! threshold, taking all scores equal to it (from both vectors) as one group, which is
//! exactly how tied scores enter a ROC or precision-recall curve.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// AUROC, AP and max-F1 of one set of scored samples. `None` where the metric is undefined
/// (no positives, or for AUROC no negatives).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// Area under the ROC curve (trapezoidal, so a tie between a positive and a negative
    /// counts one half, as in the Mann-Whitney statistic).
    pub auroc: Option<f64>,
    /// Average precision `sum_k (R_k - R_{k-1}) P_k` over the distinct thresholds from
    /// the highest down, without interpolation (`sklearn.metrics.average_precision_score`).
    pub ap: Option<f64>,
    /// The largest F1 `2 TP / (2 TP + FP + FN)` over all thresholds "score >= t".
    pub max_f1: Option<f64>,
}

/// Scores split by label. Push scores, then [`ScoreSet::metrics`].
#[derive(Debug, Clone, Default)]
pub struct ScoreSet {
    positives: Vec<f32>,
    negatives: Vec<f32>,
}

impl ScoreSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one score with its label (`true` = anomalous).
    pub fn push(&mut self, score: f32, positive: bool) {
        if positive {
            self.positives.push(score);
        } else {
            self.negatives.push(score);
        }
    }

    /// Adds a map's pixels, labelled by `mask` (non-zero = anomalous, same length), or all
    /// negative when `mask` is `None`.
    pub fn extend_map(&mut self, map: &[f32], mask: Option<&[u8]>) -> Result<()> {
        match mask {
            None => self.negatives.extend_from_slice(map),
            Some(mask) => {
                if mask.len() != map.len() {
                    return Err(Error::invalid_argument(format!(
                        "a map of {} pixels with a mask of {}",
                        map.len(),
                        mask.len()
                    )));
                }
                for (&v, &m) in map.iter().zip(mask) {
                    self.push(v, m != 0);
                }
            }
        }
        Ok(())
    }

    /// Adds every score of `other`.
    pub fn append(&mut self, other: &ScoreSet) {
        self.positives.extend_from_slice(&other.positives);
        self.negatives.extend_from_slice(&other.negatives);
    }

    /// Positive samples.
    pub fn positives(&self) -> usize {
        self.positives.len()
    }

    /// Negative samples.
    pub fn negatives(&self) -> usize {
        self.negatives.len()
    }

    /// Bytes held by the scores.
    pub fn bytes(&self) -> usize {
        (self.positives.capacity() + self.negatives.capacity()) * 4
    }

    /// The metrics of the set. Sorts the scores in place (so a second call is cheap).
    /// [`crate::ErrorKind::InvalidArgument`] if a score is NaN: it has no place on a curve.
    pub fn metrics(&mut self) -> Result<Metrics> {
        if self
            .positives
            .par_iter()
            .chain(self.negatives.par_iter())
            .any(|v| v.is_nan())
        {
            return Err(Error::invalid_argument("a score is NaN"));
        }
        // Descending; `total_cmp` would order -0.0 before 0.0 and split a tie, so compare
        // with `partial_cmp`, which is total once NaN is excluded.
        let descending = |a: &f32, b: &f32| b.partial_cmp(a).expect("no NaN");
        self.positives.par_sort_unstable_by(descending);
        self.negatives.par_sort_unstable_by(descending);
        Ok(from_sorted(&self.positives, &self.negatives))
    }
}

/// The metrics from scores sorted in descending order.
fn from_sorted(pos: &[f32], neg: &[f32]) -> Metrics {
    let (n_pos, n_neg) = (pos.len() as f64, neg.len() as f64);
    if pos.is_empty() {
        return Metrics::default();
    }
    let (mut i, mut j) = (0usize, 0usize);
    let (mut auc, mut ap, mut best_f1) = (0.0f64, 0.0f64, 0.0f64);
    while i < pos.len() || j < neg.len() {
        // The next threshold: the largest score not yet taken.
        let t = match (pos.get(i), neg.get(j)) {
            (Some(&p), Some(&n)) => p.max(n),
            (Some(&p), None) => p,
            (None, Some(&n)) => n,
            (None, None) => unreachable!(),
        };
        let (tp0, fp0) = (i as f64, j as f64);
        while i < pos.len() && pos[i] == t {
            i += 1;
        }
        while j < neg.len() && neg[j] == t {
            j += 1;
        }
        let (tp, fp) = (i as f64, j as f64);
        // Trapezoid between the ROC points before and after this group.
        auc += (fp - fp0) * (tp + tp0) / 2.0;
        ap += (tp - tp0) / n_pos * (tp / (tp + fp));
        best_f1 = best_f1.max(2.0 * tp / (tp + fp + n_pos));
    }
    Metrics {
        auroc: (n_neg > 0.0).then(|| auc / (n_pos * n_neg)),
        ap: Some(ap),
        max_f1: Some(best_f1),
    }
}

/// The metrics of `(score, label)` samples (a convenience over [`ScoreSet`]).
pub fn metrics(samples: &[(f32, bool)]) -> Result<Metrics> {
    let mut set = ScoreSet::new();
    for &(s, l) in samples {
        set.push(s, l);
    }
    set.metrics()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::rng::SplitMix64;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn hand_computed_cases() {
        // Perfect separation.
        let m = metrics(&[(0.9, true), (0.8, true), (0.1, false), (0.2, false)]).unwrap();
        assert_eq!((m.auroc, m.ap, m.max_f1), (Some(1.0), Some(1.0), Some(1.0)));
        // sklearn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75,
        // average_precision_score(...) = 0.8333..., best F1 at t=0.35: P=2/3, R=1 -> 0.8.
        let m = metrics(&[(0.1, false), (0.4, false), (0.35, true), (0.8, true)]).unwrap();
        assert!(close(m.auroc, 0.75), "{m:?}");
        assert!(close(m.ap, 5.0 / 6.0), "{m:?}");
        assert!(close(m.max_f1, 0.8), "{m:?}");
        // All scores tied: AUROC 0.5, AP = precision at the only threshold = 1/2.
        let m = metrics(&[(1.0, true), (1.0, false), (1.0, true), (1.0, false)]).unwrap();
        assert!(close(m.auroc, 0.5) && close(m.ap, 0.5), "{m:?}");
        assert!(close(m.max_f1, 2.0 / 3.0), "{m:?}");
        // A tie across labels: roc_auc_score([1,0,1],[0.5,0.5,0.9]) = 0.75,
        // average_precision_score = 0.5*1 + 0.5*(2/3) = 0.8333...
        let m = metrics(&[(0.5, true), (0.5, false), (0.9, true)]).unwrap();
        assert!(close(m.auroc, 0.75) && close(m.ap, 5.0 / 6.0), "{m:?}");
        // -0.0 and 0.0 are one score.
        let m = metrics(&[(-0.0, true), (0.0, false)]).unwrap();
        assert!(close(m.auroc, 0.5), "{m:?}");
    }

    #[test]
    fn undefined_cases_and_nan() {
        let m = metrics(&[(0.1, false), (0.2, false)]).unwrap();
        assert_eq!(m, Metrics::default());
        let m = metrics(&[(0.1, true), (0.2, true)]).unwrap();
        assert_eq!((m.auroc, m.ap, m.max_f1), (None, Some(1.0), Some(1.0)));
        assert!(metrics(&[(f32::NAN, true), (0.2, false)]).is_err());
    }

    /// The definitions, evaluated the slow, obvious way.
    fn slow(samples: &[(f32, bool)]) -> (f64, f64, f64) {
        let pos: Vec<f32> = samples.iter().filter(|s| s.1).map(|s| s.0).collect();
        let neg: Vec<f32> = samples.iter().filter(|s| !s.1).map(|s| s.0).collect();
        let mut wins = 0.0;
        for &p in &pos {
            for &n in &neg {
                wins += if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let auroc = wins / (pos.len() * neg.len()) as f64;
        let mut thresholds: Vec<f32> = samples.iter().map(|s| s.0).collect();
        thresholds.sort_by(|a, b| b.partial_cmp(a).unwrap());
        thresholds.dedup();
        let (mut ap, mut last_recall, mut f1) = (0.0, 0.0, 0.0f64);
        for t in thresholds {
            let tp = pos.iter().filter(|&&p| p >= t).count() as f64;
            let fp = neg.iter().filter(|&&n| n >= t).count() as f64;
            let recall = tp / pos.len() as f64;
            ap += (recall - last_recall) * tp / (tp + fp);
            last_recall = recall;
            let fnn = pos.len() as f64 - tp;
            f1 = f1.max(2.0 * tp / (2.0 * tp + fp + fnn));
        }
        (auroc, ap, f1)
    }

    #[test]
    fn agrees_with_the_slow_twin_on_random_data_with_ties() {
        let mut rng = SplitMix64::new(7);
        for case in 0..40 {
            let n = 5 + (rng.next_u64() % 300) as usize;
            let levels = 1 + (rng.next_u64() % 20) as u32; // few levels: many ties
            let samples: Vec<(f32, bool)> = (0..n)
                .map(|_| {
                    let positive = rng.next_u64() % 3 == 0;
                    let level = (rng.next_u64() % levels as u64) as f32;
                    (level + if positive { 2.0 } else { 0.0 }, positive)
                })
                .collect();
            if !samples.iter().any(|s| s.1) || samples.iter().all(|s| s.1) {
                continue;
            }
            let m = metrics(&samples).unwrap();
            let (auroc, ap, f1) = slow(&samples);
            assert!(close(m.auroc, auroc), "case {case}: {m:?} vs {auroc}");
            assert!(
                (m.ap.unwrap() - ap).abs() < 1e-9,
                "case {case}: {m:?} vs {ap}"
            );
            assert!(close(m.max_f1, f1), "case {case}: {m:?} vs {f1}");
        }
    }

    #[test]
    fn maps_with_masks() {
        let mut set = ScoreSet::new();
        set.extend_map(&[0.1, 0.9, 0.2, 0.8], Some(&[0, 255, 0, 1]))
            .unwrap();
        set.extend_map(&[0.3, 0.3], None).unwrap();
        assert_eq!((set.positives(), set.negatives()), (2, 4));
        assert!(close(set.metrics().unwrap().auroc, 1.0));
        assert!(set.extend_map(&[0.1], Some(&[0, 0])).is_err());
    }
}
