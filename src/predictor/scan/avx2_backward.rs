//! The selective scan's backward in `f32` on AVX2 + FMA, written with intrinsics.
//!
//! Same algorithm as the portable kernel of [`super::scan`] (walk the checkpoint chunks
//! last to first, recompute a chunk's states from its checkpoint, walk them backwards),
//! with one 8-channel block (one `__m256`) at a time. A task (one sequence, a fixed group
//! of blocks) first copies the chunk's rows of its channels (`dt`, `u`, `z`, `dL/dy`)
//! into contiguous buffers and writes its outputs into such buffers, copied out (with
//! non-temporal stores) after the chunk (`Packed`): read and written in place, 32 bytes
//! every `Di` floats, the first access to each row missed the cache and stalled the
//! kernel (a third of its `perf` samples), which software prefetches did not cure.
//!
//! Measured (`benches/scan.rs`, `perf` samples in one run): the portable kernel,
//! vectorised by the compiler over 16-lane arrays, 48% of samples; this one 17%, plus
//! about 4% in the copies. Its inner loops still run at two to three times what a C twin
//! of them takes on data in cache. Tried without gain: two blocks per pass, split
//! accumulators in the walk, other checkpoint intervals (16, 32).
//!
//! The decays are recomputed as the AVX2 forward computes them (`2^(dt A log2 e)`), so
//! the recomputed states are the forward's, bit for bit. `dL/dB` and `dL/dC`, sums over
//! all channels, are gathered per task in 8-lane partials and reduced with a shuffle tree
//! once per chunk; tasks are (sequence, fixed channel group), so the summation order, and
//! the result, does not depend on the thread count.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::ops::Range;

use rayon::prelude::*;

use super::avx2::{
    decays_x4, exp, exp2_nonpositive, lanes, splat, state_count, store, stream_aligned,
};
use super::dims::{reduce_partials, ScanDims, ScanGrads, ScanInputs, LANES};
use crate::predictor::gemm::SendPtr;

/// 8-channel blocks per task: whole rows up to `Di = 768`, so that the copies of a
/// chunk's rows read memory in one sequential stream. With 12 blocks (384 of every 3072
/// bytes of a row at the paper's grid) every row started on a new page and the hardware
/// prefetchers did not follow (docs/performance.md, "Kernel choices"). Fixed rather than
/// derived from the thread count, so that the order of the channel sums is too.
const BLOCKS_PER_GROUP: usize = 96;

/// Backward of the scan; the contract of [`super::scan::backward`], whose argument checks
/// it relies on.
///
/// # Safety
/// [`super::applies`] must hold for `s.d_inner`, and the arguments must have
/// passed [`super::scan::backward`]'s checks.
pub unsafe fn backward(
    s: &ScanDims,
    inp: &ScanInputs<f32>,
    u: &[f32],
    ckpt: &[f32],
    g: ScanGrads<f32>,
) {
    let (di, ns) = (s.d_inner, s.d_state);
    let n_blocks = di / LANES;
    let n_groups = n_blocks.div_ceil(BLOCKS_PER_GROUP).max(1);
    let stride = s.len * 2 * ns;
    let mut bc_part = vec![0f32; s.batch * n_groups * stride];
    let mut a_part = vec![0f32; s.batch * di * ns];
    let mut d_part = vec![0f32; s.batch * di];
    let mut bias_part = vec![0f32; s.batch * di];
    let sh = Shared {
        s,
        inp,
        u,
        ckpt,
        gy: SendPtr(g.gy_then_y.as_mut_ptr()),
        gz: SendPtr(g.gz.as_mut_ptr()),
        ld_gz: g.ld_gz,
        gu: SendPtr(g.gu.as_mut_ptr()),
        gdelta: SendPtr(g.gdelta.as_mut_ptr()),
        a_part: SendPtr(a_part.as_mut_ptr()),
        d_part: SendPtr(d_part.as_mut_ptr()),
        bias_part: SendPtr(bias_part.as_mut_ptr()),
        stream: [
            g.gy_then_y.as_ptr(),
            g.gz.as_ptr(),
            g.gu.as_ptr(),
            g.gdelta.as_ptr(),
        ]
        .into_iter()
        .all(stream_aligned)
            && g.ld_gz.is_multiple_of(4),
    };
    bc_part
        .par_chunks_mut(stride.max(1))
        .enumerate()
        .for_each(|(task, bc)| {
            let (b, gi) = (task / n_groups, task % n_groups);
            let blocks = gi * BLOCKS_PER_GROUP..((gi + 1) * BLOCKS_PER_GROUP).min(n_blocks);
            // SAFETY: task (b, group) reads and writes rows of sequence b in its group's
            // channel columns only, and its own (b, channel) partial slots; features
            // checked by the caller.
            unsafe {
                match ns {
                    16 => run_group::<16>(&sh, b, blocks, bc),
                    8 => run_group::<8>(&sh, b, blocks, bc),
                    4 => run_group::<4>(&sh, b, blocks, bc),
                    _ => run_group::<0>(&sh, b, blocks, bc),
                }
            }
        });
    reduce_partials(s, n_groups, &bc_part, &a_part, &d_part, &bias_part, g);
}

