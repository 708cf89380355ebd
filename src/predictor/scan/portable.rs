//! The scan's forward and backward in code the compiler vectorises: any `T`, any CPU,
//! any `Di` (16-lane channel blocks, remainder channels one at a time). On x86-64 the
//! blocks run compiled for AVX2 + FMA where the CPU has them.

// The kernels index lanes and state rows in lockstep across several arrays; index loops
// say that most plainly, and they vectorise the same as iterator chains.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::dims::{check_backward, reduce_partials, ScanDims, ScanGrads, ScanInputs, W};
use crate::predictor::float::{fma_if, silu_and_grad_with, silu_with, softplus_grad_from_output, Float};
use crate::predictor::gemm::SendPtr;

/// Vector blocks per backward task.
const BLOCKS_PER_GROUP: usize = 6;

/// Lanes kept per partial sum of `dL/dB`, `dL/dC`: a block folds its 16 channel lanes to
/// 8 (one vector add) and the final 8-to-1 reduction happens once per channel group
/// instead of once per block, which took a third of the backward kernel's time.
const LANES: usize = 8;

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

/// [`forward_raw`] in code the compiler vectorises (any `T`, any CPU, any `Di`).
///
/// # Safety
/// As [`forward_raw`].
pub(super) unsafe fn forward_portable<T: Float>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sum_adds_every_lane() {
        let v: [f64; 16] = std::array::from_fn(|i| (i * i) as f64);
        assert_eq!(lane_sum(v), v.iter().sum::<f64>());
        let w: [f64; 5] = [1.0, 2.0, 4.0, 8.0, 16.0];
        assert_eq!(lane_sum(w), 31.0);
        assert_eq!(lane_sum([3.0f64]), 3.0);
    }
}
