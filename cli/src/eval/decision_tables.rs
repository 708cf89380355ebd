//! Decision tables: what a calibration promised about good parts against what the test
//! split gave, for one trained method, one choice of its out-of-sample normal scores and
//! one pair of requested rates.
//!
//! A trained method keeps its normal scores by source ([`NormalPool`]), so re-fitting its
//! thresholds for another pool or another rate is instant: the same trained model is
//! judged calibrated on its cross-fitted scores alone and on those plus the held-out
//! images, at the configured rates and at a small grid of review rates.
//!
//! A promise is consistent with what was observed when the promised (expected) rate lies
//! inside the Clopper-Pearson interval of the observed count of good parts
//! ([`binomial_interval`]): equivalently, the observed count is not significantly far
//! from the promise in a two-sided binomial test at the same level.

use serde::{Deserialize, Serialize};

use super::report::{Decisions, Tally};
use varad::score::{beta_quantile, Calibration, NormalPool, RateReport};

/// The review rates every method is also judged at, beside its configured rate.
pub const REVIEW_RATE_GRID: [f64; 3] = [0.01, 0.05, 0.1];

/// The confidence of the observed rates' intervals.
pub const INTERVAL_CONFIDENCE: f64 = 0.95;

/// Which of a trained method's out-of-sample normal scores a calibration is fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolChoice {
    /// The training images' cross-fitted scores alone (the held-out images reduced to 0;
    /// the model is the same, trained without them).
    CrossFitted,
    /// The cross-fitted scores and the held-out images' scores (the whole pool).
    CrossFittedAndHeldOut,
}

impl PoolChoice {
    /// Both, in report order.
    pub const ALL: [PoolChoice; 2] = [PoolChoice::CrossFitted, PoolChoice::CrossFittedAndHeldOut];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            PoolChoice::CrossFitted => "cross-fitted only",
            PoolChoice::CrossFittedAndHeldOut => "cross-fitted + held-out",
        }
    }

    /// The part of `pool` this choice keeps.
    pub fn select(self, pool: &NormalPool) -> NormalPool {
        match self {
            PoolChoice::CrossFitted => NormalPool {
                held_out: Vec::new(),
                ..pool.clone()
            },
            PoolChoice::CrossFittedAndHeldOut => pool.clone(),
        }
    }
}

/// One threshold's promise about good parts against the good test parts at or above it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateCheck {
    /// The rate asked for.
    pub requested: f64,
    /// The rate the calibration report promised ([`RateReport::expected`]); in a sum over
    /// categories, the mean weighted by good test parts.
    pub expected: f64,
    /// The report's 95% upper bound of the rate ([`RateReport::upper_bound`]); in a sum,
    /// the weighted mean.
    pub upper_bound: f64,
    /// Whether the threshold was extrapolated by the log-normal tail (the promise rests
    /// on that assumption); in a sum, whether any category's was.
    pub extrapolated: bool,
    /// Good test parts at or above the threshold (for review: reviewed or failed).
    pub observed: usize,
    /// Good test parts.
    pub good: usize,
    /// The Clopper-Pearson interval of `observed / good` at [`INTERVAL_CONFIDENCE`].
    pub interval: [f64; 2],
    /// Whether `expected` lies inside `interval`.
    pub consistent: bool,
}

impl RateCheck {
    fn new(promise: &RateReport, observed: usize, good: usize) -> RateCheck {
        RateCheck::from_parts(
            promise.requested,
            promise.expected,
            promise.upper_bound,
            promise.extrapolated,
            observed,
            good,
        )
    }

    fn from_parts(
        requested: f64,
        expected: f64,
        upper_bound: f64,
        extrapolated: bool,
        observed: usize,
        good: usize,
    ) -> RateCheck {
        let interval = binomial_interval(observed, good, INTERVAL_CONFIDENCE);
        RateCheck {
            requested,
            expected,
            upper_bound,
            extrapolated,
            observed,
            good,
            interval,
            consistent: interval[0] <= expected && expected <= interval[1],
        }
    }

    /// `observed / good` (`None` without good parts).
    pub fn observed_rate(&self) -> Option<f64> {
        (self.good > 0).then(|| self.observed as f64 / self.good as f64)
    }
}