/// What every task reads, and the pointers it writes its disjoint parts through.
struct Shared<'a, 'b> {
    s: &'a ScanDims,
    inp: &'a ScanInputs<'b, f32>,
    u: &'a [f32],
    ckpt: &'a [f32],
    gy: SendPtr<f32>,
    gz: SendPtr<f32>,
    ld_gz: usize,
    gu: SendPtr<f32>,
    gdelta: SendPtr<f32>,
    /// Per-sequence partials: `dL/dA_log` `[B, Di, N]`, `dL/dD` and `dL/d bias` `[B, Di]`.
    a_part: SendPtr<f32>,
    d_part: SendPtr<f32>,
    bias_part: SendPtr<f32>,
    /// Whether [`Packed::flush`] writes with non-temporal stores: the outputs are read
    /// again only after the whole scan, by which time they have left the cache, and
    /// ordinary stores read each line before writing it (measured slower:
    /// docs/performance.md, "Kernel choices"). Needs every output's rows 16-byte aligned (their offsets
    /// are multiples of 8 floats when `ld_gz` is a multiple of 4), which the system
    /// allocator's buffers are; otherwise ordinary copies.
    stream: bool,
}

/// One 8-channel block's constants and the gradients it carries from chunk to chunk.
struct Block {
    d0: usize,
    /// `A`, `[N]`.
    a: Vec<__m256>,
    /// `A log2(e)`, `[N]`: the decay is `2^(dt A log2 e)`, as in the forward.
    a_log2e: Vec<__m256>,
    /// `D`.
    d: __m256,
    /// `dL/dh` flowing back into the current chunk from its future, `[N]`.
    dh: Vec<__m256>,
    /// `dL/dA` so far (`sum dL/d(decay) decay dt`), `[N]`.
    g_a: Vec<__m256>,
    /// `dL/dD` so far.
    g_d: __m256,
    /// `dL/d dt_proj.bias` so far.
    g_bias: __m256,
}

impl Block {
    #[target_feature(enable = "avx2,fma")]
    fn new(s: &ScanDims, inp: &ScanInputs<f32>, d0: usize) -> Self {
        let ns = s.d_state;
        let a: Vec<__m256> = (0..ns)
            .map(|n| lanes(|w| -inp.a_log[(d0 + w) * ns + n].exp()))
            .collect();
        let log2e = splat(std::f32::consts::LOG2_E);
        Block {
            d0,
            a_log2e: a.iter().map(|&an| _mm256_mul_ps(an, log2e)).collect(),
            a,
            d: lanes(|w| inp.d[d0 + w]),
            dh: vec![_mm256_setzero_ps(); ns],
            g_a: vec![_mm256_setzero_ps(); ns],
            g_d: _mm256_setzero_ps(),
            g_bias: _mm256_setzero_ps(),
        }
    }

