//! Matrix products of the linear layers, parallel over rayon's current pool.
//!
//! The single-threaded kernel is `matrixmultiply` (ndarray's), chosen by measurement on
//! the in_proj shape (see the commit that introduced this file and `benches/predictor.rs`).
//! It takes arbitrary strides, so the transposes a linear layer needs (`x W^T` forward,
//! `g W` and `g^T x` backward) are expressed as strides and never materialised. Rayon
//! splits the output into row or column panels, one `matrixmultiply` call each.

use super::float::Float;
use rayon::prelude::*;

/// A raw pointer that may cross threads: each task writes a disjoint part of the buffer,
/// which the borrow checker cannot see through strided layouts.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);

impl<T> SendPtr<T> {
    /// The pointer. A method, so closures capture the whole `Send` wrapper rather than
    /// its raw-pointer field.
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: only used to hand disjoint regions of one live buffer to rayon tasks; every use
// site states why the regions are disjoint.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

/// The last element index + 1 that a `rows x cols` view with these strides touches.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `c = alpha a b + beta c` for an `m x k` matrix `a` at `a[i*rsa + p*csa]`, a `k x n`
/// matrix `b` at `b[p*rsb + j*csb]`, and a row-major `m x n` `c` with row stride `ldc`.
/// `beta = 0` overwrites `c` without reading it.
///
/// # Panics
/// If a view reaches past its slice or `ldc < n`: these are internal shape bugs.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    (rsa, csa): (usize, usize),
    b: &[T],
    (rsb, csb): (usize, usize),
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    assert!(extent(m, k, rsa, csa) <= a.len(), "gemm: a too short");
    assert!(extent(k, n, rsb, csb) <= b.len(), "gemm: b too short");
    assert!(
        ldc >= n && extent(m, n, ldc, 1) <= c.len(),
        "gemm: c too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for v in &mut c[i * ldc..i * ldc + n] {
                *v = if beta == T::ZERO { T::ZERO } else { beta * *v };
            }
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let work = m as f64 * n as f64 * k as f64;
    let cp = SendPtr(c.as_mut_ptr());
    // One panel of rows [i0, i1) and columns [j0, j1) of c.
    let panel = |i0: usize, i1: usize, j0: usize, j1: usize| {
        // SAFETY: the asserts above bound every view; panels handed to different tasks
        // cover disjoint (row, column) ranges of c; a and b are only read.
        unsafe {
            T::gemm_raw(
                i1 - i0,
                k,
                j1 - j0,
                alpha,
                a.as_ptr().add(i0 * rsa),
                rsa as isize,
                csa as isize,
                b.as_ptr().add(j0 * csb),
                rsb as isize,
                csb as isize,
                beta,
                cp.get().add(i0 * ldc + j0),
                ldc as isize,
                1,
            )
        }
    };
    if work >= 2e6 && k >= 8 * m.max(n) {
        // A weight gradient: a long reduction (the B*L tokens) into a small output. Output
        // panels would each re-pack all of the long operands; instead tasks reduce ranges
        // of `k` into private `m x n` partials, summed in order. The ranges depend on `k`
        // only, so the result is the same for any thread count.
        let parts = (k / 2048).clamp(1, 16);
        let step = k.div_ceil(parts);
        let partials: Vec<Vec<T>> = (0..parts)
            .into_par_iter()
            .map(|p| {
                let (p0, p1) = (p * step, ((p + 1) * step).min(k));
                let mut part = vec![T::ZERO; m * n];
                // SAFETY: the asserts above bound the views of a and b; `part` is m x n.
                unsafe {
                    T::gemm_raw(
                        m,
                        p1 - p0,
                        n,
                        alpha,
                        a.as_ptr().add(p0 * csa),
                        rsa as isize,
                        csa as isize,
                        b.as_ptr().add(p0 * rsb),
                        rsb as isize,
                        csb as isize,
                        T::ZERO,
                        part.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                };
                part
            })
            .collect();
        // Rows in parallel (at in_proj's shape ten partials of 1536 x 384 values, 5.9
        // million additions), each element summed in partial order.
        c.par_chunks_mut(ldc)
            .take(m)
            .enumerate()
            .for_each(|(i, row)| {
                let row = &mut row[..n];
                for v in row.iter_mut() {
                    *v = if beta == T::ZERO { T::ZERO } else { beta * *v };
                }
                for part in &partials {
                    for (v, &q) in row.iter_mut().zip(&part[i * n..(i + 1) * n]) {
                        *v += q;
                    }
                }
            });
        return;
    }
    if threads <= 1 || work < 2e6 {
        panel(0, m, 0, n);
        return;
    }
    // Split the longer output side; panels of at least 64 keep matrixmultiply's packing
    // overhead small, and about 4 per thread keep the threads evenly loaded.
    let split = |len: usize| {
        let parts = (threads * 4).min(len.div_ceil(64)).max(1);
        let step = len.div_ceil(parts);
        (0..len.div_ceil(step)).map(move |p| (p * step, ((p + 1) * step).min(len)))
    };
    if m >= n {
        let parts: Vec<_> = split(m).collect();
        parts
            .into_par_iter()
            .for_each(|(i0, i1)| panel(i0, i1, 0, n));
    } else {
        let parts: Vec<_> = split(n).collect();
        parts
            .into_par_iter()
            .for_each(|(j0, j1)| panel(0, m, j0, j1));
    }
}

/// Linear layer forward: `out[m, n] = beta out + x[m, k] w[n, k]^T`, `x` with row stride
/// `ldx`, `out` with row stride `ldo`, `w` row-major as torch stores `nn.Linear.weight`.
#[allow(clippy::too_many_arguments)]
pub fn linear<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    x: &[T],
    ldx: usize,
    w: &[T],
    beta: T,
    out: &mut [T],
    ldo: usize,
) {
    gemm(m, k, n, T::ONE, x, (ldx, 1), w, (1, k), beta, out, ldo);
}

