//! One axis of a separable linear resampling: every output sample is a short weighted sum
//! of consecutive input samples.
//!
//! Resizing, cropping and Gaussian smoothing are all linear and act on one axis at a time,
//! so their composition along an axis is again such a map. Building it once per axis (a
//! few thousand rows) and applying it to the 2D map (millions of pixels) keeps the per-pixel
//! work to a handful of multiply-adds, whatever the smoothing radius.

use rayon::prelude::*;

/// A linear map from `n_in` samples to `n_out`: output `o` is
/// `sum_t weights[o * taps + t] * input[starts[o] + t]`.
///
/// Every row has the same number of taps (short rows are padded with zero weights), so the
/// inner loops have a fixed trip count.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    pub(crate) n_in: usize,
    pub(crate) taps: usize,
    pub(crate) starts: Vec<usize>,
    pub(crate) weights: Vec<f32>,
}

/// PyTorch's source position for linear interpolation (`align_corners=False`), as the
/// first sample and the weight of the next one: a position below 0 is clamped to 0 (as
/// torch does), and at or beyond the last sample all weight goes to the last sample.
pub(crate) fn linear_tap(src: f64, n_in: usize) -> (usize, f64) {
    let src = src.max(0.0);
    let i0 = (src.floor() as usize).min(n_in - 1);
    let lambda = (src - i0 as f64).clamp(0.0, 1.0);
    if i0 + 1 < n_in {
        (i0, lambda)
    } else {
        (i0, 0.0)
    }
}

/// The index that half-sample symmetric reflection gives to position `i` of an axis of
/// `n` samples: `... c b a | a b c ... x y z | z y x ...`, repeated as often as needed
/// (a kernel may be wider than a small image).
pub(crate) fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let m = i.rem_euclid(2 * n);
    (if m >= n { 2 * n - 1 - m } else { m }) as usize
}

impl Axis {
    /// Builds the map from sparse rows: the first input index and the weights of the
    /// consecutive samples from there.
    fn from_spans(n_in: usize, rows: &[(usize, Vec<f64>)]) -> Self {
        let taps = rows.iter().map(|(_, w)| w.len()).max().unwrap_or(1).max(1);
        let mut starts = Vec::with_capacity(rows.len());
        let mut weights = vec![0.0f32; rows.len() * taps];
        for (o, (first, span)) in rows.iter().enumerate() {
            // Rows near the end start earlier so that `start + taps` stays in range.
            let start = (*first).min(n_in - taps);
            starts.push(start);
            let dst = &mut weights[o * taps + (first - start)..];
            for (w, &v) in dst.iter_mut().zip(span) {
                *w = v as f32;
            }
        }
        Axis {
            n_in,
            taps,
            starts,
            weights,
        }
    }

    /// Builds the map from the sample position (in input sample units, see [`linear_tap`])
    /// of each output, then smooths along the output axis with `kernel` (odd length,
    /// centred, reflected at the output's borders; `[1.0]` for none).
    pub(crate) fn from_positions(n_in: usize, positions: &[f64], kernel: &[f64]) -> Self {
        let n_out = positions.len();
        let radius = (kernel.len() / 2) as isize;
        let mut dense = vec![0.0f64; n_in];
        let rows: Vec<(usize, Vec<f64>)> = (0..n_out)
            .map(|o| {
                let (mut lo, mut hi) = (n_in, 0);
                for (t, &k) in kernel.iter().enumerate() {
                    let j = reflect(o as isize + t as isize - radius, n_out);
                    let (i0, lambda) = linear_tap(positions[j], n_in);
                    dense[i0] += k * (1.0 - lambda);
                    dense[i0 + 1 - usize::from(lambda == 0.0)] += k * lambda;
                    lo = lo.min(i0);
                    hi = hi.max(i0 + 1 + usize::from(lambda != 0.0));
                }
                let span = dense[lo..hi].to_vec();
                dense[lo..hi].fill(0.0);
                (lo, span)
            })
            .collect();
        Self::from_spans(n_in, &rows)
    }