    /// Writes the block's `dL/dA_log` (`= dL/dA * A`), `dL/dD` and `dL/d bias` into
    /// sequence `b`'s partial slots.
    ///
    /// # Safety
    /// Those slots of the block's channels belong to the calling task alone.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn write_partials(&self, sh: &Shared, b: usize) {
        let (di, ns) = (sh.s.d_inner, sh.s.d_state);
        let values = |v: __m256| {
            let mut x = [0f32; LANES];
            // SAFETY: 8 floats.
            unsafe { _mm256_storeu_ps(x.as_mut_ptr(), v) };
            x
        };
        let (g_d, g_bias) = (values(self.g_d), values(self.g_bias));
        for w in 0..LANES {
            let d = self.d0 + w;
            // SAFETY: the caller's contract.
            unsafe {
                *sh.d_part.get().add(b * di + d) = g_d[w];
                *sh.bias_part.get().add(b * di + d) = g_bias[w];
            }
        }
        for n in 0..ns {
            let (g_a, a) = (values(self.g_a[n]), values(self.a[n]));
            for w in 0..LANES {
                // SAFETY: the caller's contract.
                unsafe { *sh.a_part.get().add((b * di + self.d0 + w) * ns + n) = g_a[w] * a[w] };
            }
        }
    }
}

/// The backward of sequence `b` over the channels of `blocks`; `bc` receives this
/// group's part of `dL/dB`, `dL/dC`, `[L, 2N]`.
#[target_feature(enable = "avx2,fma")]
unsafe fn run_group<const FIXED: usize>(
    sh: &Shared,
    b: usize,
    blocks: Range<usize>,
    bc: &mut [f32],
) {
    let (s, inp) = (sh.s, sh.inp);
    let ns = state_count::<FIXED>(s);
    let mut packed = Packed::new(&blocks, s.chunk);
    let mut group: Vec<Block> = blocks.map(|j| Block::new(s, inp, j * LANES)).collect();
    let zero = _mm256_setzero_ps();
    // The chunk's states (`hs[j]` before step `t0 + j`), decays, and 8-lane partials of
    // `dL/dB`, `dL/dC` per step: about 130 KB at N = 16, in L2.
    let mut hs = vec![zero; (s.chunk + 1) * ns];
    let mut decays = vec![zero; s.chunk * ns];
    let mut partials = vec![zero; s.chunk * 2 * ns];
    for c in (0..s.n_chunks()).rev() {
        let steps = c * s.chunk..((c + 1) * s.chunk).min(s.len);
        partials.fill(zero);
        packed.fill(sh, b, steps.clone());
        for blk in &mut group {
            // SAFETY: the caller's contract: this block's columns of sequence b's rows.
            unsafe {
                recompute::<FIXED>(sh, &packed, b, steps.clone(), blk, &mut hs, &mut decays);
                walk_back::<FIXED>(
                    sh,
                    &mut packed,
                    b,
                    steps.clone(),
                    blk,
                    &hs,
                    &decays,
                    &mut partials,
                );
            }
        }
        // SAFETY: the caller's contract: this task's columns of sequence b's rows.
        unsafe { packed.flush(sh, b, steps.clone()) };
        for (j, t) in steps.enumerate() {
            let src = &partials[j * 2 * ns..(j + 1) * 2 * ns];
            horizontal_sums(src, &mut bc[t * 2 * ns..(t + 1) * 2 * ns]);
        }
    }
    for blk in &group {
        // SAFETY: slots (b, channel) of the partials belong to this task alone.
        unsafe { blk.write_partials(sh, b) };
    }
    if sh.stream {
        // Non-temporal stores are weakly ordered: drained before the task reports done.
        _mm_sfence();
    }
}

