//! The fused selective scan of `mixer` and its memory-bounded backward.
//!
//! For each sequence `b` and channel `d`, with `A[d, n] = -exp(A_log[d, n])`:
//! `h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t`, `y_t = <C_t, h_t> + D x_t`, and the output
//! is `y_t * silu(z_t)`. Discretisation, state update, read-out and gating happen in one
//! pass over `t`, with the state in registers/L1 and nothing allocated per step.
//!
//! Vectorisation: data are token-major (`[B*L, Di]`), so a block of `W = 16` adjacent
//! channels is contiguous at every step. The kernel keeps the block's state as `N` rows
//! of `W` lanes and vectorises each update over the channel lanes, looping over the `N`
//! state entries. Vectorising over `N` instead would need a horizontal sum per channel and
//! step for `<C_t, h_t>` (a shuffle tree every time); over channels the read-out is plain
//! lane-wise multiply-adds. Each update is elementwise over `(n, d)`, so this is the same
//! arithmetic either way: the state dimension is fully in vector registers, 16 x 16 per
//! block. Remainder channels (when `Di` is not a multiple of 16) go through the same code
//! with `W = 1`.
//!
//! On x86-64 CPUs with AVX2 and FMA the `f32` forward runs in [`avx2`] and
//! the backward in `avx2_backward` instead (same arithmetic up to
//! rounding; the kernels here are their twins in the tests).
//!
//! Backward: the forward of training stores the state at the start of every chunk of
//! `chunk` steps (`[B, L/chunk, N, Di]`). The backward walks the chunks last to first,
//! recomputes the chunk's states from its checkpoint into a small per-task buffer
//! (`chunk x N x W`, a few tens of KB), then walks it backwards. Memory is
//! `O(B L Di)` for the per-step gradients plus `O(B Di N L / chunk)` for checkpoints.
//!
//! Files: [`dims`] (sizes, inputs, gradients, the checks and the final reduction every
//! kernel shares, and the AVX2 probe), `portable` (the generic kernels), `avx2` and
//! `avx2_backward` (the `f32` kernels; the backward uses the forward's vector helpers),
//! `naive` (the definition, for tests and benches). This file only picks a kernel.

mod dims;
mod portable;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_backward;
#[cfg(any(test, feature = "internals"))]
mod naive;
#[cfg(test)]
mod tests;

#[cfg(target_arch = "x86_64")]
pub use dims::{applies, Delta, Inputs, LANES};
pub use dims::{ScanDims, ScanGrads, ScanInputs};
#[cfg(any(test, feature = "internals"))]
pub use naive::{backward_naive, forward_naive};
pub use portable::backward_portable;

use dims::check_backward;
#[cfg(target_arch = "x86_64")]
use crate::predictor::float::{as_f32, as_f32_mut};
use crate::predictor::float::Float;
use portable::forward_portable;

/// Runs the fused scan: `y = (scan(u) + D u) * silu(z)`, `[rows, Di]` contiguous. `y` may
/// be `u` itself (inference overwrites `u` in place), hence raw pointers; `ckpt`, when
/// given (`ScanDims::ckpt_len` long), receives the states at chunk starts for
/// [`backward`]. Parallel over (sequence, channel block) in rayon's current pool.
///
/// # Safety
/// `u` and `y` must each address `rows * Di` valid elements (they may be equal), and
/// nothing else may access them during the call.
pub unsafe fn forward_raw<T: Float>(
    s: &ScanDims,
    inp: &ScanInputs<T>,
    u: *const T,
    y: *mut T,
    ckpt: Option<&mut [T]>,
) {
    inp.check(s);
    if let Some(c) = &ckpt {
        assert_eq!(c.len(), s.ckpt_len());
    }
    #[cfg(target_arch = "x86_64")]
    if let (Some(fast), true) = (inp.as_f32(), applies(s.d_inner)) {
        let ckpt = ckpt.map(|c| as_f32_mut(c).expect("T is f32"));
        // SAFETY: the caller's contract; T is f32, so the pointers address f32s.
        return unsafe { avx2::forward_raw(s, &fast, u.cast(), y.cast(), ckpt, None) };
    }
    // SAFETY: the caller's contract.
    unsafe { forward_portable(s, inp, u, y, ckpt) }
}

/// Safe wrapper of [`forward_raw`] with distinct `u` and `y`.
pub fn forward<T: Float>(
    s: &ScanDims,
    inp: &ScanInputs<T>,
    u: &[T],
    y: &mut [T],
    ckpt: Option<&mut [T]>,
) {
    assert_eq!(u.len(), s.rows() * s.d_inner);
    assert_eq!(y.len(), u.len());
    // SAFETY: both slices have the right length and `&mut y` is exclusive.
    unsafe { forward_raw(s, inp, u.as_ptr(), y.as_mut_ptr(), ckpt) }
}

/// [`forward`] writing the output over `u`, for inference.
pub fn forward_in_place<T: Float>(s: &ScanDims, inp: &ScanInputs<T>, u: &mut [T]) {
    assert_eq!(u.len(), s.rows() * s.d_inner);
    let p = u.as_mut_ptr();
    // SAFETY: `u` is exclusively borrowed and long enough; each element is read before
    // the same element is written, by the same task.
    unsafe { forward_raw(s, inp, p, p, None) }
}

/// Backward of [`forward`] from its checkpoints `ckpt` and inputs `u`. Parallel over
/// (sequence, channel group); `dL/dB`, `dL/dC`, `dL/dA`, `dL/dD` are summed over channels
/// or sequences through small per-task partials, in an order that does not depend on the
/// thread count.
pub fn backward<T: Float>(s: &ScanDims, inp: &ScanInputs<T>, u: &[T], ckpt: &[T], g: ScanGrads<T>) {
    check_backward(s, inp, u, ckpt, &g);
    #[cfg(target_arch = "x86_64")]
    if let (Some(inp32), true) = (inp.as_f32_inputs(), applies(s.d_inner)) {
        let g32 = ScanGrads {
            gy_then_y: as_f32_mut(g.gy_then_y).expect("T is f32"),
            gz: as_f32_mut(g.gz).expect("T is f32"),
            ld_gz: g.ld_gz,
            gu: as_f32_mut(g.gu).expect("T is f32"),
            gdelta: as_f32_mut(g.gdelta).expect("T is f32"),
            gbias: as_f32_mut(g.gbias).expect("T is f32"),
            gxdbl: as_f32_mut(g.gxdbl).expect("T is f32"),
            ga_log: as_f32_mut(g.ga_log).expect("T is f32"),
            gd: as_f32_mut(g.gd).expect("T is f32"),
        };
        let (u, ckpt) = (
            as_f32(u).expect("T is f32"),
            as_f32(ckpt).expect("T is f32"),
        );
        // SAFETY: the kernel applies here (checked) and the arguments passed the checks.
        return unsafe { avx2_backward::backward(s, &inp32, u, ckpt, g32) };
    }
    backward_portable(s, inp, u, ckpt, g)
}
