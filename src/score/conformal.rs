//! The statistics behind the decision thresholds' stated rates: conformal ranks, the
//! distribution of the rate a threshold actually gives, and the parametric tail used when
//! the normal scores are too few for a requested rate.
//!
//! With `n` exchangeable out-of-sample normal scores and a threshold `t` above `k` of them
//! (`k = #{s_i < t}`), a new good part scores at or above `t` with probability at most
//! `(n + 1 - k) / (n + 1)` on average over calibrations, whatever the score distribution.
//! For one calibration the rate is itself random: `1 - F(s_(k))`, which follows
//! `Beta(n + 1 - k, k)` for continuous scores; its quantiles bound the rate with a stated
//! confidence.

/// `ln Gamma(x)` for `x > 0` (Lanczos approximation, g = 7, 9 terms: about 15 digits).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, &c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularised incomplete beta function `I_x(a, b)` for `a, b > 0`, `x` in `[0, 1]`:
/// the `Beta(a, b)` distribution function at `x`.
pub(crate) fn regularised_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The continued fraction converges fast on this side of the mean; the symmetry
    // I_x(a, b) = 1 - I_{1-x}(b, a) covers the other.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

/// The continued fraction of the incomplete beta function, by the modified Lentz method.
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        // Even step.
        let numerator = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + numerator * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + numerator / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        // Odd step.
        let numerator = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + numerator * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + numerator / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The `p`-quantile of `Beta(a, b)` (`0 < p < 1`), by bisection on the distribution