/// A chunk's rows of a task's channels, copied into contiguous `[chunk, width]` buffers
/// before its blocks run. Read in place, each block's rows are 32 bytes every `Di`
/// floats, and the first load of every row stalled: a third of the kernel's samples sat
/// there (`perf annotate`), software prefetches did not help. The copy reads whole
/// stretches of each row, many loads in flight at once.
struct Packed {
    /// First channel of the task.
    first: usize,
    /// Channels of the task.
    width: usize,
    delta: Vec<f32>,
    u: Vec<f32>,
    z: Vec<f32>,
    /// `dL/dy` (the backward overwrites it with `y` in the caller's buffer only).
    gy: Vec<f32>,
    /// The outputs, copied out after the chunk (stores to rows `Di` floats apart missed
    /// the cache as the loads did): `y`, `dL/dz`, `dL/du`, `dL/d dt` before the softplus.
    out: [Vec<f32>; 4],
}

impl Packed {
    /// Buffers for `chunk` rows of the channels of `blocks`.
    fn new(blocks: &Range<usize>, chunk: usize) -> Self {
        let width = blocks.len() * LANES;
        let buffer = || vec![0.0; chunk * width];
        Packed {
            first: blocks.start * LANES,
            width,
            delta: buffer(),
            u: buffer(),
            z: buffer(),
            gy: buffer(),
            out: std::array::from_fn(|_| buffer()),
        }
    }

    /// Copies the rows of `steps` of sequence `b`.
    fn fill(&mut self, sh: &Shared, b: usize, steps: Range<usize>) {
        let (s, w, f) = (sh.s, self.width, self.first);
        let di = s.d_inner;
        for (j, t) in steps.enumerate() {
            let row = b * s.len + t;
            let dst = j * w..(j + 1) * w;
            self.delta[dst.clone()].copy_from_slice(&sh.inp.delta[row * di + f..][..w]);
            self.u[dst.clone()].copy_from_slice(&sh.u[row * di + f..][..w]);
            self.z[dst.clone()].copy_from_slice(&sh.inp.z[row * sh.inp.ld_z + f..][..w]);
            // SAFETY: row < rows and the task's columns, inside the checked gy buffer,
            // which only this task touches there.
            let gy = unsafe { std::slice::from_raw_parts(sh.gy.get().add(row * di + f), w) };
            self.gy[dst].copy_from_slice(gy);
        }
    }

    /// Copies the outputs of the rows of `steps` of sequence `b` to the caller's buffers.
    ///
    /// # Safety
    /// The task's columns of these rows belong to the calling task alone.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn flush(&self, sh: &Shared, b: usize, steps: Range<usize>) {
        let (s, w, f) = (sh.s, self.width, self.first);
        let di = s.d_inner;
        for (j, t) in steps.enumerate() {
            let row = b * s.len + t;
            let src = j * w..(j + 1) * w;
            let dst = [
                sh.gy.get().wrapping_add(row * di + f),
                sh.gz.get().wrapping_add(row * sh.ld_gz + f),
                sh.gu.get().wrapping_add(row * di + f),
                sh.gdelta.get().wrapping_add(row * di + f),
            ];
            for (out, to) in self.out.iter().zip(dst) {
                let from = &out[src.clone()];
                if sh.stream {
                    for (i, v) in from.chunks_exact(LANES).enumerate() {
                        // SAFETY: as below; `w` is a multiple of 8 and the rows are 16-byte
                        // aligned where `stream`.
                        unsafe { store(to.add(i * LANES), _mm256_loadu_ps(v.as_ptr()), true) };
                    }
                } else {
                    // SAFETY: `w` values of this row in the task's columns, inside the
                    // checked buffers (the caller's contract).
                    unsafe { std::slice::from_raw_parts_mut(to, w) }.copy_from_slice(from);
                }
            }
        }
    }

    /// Where the 8 values of channel block `d0` at chunk row `j` of output `k` go.
    #[inline]
    fn out_ptr(&mut self, k: usize, j: usize, d0: usize) -> *mut f32 {
        let i = j * self.width + d0 - self.first;
        self.out[k][i..i + LANES].as_mut_ptr()
    }

    /// The 8 values of channel block `d0` at chunk row `j` of `buf`.
    ///
    /// # Safety
    /// `j` below the filled rows, `d0` one of the task's blocks.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(&self, buf: &[f32], j: usize, d0: usize) -> __m256 {
        debug_assert!((j + 1) * self.width <= buf.len() && d0 >= self.first);
        // SAFETY: the caller's contract.
        unsafe { _mm256_loadu_ps(buf.as_ptr().add(j * self.width + d0 - self.first)) }
    }
}