    /// PyTorch's bilinear resize of `n_in` samples to `n_out` (`align_corners=False`):
    /// output `o` samples the input at `(o + 0.5) * n_in / n_out - 0.5`.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn bilinear(n_in: usize, n_out: usize) -> Self {
        let scale = n_in as f64 / n_out as f64;
        let positions: Vec<f64> = (0..n_out).map(|o| (o as f64 + 0.5) * scale - 0.5).collect();
        Self::from_positions(n_in, &positions, &[1.0])
    }

    fn n_out(&self) -> usize {
        self.starts.len()
    }

    /// Applies `self` to one row of input samples.
    fn apply_row(&self, src: &[f32], dst: &mut [f32]) {
        for ((d, &start), w) in dst
            .iter_mut()
            .zip(&self.starts)
            .zip(self.weights.chunks_exact(self.taps))
        {
            *d = w
                .iter()
                .zip(&src[start..start + self.taps])
                .map(|(w, s)| w * s)
                .sum();
        }
    }
}

/// `rows . src . cols^T`: resamples the row-major `rows.n_in` x `cols.n_in` map `src` to
/// `rows.n_out()` x `cols.n_out()`, first along each row (into a small buffer with the
/// source's row count), then across rows. Work is spread over the current rayon pool;
/// every output value is computed the same way whatever the number of threads.
pub(crate) fn apply_separable(src: &[f32], rows: &Axis, cols: &Axis) -> Vec<f32> {
    let (h_in, w_in, w_out) = (rows.n_in, cols.n_in, cols.n_out());
    debug_assert_eq!(src.len(), h_in * w_in);
    let mut across = vec![0.0f32; h_in * w_out];
    across
        .par_chunks_mut(w_out)
        .zip(src.par_chunks(w_in))
        .for_each(|(dst, src)| cols.apply_row(src, dst));
    let mut out = vec![0.0f32; rows.n_out() * w_out];
    // Row bands big enough to amortise scheduling, small enough to share out evenly.
    let band = (64 * 1024 / w_out.max(1)).max(1);
    out.par_chunks_mut(band * w_out)
        .enumerate()
        .for_each(|(b, chunk)| {
            for (r, dst) in chunk.chunks_exact_mut(w_out).enumerate() {
                let o = b * band + r;
                let start = rows.starts[o];
                let w = &rows.weights[o * rows.taps..(o + 1) * rows.taps];
                for (t, &wt) in w.iter().enumerate() {
                    let s = &across[(start + t) * w_out..(start + t + 1) * w_out];
                    if t == 0 {
                        dst.iter_mut().zip(s).for_each(|(d, &s)| *d = wt * s);
                    } else {
                        dst.iter_mut().zip(s).for_each(|(d, &s)| *d += wt * s);
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_is_half_sample_symmetric() {
        let got: Vec<usize> = (-4..8).map(|i| reflect(i, 3)).collect();
        assert_eq!(got, [2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1]);
        assert!((-5..5).all(|i| reflect(i, 1) == 0));
    }

    #[test]
    fn linear_tap_clamps_like_torch() {
        assert_eq!(linear_tap(-0.25, 4), (0, 0.0));
        assert_eq!(linear_tap(1.25, 4), (1, 0.25));
        assert_eq!(linear_tap(3.0, 4), (3, 0.0));
        assert_eq!(linear_tap(3.5, 4), (3, 0.0));
        assert_eq!(linear_tap(0.0, 1), (0, 0.0));
    }

    #[test]
    fn rows_sum_to_one_and_stay_in_range() {
        for (n_in, n_out, k) in [(5, 17, 9), (17, 5, 3), (1, 4, 5), (4, 1, 1), (3, 3, 7)] {
            let kernel = vec![1.0 / k as f64; k];
            let positions: Vec<f64> = (0..n_out)
                .map(|o| (o as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5)
                .collect();
            let a = Axis::from_positions(n_in, &positions, &kernel);
            for o in 0..n_out {
                assert!(a.starts[o] + a.taps <= n_in);
                let s: f32 = a.weights[o * a.taps..(o + 1) * a.taps].iter().sum();
                assert!(
                    (s - 1.0).abs() < 1e-6,
                    "{n_in}->{n_out}: row {o} sums to {s}"
                );
            }
        }
    }
}