/// Gradient of a linear layer's input: `gx[m, k] = beta gx + g[m, n] w[n, k]`.
#[allow(clippy::too_many_arguments)]
pub fn linear_grad_input<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    g: &[T],
    ldg: usize,
    w: &[T],
    beta: T,
    gx: &mut [T],
    ldx: usize,
) {
    gemm(m, n, k, T::ONE, g, (ldg, 1), w, (k, 1), beta, gx, ldx);
}

/// Gradient of a linear layer's weight: `gw[n, k] = beta gw + g[m, n]^T x[m, k]`.
#[allow(clippy::too_many_arguments)]
pub fn linear_grad_weight<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    g: &[T],
    ldg: usize,
    x: &[T],
    ldx: usize,
    beta: T,
    gw: &mut [T],
) {
    gemm(n, m, k, T::ONE, g, (1, ldg), x, (ldx, 1), beta, gw, k);
}

#[cfg(any(test, feature = "internals"))]
/// The obvious triple loop with `f64` accumulation: the twin the fast path is tested
/// against.
#[allow(clippy::too_many_arguments)]
pub fn gemm_naive<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    (rsa, csa): (usize, usize),
    b: &[T],
    (rsb, csb): (usize, usize),
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for p in 0..k {
                s += a[i * rsa + p * csa].to_f64() * b[p * rsb + j * csb].to_f64();
            }
            let old = if beta == T::ZERO {
                0.0
            } else {
                beta.to_f64() * c[i * ldc + j].to_f64()
            };
            c[i * ldc + j] = T::from_f64(alpha.to_f64() * s + old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::rng::SplitMix64;

    fn rand(n: usize, rng: &mut SplitMix64) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    #[test]
    fn fast_gemm_matches_naive_for_every_layout() {
        let mut rng = SplitMix64::new(3);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        // Tall (row split), wide (column split), long reduction (k split), tiny (single
        // call), and k = 0.
        for &(m, k, n) in &[
            (300usize, 37usize, 45usize),
            (20, 50, 700),
            (24, 5000, 40),
            (3, 4, 5),
            (7, 0, 6),
        ] {
            for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
                let a = rand(m * k + 3, &mut rng);
                let b = rand(k * n + 3, &mut rng);
                let sa = if ta { (1, m) } else { (k, 1) };
                let sb = if tb { (1, k) } else { (n, 1) };
                let ldc = n + 2;
                let c0 = rand(m * ldc, &mut rng);
                let mut fast = c0.clone();
                let mut slow = c0.clone();
                pool.install(|| gemm(m, k, n, 0.5, &a, sa, &b, sb, 2.0, &mut fast, ldc));
                gemm_naive(m, k, n, 0.5, &a, sa, &b, sb, 2.0, &mut slow, ldc);
                for (i, (x, y)) in fast.iter().zip(&slow).enumerate() {
                    assert!(
                        (x - y).abs() < 1e-4 * (1.0 + y.abs()),
                        "{m}x{k}x{n} {i}: {x} {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_garbage() {
        let a = vec![1.0f32; 6];
        let b = vec![2.0f32; 6];
        let mut c = vec![f32::NAN; 4];
        gemm(2, 3, 2, 1.0, &a, (3, 1), &b, (2, 1), 0.0, &mut c, 2);
        assert_eq!(c, vec![6.0; 4]);
    }
}
