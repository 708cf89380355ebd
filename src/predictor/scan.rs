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
//! On x86-64 CPUs with AVX2 and FMA the `f32` forward runs in [`super::scan_avx2`] and
//! the backward in [`super::scan_avx2_backward`] instead (same arithmetic up to
//! rounding; the kernels here are their twins in the tests).
//!
//! Backward: the forward of training stores the state at the start of every chunk of
//! `chunk` steps (`[B, L/chunk, N, Di]`). The backward walks the chunks last to first,
//! recomputes the chunk's states from its checkpoint into a small per-task buffer
//! (`chunk x N x W`, a few tens of KB), then walks it backwards. Memory is
//! `O(B L Di)` for the per-step gradients plus `O(B Di N L / chunk)` for checkpoints.

// The kernels index lanes and state rows in lockstep across several arrays; index loops
// say that most plainly, and they vectorise the same as iterator chains.
#![allow(clippy::needless_range_loop)]

use super::float::{
    as_f32, as_f32_mut, fma_if, silu_and_grad_with, silu_with, softplus_grad_from_output, Float,
};
use super::gemm::SendPtr;
#[cfg(target_arch = "x86_64")]
use super::scan_avx2;
#[cfg(target_arch = "x86_64")]
use super::scan_avx2_backward;
use rayon::prelude::*;

/// Channels per vector block.
const W: usize = 16;

/// Vector blocks per backward task.
const BLOCKS_PER_GROUP: usize = 6;

/// Lanes kept per partial sum of `dL/dB`, `dL/dC`: a block folds its 16 channel lanes to
/// 8 (one vector add) and the final 8-to-1 reduction happens once per channel group
/// instead of once per block, which took a third of the backward kernel's time.
const LANES: usize = 8;

/// Sizes of one scan call.
#[derive(Debug, Clone, Copy)]
pub struct ScanDims {
    /// Sequences.
    pub batch: usize,
    /// Steps per sequence.
    pub len: usize,
    /// Channels (`Di`).
    pub d_inner: usize,
    /// State size (`N`).
    pub d_state: usize,
    /// Offset of `B` within a row of `x_dbl` (`dt_rank`); `C` follows `B`.
    pub b_offset: usize,
    /// Row stride of `x_dbl` (`dt_rank + 2 N`).
    pub ld_xdbl: usize,
    /// Steps between state checkpoints in training.
    pub chunk: usize,
}

impl ScanDims {
    /// Number of checkpoint chunks per sequence.
    pub fn n_chunks(&self) -> usize {
        self.len.div_ceil(self.chunk)
    }

    /// Length of the checkpoint buffer, `[B, n_chunks, N, Di]`.
    pub fn ckpt_len(&self) -> usize {
        self.batch * self.n_chunks() * self.d_state * self.d_inner
    }

    fn rows(&self) -> usize {
        self.batch * self.len
    }

    /// The `(first channel, width)` of each vector block: full blocks, then single
    /// channels for the remainder.
    fn blocks(&self) -> Vec<(usize, usize)> {
        let full = self.d_inner / W;
        let mut v: Vec<_> = (0..full).map(|i| (i * W, W)).collect();
        v.extend((full * W..self.d_inner).map(|d| (d, 1)));
        v
    }
}

/// Read-only inputs of a scan, all token-major with `rows = B*L`.
#[derive(Clone, Copy)]
pub struct ScanInputs<'a, T> {
    /// `A_log`, `[Di, N]`.
    pub a_log: &'a [T],
    /// `D`, `[Di]`.
    pub d: &'a [T],
    /// `dt` after softplus, `[rows, Di]`.
    pub delta: &'a [T],
    /// `x_proj` output, `[rows, ld_xdbl]`; `B` and `C` are read from it.
    pub xdbl: &'a [T],
    /// The gate `z`, `[rows, ld_z]` (the z half of in_proj's output).
    pub z: &'a [T],
    /// Row stride of `z`.
    pub ld_z: usize,
}

impl<'a, T: Float> ScanInputs<'a, T> {
    fn check(&self, s: &ScanDims) {
        let rows = s.rows();
        assert_eq!(self.a_log.len(), s.d_inner * s.d_state);
        assert_eq!(self.d.len(), s.d_inner);
        assert_eq!(self.delta.len(), rows * s.d_inner);
        assert!(s.b_offset + 2 * s.d_state <= s.ld_xdbl);
        assert!(self.xdbl.len() >= rows * s.ld_xdbl);
        assert!(
            self.ld_z >= s.d_inner
                && (rows == 0 || self.z.len() >= (rows - 1) * self.ld_z + s.d_inner)
        );
        assert!(s.chunk > 0);
    }

    /// These inputs for the `f32` kernel, when `T` is `f32`.
    #[cfg(target_arch = "x86_64")]
    fn as_f32(&self) -> Option<scan_avx2::Inputs<'a>> {
        self.with_delta_f32(scan_avx2::Delta::Stored(as_f32(self.delta)?))
    }

    /// These inputs with `T = f32`, when it is.
    #[cfg(target_arch = "x86_64")]
    fn as_f32_inputs(&self) -> Option<ScanInputs<'a, f32>> {
        Some(ScanInputs {
            a_log: as_f32(self.a_log)?,
            d: as_f32(self.d)?,
            delta: as_f32(self.delta)?,
            xdbl: as_f32(self.xdbl)?,
            z: as_f32(self.z)?,
            ld_z: self.ld_z,
        })
    }

    /// These inputs for the `f32` kernel with `dt` from `delta` instead of
    /// [`ScanInputs::delta`], when `T` is `f32`.
    #[cfg(target_arch = "x86_64")]
    pub fn with_delta_f32(&self, delta: scan_avx2::Delta<'a>) -> Option<scan_avx2::Inputs<'a>> {
        Some(scan_avx2::Inputs {
            a_log: as_f32(self.a_log)?,
            d: as_f32(self.d)?,
            delta,
            xdbl: as_f32(self.xdbl)?,
            z: as_f32(self.z)?,
            ld_z: self.ld_z,
            z_rows: None,
        })
    }

    /// `A` for the block's channels, transposed to `[N][lanes]`.
    fn a_block<const V: usize>(&self, s: &ScanDims, d0: usize) -> Vec<[T; V]> {
        (0..s.d_state)
            .map(|n| std::array::from_fn(|w| -self.a_log[(d0 + w) * s.d_state + n].exp()))
            .collect()
    }
}