/// Recomputes the states of the chunk of `steps` from its checkpoint into `hs`, and the
/// decays.
///
/// # Safety
/// The caller's contract of [`run_group`].
#[target_feature(enable = "avx2,fma")]
unsafe fn recompute<const FIXED: usize>(
    sh: &Shared,
    packed: &Packed,
    b: usize,
    steps: Range<usize>,
    blk: &Block,
    hs: &mut [__m256],
    decays: &mut [__m256],
) {
    let s = sh.s;
    let (di, ns, d0) = (s.d_inner, state_count::<FIXED>(s), blk.d0);
    assert!(hs.len() > steps.len() * ns && decays.len() >= steps.len() * ns);
    let base = (b * s.n_chunks() + steps.start / s.chunk) * ns;
    for (n, h) in hs[..ns].iter_mut().enumerate() {
        // SAFETY: inside the checkpoint buffer (checked by the caller), this block's
        // columns.
        *h = unsafe { _mm256_loadu_ps(sh.ckpt.as_ptr().add((base + n) * di + d0)) };
    }
    let (hp, ep) = (hs.as_mut_ptr(), decays.as_mut_ptr());
    for (j, t) in steps.enumerate() {
        let row = b * s.len + t;
        // SAFETY: row < rows: inside the checked buffers; j below the chunk's packed
        // rows; the scratch indices are below the lengths asserted above.
        unsafe {
            let dl = packed.load(&packed.delta, j, d0);
            let du = _mm256_mul_ps(dl, packed.load(&packed.u, j, d0));
            let bp = sh.inp.xdbl.as_ptr().add(row * s.ld_xdbl + s.b_offset);
            let (prev, next, e) = (hp.add(j * ns), hp.add((j + 1) * ns), ep.add(j * ns));
            let a = &blk.a_log2e[..ns];
            let update = |n: usize, decay: __m256| {
                *e.add(n) = decay;
                *next.add(n) = _mm256_fmadd_ps(
                    decay,
                    *prev.add(n),
                    _mm256_mul_ps(du, _mm256_broadcast_ss(&*bp.add(n))),
                );
            };
            let mut n = 0;
            while n + 4 <= ns {
                for (k, decay) in decays_x4(dl, &a[n..n + 4]).into_iter().enumerate() {
                    update(n + k, decay);
                }
                n += 4;
            }
            for (n, &an) in a.iter().enumerate().skip(n) {
                update(n, exp2_nonpositive(_mm256_mul_ps(dl, an)));
            }
        }
    }
}

