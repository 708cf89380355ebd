//! Separable resampling along one axis: area averaging when shrinking, bilinear when
//! enlarging, a plain copy at equal size.
//!
//! Weights are computed once per axis and call (not per pixel) and padded to a fixed
//! number of taps per output sample, so the inner loops are branch-free.

/// Resampling weights for one axis: output `o` is
/// `sum_k weights[o * taps + k] * input[starts[o] + k]`.
#[derive(Debug, Clone)]
pub(crate) struct AxisWeights {
    pub(crate) taps: usize,
    pub(crate) starts: Vec<usize>,
    pub(crate) weights: Vec<f32>,
}

/// The contributions of the input samples to output `o` of an `n_in` -> `n_out` resize,
/// as (first index, weights of consecutive indices), from the definitions:
///
/// - shrinking: output `o` is the mean of the input over `[o, o + 1) * n_in / n_out`,
///   each input sample weighted by the length of its overlap with that interval (an exact
///   box filter with fractional coverage);
/// - enlarging: bilinear with half-pixel centres (`align_corners=False`): the sample at
///   `(o + 0.5) * n_in / n_out - 0.5`, clamped to the first and last input sample.
fn contributions(o: usize, n_in: usize, n_out: usize) -> (usize, Vec<f64>) {
    if n_in == n_out {
        return (o, vec![1.0]);
    }
    let scale = n_in as f64 / n_out as f64;
    if n_in > n_out {
        // Products before the division keep the interval ends exact for integer ratios.
        let a = (o * n_in) as f64 / n_out as f64;
        let b = ((o + 1) * n_in) as f64 / n_out as f64;
        let first = a.floor() as usize;
        let end = (b.ceil() as usize).min(n_in);
        let weights = (first..end)
            .map(|i| ((b.min(i as f64 + 1.0) - a.max(i as f64)) / scale).max(0.0))
            .collect();
        (first, weights)
    } else {
        let src = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (n_in - 1) as f64);
        let i0 = src.floor() as usize;
        let frac = src - i0 as f64;
        if i0 + 1 < n_in {
            (i0, vec![1.0 - frac, frac])
        } else {
            (i0, vec![1.0])
        }
    }
}

impl AxisWeights {
    /// Weights for resampling `n_in` samples to `n_out` (both at least 1).
    pub(crate) fn new(n_in: usize, n_out: usize) -> Self {
        assert!(n_in > 0 && n_out > 0, "resize of {n_in} to {n_out} samples");
        let all: Vec<(usize, Vec<f64>)> =
            (0..n_out).map(|o| contributions(o, n_in, n_out)).collect();
        let taps = all.iter().map(|(_, w)| w.len()).max().unwrap_or(1);
        let mut starts = Vec::with_capacity(n_out);
        let mut weights = vec![0.0f32; n_out * taps];
        for (o, (first, ws)) in all.iter().enumerate() {
            // Near the end, move the window left and pad in front, so that every tap
            // stays inside the input (taps <= n_in holds for both filters).
            let start = (*first).min(n_in - taps);
            let shift = first - start;
            starts.push(start);
            for (k, &w) in ws.iter().enumerate() {
                weights[o * taps + shift + k] = w as f32;
            }
        }
        AxisWeights {
            taps,
            starts,
            weights,
        }
    }

    /// Number of output samples.
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Resamples one row: output `o` is `sum_k w[o][k] * src[start[o] + k]`, handed to
    /// `store(o, value)`.
    pub(crate) fn apply_row<P: Sample>(&self, src: &[P], store: impl FnMut(usize, P)) {
        match self.taps {
            // The common cases get fixed-size loops the compiler fully unrolls.
            1 => self.apply_row_taps::<P, 1>(src, store),
            2 => self.apply_row_taps::<P, 2>(src, store),
            3 => self.apply_row_taps::<P, 3>(src, store),
            4 => self.apply_row_taps::<P, 4>(src, store),
            5 => self.apply_row_taps::<P, 5>(src, store),
            _ => self.apply_row_any(src, store),
        }
    }

    fn apply_row_taps<P: Sample, const T: usize>(
        &self,
        src: &[P],
        mut store: impl FnMut(usize, P),
    ) {
        for (o, (&s, w)) in self
            .starts
            .iter()
            .zip(self.weights.chunks_exact(T))
            .enumerate()
        {
            let x: &[P; T] = src[s..s + T].try_into().expect("taps inside the row");
            let mut acc = P::default();
            for k in 0..T {
                acc.add_scaled(w[k], x[k]);
            }
            store(o, acc);
        }
    }

    fn apply_row_any<P: Sample>(&self, src: &[P], mut store: impl FnMut(usize, P)) {
        for (o, (&s, w)) in self
            .starts
            .iter()
            .zip(self.weights.chunks_exact(self.taps))
            .enumerate()
        {
            let mut acc = P::default();
            for (&w, &x) in w.iter().zip(&src[s..s + self.taps]) {
                acc.add_scaled(w, x);
            }
            store(o, acc);
        }
    }

