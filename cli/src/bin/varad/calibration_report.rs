//! The calibration report as `varad train` and `varad info` print it: how many good
//! images the thresholds rest on and what each threshold promises about good parts.

use varad::score::{CalibrationReport, RateReport};

/// A rate as a percentage with enough digits for small rates (0.1%, 0.01%).
fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if p == 0.0 || p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{}%", format_significant(p, 2))
    }
}

/// `value` with `digits` significant digits, without trailing zeros.
fn format_significant(value: f64, digits: i32) -> String {
    let decimals = (digits - 1 - value.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// One threshold's line: what was asked, where the threshold is, what to expect.
fn rate_line(name: &str, r: &RateReport) -> String {
    let asked = if r.requested > 0.0 {
        format!("requested {}", percent(r.requested))
    } else {
        "review band rule (no rate requested)".to_string()
    };
    let expected = if r.extrapolated {
        format!(
            "expected {} (extrapolated: assumes a log-normal tail)",
            percent(r.expected)
        )
    } else {
        format!("expected {} (distribution-free)", percent(r.expected))
    };
    let mut line = format!(
        "  {name}: {asked}, threshold {:.4}, {expected}, 95% upper bound {}",
        r.threshold,
        percent(r.upper_bound)
    );
    if r.requested > 0.0 {
        line += &format!(
            "; the rate needs {} good images ({} for 95% confidence)",
            r.images_needed, r.images_needed_confident
        );
    }
    line
}

/// The report as lines of text, without a trailing newline.
pub fn format(r: &CalibrationReport) -> String {
    let mut lines = vec![format!(
        "calibration: {} good-image scores ({} training images cross-fitted in {} folds, {} held out); without extrapolating rates down to {}",
        r.normal_scores,
        r.cross_fitted,
        r.folds,
        r.held_out,
        percent(r.achievable_rate)
    )];
    lines.push(rate_line("review", &r.review));
    lines.push(rate_line("fail", &r.fail));
    if r.known_defects > 0 {
        lines.push(format!(
            "  known defects: {} scored, {} escape (pass at the review threshold)",
            r.known_defects, r.escapes
        ));
    }
    if let Some(before) = r.review_lowered_from {
        lines.push(format!(
            "  review threshold lowered from {before:.4} to {:.4} to catch the known defects",
            r.review.threshold
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(requested: f64, extrapolated: bool) -> RateReport {
        RateReport {
            requested,
            threshold: 2.5,
            expected: requested,
            conformal_rate: 0.25,
            upper_bound: 0.6316,
            extrapolated,
            images_needed: 99,
            images_needed_confident: 299,
        }
    }

    #[test]
    fn rates_read_as_percentages() {
        assert_eq!(percent(0.01), "1.0%");
        assert_eq!(percent(0.001), "0.1%");
        assert_eq!(percent(0.00025), "0.025%");
        assert_eq!(percent(0.25), "25.0%");
        assert_eq!(percent(0.0), "0.0%");
    }

    #[test]
    fn every_figure_is_in_the_text() {
        let report = CalibrationReport {
            normal_scores: 3,
            cross_fitted: 0,
            held_out: 3,
            folds: 0,
            achievable_rate: 0.25,
            review: rate(0.01, true),
            fail: rate(0.0, false),
            known_defects: 2,
            escapes: 1,
            review_lowered_from: Some(4.0),
        };
        let text = format(&report);
        for needle in [
            "calibration: 3 good-image scores (0 training images cross-fitted in 0 folds, 3 held out)",
            "rates down to 25.0%",
            "review: requested 1.0%, threshold 2.5000, expected 1.0% (extrapolated: assumes a log-normal tail), 95% upper bound 63.2%; the rate needs 99 good images (299 for 95% confidence)",
            "fail: review band rule (no rate requested), threshold 2.5000, expected 0.0% (distribution-free)",
            "known defects: 2 scored, 1 escape",
            "lowered from 4.0000 to 2.5000",
        ] {
            assert!(text.contains(needle), "{needle}:\n{text}");
        }
    }
}
