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

/// The first NaN in `map` as an error naming its index: a NaN map is a bug upstream, and
/// letting it through could pass a defective part (every comparison with NaN is false).
pub(crate) fn check_finite_map(map: &[f32]) -> Result<()> {
    let nan = map
        .par_chunks(MAP_CHUNK)
        .enumerate()
        .filter_map(|(k, chunk)| {
            chunk
                .iter()
                .position(|v| v.is_nan())
                .map(|i| k * MAP_CHUNK + i)
        })
        .min();
    if let Some(i) = nan {
        return Err(Error::invalid_argument(format!(
            "the anomaly map has NaN at index {i}"
        )));
    }
    Ok(())
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
    fn serde_form() {
        let s = serde_json::to_string(&ImageScore::TopKMean { k: 7 }).unwrap();
        assert_eq!(s, r#"{"policy":"top_k_mean","k":7}"#);
        assert_eq!(
            serde_json::from_str::<ImageScore>(r#"{"policy":"max"}"#).unwrap(),
            ImageScore::Max
        );
    }
}