/// Pointers a forward task writes through.
#[derive(Clone, Copy)]
struct FwdOut<T> {
    u: *const T,
    y: *mut T,
    ckpt: Option<SendPtr<T>>,
}
// SAFETY: see `forward`: tasks touch disjoint channel columns.
unsafe impl<T> Send for FwdOut<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for FwdOut<T> {}

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
    if let (Some(fast), true) = (inp.as_f32(), scan_avx2::applies(s.d_inner)) {
        let ckpt = ckpt.map(|c| as_f32_mut(c).expect("T is f32"));
        // SAFETY: the caller's contract; T is f32, so the pointers address f32s.
        return unsafe { scan_avx2::forward_raw(s, &fast, u.cast(), y.cast(), ckpt, None) };
    }
    // SAFETY: the caller's contract.
    unsafe { forward_portable(s, inp, u, y, ckpt) }
}

/// [`forward_raw`] in code the compiler vectorises (any `T`, any CPU, any `Di`).
///
/// # Safety
/// As [`forward_raw`].
unsafe fn forward_portable<T: Float>(
    s: &ScanDims,
    inp: &ScanInputs<T>,
    u: *const T,
    y: *mut T,
    ckpt: Option<&mut [T]>,
) {
    let out = FwdOut {
        u,
        y,
        ckpt: ckpt.map(|c| SendPtr(c.as_mut_ptr())),
    };
    let blocks = s.blocks();
    let tasks: Vec<(usize, usize, usize)> = (0..s.batch)
        .flat_map(|b| blocks.iter().map(move |&(d0, w)| (b, d0, w)))
        .collect();
    tasks.into_par_iter().for_each(|(b, d0, w)| {
        // SAFETY: task (b, d0) reads and writes only rows of sequence b and columns
        // d0..d0+w of u/y and of the checkpoints; tasks are disjoint in (b, columns).
        unsafe {
            if w == W {
                dispatch_fwd::<T, W>(s, inp, &out, b, d0)
            } else {
                dispatch_fwd::<T, 1>(s, inp, &out, b, d0)
            }
        }
    });
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

/// Runs `fwd_block` compiled for AVX2+FMA when the CPU has them: the crate is built for
/// baseline x86-64 (SSE2), where the loops would use 4-lane vectors only.
unsafe fn dispatch_fwd<T: Float, const V: usize>(
    s: &ScanDims,
    inp: &ScanInputs<T>,
    out: &FwdOut<T>,
    b: usize,
    d0: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: features checked; the rest is the caller's contract.
            return unsafe { fwd_block_avx2::<T, V>(s, inp, out, b, d0) };
        }
    }
    // SAFETY: the caller's contract.
    unsafe { fwd_block::<T, V, false>(s, inp, out, b, d0) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fwd_block_avx2<T: Float, const V: usize>(
    s: &ScanDims,
    inp: &ScanInputs<T>,
    out: &FwdOut<T>,
    b: usize,
    d0: usize,
) {
    // SAFETY: the caller's contract.
    unsafe { fwd_block::<T, V, true>(s, inp, out, b, d0) }
}

/// `[f(0), .., f(V-1)]`, always inlined (`std::array::from_fn` is not, and an opaque
/// call in the kernels stops vectorisation).
#[inline(always)]
fn arr<T: Float, const V: usize>(f: impl Fn(usize) -> T) -> [T; V] {
    let mut a = [T::ZERO; V];
    for (w, x) in a.iter_mut().enumerate() {
        *x = f(w);
    }
    a
}

#[inline(always)]
unsafe fn load<T: Float, const V: usize>(p: *const T) -> [T; V] {
    // SAFETY: the caller guarantees V readable elements.
    arr(|w| unsafe { *p.add(w) })
}

#[inline(always)]
unsafe fn store<T: Float, const V: usize>(p: *mut T, v: &[T; V]) {
    for (w, x) in v.iter().enumerate() {
        // SAFETY: the caller guarantees V writable elements.
        unsafe { *p.add(w) = *x };
    }
}

/// The scan of one sequence over channels `d0..d0+V`.
#[inline(always)]
unsafe fn fwd_block<T: Float, const V: usize, const F: bool>(
    s: &ScanDims,
    inp: &ScanInputs<T>,
    out: &FwdOut<T>,
    b: usize,
    d0: usize,
) {
    let (di, ns) = (s.d_inner, s.d_state);
    let a = inp.a_block::<V>(s, d0);
    let dd: [T; V] = arr(|w| inp.d[d0 + w]);
    let mut h = vec![[T::ZERO; V]; ns];
    for t in 0..s.len {
        let row = b * s.len + t;
        if let Some(ck) = out.ckpt {
            if t % s.chunk == 0 {
                let base = (b * s.n_chunks() + t / s.chunk) * ns;
                for (n, hn) in h.iter().enumerate() {
                    // SAFETY: inside the checkpoint buffer, columns of this block.
                    unsafe { store(ck.0.add((base + n) * di + d0), hn) };
                }
            }
        }
        let off = row * di + d0;
        let dl: [T; V] = arr(|w| inp.delta[off + w]);
        // SAFETY: `u` holds rows * di elements.
        let uu: [T; V] = unsafe { load(out.u.add(off)) };
        let du: [T; V] = arr(|w| dl[w] * uu[w]);
        let bc = &inp.xdbl[row * s.ld_xdbl + s.b_offset..][..2 * ns];
        let mut acc = [T::ZERO; V];
        for n in 0..ns {
            let (bn, cn) = (bc[n], bc[ns + n]);
            let (hn, an) = (&mut h[n], &a[n]);
            for w in 0..V {
                let decay = (dl[w] * an[w]).fast_exp_fused::<F>();
                hn[w] = fma_if::<T, F>(decay, hn[w], du[w] * bn);
                acc[w] = fma_if::<T, F>(hn[w], cn, acc[w]);
            }
        }
        let zr = &inp.z[row * inp.ld_z + d0..][..V];
        let yv: [T; V] = arr(|w| (acc[w] + dd[w] * uu[w]) * silu_with::<T, F>(zr[w]));
        // SAFETY: `y` holds rows * di elements; `u` at `off` was read above.
        unsafe { store(out.y.add(off), &yv) };
    }
}

/// Gradient outputs of [`backward`].
pub struct ScanGrads<'a, T> {
    /// In: `dL/dy` (gated output), `[rows, Di]`. Out: the gated output `y` itself, which
    /// the backward recomputes anyway and `out_proj`'s weight gradient needs.
    pub gy_then_y: &'a mut [T],
    /// Out: `dL/dz`, written into `[rows, ld_gz]`.
    pub gz: &'a mut [T],
    /// Row stride of `gz`.
    pub ld_gz: usize,
    /// Out: `dL/du`, `[rows, Di]`.
    pub gu: &'a mut [T],
    /// Out: the gradient of dt_proj's output, i.e. of `dt` *before* the softplus (the
    /// kernel applies softplus' from the stored `dt`, saving a pass), `[rows, Di]`.
    pub gdelta: &'a mut [T],
    /// Added to: `dL/d dt_proj.bias`, the column sums of `gdelta`, `[Di]`.
    pub gbias: &'a mut [T],
    /// Out: `dL/dB` and `dL/dC`, written into columns `b_offset..b_offset + 2N` of this
    /// `[rows, ld_xdbl]` buffer.
    pub gxdbl: &'a mut [T],
    /// Added to: `dL/dA_log`, `[Di, N]`.
    pub ga_log: &'a mut [T],
    /// Added to: `dL/dD`, `[Di]`.
    pub gd: &'a mut [T],
}