/// The decisions of one method at one calibration, and what that calibration promised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionTable {
    /// The normal scores the thresholds were fitted on.
    pub pool: PoolChoice,
    /// Whether the rates are the configured ones (else a grid point of the review rate).
    pub configured: bool,
    /// Normal scores fitted on (`n`); in a sum over categories, the sum.
    pub normal_scores: usize,
    /// Of them, cross-fitted training images' scores.
    pub cross_fitted: usize,
    /// Of them, held-out images' scores.
    pub held_out: usize,
    /// The review and fail thresholds (`None` in a sum over categories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<[f32; 2]>,
    /// The test images' decisions.
    pub decisions: Decisions,
    /// The review threshold's promise: good parts reviewed or failed.
    pub review: RateCheck,
    /// The fail threshold's promise: good parts failed.
    pub fail: RateCheck,
}

impl DecisionTable {
    /// Whether both promises are consistent with what was observed.
    pub fn consistent(&self) -> bool {
        self.review.consistent && self.fail.consistent
    }

    /// The key a table is matched by across categories.
    fn key(&self) -> (PoolChoice, bool, u64, u64) {
        (
            self.pool,
            self.configured,
            self.review.requested.to_bits(),
            self.fail.requested.to_bits(),
        )
    }
}

/// A method's decision tables, and why any asked-for table could not be made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionTables {
    /// Per pool, the configured rates first, then the grid's other review rates.
    pub tables: Vec<DecisionTable>,
    /// One line per table that could not be fitted (no cross-fitted scores, a rate the
    /// configuration refuses to extrapolate to, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
}

impl DecisionTables {
    /// Whether there is neither a table nor a note.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.unavailable.is_empty()
    }
}

/// The decision tables of a method calibrated as `calibration` (its configuration, pool
/// and pixel threshold), re-fitted per [`PoolChoice`] and per review rate (the configured
/// one and [`REVIEW_RATE_GRID`]), applied to the test images' `scores` (`anomalous[i]`
/// says whether image `i` is defective).
pub fn decision_tables(
    calibration: &Calibration,
    scores: &[f32],
    anomalous: &[bool],
) -> DecisionTables {
    let configured = *calibration.config();
    let mut rates = vec![configured.target_false_reject_rate];
    rates.extend(
        REVIEW_RATE_GRID
            .iter()
            .filter(|&&r| r != configured.target_false_reject_rate),
    );
    let mut out = DecisionTables::default();
    for choice in PoolChoice::ALL {
        let pool = choice.select(calibration.pool());
        if choice == PoolChoice::CrossFitted && pool.cross_fitted.is_empty() {
            out.unavailable
                .push(format!("{}: no cross-fitted scores", choice.name()));
            continue;
        }
        for (i, &rate) in rates.iter().enumerate() {
            let config = varad::score::CalibrationConfig {
                target_false_reject_rate: rate,
                ..configured
            };
            // Known-defective examples, if the method had any, act on every re-fit as on
            // the method's own calibration.
            let fitted = Calibration::fit_pool(&pool, calibration.pixel_threshold(), &config)
                .and_then(|mut c| {
                    c.set_known_defects(calibration.known_defects())?;
                    Ok(c)
                });
            match fitted {
                Ok(c) => out
                    .tables
                    .push(table(&c, choice, i == 0, scores, anomalous)),
                Err(e) => out.unavailable.push(format!(
                    "{} at review rate {rate}: {}",
                    choice.name(),
                    e.message()
                )),
            }
        }
    }
    out
}

fn table(
    c: &Calibration,
    pool: PoolChoice,
    configured: bool,
    scores: &[f32],
    anomalous: &[bool],
) -> DecisionTable {
    let mut decisions = Decisions::default();
    for (&s, &bad) in scores.iter().zip(anomalous) {
        let tally: &mut Tally = if bad {
            &mut decisions.defective
        } else {
            &mut decisions.good
        };
        tally.add(c.decide(s));
    }
    let report = c.report();
    let g = decisions.good;
    DecisionTable {
        pool,
        configured,
        normal_scores: report.normal_scores,
        cross_fitted: report.cross_fitted,
        held_out: report.held_out,
        thresholds: Some([c.review_threshold(), c.fail_threshold()]),
        decisions,
        review: RateCheck::new(&report.review, g.review + g.fail, g.total()),
        fail: RateCheck::new(&report.fail, g.fail, g.total()),
    }
}