/// Walks the recomputed chunk backwards: the per-step gradients (and `y`) of this block,
/// its carried `dL/dh`, `dL/dA`, `dL/dD`, `dL/d bias`, and its share of `dL/dB`, `dL/dC`
/// added into `partials`.
///
/// # Safety
/// The caller's contract of [`run_group`]; `hs` and `decays` from [`recompute`] of the
/// same chunk and block.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn walk_back<const FIXED: usize>(
    sh: &Shared,
    packed: &mut Packed,
    b: usize,
    steps: Range<usize>,
    blk: &mut Block,
    hs: &[__m256],
    decays: &[__m256],
    partials: &mut [__m256],
) {
    let s = sh.s;
    let (ns, d0) = (state_count::<FIXED>(s), blk.d0);
    assert!(hs.len() > steps.len() * ns && partials.len() >= steps.len() * 2 * ns);
    let one = splat(1.0);
    let (a, dh, g_a) = (&blk.a[..ns], &mut blk.dh[..ns], &mut blk.g_a[..ns]);
    for (j, t) in steps.enumerate().rev() {
        let row = b * s.len + t;
        // SAFETY: row < rows: its row of x_dbl is inside the checked buffer; j below the
        // chunk's packed rows; the scratch slices are long enough (asserted above).
        unsafe {
            let dl = packed.load(&packed.delta, j, d0);
            let uu = packed.load(&packed.u, j, d0);
            let du = _mm256_mul_ps(dl, uu);
            let z = packed.load(&packed.z, j, d0);
            let gy = packed.load(&packed.gy, j, d0);
            let sig = _mm256_div_ps(
                one,
                _mm256_add_ps(one, exp(_mm256_sub_ps(_mm256_setzero_ps(), z))),
            );
            let gate = _mm256_mul_ps(z, sig);
            // silu'(z) = sig (1 + z (1 - sig)).
            let gate_grad = _mm256_mul_ps(sig, _mm256_fmadd_ps(z, _mm256_sub_ps(one, sig), one));
            let gys = _mm256_mul_ps(gy, gate);
            blk.g_d = _mm256_fmadd_ps(gys, uu, blk.g_d);
            let mut ys = _mm256_mul_ps(blk.d, uu);
            let mut gdl = _mm256_setzero_ps();
            // sum_n dL/dh[n] B[n]: dh/d dt and dh/du share it (B u dt and B dt u).
            let mut qsum = _mm256_setzero_ps();
            let xr = sh.inp.xdbl.as_ptr().add(row * s.ld_xdbl + s.b_offset);
            let h_now = &hs[(j + 1) * ns..(j + 2) * ns];
            let h_prev = &hs[j * ns..(j + 1) * ns];
            let e = &decays[j * ns..(j + 1) * ns];
            let (pb, pc) = partials[j * 2 * ns..(j + 1) * 2 * ns].split_at_mut(ns);
            for n in 0..ns {
                let bn = _mm256_broadcast_ss(&*xr.add(n));
                let cn = _mm256_broadcast_ss(&*xr.add(ns + n));
                let hn = h_now[n];
                let dhn = _mm256_fmadd_ps(gys, cn, dh[n]);
                ys = _mm256_fmadd_ps(cn, hn, ys);
                pc[n] = _mm256_fmadd_ps(gys, hn, pc[n]);
                let dh_carried = _mm256_mul_ps(dhn, e[n]);
                // dL/d(decay) * decay: the decay's factor of both dt and A.
                let gdec = _mm256_mul_ps(dh_carried, h_prev[n]);
                gdl = _mm256_fmadd_ps(gdec, a[n], gdl);
                g_a[n] = _mm256_fmadd_ps(gdec, dl, g_a[n]);
                qsum = _mm256_fmadd_ps(dhn, bn, qsum);
                pb[n] = _mm256_fmadd_ps(dhn, du, pb[n]);
                dh[n] = dh_carried;
            }
            let gz = _mm256_mul_ps(_mm256_mul_ps(gy, ys), gate_grad);
            let gu = _mm256_fmadd_ps(qsum, dl, _mm256_mul_ps(gys, blk.d));
            // Through the softplus: dt = softplus(raw), d dt / d raw from dt itself.
            let graw = _mm256_mul_ps(
                _mm256_fmadd_ps(qsum, uu, gdl),
                softplus_grad_from_output(dl),
            );
            blk.g_bias = _mm256_add_ps(blk.g_bias, graw);
            _mm256_storeu_ps(packed.out_ptr(0, j, d0), _mm256_mul_ps(ys, gate));
            _mm256_storeu_ps(packed.out_ptr(1, j, d0), gz);
            _mm256_storeu_ps(packed.out_ptr(2, j, d0), gu);
            _mm256_storeu_ps(packed.out_ptr(3, j, d0), graw);
        }
    }
}