    /// Computes output row `o` of a vertical pass: `dst = sum_k w[o][k] * row(start + k)`,
    /// where `row(i)` returns input row `i`.
    pub(crate) fn apply_column<'r>(
        &self,
        o: usize,
        row: impl Fn(usize) -> &'r [f32],
        dst: &mut [f32],
    ) {
        dst.fill(0.0);
        let start = self.starts[o];
        for (k, &w) in self.weights[o * self.taps..(o + 1) * self.taps]
            .iter()
            .enumerate()
        {
            // Padding taps (exact zeros) would add nothing but work.
            if w == 0.0 {
                continue;
            }
            for (d, &s) in dst.iter_mut().zip(row(start + k)) {
                *d += w * s;
            }
        }
    }
}

/// What a horizontal pass resamples: one grey sample, or one `[R, G, B, unused]` pixel
/// that the compiler keeps in one SIMD register.
pub(crate) trait Sample: Copy + Default {
    /// `self += w * x`, per lane.
    fn add_scaled(&mut self, w: f32, x: Self);
}

impl Sample for f32 {
    fn add_scaled(&mut self, w: f32, x: f32) {
        *self += w * x;
    }
}

impl Sample for [f32; 4] {
    fn add_scaled(&mut self, w: f32, x: [f32; 4]) {
        for (a, x) in self.iter_mut().zip(x) {
            *a += w * x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resize(src: &[f32], n_out: usize) -> Vec<f32> {
        let w = AxisWeights::new(src.len(), n_out);
        let mut dst = vec![f32::NAN; n_out];
        w.apply_row(src, |o, v| dst[o] = v);
        // The colour path must give the same numbers in every lane.
        let rgbx: Vec<[f32; 4]> = src.iter().map(|&v| [v, -v, 2.0 * v, 0.0]).collect();
        let mut lanes = vec![[f32::NAN; 4]; n_out];
        w.apply_row(&rgbx, |o, v| lanes[o] = v);
        for (d, l) in dst.iter().zip(&lanes) {
            assert_eq!(*l, [*d, -*d, 2.0 * *d, 0.0]);
        }
        dst
    }

    #[test]
    fn weights_sum_to_one_and_stay_inside() {
        for (n_in, n_out) in [
            (37, 16),
            (10, 33),
            (2448, 1024),
            (7, 7),
            (1, 5),
            (5, 1),
            (3, 2),
        ] {
            let w = AxisWeights::new(n_in, n_out);
            for o in 0..n_out {
                let ws = &w.weights[o * w.taps..(o + 1) * w.taps];
                let sum: f32 = ws.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{n_in}->{n_out} o={o} sum={sum}");
                assert!(ws.iter().all(|&x| x >= 0.0));
                assert!(w.starts[o] + w.taps <= n_in);
            }
        }
    }

    #[test]
    fn integer_shrink_is_block_mean() {
        let src: Vec<f32> = (0..6).map(|i| i as f32).collect();
        assert_eq!(resize(&src, 3), [0.5, 2.5, 4.5]);
        assert_eq!(resize(&src, 2), [1.0, 4.0]);
        assert_eq!(resize(&src, 1), [2.5]);
    }

    #[test]
    fn fractional_shrink_by_hand() {
        // 3 -> 2: output 0 covers [0, 1.5): (1 * a + 0.5 * b) / 1.5.
        let got = resize(&[3.0, 6.0, 9.0], 2);
        assert!(
            (got[0] - 4.0).abs() < 1e-6 && (got[1] - 8.0).abs() < 1e-6,
            "{got:?}"
        );
    }

    #[test]
    fn enlarge_by_hand() {
        // 2 -> 4 with half-pixel centres: sources -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
        assert_eq!(resize(&[0.0, 4.0], 4), [0.0, 1.0, 3.0, 4.0]);
        assert_eq!(resize(&[2.5], 3), [2.5, 2.5, 2.5]);
    }

    #[test]
    fn identity_is_exact() {
        let src: Vec<f32> = (0..9).map(|i| (i as f32).sqrt() / 3.0).collect();
        assert_eq!(resize(&src, 9), src);
    }

    #[test]
    fn many_taps() {
        let src: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let got = resize(&src, 3);
        // Output 0 covers [0, 33.33): samples 0..=32 fully and a third of sample 33.
        let want = [(528.0 + 33.0 / 3.0) / (100.0 / 3.0), 49.5];
        assert!((got[0] - want[0]).abs() < 1e-3, "{got:?}");
        assert!((got[1] - want[1]).abs() < 1e-3, "{got:?}");
    }
}