/// The tables of every category summed: per (pool, rates) present in every category, the
/// decisions and normal-score counts summed, the promised rates averaged weighted by the
/// good test parts, and the observed rates' intervals recomputed over the sum.
pub fn sum_tables(per_category: &[&[DecisionTable]]) -> Vec<DecisionTable> {
    let Some((first, rest)) = per_category.split_first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter_map(|t| {
            let mut all = vec![t];
            for tables in rest {
                all.push(tables.iter().find(|o| o.key() == t.key())?);
            }
            let sum_check = |pick: fn(&DecisionTable) -> &RateCheck| {
                let good: usize = all.iter().map(|t| pick(t).good).sum();
                let weighted = |value: fn(&RateCheck) -> f64| {
                    let w: f64 = all
                        .iter()
                        .map(|t| value(pick(t)) * pick(t).good as f64)
                        .sum();
                    w / good.max(1) as f64
                };
                RateCheck::from_parts(
                    pick(t).requested,
                    weighted(|r| r.expected),
                    weighted(|r| r.upper_bound),
                    all.iter().any(|t| pick(t).extrapolated),
                    all.iter().map(|t| pick(t).observed).sum(),
                    good,
                )
            };
            Some(DecisionTable {
                pool: t.pool,
                configured: t.configured,
                normal_scores: all.iter().map(|t| t.normal_scores).sum(),
                cross_fitted: all.iter().map(|t| t.cross_fitted).sum(),
                held_out: all.iter().map(|t| t.held_out).sum(),
                thresholds: None,
                decisions: all.iter().map(|t| t.decisions).sum(),
                review: sum_check(|t| &t.review),
                fail: sum_check(|t| &t.fail),
            })
        })
        .collect()
}

/// The Clopper-Pearson interval of a binomial proportion: `successes` of `trials`, at
/// `confidence` (two-sided, equal tails): the Beta quantiles `B((1-c)/2; x, n-x+1)` (0 for
/// no success) and `B((1+c)/2; x+1, n-x)` (1 for all successes); `[0, 1]` without trials.
pub fn binomial_interval(successes: usize, trials: usize, confidence: f64) -> [f64; 2] {
    let (x, n) = (successes.min(trials), trials);
    if n == 0 {
        return [0.0, 1.0];
    }
    let tail = (1.0 - confidence) / 2.0;
    let lower = if x == 0 {
        0.0
    } else {
        beta_quantile(tail, x as f64, (n - x + 1) as f64)
    };
    let upper = if x == n {
        1.0
    } else {
        beta_quantile(1.0 - tail, (x + 1) as f64, (n - x) as f64)
    };
    [lower, upper]
}

#[cfg(test)]
mod tests {
    use super::*;
    use varad::score::CalibrationConfig;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn the_binomial_interval_matches_closed_forms_and_tables() {
        // No success: the upper end solves (1 - p)^n = 0.025.
        for n in [1, 3, 10, 40] {
            let [lo, hi] = binomial_interval(0, n, 0.95);
            assert_eq!(lo, 0.0);
            assert!(close(hi, 1.0 - 0.025f64.powf(1.0 / n as f64), 1e-12), "{n}");
            // All successes: the mirror image.
            let [lo, hi] = binomial_interval(n, n, 0.95);
            assert_eq!(hi, 1.0);
            assert!(close(lo, 0.025f64.powf(1.0 / n as f64), 1e-12), "{n}");
        }
        // R: binom.test(5, 10)$conf.int = 0.1870860 0.8129140.
        let [lo, hi] = binomial_interval(5, 10, 0.95);
        assert!(
            close(lo, 0.187086, 1e-6) && close(hi, 0.812914, 1e-6),
            "{lo} {hi}"
        );
        // Symmetric in successes and failures.
        let [a, b] = binomial_interval(3, 40, 0.95);
        let [c, d] = binomial_interval(37, 40, 0.95);
        assert!(close(a, 1.0 - d, 1e-12) && close(b, 1.0 - c, 1e-12));
        assert!(a < 3.0 / 40.0 && 3.0 / 40.0 < b);
        // Wider at higher confidence; everything without trials.
        let [e, f] = binomial_interval(3, 40, 0.99);
        assert!(e < a && f > b);
        assert_eq!(binomial_interval(0, 0, 0.95), [0.0, 1.0]);
    }