/// `sigmoid(x)` from `s = softplus(x)`: `1 - exp(-s)`, as
/// [`super::float::softplus_grad_from_output`] (a series near 0, where `1 - exp(-s)`
/// would cancel; 1 above 20).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn softplus_grad_from_output(s: __m256) -> __m256 {
    let x = _mm256_sub_ps(_mm256_setzero_ps(), s);
    // exp(x) - 1 = x (1 + x/2 + x^2/6 + ... + x^6/5040) for |x| < 0.3.
    let mut p = splat(1.0 / 5040.0);
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0] {
        p = _mm256_fmadd_ps(p, x, splat(c));
    }
    let series = _mm256_mul_ps(p, x);
    let direct = _mm256_sub_ps(exp(x), splat(1.0));
    let near_zero = _mm256_cmp_ps::<_CMP_LT_OQ>(s, splat(0.3));
    let exp_m1 = _mm256_blendv_ps(direct, series, near_zero);
    let grad = _mm256_sub_ps(_mm256_setzero_ps(), exp_m1);
    _mm256_blendv_ps(
        grad,
        splat(1.0),
        _mm256_cmp_ps::<_CMP_GT_OQ>(s, splat(20.0)),
    )
}

/// `out[k] = ` the sum of the 8 lanes of `v[k]`; eight at a time through a shuffle tree.
#[target_feature(enable = "avx2,fma")]
fn horizontal_sums(v: &[__m256], out: &mut [f32]) {
    assert_eq!(v.len(), out.len());
    let mut eights = v.chunks_exact(8);
    let mut outs = out.chunks_exact_mut(8);
    for (x, o) in (&mut eights).zip(&mut outs) {
        // hadd(a, b) = [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, a6+a7, b4+b5, b6+b7]: two
        // rounds leave the low and high halves' sums of x[0..4] in one vector and of
        // x[4..8] in another; the cross-half adds finish them.
        let lo = _mm256_hadd_ps(_mm256_hadd_ps(x[0], x[1]), _mm256_hadd_ps(x[2], x[3]));
        let hi = _mm256_hadd_ps(_mm256_hadd_ps(x[4], x[5]), _mm256_hadd_ps(x[6], x[7]));
        let sums = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(lo, hi),
            _mm256_permute2f128_ps::<0x31>(lo, hi),
        );
        // SAFETY: 8 floats.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), sums) };
    }
    for (x, o) in eights.remainder().iter().zip(outs.into_remainder()) {
        let mut l = [0f32; LANES];
        // SAFETY: 8 floats.
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), *x) };
        *o = l.iter().sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::scan::applies;

    #[test]
    fn horizontal_sums_add_every_lane() {
        if !applies(LANES) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        for count in [1usize, 7, 8, 11, 32] {
            let vals: Vec<[f32; LANES]> = (0..count)
                .map(|k| std::array::from_fn(|w| (k * 10 + w) as f32 * 0.5 - 3.0))
                .collect();
            // SAFETY: features checked above.
            let vs: Vec<__m256> = vals
                .iter()
                .map(|x| unsafe { _mm256_loadu_ps(x.as_ptr()) })
                .collect();
            let mut out = vec![0f32; count];
            // SAFETY: features checked above.
            unsafe { horizontal_sums(&vs, &mut out) };
            for (k, (o, x)) in out.iter().zip(&vals).enumerate() {
                assert_eq!(*o, x.iter().sum::<f32>(), "count {count}, vector {k}");
            }
        }
    }

    #[test]
    fn softplus_grad_matches_sigmoid() {
        if !applies(LANES) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        let mut worst = 0f64;
        let mut raw = -12.0f64;
        while raw < 30.0 {
            let s = if raw > 20.0 { raw } else { raw.exp().ln_1p() };
            let xs: [f32; LANES] = std::array::from_fn(|w| (s + w as f64 * 1e-4) as f32);
            let mut out = [0f32; LANES];
            // SAFETY: features checked above; 8 floats in and out.
            unsafe {
                _mm256_storeu_ps(
                    out.as_mut_ptr(),
                    softplus_grad_from_output(_mm256_loadu_ps(xs.as_ptr())),
                )
            };
            for (x, o) in xs.iter().zip(out) {
                let x = *x as f64;
                let want = if x > 20.0 { 1.0 } else { -(-x).exp_m1() };
                worst = worst.max((o as f64 - want).abs() / want);
            }
            raw += 0.0173;
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
    }
}