/// Backward of [`forward`] from its checkpoints `ckpt` and inputs `u`. Parallel over
/// (sequence, channel group); `dL/dB`, `dL/dC`, `dL/dA`, `dL/dD` are summed over channels
/// or sequences through small per-task partials, in an order that does not depend on the
/// thread count.
pub fn backward<T: Float>(s: &ScanDims, inp: &ScanInputs<T>, u: &[T], ckpt: &[T], g: ScanGrads<T>) {
    check_backward(s, inp, u, ckpt, &g);
    #[cfg(target_arch = "x86_64")]
    if let (Some(inp32), true) = (inp.as_f32_inputs(), scan_avx2::applies(s.d_inner)) {
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
        return unsafe { scan_avx2_backward::backward(s, &inp32, u, ckpt, g32) };
    }
    backward_portable(s, inp, u, ckpt, g)
}

/// The size checks both backward kernels rely on.
fn check_backward<T: Float>(
    s: &ScanDims,
    inp: &ScanInputs<T>,
    u: &[T],
    ckpt: &[T],
    g: &ScanGrads<T>,
) {
    inp.check(s);
    let (rows, di, ns) = (s.rows(), s.d_inner, s.d_state);
    assert_eq!(u.len(), rows * di);
    assert_eq!(ckpt.len(), s.ckpt_len());
    assert_eq!(g.gy_then_y.len(), rows * di);
    assert_eq!(g.gu.len(), rows * di);
    assert_eq!(g.gdelta.len(), rows * di);
    assert!(g.ld_gz >= di && (rows == 0 || g.gz.len() >= (rows - 1) * g.ld_gz + di));
    assert!(g.gxdbl.len() >= rows * s.ld_xdbl);
    assert_eq!(g.ga_log.len(), di * ns);
    assert_eq!(g.gd.len(), di);
    assert_eq!(g.gbias.len(), di);
}

/// [`backward`] in code the compiler vectorises (any `T`, any CPU, any `Di`): the twin
/// of the AVX2 kernel in tests and the baseline of `benches/scan.rs`.
pub fn backward_portable<T: Float>(
    s: &ScanDims,
    inp: &ScanInputs<T>,
    u: &[T],
    ckpt: &[T],
    g: ScanGrads<T>,
) {
    check_backward(s, inp, u, ckpt, &g);
    let (di, ns) = (s.d_inner, s.d_state);

    // Channel groups of a fixed number of blocks (not derived from the thread count, so
    // the order of the dB/dC sums, and the result, is the same for any thread count):
    // 8 groups per sequence at Di = 768, and per-group partials ([L, 2N]) stay small.
    let blocks = s.blocks();
    let groups: Vec<&[(usize, usize)]> = blocks.chunks(BLOCKS_PER_GROUP).collect();
    let n_groups = groups.len();

    let stride = s.len * 2 * ns;
    let mut bc_part = vec![T::ZERO; s.batch * n_groups * stride];
    let mut a_part = vec![T::ZERO; s.batch * di * ns];
    let mut d_part = vec![T::ZERO; s.batch * di];
    let mut bias_part = vec![T::ZERO; s.batch * di];
    let sh = BwdShared {
        s,
        inp,
        u,
        ckpt,
        gy: SendPtr(g.gy_then_y.as_mut_ptr()),
        gz: SendPtr(g.gz.as_mut_ptr()),
        gu: SendPtr(g.gu.as_mut_ptr()),
        gdelta: SendPtr(g.gdelta.as_mut_ptr()),
        ld_gz: g.ld_gz,
    };
    let a_ptr = SendPtr(a_part.as_mut_ptr());
    let d_ptr = SendPtr(d_part.as_mut_ptr());
    let bias_ptr = SendPtr(bias_part.as_mut_ptr());
    bc_part
        .par_chunks_mut(stride.max(1))
        .enumerate()
        .for_each(|(task, bc)| {
            let (b, gi) = (task / n_groups, task % n_groups);
            let group = groups[gi];
            let mut full: Vec<BlockState<T, W>> = group
                .iter()
                .filter(|x| x.1 == W)
                .map(|x| BlockState::new(s, inp, x.0))
                .collect();
            let mut single: Vec<BlockState<T, 1>> = group
                .iter()
                .filter(|x| x.1 != W)
                .map(|x| BlockState::new(s, inp, x.0))
                .collect();
            let mut sc_full = Scratch::<T, W>::new(if full.is_empty() { 0 } else { s.chunk }, ns);
            let mut sc_single =
                Scratch::<T, 1>::new(if single.is_empty() { 0 } else { s.chunk }, ns);
            // dB/dC lane partials of the current chunk for every block of the group: small
            // enough to stay in L2 while all the group's blocks add into it.
            let mut lanes = vec![T::ZERO; s.chunk * 2 * ns * LANES];
            for c in (0..s.n_chunks()).rev() {
                let (t0, t1) = (c * s.chunk, ((c + 1) * s.chunk).min(s.len));
                lanes.iter_mut().for_each(|v| *v = T::ZERO);
                for st in &mut full {
                    // SAFETY: this task (b, group) touches rows of sequence b and the
                    // group's channel columns only.
                    unsafe { dispatch_bwd(&sh, b, c, st, &mut sc_full, &mut lanes) };
                }
                for st in &mut single {
                    // SAFETY: as above.
                    unsafe { dispatch_bwd(&sh, b, c, st, &mut sc_single, &mut lanes) };
                }
                for t in t0..t1 {
                    let src = &lanes[(t - t0) * 2 * ns * LANES..][..2 * ns * LANES];
                    for (x, l) in bc[t * 2 * ns..(t + 1) * 2 * ns]
                        .iter_mut()
                        .zip(src.chunks_exact(LANES))
                    {
                        *x = lane_sum::<T, LANES>(l.try_into().unwrap());
                    }
                }
            }
            // SAFETY: per-(b, channel) partial slots, exclusive to this task.
            unsafe {
                for st in &full {
                    st.write(
                        a_ptr.get().add(b * di * ns),
                        d_ptr.get().add(b * di),
                        bias_ptr.get().add(b * di),
                    );
                }
                for st in &single {
                    st.write(
                        a_ptr.get().add(b * di * ns),
                        d_ptr.get().add(b * di),
                        bias_ptr.get().add(b * di),
                    );
                }
            }
        });
    reduce_partials(s, n_groups, &bc_part, &a_part, &d_part, &bias_part, g);
}