    #[test]
    fn the_tables_refit_the_pool_and_add_up() {
        let pool = NormalPool {
            cross_fitted: (1..=30).map(|i| i as f32).collect(),
            held_out: vec![31.0, 32.0, 33.0],
            folds: 5,
        };
        let config = CalibrationConfig {
            target_false_reject_rate: 0.05,
            ..Default::default()
        };
        let calibration = Calibration::fit_pool(&pool, 40.0, &config).unwrap();
        // 20 good parts: 16 low, 2 between the thresholds, 2 far out; 4 defective.
        let mut scores: Vec<f32> = (0..16).map(|i| 1.0 + i as f32).collect();
        scores.extend([33.5, 33.5, 1e6, 1e6, 0.5, 33.5, 1e6, 1e6]);
        let anomalous: Vec<bool> = (0..24).map(|i| i >= 20).collect();
        let t = decision_tables(&calibration, &scores, &anomalous);
        assert!(t.unavailable.is_empty(), "{:?}", t.unavailable);
        // 2 pools x (the configured 0.05, then 0.01 and 0.1).
        assert_eq!(t.tables.len(), 6);
        let whole = &t.tables[3];
        assert_eq!(
            (whole.pool, whole.configured, whole.review.requested),
            (PoolChoice::CrossFittedAndHeldOut, true, 0.05)
        );
        assert_eq!(
            (whole.normal_scores, whole.cross_fitted, whole.held_out),
            (33, 30, 3)
        );
        // The configured whole-pool table is the calibration's own.
        assert_eq!(
            whole.thresholds,
            Some([calibration.review_threshold(), calibration.fail_threshold()])
        );
        let cross = &t.tables[0];
        assert_eq!((cross.normal_scores, cross.held_out), (30, 0));
        for table in &t.tables {
            let d = table.decisions;
            assert_eq!((d.good.total(), d.defective.total()), (20, 4));
            assert_eq!(table.review.observed, d.good.review + d.good.fail);
            assert_eq!(table.fail.observed, d.good.fail);
        }
        // 4 of 20 good parts flagged against a promised 1/34: outside [5.7%, 43.7%].
        assert_eq!((whole.review.observed, whole.fail.observed), (4, 2));
        assert!(!whole.review.consistent);
        assert_eq!(whole.decisions.defective.pass, 1);
        // Summed over two identical categories: counts double, promises stay.
        let sum = sum_tables(&[&t.tables, &t.tables]);
        assert_eq!(sum.len(), 6);
        assert_eq!(sum[3].decisions.good.total(), 40);
        assert_eq!(sum[3].normal_scores, 66);
        assert!(close(sum[3].review.expected, whole.review.expected, 1e-12));
        assert_eq!(sum[3].thresholds, None);
        // A table missing from one category is left out of the sum.
        assert_eq!(sum_tables(&[&t.tables, &t.tables[3..]]).len(), 3);
        // Known defects caught by the method's calibration are caught by every re-fit.
        let mut catching = Calibration::fit_pool(
            &pool,
            40.0,
            &CalibrationConfig {
                catch_known_defects: true,
                ..config
            },
        )
        .unwrap();
        catching.set_known_defects(&[20.5]).unwrap();
        let t = decision_tables(&catching, &scores, &anomalous);
        assert!(t.tables.iter().all(|t| t.thresholds.unwrap()[0] == 20.5));
    }

    #[test]
    fn a_pool_without_cross_fitted_scores_says_so() {
        let pool = NormalPool::held_out(&[1.0, 2.0, 3.0]);
        let c = Calibration::fit_pool(&pool, 3.0, &CalibrationConfig::default()).unwrap();
        let t = decision_tables(&c, &[1.0, 9.0], &[false, true]);
        // The configured 1% is a grid point: 3 rates.
        assert_eq!(t.tables.len(), 3);
        assert!(t
            .tables
            .iter()
            .all(|t| t.pool == PoolChoice::CrossFittedAndHeldOut));
        assert_eq!(t.unavailable, ["cross-fitted only: no cross-fitted scores"]);
    }
}
