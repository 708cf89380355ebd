//! The causal depthwise convolution `mixer.conv1d` (weight `[Di, 1, d_conv]`, bias `[Di]`)
//! followed by SiLU, over token-major `[rows = B*L, Di]` data.
//!
//! torch pads `d_conv - 1` zeros on the left of each sequence and keeps the first `L`
//! outputs, so `pre[t, d] = bias[d] + sum_k w[d, k] x[t + k - (d_conv - 1), d]`.
//! Loops run over channels innermost (contiguous in memory) so they vectorise; the weight
//! is transposed to `[d_conv, Di]` once per call for the same reason.

use super::float::{fma_if, multiversion, silu_and_grad_with, silu_with, Float};
use super::prefetch::prefetch_read;
use rayon::prelude::*;

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 32;

/// Rows per partial sum of the weight and bias gradients.
const REDUCE_ROWS: usize = 256;

/// conv1d's `[Di, 1, kw]` weight as `[kw, Di]`, so the loops over channels read it
/// contiguously.
pub(super) fn transpose<T: Float>(w: &[T], di: usize, kw: usize) -> Vec<T> {
    let mut wt = vec![T::ZERO; di * kw];
    for d in 0..di {
        for k in 0..kw {
            wt[k * di + d] = w[d * kw + k];
        }
    }
    wt
}

/// Pre-activation of one output row `row` (sequence position `t`) into `acc`, its
/// multiply-adds fused when `F` (code compiled for FMA).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pre_row<T: Float, const F: bool>(
    x: &[T],
    ldx: usize,
    rows: Option<&[u32]>,
    wt: &[T],
    bias: &[T],
    row: usize,
    t: usize,
    kw: usize,
    acc: &mut [T],
) {
    acc.copy_from_slice(bias);
    let di = acc.len();
    for k in 0..kw {
        // Input position t + k - (kw - 1), skipped when it falls in the left padding.
        if t + k + 1 < kw {
            continue;
        }
        let src = &x[source_row(rows, row + k + 1 - kw) * ldx..][..di];
        let wk = &wt[k * di..(k + 1) * di];
        for d in 0..di {
            acc[d] = fma_if::<T, F>(wk[d], src[d], acc[d]);
        }
    }
}

/// `u = silu(conv(x) + bias)`; `x` holds `len`-long sequences back to back with row
/// stride `ldx` (the x half of in_proj's output), `u` is contiguous `[rows, di]`.
pub fn forward<T: Float>(
    x: &[T],
    ldx: usize,
    w: &[T],
    bias: &[T],
    len: usize,
    kw: usize,
    u: &mut [T],
) {
    forward_impl(x, ldx, None, w, bias, len, kw, u);
}

/// [`forward`] over sequences whose row `r` is row `rows[r]` of `x` (sequences that read
/// one token set in different orders, without copying it into each order).
#[allow(clippy::too_many_arguments)]
#[cfg(any(test, feature = "internals", not(target_arch = "x86_64")))]
pub fn forward_gathered<T: Float>(
    x: &[T],
    ldx: usize,
    rows: &[u32],
    w: &[T],
    bias: &[T],
    len: usize,
    kw: usize,
    u: &mut [T],
) {
    let di = bias.len();
    assert_eq!(rows.len() * di, u.len());
    assert!(rows.iter().all(|&r| r as usize * ldx + di <= x.len()));
    forward_impl(x, ldx, Some(rows), w, bias, len, kw, u);
}

#[allow(clippy::too_many_arguments)]
fn forward_impl<T: Float>(
    x: &[T],
    ldx: usize,
    rows: Option<&[u32]>,
    w: &[T],
    bias: &[T],
    len: usize,
    kw: usize,
    u: &mut [T],
) {
    let di = bias.len();
    let wt = transpose(w, di, kw);
    u.par_chunks_mut(di)
        .enumerate()
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(row, ur)| {
            if let Some(r) = rows {
                // Gathered rows come out of order: ask for the one read next a few rows
                // ahead (see `prefetch`).
                if let Some(&ahead) = r.get(row + PREFETCH_ROWS) {
                    prefetch_read(x, ahead as usize * ldx, di);
                }
            }
            fwd_row(x, ldx, rows, &wt, bias, row, row % len, kw, ur);
        });
}

/// How many rows ahead the gathered forward prefetches its newest input row.
const PREFETCH_ROWS: usize = 4;

/// The row of `x` that sequence row `row` reads.
#[inline(always)]
fn source_row(rows: Option<&[u32]>, row: usize) -> usize {
    rows.map_or(row, |r| r[row] as usize)
}

