//! The image score: one number per image from its anomaly map.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::roi::{check_roi, inside};
use crate::{Error, Result};

/// How the image score is drawn from the map at image size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum ImageScore {
    /// The largest pixel (the VarAD paper's score; the default). Most sensitive to a small
    /// defect, and the smoothing already keeps a single noisy pixel from dominating.
    #[default]
    Max,
    /// The mean of the `k` largest pixels (all of them if there are fewer): steadier than
    /// the max when the map is noisy, at the cost of diluting defects smaller than `k`
    /// pixels. `k` is at least 1.
    TopKMean {
        /// How many of the largest pixels are averaged.
        k: usize,
    },
}

impl ImageScore {
    /// [`crate::ErrorKind::Config`] for `TopKMean { k: 0 }`.
    pub fn validate(&self) -> Result<()> {
        match *self {
            ImageScore::TopKMean { k: 0 } => {
                Err(Error::config("the top-k mean image score needs k >= 1"))
            }
            _ => Ok(()),
        }
    }
}

/// Map values per task of the passes over a map at image size (millions of values, so
/// they run on every thread).
const MAP_CHUNK: usize = 1 << 16;

/// The index of the first NaN in `map`.
fn first_nan(map: &[f32]) -> Option<usize> {
    map.par_chunks(MAP_CHUNK)
        .enumerate()
        .filter_map(|(k, chunk)| {
            chunk
                .iter()
                .position(|v| v.is_nan())
                .map(|i| k * MAP_CHUNK + i)
        })
        .min()
}

/// The first NaN in a caller's `map` as an error naming its index: letting it through
/// could pass a defective part (every comparison with NaN is false). The map is the
/// caller's data, so this is [`crate::ErrorKind::InvalidArgument`]; a map the model
/// produced is checked by [`check_model_map`] instead.
pub(crate) fn check_finite_map(map: &[f32]) -> Result<()> {
    match first_nan(map) {
        Some(i) => Err(Error::invalid_argument(format!(
            "the anomaly map has NaN at index {i}"
        ))),
        None => Ok(()),
    }
}

/// Checks an anomaly map that the model itself produced, `width` values a row, before it
/// is scored: a NaN there is not the caller's doing but the library's, from weights or
/// normal statistics that are not finite (a model file that escaped validation, or
/// training that diverged) or from a bug, so it is [`crate::ErrorKind::Internal`] naming
/// the pixel. [`image_score`] and [`super::assess`], given a caller's map, report a NaN
/// as [`crate::ErrorKind::InvalidArgument`].
pub fn check_model_map(map: &[f32], width: usize) -> Result<()> {
    match first_nan(map) {
        Some(i) => Err(Error::new(
            crate::ErrorKind::Internal,
            format!(
                "the model produced NaN in its anomaly map at pixel ({}, {}): its weights or \
                 normal statistics are not finite, or this is a bug in the library",
                i % width.max(1),
                i / width.max(1)
            ),
        )),
        None => Ok(()),
    }
}