/// The last step of both backward kernels: adds the per-sequence partials of `dL/dA_log`
/// (`[B, Di, N]`), `dL/dD` and `dL/d bias` (`[B, Di]`) into `g`'s sums in sequence order,
/// and writes `dL/dB`, `dL/dC` into `g.gxdbl` as the sums over channel groups of
/// `bc_part` (`[B, n_groups, L, 2N]`), in group order.
pub(super) fn reduce_partials<T: Float>(
    s: &ScanDims,
    n_groups: usize,
    bc_part: &[T],
    a_part: &[T],
    d_part: &[T],
    bias_part: &[T],
    g: ScanGrads<T>,
) {
    let (di, ns) = (s.d_inner, s.d_state);
    let stride = s.len * 2 * ns;
    for b in 0..s.batch {
        let parts = [
            (&mut *g.ga_log, &a_part[b * di * ns..(b + 1) * di * ns]),
            (&mut *g.gd, &d_part[b * di..(b + 1) * di]),
            (&mut *g.gbias, &bias_part[b * di..(b + 1) * di]),
        ];
        for (sum, part) in parts {
            sum.iter_mut().zip(part).for_each(|(x, y)| *x += *y);
        }
    }
    g.gxdbl
        .par_chunks_mut(s.ld_xdbl)
        .take(s.rows())
        .enumerate()
        .with_min_len(64)
        .for_each(|(row, gr)| {
            let (b, t) = (row / s.len, row % s.len);
            let dst = &mut gr[s.b_offset..s.b_offset + 2 * ns];
            dst.fill(T::ZERO);
            for gi in 0..n_groups {
                let src = &bc_part[(b * n_groups + gi) * stride + t * 2 * ns..][..2 * ns];
                dst.iter_mut().zip(src).for_each(|(x, y)| *x += *y);
            }
        });
}

/// What every backward task reads, and the per-step outputs it writes through.
struct BwdShared<'a, 'b, T> {
    s: &'a ScanDims,
    inp: &'a ScanInputs<'b, T>,
    u: &'a [T],
    ckpt: &'a [T],
    gy: SendPtr<T>,
    gz: SendPtr<T>,
    gu: SendPtr<T>,
    gdelta: SendPtr<T>,
    ld_gz: usize,
}

/// A block's backward state, carried from one chunk to the previous one.
struct BlockState<T, const V: usize> {
    d0: usize,
    /// `A` of the block (`[N][lanes]`), computed once rather than per chunk.
    a: Vec<[T; V]>,
    /// `D` of the block.
    dd: [T; V],
    /// dL/dh flowing back into the chunk from its future.
    dh: Vec<[T; V]>,
    /// dL/dA accumulated so far.
    g_a: Vec<[T; V]>,
    /// dL/dD accumulated so far.
    g_d: [T; V],
    /// dL/d dt_proj.bias accumulated so far.
    g_bias: [T; V],
}

impl<T: Float, const V: usize> BlockState<T, V> {
    fn new(s: &ScanDims, inp: &ScanInputs<T>, d0: usize) -> Self {
        let ns = s.d_state;
        BlockState {
            d0,
            a: inp.a_block::<V>(s, d0),
            dd: arr(|w| inp.d[d0 + w]),
            dh: vec![[T::ZERO; V]; ns],
            g_a: vec![[T::ZERO; V]; ns],
            g_d: [T::ZERO; V],
            g_bias: [T::ZERO; V],
        }
    }

    /// Adds the block's dL/dA_log (= dL/dA * A), dL/dD and dL/d dt_proj.bias into the
    /// partial buffers.
    unsafe fn write(&self, ga: *mut T, gd: *mut T, gbias: *mut T) {
        let (ns, a) = (self.dh.len(), &self.a);
        for w in 0..V {
            // SAFETY: the caller hands buffers of [Di, N] and [Di] for this block's slots.
            unsafe {
                *gd.add(self.d0 + w) += self.g_d[w];
                *gbias.add(self.d0 + w) += self.g_bias[w];
                for n in 0..ns {
                    *ga.add((self.d0 + w) * ns + n) += self.g_a[n][w] * a[n][w];
                }
            }
        }
    }
}

/// Recomputed states of one chunk: `hs[j*N + n]` is the state before step `t0 + j`
/// (`j = 0` is the checkpoint), `decays[j*N + n]` the decay of step `t0 + j`.
struct Scratch<T, const V: usize> {
    hs: Vec<[T; V]>,
    decays: Vec<[T; V]>,
}

impl<T: Float, const V: usize> Scratch<T, V> {
    fn new(chunk: usize, ns: usize) -> Self {
        Scratch {
            hs: vec![[T::ZERO; V]; (chunk + 1) * ns],
            decays: vec![[T::ZERO; V]; chunk * ns],
        }
    }
}

