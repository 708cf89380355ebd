//! The scoring forward's causal convolution, SiLU and `x_proj` in one pass over the rows,
//! in `f32` on AVX2 + FMA.
//!
//! Apart, the generic convolution ran at about 60 cycles per 8 channels (its SiLU through
//! the portable exponential, one vector's chain of dependent operations at a time) and
//! the narrow `x_proj` product (35 or 39 columns at the Lite0 levels) spent as long
//! packing as multiplying: in a scratch program at the stride-8 level (Di 80, 4 x 16384
//! gathered rows, 2 threads) 6.7-8.1 + 6.5-7.4 ms, fused 9.7-10.7 ms; stride 16 (Di 224,
//! 4 x 4096 rows) 8.9-10.1 ms, fused 7.6-8.0 ms. Here a task walks consecutive rows: the
//! convolution's source rows are in L1 from the rows before, each row's `u` is projected
//! while it is still in L1, and the projection broadcasts `u`'s values against
//! `x_proj`'s transposed rows, every output one accumulator over the channels in order.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::gemm::SendPtr;
use super::prefetch::prefetch_read;
use super::scan_avx2::{applies, silu, LANES};

/// Rows per task: enough that the three rows before a task's first are the only ones read
/// twice, few enough that the tasks balance.
const ROWS_PER_TASK: usize = 64;

/// Gathered rows ahead of the current one whose source row is prefetched.
const PREFETCH_ROWS: usize = 4;

/// Output vectors of `x_proj` one pass over a row's channels accumulates (registers).
const GROUP: usize = 6;

/// The layer's weights in the layouts the kernel reads.
pub struct ConvProject {
    di: usize,
    kw: usize,
    sx: usize,
    /// conv1d.weight transposed, `[kw, Di]`.
    conv_weight: Vec<f32>,
    /// conv1d.bias, `[Di]`.
    conv_bias: Vec<f32>,
    /// x_proj.weight transposed and padded, `[Di, sx_pad]`, `sx_pad` a multiple of 8.
    x_proj_t: Vec<f32>,
}

impl ConvProject {
    /// From conv1d's `[Di, 1, kw]` weight and `[Di]` bias and x_proj's `[sx, Di]` weight.
    pub fn new(conv_weight: &[f32], conv_bias: &[f32], kw: usize, x_proj: &[f32]) -> Self {
        let di = conv_bias.len();
        assert!(kw >= 1 && conv_weight.len() == di * kw && di.is_multiple_of(LANES));
        assert!(!x_proj.is_empty() && x_proj.len().is_multiple_of(di));
        let sx = x_proj.len() / di;
        let sx_pad = sx.next_multiple_of(LANES);
        let mut xt = vec![0f32; di * sx_pad];
        for j in 0..sx {
            for d in 0..di {
                xt[d * sx_pad + j] = x_proj[j * di + d];
            }
        }
        ConvProject {
            di,
            kw,
            sx,
            conv_weight: super::conv::transpose(conv_weight, di, kw),
            conv_bias: conv_bias.to_vec(),
            x_proj_t: xt,
        }
    }

    /// `u = silu(conv(x) + bias)` and `x_dbl = u x_proj^T` for sequences of `len` rows
    /// whose row `r` reads row `rows[r]` of `x` (row stride `ldx`, the x half of
    /// in_proj's output): `u` is `[rows, Di]`, `xdbl` `[rows, sx]`. As
    /// [`super::conv::forward_gathered`] followed by [`super::gemm::linear`], up to
    /// rounding.
    ///
    /// # Panics
    /// On sizes that do not fit, or where [`super::scan_avx2::applies`] does not hold
    /// (AVX2, FMA, `Di` a whole number of vectors).
    pub fn forward_gathered(
        &self,
        x: &[f32],
        ldx: usize,
        rows: &[u32],
        len: usize,
        u: &mut [f32],
        xdbl: &mut [f32],
    ) {
        let (di, sx) = (self.di, self.sx);
        assert!(
            applies(di),
            "the fused convolution needs AVX2, FMA and Di % 8 == 0"
        );
        assert!(len > 0 && rows.len().is_multiple_of(len) && ldx >= di);
        assert!(u.len() == rows.len() * di && xdbl.len() == rows.len() * sx);
        assert!(rows.iter().all(|&r| r as usize * ldx + di <= x.len()));
        let xdbl_ptr = SendPtr(xdbl.as_mut_ptr());
        u.par_chunks_mut(ROWS_PER_TASK * di)
            .enumerate()
            .for_each(|(task, u_rows)| {
                let first = task * ROWS_PER_TASK;
                // Two rows at a time: their projections share each load of x_proj.
                for (i, pair) in u_rows.chunks_mut(2 * di).enumerate() {
                    let row = first + 2 * i;
                    for (k, ur) in pair.chunks_exact_mut(di).enumerate() {
                        if let Some(&ahead) = rows.get(row + k + PREFETCH_ROWS) {
                            prefetch_read(x, ahead as usize * ldx, di);
                        }
                        // SAFETY: features checked above; every source row was checked to
                        // lie inside `x`.
                        unsafe { self.conv_row(x, ldx, rows, row + k, (row + k) % len, ur) };
                    }
                    let n = pair.len() / di;
                    // SAFETY: features checked above; this task alone writes rows `row`
                    // and `row + n - 1` of `xdbl`, which holds `rows.len() * sx` values.
                    unsafe {
                        let out =
                            std::slice::from_raw_parts_mut(xdbl_ptr.get().add(row * sx), n * sx);
                        self.project_rows(pair, out);
                    }
                }
            });
    }

