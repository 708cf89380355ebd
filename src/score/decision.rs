//! The verdict on one image.

use serde::{Deserialize, Serialize};

/// What inspection software does with the part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The score is below the review threshold: a good part.
    Pass,
    /// The score is at or above the review threshold and below the fail threshold: too
    /// unusual to pass blindly, not clear enough to reject; a person looks.
    Review,
    /// The score is at or above the fail threshold: reject.
    Fail,
}

impl Decision {
    /// The decision for `score` with thresholds `review <= fail`. When they are equal
    /// there is no review band. A NaN score fails: it can only come from a bug, and a part
    /// must never pass on one.
    pub fn from_score(score: f32, review: f32, fail: f32) -> Decision {
        if score < review {
            Decision::Pass
        } else if score < fail {
            Decision::Review
        } else {
            Decision::Fail
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands() {
        let d = |s| Decision::from_score(s, 1.0, 2.0);
        assert_eq!(
            [d(0.5), d(1.0), d(1.9), d(2.0), d(9.0)],
            [
                Decision::Pass,
                Decision::Review,
                Decision::Review,
                Decision::Fail,
                Decision::Fail
            ]
        );
        assert_eq!(Decision::from_score(1.0, 1.0, 1.0), Decision::Fail);
        assert_eq!(Decision::from_score(f32::NAN, 1.0, 2.0), Decision::Fail);
    }
}
