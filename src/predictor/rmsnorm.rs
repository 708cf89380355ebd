//! RMSNorm with a weight (`layers.{n}.norm`), eps 1e-5 as mamba_ssm's blocks use.

use super::float::Float;
use rayon::prelude::*;

/// The epsilon added to the mean square.
pub const EPS: f64 = 1e-5;

/// Rows per rayon task: large enough that scheduling costs nothing next to the work.
const ROWS_PER_TASK: usize = 64;

/// Rows per partial sum of the weight gradient.
const REDUCE_ROWS: usize = 256;

/// `sum_i term(i)` over `i < len` in 8 interleaved partial sums (term `i` into sum
/// `i % 8`), added pairwise at the end. One running sum is a chain of dependent additions
/// the compiler may not reorder: at C = 384 each row's sum of squares and the backward's
/// dot product waited on 384 additions in a row. Eight chains vectorise and overlap; the
/// order, and so the result, depends on `len` only.
#[inline(always)]
fn sum_lanes<F: Copy + Default + std::ops::Add<Output = F>>(
    len: usize,
    term: impl Fn(usize) -> F,
) -> F {
    let mut acc = [F::default(); 8];
    let full = len / 8 * 8;
    for i in (0..full).step_by(8) {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = *a + term(i + k);
        }
    }
    for (a, i) in acc.iter_mut().zip(full..len) {
        *a = *a + term(i);
    }
    let [a, b, c, d, e, f, g, h] = acc;
    ((a + b) + (c + d)) + ((e + f) + (g + h))
}

/// `out = x / rms(x) * w` over rows of `c` channels; writes `1 / rms` per row into `rstd`
/// when given (the backward pass needs it). The mean square is accumulated in `f64`,
/// which costs nothing here and keeps the f32 forward within the 1e-5 parity budget.
pub fn forward<T: Float>(x: &[T], w: &[T], c: usize, out: &mut [T], rstd: Option<&mut [T]>) {
    let rows = x.len() / c;
    let body = |(xr, or): (&[T], &mut [T])| -> T {
        let xr = &xr[..c];
        let ms = sum_lanes(c, |i| xr[i].to_f64() * xr[i].to_f64()) / c as f64;
        let r = T::from_f64(1.0 / (ms + EPS).sqrt());
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * r * g;
        }
        r
    };
    match rstd {
        Some(rs) => {
            assert_eq!(rs.len(), rows);
            x.par_chunks(c)
                .zip(out.par_chunks_mut(c))
                .zip(rs.par_iter_mut())
                .with_min_len(ROWS_PER_TASK)
                .for_each(|(pair, r)| *r = body(pair));
        }
        None => {
            x.par_chunks(c)
                .zip(out.par_chunks_mut(c))
                .with_min_len(ROWS_PER_TASK)
                .for_each(|pair| {
                    body(pair);
                });
        }
    }
}

/// Backward of [`forward`]: adds `dL/dx` into `gx` (the residual stream's gradient is
/// already there) and `dL/dw` into `gw`, given `g = dL/dout`.
pub fn backward<T: Float>(
    x: &[T],
    w: &[T],
    rstd: &[T],
    g: &[T],
    c: usize,
    gx: &mut [T],
    gw: &mut [T],
) {
    // Fixed blocks of rows, partials summed in block order: the weight gradient is then
    // bitwise the same for any thread count (rayon's fold would group rows by how the
    // work happened to be stolen).
    let partials: Vec<Vec<T>> = x
        .par_chunks(REDUCE_ROWS * c)
        .zip(g.par_chunks(REDUCE_ROWS * c))
        .zip(gx.par_chunks_mut(REDUCE_ROWS * c))
        .zip(rstd.par_chunks(REDUCE_ROWS))
        .map(|(((xb, gb), gxb), rb)| {
            let mut acc = vec![T::ZERO; c];
            for (((xr, gr), gxr), &r) in xb
                .chunks(c)
                .zip(gb.chunks(c))
                .zip(gxb.chunks_mut(c))
                .zip(rb)
            {
                // d out_i / d x_j = r w_i (delta_ij - x_i x_j r^2 / c)
                let (xr, gr, w) = (&xr[..c], &gr[..c], &w[..c]);
                let dot: T = sum_lanes(c, |i| gr[i] * w[i] * xr[i]);
                let k = dot * r * r / T::from_f64(c as f64);
                for i in 0..c {
                    gxr[i] += r * (gr[i] * w[i] - xr[i] * k);
                    acc[i] += gr[i] * xr[i] * r;
                }
            }
            acc
        })
        .collect();
    for partial in &partials {
        gw.iter_mut().zip(partial).for_each(|(a, b)| *a += *b);
    }
}