/// Backward of [`forward`]. On entry `gu` holds `dL/du`; it is overwritten with
/// `dL/dpre`. Writes `dL/dx` into `gx` (row stride `ldgx`) and adds the weight and bias
/// gradients into `gw` (`[di, kw]`) and `gb`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    x: &[T],
    ldx: usize,
    w: &[T],
    bias: &[T],
    len: usize,
    kw: usize,
    gu: &mut [T],
    gx: &mut [T],
    ldgx: usize,
    gw: &mut [T],
    gb: &mut [T],
) {
    let di = bias.len();
    let wt = transpose(w, di, kw);
    // Pass 1: dL/dpre in place, and the weight/bias sums.
    // Fixed blocks of rows, partials summed in block order, so the result does not depend
    // on the thread count or on work stealing.
    let partials: Vec<(Vec<T>, Vec<T>)> = gu
        .par_chunks_mut(REDUCE_ROWS * di)
        .enumerate()
        .map(|(bi, blk)| {
            let (mut gwt, mut gbs, mut pre) =
                (vec![T::ZERO; kw * di], vec![T::ZERO; di], vec![T::ZERO; di]);
            for (r, gr) in blk.chunks_mut(di).enumerate() {
                let row = bi * REDUCE_ROWS + r;
                bwd_row(
                    x,
                    ldx,
                    &wt,
                    bias,
                    row,
                    row % len,
                    kw,
                    gr,
                    &mut gwt,
                    &mut gbs,
                    &mut pre,
                );
            }
            (gwt, gbs)
        })
        .collect();
    let (mut gwt, mut gbs) = (vec![T::ZERO; kw * di], vec![T::ZERO; di]);
    for (a, b) in &partials {
        gwt.iter_mut().zip(a).for_each(|(p, q)| *p += *q);
        gbs.iter_mut().zip(b).for_each(|(p, q)| *p += *q);
    }
    for d in 0..di {
        gb[d] += gbs[d];
        for k in 0..kw {
            gw[d * kw + k] += gwt[k * di + d];
        }
    }
    // Pass 2: dL/dx[s] = sum_k w[k] dL/dpre[s + kw - 1 - k], a gather so rows are
    // independent (a scatter would race between tasks).
    let gpre: &[T] = gu;
    let rows = gpre.len() / di;
    gx.par_chunks_mut(ldgx)
        .take(rows)
        .enumerate()
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(row, gxr)| {
            gather_row(gpre, &wt, row, row % len, len, kw, &mut gxr[..di]);
        });
}

/// One row of the forward: pre-activation, then SiLU.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fwd_row_body<T: Float, const F: bool>(
    x: &[T],
    ldx: usize,
    rows: Option<&[u32]>,
    wt: &[T],
    bias: &[T],
    row: usize,
    t: usize,
    kw: usize,
    ur: &mut [T],
) {
    pre_row::<T, F>(x, ldx, rows, wt, bias, row, t, kw, ur);
    for v in ur.iter_mut() {
        *v = silu_with::<T, F>(*v);
    }
}

/// One row of the backward's first pass: `dL/dpre` in place over `gr`, and the row's
/// contributions to the (transposed) weight and bias gradients.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bwd_row_body<T: Float, const F: bool>(
    x: &[T],
    ldx: usize,
    wt: &[T],
    bias: &[T],
    row: usize,
    t: usize,
    kw: usize,
    gr: &mut [T],
    gwt: &mut [T],
    gbs: &mut [T],
    pre: &mut [T],
) {
    let di = bias.len();
    pre_row::<T, F>(x, ldx, None, wt, bias, row, t, kw, pre);
    for ((g, gb), &p) in gr.iter_mut().zip(gbs.iter_mut()).zip(pre.iter()) {
        *g *= silu_and_grad_with::<T, F>(p).1;
        *gb += *g;
    }
    for k in 0..kw {
        if t + k + 1 < kw {
            continue;
        }
        let src = &x[(row + k + 1 - kw) * ldx..][..di];
        for ((a, &g), &v) in gwt[k * di..(k + 1) * di].iter_mut().zip(gr.iter()).zip(src) {
            *a = fma_if::<T, F>(g, v, *a);
        }
    }
}

/// One row of the backward's second pass: `dL/dx[row] = sum_k w[k] dL/dpre[row + kw-1-k]`.
#[inline(always)]
fn gather_row_body<T: Float, const F: bool>(
    gpre: &[T],
    wt: &[T],
    row: usize,
    t: usize,
    len: usize,
    kw: usize,
    out: &mut [T],
) {
    let di = out.len();
    out.iter_mut().for_each(|v| *v = T::ZERO);
    for k in 0..kw {
        let ahead = kw - 1 - k;
        if t + ahead >= len {
            continue;
        }
        let src = &gpre[(row + ahead) * di..][..di];
        for ((o, &w), &g) in out.iter_mut().zip(&wt[k * di..(k + 1) * di]).zip(src) {
            *o = fma_if::<T, F>(w, g, *o);
        }
    }
}