/// The image score of `map` (any size, row-major) by `policy`, over the pixels that `roi`
/// selects (all when `None`; otherwise it must have `map.len()` bytes, nonzero = inspect):
/// outside the ROI the map is ignored, so a hot spot there cannot fail the image.
///
/// [`crate::ErrorKind::InvalidArgument`] for an empty map, a NaN in it, or an unusable ROI;
/// [`crate::ErrorKind::Config`] for an invalid policy.
pub fn image_score(map: &[f32], roi: Option<&[u8]>, policy: ImageScore) -> Result<f32> {
    policy.validate()?;
    if map.is_empty() {
        return Err(Error::invalid_argument("the anomaly map is empty"));
    }
    check_roi(roi, map.len(), 1)?;
    check_finite_map(map)?;
    Ok(match policy {
        ImageScore::Max => match roi {
            None => map
                .par_chunks(MAP_CHUNK)
                .map(|chunk| chunk.iter().copied().fold(f32::NEG_INFINITY, f32::max))
                .reduce(|| f32::NEG_INFINITY, f32::max),
            Some(m) => map
                .iter()
                .zip(m)
                .filter(|(_, &m)| m != 0)
                .map(|(&v, _)| v)
                .fold(f32::NEG_INFINITY, f32::max),
        },
        ImageScore::TopKMean { k } => {
            let mut values: Vec<f32> = match roi {
                None => map.to_vec(),
                Some(_) => (0..map.len())
                    .filter(|&i| inside(roi, i))
                    .map(|i| map[i])
                    .collect(),
            };
            let k = k.min(values.len());
            let n = values.len();
            // Partition instead of sorting: O(n), and only the top k are summed.
            let (_, kth, above) = values.select_nth_unstable_by(n - k, f32::total_cmp);
            let sum: f64 = above.iter().map(|&v| f64::from(v)).sum::<f64>() + f64::from(*kth);
            (sum / k as f64) as f32
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_and_top_k() {
        let map = [1.0, 5.0, 3.0, 4.0, 2.0, 0.0];
        assert_eq!(image_score(&map, None, ImageScore::Max).unwrap(), 5.0);
        let top = |k| image_score(&map, None, ImageScore::TopKMean { k }).unwrap();
        assert_eq!(top(1), 5.0);
        assert_eq!(top(3), 4.0);
        assert_eq!(top(6), 2.5);
        assert_eq!(top(100), 2.5);
    }

    #[test]
    fn roi_restricts_the_score() {
        let map = [1.0, 5.0, 3.0, 4.0, 2.0, 0.0];
        let roi = [1, 0, 1, 0, 1, 1];
        assert_eq!(image_score(&map, Some(&roi), ImageScore::Max).unwrap(), 3.0);
        let s = image_score(&map, Some(&roi), ImageScore::TopKMean { k: 2 }).unwrap();
        assert_eq!(s, 2.5);
    }

    #[test]
    fn errors() {
        let kind = |r: Result<f32>| r.unwrap_err().kind();
        use crate::ErrorKind::{Config, InvalidArgument};
        assert_eq!(
            kind(image_score(&[], None, ImageScore::Max)),
            InvalidArgument
        );
        assert_eq!(
            kind(image_score(&[1.0, f32::NAN], None, ImageScore::Max)),
            InvalidArgument
        );
        assert_eq!(
            kind(image_score(&[1.0], None, ImageScore::TopKMean { k: 0 })),
            Config
        );
        assert_eq!(
            kind(image_score(&[1.0, 2.0], Some(&[1]), ImageScore::Max)),
            InvalidArgument
        );
        assert_eq!(
            kind(image_score(&[1.0, 2.0], Some(&[0, 0]), ImageScore::Max)),
            InvalidArgument
        );
    }

    #[test]
    fn a_nan_is_the_callers_fault_in_a_callers_map_and_the_librarys_in_the_models() {
        let mut map = vec![1.0f32; 3 * MAP_CHUNK];
        check_model_map(&map, 256).unwrap();
        map[2 * MAP_CHUNK + 300] = f32::NAN;
        map[2 * MAP_CHUNK + 301] = f32::NAN;
        let err = image_score(&map, None, ImageScore::Max).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.message().contains("index 131372"), "{err}");
        let err = check_model_map(&map, 256).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Internal);
        // Index 131372 = row 513, column 44 of a 256-wide map.
        assert!(err.message().contains("pixel (44, 513)"), "{err}");
    }

    #[test]
    fn serde_form() {
        let s = serde_json::to_string(&ImageScore::TopKMean { k: 7 }).unwrap();
        assert_eq!(s, r#"{"policy":"top_k_mean","k":7}"#);
        assert_eq!(
            serde_json::from_str::<ImageScore>(r#"{"policy":"max"}"#).unwrap(),
            ImageScore::Max
        );
    }
}