    /// One row of `u`: the row at sequence position `t` reads rows `row - kw + 1 ..= row`
    /// (those before the sequence's start are the zero padding). The pre-activations of
    /// the whole row first, then the SiLU over them: with both in one pass per vector,
    /// each vector's chain of dependent operations (4 multiply-adds, the exponential,
    /// a division) ran nearly alone, at 60-90 cycles a vector (`perf annotate`).
    #[target_feature(enable = "avx2,fma")]
    fn conv_row(&self, x: &[f32], ldx: usize, rows: &[u32], row: usize, t: usize, ur: &mut [f32]) {
        let (di, kw) = (self.di, self.kw);
        ur.copy_from_slice(&self.conv_bias);
        for k in (kw - 1).saturating_sub(t)..kw {
            let src = &x[rows[row + k + 1 - kw] as usize * ldx..][..di];
            let w = &self.conv_weight[k * di..(k + 1) * di];
            for d0 in (0..di).step_by(LANES) {
                // SAFETY: d0 + 8 <= di, the length of all three slices.
                unsafe {
                    let acc = _mm256_loadu_ps(ur.as_ptr().add(d0));
                    let wv = _mm256_loadu_ps(w.as_ptr().add(d0));
                    let xv = _mm256_loadu_ps(src.as_ptr().add(d0));
                    _mm256_storeu_ps(ur.as_mut_ptr().add(d0), _mm256_fmadd_ps(wv, xv, acc));
                }
            }
        }
        for d0 in (0..di).step_by(LANES) {
            // SAFETY: d0 + 8 <= di.
            unsafe {
                let pre = _mm256_loadu_ps(ur.as_ptr().add(d0));
                _mm256_storeu_ps(ur.as_mut_ptr().add(d0), silu(pre));
            }
        }
    }

    /// `out = ur x_proj^T` for one or two rows `ur` (`[rows, Di]` in, `[rows, sx]` out),
    /// up to `GROUP` output vectors per pass over the rows. Two rows share every load of
    /// `x_proj` and keep twice the accumulators busy: one row's chain of dependent
    /// multiply-adds per output vector had the units wait on their latency. Each output
    /// sums its channels in the same order either way.
    #[target_feature(enable = "avx2,fma")]
    fn project_rows(&self, ur: &[f32], out: &mut [f32]) {
        let (di, sx) = (self.di, self.sx);
        let rows = ur.len() / di;
        debug_assert!((1..=2).contains(&rows) && out.len() == rows * sx);
        let vectors = self.x_proj_t.len() / di / LANES;
        let mut v0 = 0;
        while v0 < vectors {
            let n = (vectors - v0).min(GROUP);
            let mut lanes = [[0f32; GROUP * LANES]; 2];
            // SAFETY: v0 + n vectors fit in a row of x_proj_t; `ur` holds `rows` rows.
            unsafe {
                match (rows, n) {
                    (2, 6) => self.project_group::<6, 2>(ur, v0, &mut lanes),
                    (2, 5) => self.project_group::<5, 2>(ur, v0, &mut lanes),
                    (2, 4) => self.project_group::<4, 2>(ur, v0, &mut lanes),
                    (2, 3) => self.project_group::<3, 2>(ur, v0, &mut lanes),
                    (2, 2) => self.project_group::<2, 2>(ur, v0, &mut lanes),
                    (2, _) => self.project_group::<1, 2>(ur, v0, &mut lanes),
                    (_, 6) => self.project_group::<6, 1>(ur, v0, &mut lanes),
                    (_, 5) => self.project_group::<5, 1>(ur, v0, &mut lanes),
                    (_, 4) => self.project_group::<4, 1>(ur, v0, &mut lanes),
                    (_, 3) => self.project_group::<3, 1>(ur, v0, &mut lanes),
                    (_, 2) => self.project_group::<2, 1>(ur, v0, &mut lanes),
                    _ => self.project_group::<1, 1>(ur, v0, &mut lanes),
                }
            }
            let (col, end) = (v0 * LANES, ((v0 + n) * LANES).min(sx));
            for (o, l) in out.chunks_exact_mut(sx).zip(&lanes) {
                o[col..end].copy_from_slice(&l[..end - col]);
            }
            v0 += n;
        }
    }