// The AVX2 clones fuse the multiply-adds of the taps and of SiLU's exponential (`F`): the
// unfused exponential's chain of dependent multiplies and adds was most of a row's time
// (docs/performance.md, "Kernel choices").
multiversion!(fma fn fwd_row => fwd_row_body(x: &[T], ldx: usize, rows: Option<&[u32]>, wt: &[T], bias: &[T], row: usize, t: usize, kw: usize, ur: &mut [T]));
multiversion!(fma fn bwd_row => bwd_row_body(x: &[T], ldx: usize, wt: &[T], bias: &[T], row: usize, t: usize, kw: usize, gr: &mut [T], gwt: &mut [T], gbs: &mut [T], pre: &mut [T]));
multiversion!(fma fn gather_row => gather_row_body(gpre: &[T], wt: &[T], row: usize, t: usize, len: usize, kw: usize, out: &mut [T]));

#[cfg(any(test, feature = "internals"))]
/// The obvious per-element twin of [`forward`], in `f64`, for tests.
pub fn forward_naive<T: Float>(
    x: &[T],
    ldx: usize,
    w: &[T],
    bias: &[T],
    len: usize,
    kw: usize,
    u: &mut [T],
) {
    let di = bias.len();
    let rows = u.len() / di;
    for row in 0..rows {
        let (b, t) = (row / len, row % len);
        for d in 0..di {
            let mut s = bias[d].to_f64();
            for k in 0..kw {
                let src = t as isize + k as isize - (kw as isize - 1);
                if src >= 0 {
                    s += w[d * kw + k].to_f64() * x[(b * len + src as usize) * ldx + d].to_f64();
                }
            }
            u[row * di + d] = T::from_f64(s / (1.0 + (-s).exp()));
        }
    }
}

