//! Quantiles: of a few image scores (sorted), of very many pixels (without sorting), and
//! of pixels that arrive map by map (without holding the maps).

use rayon::prelude::*;

use crate::{Error, ErrorKind, Result};

/// Histogram bins per refinement pass.
const BINS: usize = 4096;
/// A bin with at most this many values is finished with a selection on a copy.
const COLLECT_LIMIT: usize = 1 << 20;

/// The `q`-quantile (`0 < q <= 1`) of all values of all `maps` (at least one value, no
/// NaN): the value of rank `ceil(q * N)` in ascending order (1-based) of the `N` values,
/// i.e. the smallest value with at least a fraction `q` of the values at or below it. No
/// interpolation: the result is always one of the values, and `q = 1` is the maximum.
///
/// The values are never sorted or copied wholesale (a calibration set can hold a billion
/// pixels): a histogram over the current value range finds the bin holding the rank, the
/// range narrows to that bin's values, and once a bin is small its values are copied and
/// the exact one is selected. Each pass is parallel over the maps; the result is exact and
/// does not depend on the thread count.
pub(crate) fn quantile_of_all(maps: &[&[f32]], q: f64) -> f32 {
    quantile_with_limit(maps, q, COLLECT_LIMIT)
}

fn quantile_with_limit(maps: &[&[f32]], q: f64, collect_limit: usize) -> f32 {
    let n: usize = maps.iter().map(|m| m.len()).sum();
    assert!(n > 0 && q > 0.0 && q <= 1.0);
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    let (mut lo, mut hi) = min_max(maps, f32::NEG_INFINITY, f32::INFINITY);
    if rank == n {
        return hi;
    }
    // Values below `lo` that are no longer in the range.
    let mut below = 0usize;
    loop {
        if lo == hi {
            return lo;
        }
        let scale = BINS as f64 / (f64::from(hi) - f64::from(lo));
        // Monotone in `v`, so every bin holds a contiguous slice of the sorted values.
        let bin = move |v: f32| (((f64::from(v) - f64::from(lo)) * scale) as usize).min(BINS - 1);
        let counts = maps
            .par_iter()
            .map(|m| {
                let mut c = vec![0usize; BINS];
                for &v in m.iter().filter(|&&v| v >= lo && v <= hi) {
                    c[bin(v)] += 1;
                }
                c
            })
            .reduce(
                || vec![0usize; BINS],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        let mut b = 0;
        while below + counts[b] < rank {
            below += counts[b];
            b += 1;
        }
        let in_bin = move |v: f32| v >= lo && v <= hi && bin(v) == b;
        if counts[b] <= collect_limit {
            let mut values: Vec<f32> = maps
                .iter()
                .flat_map(|m| m.iter().copied().filter(|&v| in_bin(v)))
                .collect();
            let (_, v, _) = values.select_nth_unstable_by(rank - below - 1, f32::total_cmp);
            return *v;
        }
        (lo, hi) = min_max_where(maps, in_bin);
    }
}

/// The quantile [`quantile_of_all`] gives, of values that arrive map by map, without
/// holding them all: their total count `N` is known up front, so the answer's rank
/// `r = ceil(q * N)` is too, and only the values that can still be the answer are kept:
/// the `N - r + 1` largest so far (the answer is the smallest of them) or, when that is
/// the larger side, the `r` smallest (the answer is the largest of them). Memory is that
/// many values plus one map; at `q = 1` (the largest pixel) it is one value. Exact: the
/// same value as [`quantile_of_all`] over the same maps.
#[derive(Debug, Clone)]
pub struct StreamingQuantile {
    total: usize,
    seen: usize,
    /// How many values to keep.
    keep: usize,
    /// Whether the largest values are kept (else the smallest, stored negated so that
    /// both sides keep the largest keys).
    largest: bool,
    keys: Vec<f32>,
    /// The smallest kept key once `keys` holds `keep` of them: a smaller or equal key
    /// cannot change the answer.
    cutoff: Option<f32>,
}

impl StreamingQuantile {
    /// The `q`-quantile (`0 < q <= 1`) of `total` values (at least one, no NaN), pushed
    /// later with [`StreamingQuantile::push`].
    pub fn new(total: usize, q: f64) -> Self {
        assert!(total > 0 && q > 0.0 && q <= 1.0);
        let rank = ((q * total as f64).ceil() as usize).clamp(1, total);
        let from_top = total - rank + 1;
        let largest = from_top <= rank;
        StreamingQuantile {
            total,
            seen: 0,
            keep: if largest { from_top } else { rank },
            largest,
            keys: Vec::new(),
            cutoff: None,
        }
    }

    /// Takes the next map's values.
    ///
    /// [`ErrorKind::Internal`] when the values pushed exceed the total announced.
    pub fn push(&mut self, values: &[f32]) -> Result<()> {
        self.seen += values.len();
        if self.seen > self.total {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "pixel quantile: {} values arrived, {} were announced",
                    self.seen, self.total
                ),
            ));
        }
        let sign = if self.largest { 1.0 } else { -1.0 };
        let cutoff = self.cutoff;
        self.keys.extend(
            values
                .iter()
                .map(|&v| sign * v)
                .filter(|&k| cutoff.is_none_or(|c| k > c)),
        );
        if self.keys.len() >= 2 * self.keep {
            self.compact();
        }
        Ok(())
    }

    /// Keeps the `keep` largest keys and notes the smallest of them.
    fn compact(&mut self) {
        if self.keys.len() < self.keep {
            return;
        }
        let k = self.keep - 1;
        self.keys.select_nth_unstable_by(k, |a, b| b.total_cmp(a));
        self.keys.truncate(self.keep);
        self.cutoff = self.keys.iter().copied().reduce(f32::min);
    }

    /// The quantile, once every announced value was pushed.
    ///
    /// [`ErrorKind::Internal`] when fewer values arrived than were announced.
    pub fn finish(mut self) -> Result<f32> {
        if self.seen != self.total {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "pixel quantile: {} values arrived, {} were announced",
                    self.seen, self.total
                ),
            ));
        }
        self.compact();
        let key = self.cutoff.expect("`keep` is at most the total pushed");
        Ok(if self.largest { key } else { -key })
    }
}