    /// Output vectors `v0 .. v0 + G` of `ur x_proj^T` for `R` rows of `ur` into `lanes`:
    /// fixed counts, so the accumulators stay in registers.
    ///
    /// # Safety
    /// `(v0 + G) * 8` must not exceed a row of `x_proj_t`; `G <= GROUP`; `ur` must hold
    /// `R` rows of `Di` values.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn project_group<const G: usize, const R: usize>(
        &self,
        ur: &[f32],
        v0: usize,
        lanes: &mut [[f32; GROUP * LANES]; 2],
    ) {
        let (di, sx_pad) = (self.di, self.x_proj_t.len() / self.di);
        let mut acc = [[_mm256_setzero_ps(); G]; R];
        // SAFETY: the caller's contract; x_proj_t has Di rows.
        unsafe {
            let wp = self.x_proj_t.as_ptr().add(v0 * LANES);
            let up = ur.as_ptr();
            for d in 0..di {
                let w = wp.add(d * sx_pad);
                let b: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(*up.add(r * di + d)));
                for j in 0..G {
                    let wv = _mm256_loadu_ps(w.add(j * LANES));
                    for (a, br) in acc.iter_mut().zip(&b) {
                        a[j] = _mm256_fmadd_ps(*br, wv, a[j]);
                    }
                }
            }
            for (a, l) in acc.iter().zip(lanes.iter_mut()) {
                for (j, v) in a.iter().enumerate() {
                    _mm256_storeu_ps(l.as_mut_ptr().add(j * LANES), *v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::conv;
    use crate::predictor::gemm::linear;
    use crate::predictor::rng::SplitMix64;

    fn random(n: usize, rng: &mut SplitMix64) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    #[test]
    fn two_rows_project_as_each_alone() {
        if !applies(LANES) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        let mut rng = SplitMix64::new(9);
        // x_proj widths of one partial group, one full group and a group and a half.
        for (di, sx) in [(16, 5), (24, 48), (80, 73)] {
            let cp = ConvProject::new(&random(di, &mut rng), &random(di, &mut rng), 1, &{
                random(sx * di, &mut rng)
            });
            let ur = random(2 * di, &mut rng);
            let mut pair = vec![0f32; 2 * sx];
            let mut alone = vec![0f32; 2 * sx];
            // SAFETY: AVX2 and FMA checked above.
            unsafe {
                cp.project_rows(&ur, &mut pair);
                cp.project_rows(&ur[..di], &mut alone[..sx]);
                cp.project_rows(&ur[di..], &mut alone[sx..]);
            }
            assert_eq!(
                pair.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "Di {di}, sx {sx}"
            );
        }
    }

    /// The fused pass against the convolution and the product it replaces, on gathered
    /// rows in several orders, with `x_proj` widths below, at and above one group of
    /// output vectors and not a multiple of 8.
    #[test]
    fn fused_pass_matches_conv_then_projection() {
        if !applies(LANES) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        let mut rng = SplitMix64::new(5);
        for &(di, sx, kw, len, seqs) in &[
            (8, 3, 4, 5, 1),
            (16, 35, 4, 13, 3),
            (80, 35, 4, 40, 4),
            (24, 49, 2, 9, 2),
            (32, 57, 1, 7, 2),
            (8, 96, 3, 2, 4),
        ] {
            let tokens = len + 1;
            let ldx = 2 * di + 3;
            let x = random(tokens * ldx, &mut rng);
            let w = random(di * kw, &mut rng);
            let bias = random(di, &mut rng);
            let x_proj = random(sx * di, &mut rng);
            // Sequence s reads the tokens in a rotated, partly reversed order.
            let rows: Vec<u32> = (0..seqs)
                .flat_map(|s| {
                    (0..len).map(move |l| {
                        let i = (l * (2 * s + 1) + s) % tokens;
                        (if s % 2 == 1 { tokens - 1 - i } else { i }) as u32
                    })
                })
                .collect();
            let n = rows.len();
            let (mut u_want, mut xdbl_want) = (vec![0f32; n * di], vec![0f32; n * sx]);
            conv::forward_gathered(&x, ldx, &rows, &w, &bias, len, kw, &mut u_want);
            linear(n, di, sx, &u_want, di, &x_proj, 0.0, &mut xdbl_want, sx);
            let (mut u, mut xdbl) = (vec![f32::NAN; n * di], vec![f32::NAN; n * sx]);
            ConvProject::new(&w, &bias, kw, &x_proj)
                .forward_gathered(&x, ldx, &rows, len, &mut u, &mut xdbl);
            for (what, got, want) in [("u", &u, &u_want), ("x_dbl", &xdbl, &xdbl_want)] {
                for (i, (g, e)) in got.iter().zip(want.iter()).enumerate() {
                    assert!(
                        (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                        "{what}[{i}] (Di {di}, sx {sx}, kw {kw}): {g} vs {e}"
                    );
                }
            }
        }
    }
}