/// function (monotone; 100 halvings reach f64 resolution).
pub fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if regularised_beta(mid, a, b) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The `p`-quantile of Student's t distribution with `dof` degrees of freedom
/// (`0.5 <= p < 1`), from `P(T <= t) = 1 - I_{dof / (dof + t^2)}(dof / 2, 1 / 2) / 2`.
pub(crate) fn student_t_quantile(p: f64, dof: f64) -> f64 {
    if p <= 0.5 {
        return 0.0;
    }
    let cdf = |t: f64| 1.0 - 0.5 * regularised_beta(dof / (dof + t * t), 0.5 * dof, 0.5);
    let mut hi = 1.0;
    while cdf(hi) < p && hi < 1e12 {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The 1-based rank `k = ceil((n + 1) * (1 - rate))` of the conformal threshold for
/// `rate` among `n` sorted scores; it may exceed `n` (then `n` scores cannot support the
/// rate: the smallest rate they support is `1 / (n + 1)`).
pub(crate) fn conformal_rank(n: usize, rate: f64) -> usize {
    // ceil((n + 1)(1 - rate)) = (n + 1) - floor((n + 1) rate); the tolerance keeps
    // products such as 100 * 0.01 from landing just below a whole number.
    let allowed_above = ((n + 1) as f64 * rate + 1e-9).floor() as usize;
    (n + 1).saturating_sub(allowed_above).max(1)
}

/// The rate of new good parts at or above a threshold that lies above `below` of the `n`
/// normal scores, on average over calibrations: `(n + 1 - below) / (n + 1)`.
pub(crate) fn expected_rate(below: usize, n: usize) -> f64 {
    (n + 1 - below.min(n)) as f64 / (n + 1) as f64
}

/// The `confidence` upper bound of that rate for one calibration: the `confidence`
/// quantile of `Beta(n + 1 - below, below)` (1 when the threshold is above no score).
pub(crate) fn rate_upper_bound(below: usize, n: usize, confidence: f64) -> f64 {
    let below = below.min(n);
    if below == 0 {
        return 1.0;
    }
    beta_quantile(confidence, (n + 1 - below) as f64, below as f64)
}

/// How many normal scores a rate needs: on average, `n >= 1 / rate - 1` (the conformal
/// rank then fits among the scores); with 95% confidence that the rate at the largest
/// score is at most `rate`, `n >= ln(0.05) / ln(1 - rate)`.
pub(crate) fn images_needed(rate: f64) -> (u64, u64) {
    if !(rate > 0.0 && rate < 1.0) {
        return (0, 0);
    }
    let average = (1.0 / rate - 1.0 - 1e-9).ceil().max(1.0);
    let confident = (0.05f64.ln() / (1.0 - rate).ln() - 1e-9).ceil().max(1.0);
    (average as u64, confident as u64)
}

/// The parametric threshold for `rate` when the scores are too few: the upper prediction
/// bound of one new score under a log-normal model of the scores (a normal model of their
/// logarithms, the usual shape of positive, right-skewed maxima),
/// `exp(m + t_{n-1}(1 - rate) * s * sqrt(1 + 1 / n))`, where `m` and `s` are the mean and
/// sample spread of the log scores. Under that model a new good score exceeds it with
/// probability exactly `rate` on average over calibrations; the t quantile and the
/// `sqrt(1 + 1 / n)` widen it for the few scores it was estimated from. `None` when a
/// score is not positive (no logarithm) or there are fewer than 2 scores.
pub(crate) fn log_normal_bound(scores: &[f32], rate: f64) -> Option<f64> {
    let n = scores.len();
    if n < 2 || scores.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
        return None;
    }
    let logs: Vec<f64> = scores.iter().map(|&s| f64::from(s).ln()).collect();
    let mean = logs.iter().sum::<f64>() / n as f64;
    let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let factor = student_t_quantile(1.0 - rate, (n - 1) as f64) * (1.0 + 1.0 / n as f64).sqrt();
    let bound = (mean + factor * var.sqrt()).exp();
    bound.is_finite().then_some(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_matches_factorials() {
        for (n, factorial) in [(1u32, 1.0f64), (2, 1.0), (5, 24.0), (11, 3_628_800.0)] {
            assert!((ln_gamma(n as f64) - factorial.ln()).abs() < 1e-10, "{n}");
        }
        // Gamma(1/2) = sqrt(pi).
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-10);
    }

    #[test]
    fn incomplete_beta_matches_closed_forms() {
        for &x in &[0.01, 0.2, 0.5, 0.77, 0.999] {
            // Beta(1, b): 1 - (1 - x)^b; Beta(a, 1): x^a.
            assert!((regularised_beta(x, 1.0, 7.0) - (1.0 - (1.0f64 - x).powi(7))).abs() < 1e-12);
            assert!((regularised_beta(x, 4.0, 1.0) - x.powi(4)).abs() < 1e-12);
            // Beta(2, 2): 3x^2 - 2x^3.
            assert!(
                (regularised_beta(x, 2.0, 2.0) - (3.0 * x * x - 2.0 * x.powi(3))).abs() < 1e-12
            );
        }
        assert_eq!(regularised_beta(0.0, 3.0, 2.0), 0.0);
        assert_eq!(regularised_beta(1.0, 3.0, 2.0), 1.0);
    }

    #[test]
    fn beta_quantile_inverts() {
        // The rate at the largest of n scores is Beta(1, n): its 95% quantile is
        // 1 - 0.05^(1/n).
        for n in [3usize, 12, 40, 199] {
            let q = beta_quantile(0.95, 1.0, n as f64);
            assert!(
                (q - (1.0 - 0.05f64.powf(1.0 / n as f64))).abs() < 1e-10,
                "{n}"
            );
        }
        for (a, b) in [(3.0, 9.0), (20.0, 180.0), (0.5, 0.5)] {
            let q = beta_quantile(0.3, a, b);
            assert!((regularised_beta(q, a, b) - 0.3).abs() < 1e-10);
        }
    }

    #[test]
    fn t_quantiles_match_tables() {
        // Standard tables: t_{0.975, 1} = 12.706, t_{0.99, 11} = 2.7181, t_{0.95, 30} =
        // 1.697, and the normal's 2.326 at 0.99 in the limit.
        for (p, dof, want) in [
            (0.975, 1.0, 12.706),
            (0.99, 11.0, 2.7181),
            (0.95, 30.0, 1.697),
            (0.99, 1e7, 2.326),
        ] {
            assert!(
                (student_t_quantile(p, dof) - want).abs() < 1e-3,
                "{p} {dof}"
            );
        }
    }

    #[test]
    fn ranks_rates_and_needs() {
        assert_eq!(conformal_rank(3, 0.01), 4); // beyond 3 scores
        assert_eq!(conformal_rank(98, 0.01), 99);
        assert_eq!(conformal_rank(99, 0.01), 99); // exactly 1 / (n + 1)
        assert_eq!(conformal_rank(199, 0.01), 198);
        assert_eq!(conformal_rank(19, 0.1), 18);
        assert_eq!(expected_rate(12, 12), 1.0 / 13.0);
        assert_eq!(expected_rate(0, 12), 1.0);
        assert_eq!(rate_upper_bound(0, 5, 0.95), 1.0);
        assert_eq!(images_needed(0.01), (99, 299));
        assert_eq!(images_needed(0.05), (19, 59));
        assert_eq!(images_needed(0.0), (0, 0));
    }

    #[test]
    fn log_normal_bound_covers_its_rate() {
        // Scores from a log-normal: over many calibrations of 12 scores, a new score
        // exceeds the 5% bound about 5% of the time.
        let mut rng = crate::predictor::rng::SplitMix64::new(3);
        let mut normal = || {
            // Box-Muller from two uniforms in (0, 1].
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let v = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            (-2.0 * (1.0 - u).ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        };
        let trials = 4000;
        let mut exceed = 0;
        for _ in 0..trials {
            let scores: Vec<f32> = (0..12)
                .map(|_| (1.0 + 0.3 * normal()).exp() as f32)
                .collect();
            let bound = log_normal_bound(&scores, 0.05).unwrap();
            if (1.0 + 0.3 * normal()).exp() >= bound {
                exceed += 1;
            }
        }
        let rate = exceed as f64 / trials as f64;
        // 5% +- 3.5 standard errors of 4000 draws.
        assert!((rate - 0.05).abs() < 0.012, "{rate}");
        assert_eq!(log_normal_bound(&[1.0, 0.0, 2.0], 0.05), None);
        assert_eq!(log_normal_bound(&[1.0], 0.05), None);
    }
}