fn min_max(maps: &[&[f32]], lo: f32, hi: f32) -> (f32, f32) {
    min_max_where(maps, move |v| v >= lo && v <= hi)
}

fn min_max_where(maps: &[&[f32]], keep: impl Fn(f32) -> bool + Sync) -> (f32, f32) {
    maps.par_iter()
        .map(|m| {
            m.iter()
                .copied()
                .filter(|&v| keep(v))
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                    (a.min(v), b.max(v))
                })
        })
        .reduce(
            || (f32::INFINITY, f32::NEG_INFINITY),
            |(a, b), (c, d)| (a.min(c), b.max(d)),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::test_util::noise;

    fn by_sorting(maps: &[&[f32]], q: f64) -> f32 {
        let mut all: Vec<f32> = maps.iter().flat_map(|m| m.iter().copied()).collect();
        all.sort_by(f32::total_cmp);
        let rank = ((q * all.len() as f64).ceil() as usize).clamp(1, all.len());
        all[rank - 1]
    }

    #[test]
    fn small_lists() {
        let a = [3.0, 1.0, 2.0, 5.0, 4.0];
        assert_eq!(quantile_of_all(&[&a], 1.0), 5.0);
        assert_eq!(quantile_of_all(&[&a], 0.8), 4.0);
        assert_eq!(quantile_of_all(&[&a], 0.81), 5.0);
        assert_eq!(quantile_of_all(&[&a], 0.5), 3.0);
        assert_eq!(quantile_of_all(&[&a], 0.01), 1.0);
        assert_eq!(quantile_of_all(&[&[7.0; 9]], 0.3), 7.0);
    }

    #[test]
    fn matches_sorting_through_refinement() {
        // Heavy ties and a long tail push the answer's bin over the collection limit, so
        // the range has to narrow at least once.
        let limit = 1000;
        let n = 30_000;
        let mut a: Vec<f32> = noise(n, 11)
            .iter()
            .map(|v| (v * v * v * 8.0).floor())
            .collect();
        a[5] = 1e9;
        let b: Vec<f32> = noise(5000, 12).iter().map(|v| v * 3.0).collect();
        let maps: Vec<&[f32]> = vec![&a, &b];
        for q in [0.5, 0.9, 0.999, 0.999_99, 1.0] {
            assert_eq!(
                quantile_with_limit(&maps, q, limit),
                by_sorting(&maps, q),
                "q {q}"
            );
        }
        let c: Vec<f32> = noise(20_003, 13).iter().map(|v| 1.0 + v * 1e-6).collect();
        for q in [0.3, 0.999] {
            assert_eq!(
                quantile_with_limit(&[&c], q, limit),
                by_sorting(&[&c], q),
                "q {q}"
            );
        }
    }

    #[test]
    fn streaming_matches_all_maps_at_once() {
        let a: Vec<f32> = noise(3000, 21).iter().map(|v| (v * 20.0).floor()).collect();
        let b: Vec<f32> = noise(5000, 22).iter().map(|v| v * 3.0 - 1.0).collect();
        let c = vec![0.5f32; 700];
        let d: Vec<f32> = noise(1, 23);
        let maps: Vec<&[f32]> = vec![&a, &b, &c, &d];
        let total = maps.iter().map(|m| m.len()).sum();
        for q in [1e-9, 0.01, 0.3, 0.5, 0.5001, 0.9, 0.999, 0.9999, 1.0] {
            let mut s = StreamingQuantile::new(total, q);
            for m in &maps {
                s.push(m).unwrap();
            }
            assert_eq!(s.finish().unwrap(), quantile_of_all(&maps, q), "q {q}");
        }
        // The top values of a large map arrive after a cutoff was set: they replace it.
        let rising: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let mut s = StreamingQuantile::new(10_000, 0.999);
        for chunk in rising.chunks(7) {
            s.push(chunk).unwrap();
        }
        assert!(s.keys.len() <= 2 * 10 + 7, "{} values held", s.keys.len());
        assert_eq!(s.finish().unwrap(), quantile_of_all(&[&rising], 0.999));
    }

    #[test]
    fn streaming_refuses_a_count_other_than_announced() {
        let mut s = StreamingQuantile::new(3, 1.0);
        s.push(&[1.0, 2.0]).unwrap();
        assert_eq!(s.clone().finish().unwrap_err().kind(), ErrorKind::Internal);
        assert_eq!(s.push(&[1.0, 2.0]).unwrap_err().kind(), ErrorKind::Internal);
    }
}
