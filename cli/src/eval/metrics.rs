//! Detection metrics: AUROC, average precision (scikit-learn's definition) and the best F1
//! over all thresholds, exact and with ties handled as those definitions require.
//!
//! Scores are kept in two plain `Vec<f32>`, one for positives and one for negatives: the
//! label is which vector a score is in, so a pixel costs 4 bytes (a category of 40
//! one-megapixel images is 160 MB) and no per-pixel object is ever made. Each vector is
//! sorted once; one merged walk from the highest score down visits every distinct
//! threshold, taking all scores equal to it (from both vectors) as one group, which is
//! exactly how tied scores enter a ROC or precision-recall curve.
//!
//! The harness keeps one sorted set per test image; the metrics of any group of images
//! (all of them, one defect type with the good ones) merge those sets' sorted runs through
//! a heap ([`union_metrics`]) instead of copying them, so memory stays at 4 bytes a pixel.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use varad::{Error, Result};

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
    /// Both vectors are in descending order (set by [`ScoreSet::sort`], cleared by adding).
    sorted: bool,
}

impl ScoreSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one score with its label (`true` = anomalous).
    pub fn push(&mut self, score: f32, positive: bool) {
        self.sorted = false;
        if positive {
            self.positives.push(score);
        } else {
            self.negatives.push(score);
        }
    }

    /// Adds a map's pixels, labelled by `mask` (non-zero = anomalous, same length), or all
    /// negative when `mask` is `None`.
    pub fn extend_map(&mut self, map: &[f32], mask: Option<&[u8]>) -> Result<()> {
        self.sorted = false;
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
        self.sorted = false;
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

    /// Sorts the scores in place (descending), so that [`union_metrics`] can merge this
    /// set with others. [`varad::ErrorKind::InvalidArgument`] if a score is NaN: it has no
    /// place on a curve.
    pub fn sort(&mut self) -> Result<()> {
        if self.sorted {
            return Ok(());
        }
        if self
            .positives
            .par_iter()
            .chain(self.negatives.par_iter())
            .any(|v| v.is_nan())
        {
            return Err(Error::invalid_argument("a score is NaN"));
        }
        // `total_cmp` would order -0.0 before 0.0 and split a tie, so compare with
        // `partial_cmp`, which is total once NaN is excluded.
        let descending = |a: &f32, b: &f32| b.partial_cmp(a).expect("no NaN");
        self.positives.par_sort_unstable_by(descending);
        self.negatives.par_sort_unstable_by(descending);
        self.sorted = true;
        Ok(())
    }

    /// The metrics of the set (sorting it first).
    pub fn metrics(&mut self) -> Result<Metrics> {
        self.sort()?;
        union_metrics(&[self])
    }
}

/// The head of one sorted run in the merge: its current value and which run it is.
struct Head {
    value: f32,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        // Runs hold no NaN (checked when sorted); the run breaks ties so the order is total.
        self.value
            .partial_cmp(&other.value)
            .unwrap_or(Ordering::Equal)
            .then(other.run.cmp(&self.run))
    }
}

/// The metrics of the union of sorted sets, merged without copying their scores.
/// [`varad::ErrorKind::InvalidArgument`] if a set was changed after [`ScoreSet::sort`].
pub fn union_metrics(sets: &[&ScoreSet]) -> Result<Metrics> {
    if sets.iter().any(|s| !s.sorted) {
        return Err(Error::invalid_argument(
            "union_metrics needs sorted score sets (call ScoreSet::sort)",
        ));
    }
    // Every non-empty vector is a run; even runs are a set's positives, odd its negatives.
    let runs: Vec<&[f32]> = sets
        .iter()
        .flat_map(|s| [s.positives.as_slice(), s.negatives.as_slice()])
        .collect();
    let n_pos: usize = sets.iter().map(|s| s.positives.len()).sum();
    let n_neg: usize = sets.iter().map(|s| s.negatives.len()).sum();
    if n_pos == 0 {
        return Ok(Metrics::default());
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    let mut next = vec![0usize; runs.len()];
    let mut heap: BinaryHeap<Head> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(run, r)| Head { value: r[0], run })
        .collect();
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut auc, mut ap, mut best_f1) = (0.0f64, 0.0f64, 0.0f64);
    let mut group = Vec::new();
    while let Some(top) = heap.pop() {
        // One threshold: every score equal to the largest one left, from every run.
        let t = top.value;
        group.clear();
        group.push(top.run);
        while heap.peek().is_some_and(|h| h.value == t) {
            group.push(heap.pop().expect("peeked").run);
        }
        let (tp0, fp0) = (tp as f64, fp as f64);
        for &run in &group {
            let r = runs[run];
            let start = next[run];
            let end = start + r[start..].iter().take_while(|&&v| v == t).count();
            if run % 2 == 0 {
                tp += end - start;
            } else {
                fp += end - start;
            }
            next[run] = end;
            if end < r.len() {
                heap.push(Head { value: r[end], run });
            }
        }
        let (tpf, fpf) = (tp as f64, fp as f64);
        // Trapezoid between the ROC points before and after this group.
        auc += (fpf - fp0) * (tpf + tp0) / 2.0;
        ap += (tpf - tp0) / p * (tpf / (tpf + fpf));
        best_f1 = best_f1.max(2.0 * tpf / (tpf + fpf + p));
    }
    Ok(Metrics {
        auroc: (n_neg > 0).then(|| auc / (p * n)),
        ap: Some(ap),
        max_f1: Some(best_f1),
    })
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
    use varad::predictor::rng::SplitMix64;

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
                    let positive = rng.next_u64().is_multiple_of(3);
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
    fn a_union_of_sorted_sets_equals_the_whole() {
        let mut rng = SplitMix64::new(11);
        let samples: Vec<(f32, bool)> = (0..2000)
            .map(|_| {
                let positive = rng.next_u64().is_multiple_of(4);
                (
                    (rng.next_u64() % 50) as f32 + if positive { 10.0 } else { 0.0 },
                    positive,
                )
            })
            .collect();
        let whole = metrics(&samples).unwrap();
        let mut parts: Vec<ScoreSet> = (0..7).map(|_| ScoreSet::new()).collect();
        for (i, &(s, l)) in samples.iter().enumerate() {
            parts[i * 7 / samples.len()].push(s, l);
        }
        assert!(union_metrics(&parts.iter().collect::<Vec<_>>()).is_err());
        parts.push(ScoreSet::new()); // an empty part changes nothing
        for p in &mut parts {
            p.sort().unwrap();
        }
        let merged = union_metrics(&parts.iter().collect::<Vec<_>>()).unwrap();
        assert!(
            close(merged.auroc, whole.auroc.unwrap()),
            "{merged:?} {whole:?}"
        );
        assert!(close(merged.ap, whole.ap.unwrap()), "{merged:?} {whole:?}");
        assert!(
            close(merged.max_f1, whole.max_f1.unwrap()),
            "{merged:?} {whole:?}"
        );
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