unsafe fn dispatch_bwd<T: Float, const V: usize>(
    sh: &BwdShared<T>,
    b: usize,
    c: usize,
    st: &mut BlockState<T, V>,
    sc: &mut Scratch<T, V>,
    lanes: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: features checked; the rest is the caller's contract.
            return unsafe { bwd_chunk_avx2::<T, V>(sh, b, c, st, sc, lanes) };
        }
    }
    // SAFETY: the caller's contract.
    unsafe { bwd_chunk::<T, V, false>(sh, b, c, st, sc, lanes) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bwd_chunk_avx2<T: Float, const V: usize>(
    sh: &BwdShared<T>,
    b: usize,
    c: usize,
    st: &mut BlockState<T, V>,
    sc: &mut Scratch<T, V>,
    lanes: &mut [T],
) {
    // SAFETY: the caller's contract.
    unsafe { bwd_chunk::<T, V, true>(sh, b, c, st, sc, lanes) }
}

/// Adds lane `w` of `v` into `acc[w % LANES]`.
#[inline(always)]
fn fold_into<T: Float, const V: usize>(acc: &mut [T], v: &[T; V]) {
    let acc: &mut [T; LANES] = acc.try_into().unwrap();
    for (w, x) in v.iter().enumerate() {
        acc[w % LANES] += *x;
    }
}

/// Sum of the lanes by halving, so the adds vectorise (a left-to-right sum would not:
/// float addition is not associative and the compiler keeps the order).
#[inline(always)]
fn lane_sum<T: Float, const V: usize>(mut v: [T; V]) -> T {
    let mut half = V / 2;
    let mut len = V;
    while half > 0 {
        for i in 0..half {
            v[i] += v[i + half];
        }
        if len % 2 == 1 {
            v[0] += v[len - 1];
        }
        len = half;
        half /= 2;
    }
    v[0]
}

/// The backward of chunk `c` of sequence `b` for one block: recompute the chunk's states
/// from its checkpoint, then walk them backwards.
#[inline(always)]
unsafe fn bwd_chunk<T: Float, const V: usize, const F: bool>(
    sh: &BwdShared<T>,
    b: usize,
    c: usize,
    st: &mut BlockState<T, V>,
    sc: &mut Scratch<T, V>,
    lanes: &mut [T],
) {
    let (s, inp, u) = (sh.s, sh.inp, sh.u);
    let (di, ns, chunk, d0) = (s.d_inner, s.d_state, s.chunk, st.d0);
    let (a, dd) = (&st.a, st.dd);
    let (hs, decays) = (&mut sc.hs, &mut sc.decays);
    let (dh, g_a, g_d, g_bias) = (&mut st.dh, &mut st.g_a, &mut st.g_d, &mut st.g_bias);
    let (t0, t1) = (c * chunk, ((c + 1) * chunk).min(s.len));
    let base = (b * s.n_chunks() + c) * ns;
    for n in 0..ns {
        hs[n] = arr(|w| sh.ckpt[(base + n) * di + d0 + w]);
    }
    // Recompute the chunk's states.
    for t in t0..t1 {
        let j = t - t0;
        let row = b * s.len + t;
        let off = row * di + d0;
        let dl: [T; V] = arr(|w| inp.delta[off + w]);
        let du: [T; V] = arr(|w| dl[w] * u[off + w]);
        let bc_in = &inp.xdbl[row * s.ld_xdbl + s.b_offset..][..ns];
        let (prev, next) = hs[j * ns..(j + 2) * ns].split_at_mut(ns);
        for n in 0..ns {
            let bn = bc_in[n];
            for w in 0..V {
                let e = (dl[w] * a[n][w]).fast_exp_fused::<F>();
                decays[j * ns + n][w] = e;
                next[n][w] = fma_if::<T, F>(e, prev[n][w], du[w] * bn);
            }
        }
    }
    // Walk it backwards.
    for t in (t0..t1).rev() {
        let j = t - t0;
        let row = b * s.len + t;
        let off = row * di + d0;
        let dl: [T; V] = arr(|w| inp.delta[off + w]);
        let uu: [T; V] = arr(|w| u[off + w]);
        let du: [T; V] = arr(|w| dl[w] * uu[w]);
        let zr = &inp.z[row * inp.ld_z + d0..][..V];
        let xr = &inp.xdbl[row * s.ld_xdbl + s.b_offset..][..2 * ns];
        let (bn_row, cn_row) = xr.split_at(ns);
        let h_now = &hs[(j + 1) * ns..(j + 2) * ns];
        let h_prev = &hs[j * ns..(j + 1) * ns];
        // SAFETY: this block's columns of row `row`.
        let gyv: [T; V] = unsafe { load(sh.gy.get().add(off)) };
        // dL/d(ungated y) needs only the gate, so the state loop below can also
        // recompute the ungated output `ys` from the states it loads anyway.
        let mut dsz = [T::ZERO; V];
        let mut sz = [T::ZERO; V];
        let mut gys = [T::ZERO; V];
        for w in 0..V {
            (sz[w], dsz[w]) = silu_and_grad_with::<T, F>(zr[w]);
            gys[w] = gyv[w] * sz[w];
            g_d[w] += gys[w] * uu[w];
        }
        let mut ys: [T; V] = arr(|w| dd[w] * uu[w]);
        let mut gdl = [T::ZERO; V];
        // sum_n dL/dh[n] B[n]: dh_t/d dt and dh_t/du share it (B x dt and B dt u).
        let mut qsum = [T::ZERO; V];
        let lr = &mut lanes[j * 2 * ns * LANES..(j + 1) * 2 * ns * LANES];
        for n in 0..ns {
            let (bn, cn) = (bn_row[n], cn_row[n]);
            let mut pc = [T::ZERO; V];
            let mut pb = [T::ZERO; V];
            for w in 0..V {
                let dhn = fma_if::<T, F>(gys[w], cn, dh[n][w]);
                ys[w] = fma_if::<T, F>(cn, h_now[n][w], ys[w]);
                pc[w] = gys[w] * h_now[n][w];
                let e = decays[j * ns + n][w];
                // dL/d(decay) * decay: the decay's factor of both dt and A.
                let gdec = dhn * h_prev[n][w] * e;
                gdl[w] = fma_if::<T, F>(gdec, a[n][w], gdl[w]);
                g_a[n][w] = fma_if::<T, F>(gdec, dl[w], g_a[n][w]);
                qsum[w] = fma_if::<T, F>(dhn, bn, qsum[w]);
                pb[w] = dhn * du[w];
                dh[n][w] = dhn * e;
            }
            fold_into(&mut lr[n * LANES..(n + 1) * LANES], &pb);
            fold_into(&mut lr[(ns + n) * LANES..(ns + n + 1) * LANES], &pc);
        }
        let yv: [T; V] = arr(|w| ys[w] * sz[w]);
        let gz: [T; V] = arr(|w| gyv[w] * ys[w] * dsz[w]);
        let gu: [T; V] = arr(|w| fma_if::<T, F>(qsum[w], dl[w], gys[w] * dd[w]));
        // Through the softplus: dt = softplus(raw), d dt / d raw from dt itself.
        let gdl: [T; V] =
            arr(|w| fma_if::<T, F>(qsum[w], uu[w], gdl[w]) * softplus_grad_from_output(dl[w]));
        for w in 0..V {
            g_bias[w] += gdl[w];
        }
        // SAFETY: this block's columns of row `row` in each output.
        unsafe {
            store(sh.gy.get().add(off), &yv);
            store(sh.gz.get().add(row * sh.ld_gz + d0), &gz);
            store(sh.gu.get().add(off), &gu);
            store(sh.gdelta.get().add(off), &gdl);
        }
    }
}

#[cfg(any(test, feature = "internals"))]
/// The obvious twin of [`forward`]: every state kept, one channel at a time, libm `exp`.
pub fn forward_naive<T: Float>(s: &ScanDims, inp: &ScanInputs<T>, u: &[T], y: &mut [T]) {
    let (di, ns) = (s.d_inner, s.d_state);
    for b in 0..s.batch {
        for d in 0..di {
            let mut h = vec![0f64; ns];
            for t in 0..s.len {
                let row = b * s.len + t;
                let dl = inp.delta[row * di + d].to_f64();
                let x = u[row * di + d].to_f64();
                let xr = &inp.xdbl[row * s.ld_xdbl + s.b_offset..];
                let mut acc = inp.d[d].to_f64() * x;
                for n in 0..ns {
                    let a = -inp.a_log[d * ns + n].to_f64().exp();
                    h[n] = (dl * a).exp() * h[n] + dl * xr[n].to_f64() * x;
                    acc += xr[ns + n].to_f64() * h[n];
                }
                let z = inp.z[row * inp.ld_z + d].to_f64();
                y[row * di + d] = T::from_f64(acc * z / (1.0 + (-z).exp()));
            }
        }
    }
}

#[cfg(any(test, feature = "internals"))]
/// The obvious twin of [`backward`]: all `L x N` states of a channel stored, walked back.
/// Same outputs as [`backward`] (including `y` over `gy`), for tests.
pub fn backward_naive<T: Float>(s: &ScanDims, inp: &ScanInputs<T>, u: &[T], g: ScanGrads<T>) {
    let (di, ns, l) = (s.d_inner, s.d_state, s.len);
    for row in 0..s.rows() {
        for v in &mut g.gxdbl[row * s.ld_xdbl + s.b_offset..][..2 * ns] {
            *v = T::ZERO;
        }
    }
    for b in 0..s.batch {
        for d in 0..di {
            let a: Vec<f64> = (0..ns)
                .map(|n| -inp.a_log[d * ns + n].to_f64().exp())
                .collect();
            let dd = inp.d[d].to_f64();
            let mut hs = vec![0f64; (l + 1) * ns];
            for t in 0..l {
                let row = b * l + t;
                let dl = inp.delta[row * di + d].to_f64();
                let x = u[row * di + d].to_f64();
                let xr = &inp.xdbl[row * s.ld_xdbl + s.b_offset..];
                for n in 0..ns {
                    hs[(t + 1) * ns + n] =
                        (dl * a[n]).exp() * hs[t * ns + n] + dl * xr[n].to_f64() * x;
                }
            }
            let mut dh = vec![0f64; ns];
            let (mut g_d, mut g_a) = (0f64, vec![0f64; ns]);
            for t in (0..l).rev() {
                let row = b * l + t;
                let dl = inp.delta[row * di + d].to_f64();
                let x = u[row * di + d].to_f64();
                let xr: Vec<f64> = inp.xdbl[row * s.ld_xdbl + s.b_offset..][..2 * ns]
                    .iter()
                    .map(|v| v.to_f64())
                    .collect();
                let z = inp.z[row * inp.ld_z + d].to_f64();
                let sig = 1.0 / (1.0 + (-z).exp());
                let ys = dd * x
                    + (0..ns)
                        .map(|n| xr[ns + n] * hs[(t + 1) * ns + n])
                        .sum::<f64>();
                let gy = g.gy_then_y[row * di + d].to_f64();
                g.gy_then_y[row * di + d] = T::from_f64(ys * z * sig);
                g.gz[row * g.ld_gz + d] = T::from_f64(gy * ys * sig * (1.0 + z * (1.0 - sig)));
                let gys = gy * z * sig;
                g_d += gys * x;
                let mut gu = gys * dd;
                let mut gdl = 0.0;
                for n in 0..ns {
                    dh[n] += gys * xr[ns + n];
                    let gr = &mut g.gxdbl[row * s.ld_xdbl + s.b_offset..];
                    gr[ns + n] += T::from_f64(gys * hs[(t + 1) * ns + n]);
                    gr[n] += T::from_f64(dh[n] * dl * x);
                    let e = (dl * a[n]).exp();
                    gdl += dh[n] * (hs[t * ns + n] * e * a[n] + x * xr[n]);
                    g_a[n] += dh[n] * hs[t * ns + n] * e * dl;
                    gu += dh[n] * dl * xr[n];
                    dh[n] *= e;
                }
                g.gu[row * di + d] = T::from_f64(gu);
                // softplus' from dt = softplus(raw): sigmoid(raw) = 1 - exp(-dt).
                let gdl = gdl * if dl > 20.0 { 1.0 } else { -(-dl).exp_m1() };
                g.gdelta[row * di + d] = T::from_f64(gdl);
                g.gbias[d] += T::from_f64(gdl);
            }
            g.gd[d] += T::from_f64(g_d);
            for n in 0..ns {
                g.ga_log[d * ns + n] += T::from_f64(g_a[n] * a[n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::rng::SplitMix64;

    struct Case<T> {
        s: ScanDims,
        a_log: Vec<T>,
        d: Vec<T>,
        delta: Vec<T>,
        xdbl: Vec<T>,
        z: Vec<T>,
        u: Vec<T>,
        gy: Vec<T>,
    }

    fn case<T: Float>(
        batch: usize,
        len: usize,
        di: usize,
        ns: usize,
        chunk: usize,
        seed: u64,
    ) -> Case<T> {
        let mut r = SplitMix64::new(seed);
        let mut v = |n: usize, lo: f64, hi: f64| {
            (0..n)
                .map(|_| T::from_f64(r.uniform(lo, hi)))
                .collect::<Vec<T>>()
        };
        let rows = batch * len;
        let s = ScanDims {
            batch,
            len,
            d_inner: di,
            d_state: ns,
            b_offset: 3,
            ld_xdbl: 3 + 2 * ns + 1,
            chunk,
        };
        Case {
            a_log: v(di * ns, -1.0, 2.5),
            d: v(di, -1.0, 1.0),
            delta: v(rows * di, 1e-3, 0.5),
            xdbl: v(rows * s.ld_xdbl, -1.0, 1.0),
            z: v(rows * 2 * di, -3.0, 3.0),
            u: v(rows * di, -2.0, 2.0),
            gy: v(rows * di, -1.0, 1.0),
            s,
        }
    }

    fn inputs<T: Float>(c: &Case<T>) -> ScanInputs<'_, T> {
        ScanInputs {
            a_log: &c.a_log,
            d: &c.d,
            delta: &c.delta,
            xdbl: &c.xdbl,
            z: &c.z[c.s.d_inner..],
            ld_z: 2 * c.s.d_inner,
        }
    }

    fn close<T: Float>(what: &str, x: &[T], y: &[T], tol: f64) {
        assert_eq!(x.len(), y.len());
        let scale = y
            .iter()
            .map(|v| v.to_f64().abs())
            .fold(0.0, f64::max)
            .max(1e-30);
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            let e = (p.to_f64() - q.to_f64()).abs() / scale;
            assert!(e < tol, "{what}[{i}]: {p:?} vs {q:?} (rel {e:e})");
        }
    }

    fn check_forward<T: Float>(c: &Case<T>, tol: f64) {
        let inp = inputs(c);
        let mut fast = vec![T::ZERO; c.u.len()];
        let mut ck = vec![T::ZERO; c.s.ckpt_len()];
        forward(&c.s, &inp, &c.u, &mut fast, Some(&mut ck));
        let mut slow = fast.clone();
        forward_naive(&c.s, &inp, &c.u, &mut slow);
        close("y", &fast, &slow, tol);
        let mut inplace = c.u.clone();
        forward_in_place(&c.s, &inp, &mut inplace);
        close("y in place", &inplace, &slow, tol);
    }

    /// The backward kernels under test.
    #[derive(Clone, Copy, PartialEq)]
    enum Kernel {
        /// [`backward`] (AVX2 where it applies).
        Dispatched,
        /// [`backward_portable`].
        Portable,
        /// [`backward_naive`].
        Naive,
    }

    /// Every output of the backward kernel `k` for case `c`, after the training forward
    /// (whose output is also returned, last).
    fn backward_outputs<T: Float>(c: &Case<T>, k: Kernel) -> [Vec<T>; 9] {
        backward_outputs_strided(c, k, 2 * c.s.d_inner)
    }

    /// [`backward_outputs`] with `dL/dz` written at row stride `ld_gz` (from column `Di`
    /// of each row, as into in_proj's gradient), returned as `[rows, Di]`.
    fn backward_outputs_strided<T: Float>(c: &Case<T>, k: Kernel, ld_gz: usize) -> [Vec<T>; 9] {
        let inp = inputs(c);
        let (rows, di, ns) = (c.s.batch * c.s.len, c.s.d_inner, c.s.d_state);
        let mut y = vec![T::ZERO; c.u.len()];
        let mut ck = vec![T::ZERO; c.s.ckpt_len()];
        forward(&c.s, &inp, &c.u, &mut y, Some(&mut ck));
        let mut gy = c.gy.clone();
        let mut gz = vec![T::ZERO; rows * ld_gz];
        let mut gu = vec![T::ZERO; rows * di];
        let mut gdelta = vec![T::ZERO; rows * di];
        let mut gxdbl = vec![T::ZERO; rows * c.s.ld_xdbl];
        let mut ga = vec![T::ZERO; di * ns];
        let mut gd = vec![T::ZERO; di];
        let mut gbias = vec![T::ZERO; di];
        let g = ScanGrads {
            gy_then_y: &mut gy,
            gz: &mut gz[di..],
            ld_gz,
            gu: &mut gu,
            gdelta: &mut gdelta,
            gxdbl: &mut gxdbl,
            ga_log: &mut ga,
            gd: &mut gd,
            gbias: &mut gbias,
        };
        match k {
            Kernel::Dispatched => backward(&c.s, &inp, &c.u, &ck, g),
            Kernel::Portable => backward_portable(&c.s, &inp, &c.u, &ck, g),
            Kernel::Naive => backward_naive(&c.s, &inp, &c.u, g),
        }
        let gz = gz
            .chunks(ld_gz)
            .flat_map(|r| r[di..2 * di].to_vec())
            .collect();
        [gy, gz, gu, gdelta, gxdbl, ga, gd, gbias, y]
    }

    const OUTPUTS: [&str; 8] = ["y", "gz", "gu", "gdelta", "gxdbl", "gA_log", "gD", "gbias"];

    fn check_backward<T: Float>(c: &Case<T>, tol: f64) {
        let (f, n) = (
            backward_outputs(c, Kernel::Dispatched),
            backward_outputs(c, Kernel::Naive),
        );
        close("y from backward", &f[0], &f[8], tol);
        for (i, name) in OUTPUTS.iter().enumerate() {
            close(name, &f[i], &n[i], tol);
        }
    }

    #[test]
    fn fused_forward_matches_naive() {
        // 16-lane blocks plus remainder channels; f32 (fast exp) and f64.
        check_forward(&case::<f32>(2, 37, 35, 16, 8, 1), 2e-5);
        check_forward(&case::<f64>(2, 37, 35, 5, 8, 2), 1e-12);
    }

    /// The portable kernel's output and checkpoints for case `c`.
    fn portable<T: Float>(c: &Case<T>, delta: &[T]) -> (Vec<T>, Vec<T>) {
        let inp = ScanInputs { delta, ..inputs(c) };
        let mut y = vec![T::ZERO; c.u.len()];
        let mut ck = vec![T::ZERO; c.s.ckpt_len()];
        // SAFETY: u and y hold rows * Di elements; y is exclusively borrowed.
        unsafe { forward_portable(&c.s, &inp, c.u.as_ptr(), y.as_mut_ptr(), Some(&mut ck)) };
        (y, ck)
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_forward_matches_portable_kernel() {
        if !scan_avx2::applies(8) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        // N = 16, 8 and 4 run kernels compiled for that N; 5 and 7 the run-time one (7
        // also the tail after the groups of four states).
        for ns in [16usize, 8, 4, 5, 7] {
            let c = case::<f32>(3, 77, 40, ns, 16, 5 + ns as u64);
            let (want_y, want_ck) = portable(&c, &c.delta);
            let mut y = vec![0f32; c.u.len()];
            let mut ck = vec![0f32; c.s.ckpt_len()];
            forward(&c.s, &inputs(&c), &c.u, &mut y, Some(&mut ck));
            close(&format!("y, N {ns}"), &y, &want_y, 2e-6);
            close(&format!("checkpoints, N {ns}"), &ck, &want_ck, 2e-6);
            let mut inplace = c.u.clone();
            forward_in_place(&c.s, &inputs(&c), &mut inplace);
            assert_eq!(inplace, y);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_builds_of_the_forward_give_the_same_bits() {
        if !scan_avx2::applies(8) || !crate::predictor::simd::has_avx512() {
            eprintln!("skipped: this CPU lacks AVX-512F/VL");
            return;
        }
        // Stored and computed dt (with dt and checkpoints kept, streamed), each N the
        // kernels are compiled for and one known only at run time, in place and not; 48
        // channels run the 16-lane kernel, 24 the 8-lane one compiled for AVX-512.
        for (ns, di) in [16usize, 8, 4, 5]
            .into_iter()
            .flat_map(|n| [(n, 48), (n, 24)])
        {
            let c = case::<f32>(2, 45, di, ns, 8, 11 + (ns + di) as u64);
            let rows = c.s.batch * c.s.len;
            let weight: Vec<f32> = c.a_log[..c.s.d_inner * c.s.b_offset].to_vec();
            let bias: Vec<f32> = c.d.iter().map(|v| 4.0 * v).collect();
            let low_rank = scan_avx2::Delta::LowRank {
                weight: &weight,
                bias: &bias,
            };
            let run = |avx512: bool, computed: bool, in_place: bool| {
                let fast = if computed {
                    inputs(&c).with_delta_f32(low_rank).unwrap()
                } else {
                    inputs(&c).as_f32().unwrap()
                };
                let mut y = if in_place {
                    c.u.clone()
                } else {
                    vec![0f32; c.u.len()]
                };
                let mut ck = vec![0f32; c.s.ckpt_len()];
                let mut delta = vec![0f32; rows * c.s.d_inner];
                let u = if in_place { y.as_ptr() } else { c.u.as_ptr() };
                let keep = !in_place;
                // SAFETY: u and y hold rows * Di elements; y is exclusively borrowed.
                unsafe {
                    scan_avx2::forward_raw_on(
                        &c.s,
                        &fast,
                        u,
                        y.as_mut_ptr(),
                        keep.then_some(&mut ck[..]),
                        (keep && computed).then_some(&mut delta[..]),
                        avx512,
                    )
                };
                [y, ck, delta].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            };
            for computed in [false, true] {
                for in_place in [false, true] {
                    assert_eq!(
                        run(true, computed, in_place),
                        run(false, computed, in_place),
                        "N {ns}, Di {di}, dt computed {computed}, in place {in_place}"
                    );
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_forward_computes_dt_as_dt_proj_and_softplus() {
        let c = case::<f32>(2, 50, 24, 16, 8, 7);
        if !scan_avx2::applies(c.s.d_inner) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        let (rows, di, rank) = (c.s.batch * c.s.len, c.s.d_inner, c.s.b_offset);
        let mut r = SplitMix64::new(3);
        let weight: Vec<f32> = (0..di * rank)
            .map(|_| r.uniform(-1.0, 1.0) as f32)
            .collect();
        // Biases from far below zero to above softplus' threshold of 20.
        let bias: Vec<f32> = (0..di)
            .map(|d| -8.0 + 30.0 * d as f32 / di as f32)
            .collect();
        let want_delta: Vec<f32> = (0..rows * di)
            .map(|i| {
                let (row, d) = (i / di, i % di);
                let raw = bias[d] as f64
                    + (0..rank)
                        .map(|k| (c.xdbl[row * c.s.ld_xdbl + k] * weight[d * rank + k]) as f64)
                        .sum::<f64>();
                (if raw > 20.0 { raw } else { raw.exp().ln_1p() }) as f32
            })
            .collect();
        let fast = inputs(&c)
            .with_delta_f32(scan_avx2::Delta::LowRank {
                weight: &weight,
                bias: &bias,
            })
            .unwrap();
        let mut y = vec![0f32; c.u.len()];
        let mut ck = vec![0f32; c.s.ckpt_len()];
        let mut delta = vec![0f32; rows * di];
        // SAFETY: u and y hold rows * Di elements; y is exclusively borrowed.
        unsafe {
            scan_avx2::forward_raw(
                &c.s,
                &fast,
                c.u.as_ptr(),
                y.as_mut_ptr(),
                Some(&mut ck),
                Some(&mut delta),
            )
        };
        for (i, (got, want)) in delta.iter().zip(&want_delta).enumerate() {
            let e = ((got - want) / want).abs();
            assert!(e < 2e-6, "dt[{i}]: {got} vs {want}");
        }
        let (want_y, want_ck) = portable(&c, &want_delta);
        close("y", &y, &want_y, 1e-5);
        close("checkpoints", &ck, &want_ck, 1e-5);
    }

    #[test]
    fn chunked_backward_matches_naive() {
        // L below, equal to, and above a multiple of the chunk.
        for (len, chunk) in [(5usize, 8usize), (16, 8), (29, 8), (40, 64)] {
            check_backward(&case::<f64>(2, len, 19, 4, chunk, len as u64), 1e-11);
        }
        check_backward(&case::<f32>(3, 50, 33, 16, 16, 9), 5e-5);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_backward_matches_portable_kernel() {
        if !scan_avx2::applies(8) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        // One partial channel group; two groups, the last partial (Di 800); an odd N
        // (the dB/dC sums' remainder path, and the kernel for N known at run time); N = 8
        // and 4 (kernels compiled for them, as for 16); L below, at and past a chunk
        // boundary.
        for (batch, len, di, ns, chunk) in [
            (2usize, 45usize, 40usize, 16usize, 16usize),
            (3, 32, 200, 5, 16),
            (2, 20, 800, 16, 16),
            (1, 7, 96, 16, 64),
            (2, 20, 48, 8, 16),
            (1, 33, 24, 4, 16),
        ] {
            let c = case::<f32>(batch, len, di, ns, chunk, (len * di) as u64);
            let (f, p) = (
                backward_outputs(&c, Kernel::Dispatched),
                backward_outputs(&c, Kernel::Portable),
            );
            let naive = backward_outputs(&c, Kernel::Naive);
            for (i, name) in OUTPUTS.iter().enumerate() {
                let what = format!("{name} (B {batch}, L {len}, Di {di}, N {ns})");
                close(&what, &f[i], &p[i], 2e-5);
                close(&what, &f[i], &naive[i], 5e-5);
            }
            // The recomputed output is the training forward's (its states are, bit for
            // bit; the read-out sums in another order).
            close("y from backward", &f[0], &f[8], 1e-6);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_backward_streams_its_outputs_without_changing_them() {
        let c = case::<f32>(2, 70, 48, 16, 16, 21);
        if !scan_avx2::applies(c.s.d_inner) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        // A row stride of `dL/dz` that is a multiple of 4 floats lets the kernel stream
        // (every buffer here is 16-byte aligned); one that is not makes it copy plainly.
        let run = |ld_gz: usize| backward_outputs_strided(&c, Kernel::Dispatched, ld_gz);
        let di = c.s.d_inner;
        let (streamed, plain) = (run(2 * di), run(2 * di + 1));
        for (name, (a, b)) in OUTPUTS.iter().zip(streamed.iter().zip(&plain)) {
            assert_eq!(a, b, "{name}");
        }
    }

    #[test]
    fn lane_sum_adds_every_lane() {
        let v: [f64; 16] = std::array::from_fn(|i| (i * i) as f64);
        assert_eq!(lane_sum(v), v.iter().sum::<f64>());
        let w: [f64; 5] = [1.0, 2.0, 4.0, 8.0, 16.0];
        assert_eq!(lane_sum(w), 31.0);
        assert_eq!(lane_sum([3.0f64]), 3.0);
    }
}