#[cfg(any(test, feature = "internals"))]
/// The obvious scatter-form twin of [`backward`], in `f64`, for tests: returns
/// `(dL/dx [rows, di], dL/dw [di, kw], dL/db [di])` for `gu = dL/du`.
pub fn backward_naive<T: Float>(
    x: &[T],
    ldx: usize,
    w: &[T],
    bias: &[T],
    len: usize,
    kw: usize,
    gu: &[T],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let di = bias.len();
    let rows = gu.len() / di;
    let (mut gx, mut gw, mut gb) = (vec![0f64; rows * di], vec![0f64; di * kw], vec![0f64; di]);
    for row in 0..rows {
        let (b, t) = (row / len, row % len);
        for d in 0..di {
            let src = |k: usize| {
                let s = t as isize + k as isize - (kw as isize - 1);
                (s >= 0).then(|| b * len + s as usize)
            };
            let mut pre = bias[d].to_f64();
            for k in 0..kw {
                if let Some(r) = src(k) {
                    pre += w[d * kw + k].to_f64() * x[r * ldx + d].to_f64();
                }
            }
            let sig = 1.0 / (1.0 + (-pre).exp());
            let gpre = gu[row * di + d].to_f64() * sig * (1.0 + pre * (1.0 - sig));
            gb[d] += gpre;
            for k in 0..kw {
                if let Some(r) = src(k) {
                    gw[d * kw + k] += gpre * x[r * ldx + d].to_f64();
                    gx[r * di + d] += gpre * w[d * kw + k].to_f64();
                }
            }
        }
    }
    (gx, gw, gb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::rng::SplitMix64;

    #[test]
    fn fast_conv_matches_naive() {
        let mut rng = SplitMix64::new(11);
        let (b, len, di, kw, ldx) = (3, 9, 70, 4, 150);
        let x: Vec<f32> = (0..b * len * ldx)
            .map(|_| rng.uniform(-2.0, 2.0) as f32)
            .collect();
        let w: Vec<f32> = (0..di * kw)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect();
        let bias: Vec<f32> = (0..di).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
        let mut fast = vec![0f32; b * len * di];
        let mut slow = fast.clone();
        forward(&x, ldx, &w, &bias, len, kw, &mut fast);
        forward_naive(&x, ldx, &w, &bias, len, kw, &mut slow);
        for (p, q) in fast.iter().zip(&slow) {
            assert!((p - q).abs() < 1e-5 * (1.0 + q.abs()), "{p} {q}");
        }
    }

    #[test]
    fn gathered_conv_reads_the_rows_it_is_given() {
        let mut rng = SplitMix64::new(13);
        let (tokens, len, di, kw, ldx) = (7, 9, 24, 4, 50);
        let x: Vec<f32> = (0..tokens * ldx)
            .map(|_| rng.uniform(-2.0, 2.0) as f32)
            .collect();
        let w: Vec<f32> = (0..di * kw)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect();
        let bias: Vec<f32> = (0..di).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
        // Two sequences reading the rows in different orders, with repeats.
        let rows: Vec<u32> = (0..2 * len)
            .map(|r| ((r * 5 + r / len) % tokens) as u32)
            .collect();
        let copied: Vec<f32> = rows
            .iter()
            .flat_map(|&r| x[r as usize * ldx..][..ldx].iter().copied())
            .collect();
        let mut gathered = vec![0f32; 2 * len * di];
        let mut want = gathered.clone();
        forward_gathered(&x, ldx, &rows, &w, &bias, len, kw, &mut gathered);
        forward(&copied, ldx, &w, &bias, len, kw, &mut want);
        assert_eq!(gathered, want);
    }

    #[test]
    fn fused_and_plain_rows_agree() {
        // The dispatched rows run one variant on this machine; both are checked here
        // (`F = true` outside FMA code is slow, not wrong).
        let mut rng = SplitMix64::new(14);
        let (len, di, kw, ldx) = (6usize, 37usize, 4usize, 80usize);
        let mut v = |n: usize, r: f64| {
            (0..n)
                .map(|_| rng.uniform(-r, r) as f32)
                .collect::<Vec<_>>()
        };
        let (x, w, bias, gu) = (
            v(len * ldx, 2.0),
            v(di * kw, 1.0),
            v(di, 1.0),
            v(len * di, 1.0),
        );
        let wt = transpose(&w, di, kw);
        let close = |what: &str, a: &[f32], b: &[f32]| {
            for (p, q) in a.iter().zip(b) {
                assert!(
                    (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                    "{what}: {p} vs {q}"
                );
            }
        };
        for row in 0..len {
            let (mut plain, mut fused) = (vec![0f32; di], vec![0f32; di]);
            fwd_row_body::<f32, false>(&x, ldx, None, &wt, &bias, row, row, kw, &mut plain);
            fwd_row_body::<f32, true>(&x, ldx, None, &wt, &bias, row, row, kw, &mut fused);
            close("u", &fused, &plain);
            let run = |fused: bool| {
                let mut g = gu[row * di..(row + 1) * di].to_vec();
                let (mut gwt, mut gb, mut pre) =
                    (vec![0f32; kw * di], vec![0f32; di], vec![0f32; di]);
                let (mut gx, gpre) = (vec![0f32; di], gu.clone());
                if fused {
                    bwd_row_body::<f32, true>(
                        &x, ldx, &wt, &bias, row, row, kw, &mut g, &mut gwt, &mut gb, &mut pre,
                    );
                    gather_row_body::<f32, true>(&gpre, &wt, row, row, len, kw, &mut gx);
                } else {
                    bwd_row_body::<f32, false>(
                        &x, ldx, &wt, &bias, row, row, kw, &mut g, &mut gwt, &mut gb, &mut pre,
                    );
                    gather_row_body::<f32, false>(&gpre, &wt, row, row, len, kw, &mut gx);
                }
                [g, gwt, gb, gx]
            };
            for (name, (a, b)) in ["dL/dpre", "dL/dw", "dL/db", "dL/dx"]
                .iter()
                .zip(run(true).iter().zip(&run(false)))
            {
                close(name, a, b);
            }
        }
    }

    #[test]
    fn fast_conv_backward_matches_naive() {
        let mut rng = SplitMix64::new(12);
        // Sequences shorter and longer than the kernel.
        for &(b, len, di, kw) in &[
            (3usize, 9usize, 21usize, 4usize),
            (2, 2, 5, 4),
            (1, 7, 3, 1),
        ] {
            let ldx = 2 * di + 1;
            let x: Vec<f64> = (0..b * len * ldx).map(|_| rng.uniform(-2.0, 2.0)).collect();
            let w: Vec<f64> = (0..di * kw).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let bias: Vec<f64> = (0..di).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let gu: Vec<f64> = (0..b * len * di).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let (want_gx, want_gw, want_gb) = backward_naive(&x, ldx, &w, &bias, len, kw, &gu);
            let mut g = gu.clone();
            let mut gx = vec![f64::NAN; b * len * ldx];
            let (mut gw, mut gb) = (vec![0.0; di * kw], vec![0.0; di]);
            backward(
                &x, ldx, &w, &bias, len, kw, &mut g, &mut gx, ldx, &mut gw, &mut gb,
            );
            let close = |a: f64, e: f64| (a - e).abs() < 1e-12 * (1.0 + e.abs());
            for row in 0..b * len {
                for d in 0..di {
                    assert!(
                        close(gx[row * ldx + d], want_gx[row * di + d]),
                        "gx {row} {d}"
                    );
                }
            }
            assert!(gw.iter().zip(&want_gw).all(|(a, e)| close(*a, *e)));
            assert!(gb.iter().zip(&want_gb).all(|(a, e)| close(*a, *e)));
        }
    }
}
