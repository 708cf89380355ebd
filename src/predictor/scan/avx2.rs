//! The selective scan's forward in `f32` on AVX2 + FMA, written with intrinsics.
//!
//! The generic kernel of [`super::scan`] leaves vectorisation to the compiler, which spills
//! its 16-lane state rows and re-materialises the exponential's constants on every state
//! entry (`perf annotate`; docs/performance.md), and its
//! one task per channel block walks rows `Di` floats apart, waiting on memory. Here a
//! task walks token rows over a group of 8-channel blocks (one `__m256` each, the group's
//! states in L1), the decay `exp(dt A)` is a base-2 exponential of 11 vector instructions
//! (9 on AVX-512; each step's, for all of the task's channels, computed ahead of its state updates), and
//! `<C_t, h_t>` is summed into two accumulators so the read-out's chain of dependent FMAs
//! is half as long.
//!
//! It also computes `dt = softplus(dt_low W_dt^T + b)` itself when asked
//! ([`Delta::LowRank`]): `R` broadcast FMAs per step and block instead of a separate GEMM,
//! a softplus pass and a `[rows, Di]` buffer written and read back; each step computes the
//! next step's, beside its own state updates.
//!
//! On CPUs with AVX-512 the same kernel runs on 16 lanes (`run_blocks_x16`; the 8-lane
//! code compiled for them, `run_blocks_avx512`, where `Di` is not a multiple of 16),
//! giving the same bits: the kernel and its exponentials are written once over
//! `Simd` (`predictor/simd.rs`).
//!
//! Same arithmetic as the generic kernel up to rounding: the exponentials are polynomials
//! as accurate as [`super::float::exp_f32_with`] (tested against libm), and the read-out's
//! sum runs in another order. Tests compare it with the generic kernel.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::dims::{Delta, Inputs, ScanDims, LANES};
use crate::predictor::gemm::SendPtr;
use crate::predictor::prefetch::prefetch_lines;
use crate::predictor::simd::{has_avx512, Avx2, Avx512, Simd, EXP2_MIN, EXP2_POLY, ROUND};

/// Pointers the tasks write through.
#[derive(Clone, Copy)]
struct Out {
    u: *const f32,
    y: SendPtr<f32>,
    ckpt: Option<SendPtr<f32>>,
    /// Where computed `dt` values are kept, when asked.
    delta: Option<SendPtr<f32>>,
    /// Whether `y`, `dt` and the checkpoints are written with non-temporal stores (see
    /// [`streams`]).
    stream: bool,
}
// SAFETY: tasks touch disjoint (sequence, channel block) parts; see `forward_raw`.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

/// `y = (scan(u) + D u) * silu(z)` for `rows * Di` token-major values; `y` may be `u`.
/// With `ckpt` (`ScanDims::ckpt_len` long) the states at chunk starts are stored for the
/// backward, exactly as the generic kernel stores them; with `delta_out` (`[rows, Di]`,
/// only for [`Delta::LowRank`]) the computed `dt`.
///
/// # Safety
/// [`applies`] must hold for `s.d_inner`; `u` and `y` must address `rows * Di` valid
/// elements each (they may be equal) that nothing else accesses during the call.
pub unsafe fn forward_raw(
    s: &ScanDims,
    inp: &Inputs,
    u: *const f32,
    y: *mut f32,
    ckpt: Option<&mut [f32]>,
    delta_out: Option<&mut [f32]>,
) {
    // SAFETY: the caller's contract; `has_avx512` checked the CPU.
    unsafe { forward_raw_on(s, inp, u, y, ckpt, delta_out, has_avx512()) }
}

/// [`forward_raw`] with the AVX-512 builds of the kernel ([`run_blocks_x16`], or
/// [`run_blocks_avx512`] where `Di` is not a multiple of 16) or the AVX2 one.
///
/// # Safety
/// As [`forward_raw`]; with `avx512`, the CPU must also have AVX-512F and VL.
pub(super) unsafe fn forward_raw_on(
    s: &ScanDims,
    inp: &Inputs,
    u: *const f32,
    y: *mut f32,
    ckpt: Option<&mut [f32]>,
    delta_out: Option<&mut [f32]>,
    avx512: bool,
) {
    let (rows, di, ns) = (s.batch * s.len, s.d_inner, s.d_state);
    assert_eq!(di % LANES, 0);
    assert_eq!(inp.a_log.len(), di * ns);
    assert_eq!(inp.d.len(), di);
    assert!(s.b_offset + 2 * ns <= s.ld_xdbl && inp.xdbl.len() >= rows * s.ld_xdbl);
    assert!(inp.ld_z >= di);
    match inp.z_rows {
        None => assert!(rows == 0 || inp.z.len() >= (rows - 1) * inp.ld_z + di),
        Some(zr) => assert!(
            zr.len() == rows
                && zr
                    .iter()
                    .all(|&r| r as usize * inp.ld_z + di <= inp.z.len())
        ),
    }
    match inp.delta {
        Delta::Stored(dl) => assert_eq!(dl.len(), rows * di),
        Delta::LowRank { weight, bias } => {
            assert_eq!(weight.len(), di * s.b_offset);
            assert_eq!(bias.len(), di);
        }
    }
    if let Some(c) = &ckpt {
        assert_eq!(c.len(), s.ckpt_len());
    }
    if let Some(d) = &delta_out {
        assert!(matches!(inp.delta, Delta::LowRank { .. }) && d.len() == rows * di);
    }
    let out = Out {
        u,
        y: SendPtr(y),
        stream: streams(u, y, ckpt.as_deref(), delta_out.as_deref()),
        ckpt: ckpt.map(|c| SendPtr(c.as_mut_ptr())),
        delta: delta_out.map(|d| SendPtr(d.as_mut_ptr())),
    };
    // The widest kernel that fits: 16 lanes where the CPU has AVX-512 and the channels
    // split into 16s.
    let lanes = if avx512 && di.is_multiple_of(16) {
        16
    } else {
        LANES
    };
    let (per_task, tasks_per_seq) = split(di / lanes, lanes, s.batch, rayon::current_num_threads());
    (0..s.batch * tasks_per_seq)
        .into_par_iter()
        .for_each(|task| {
            let first = (task % tasks_per_seq) * per_task;
            let blocks = first..(first + per_task).min(di / lanes);
            let b = task / tasks_per_seq;
            // Kernels compiled for the usual N, so that their loops over the state unroll
            // (see `state_count`).
            macro_rules! by_state {
                ($kernel:ident) => {
                    match s.d_state {
                        16 => $kernel::<16>(s, inp, out, b, blocks),
                        8 => $kernel::<8>(s, inp, out, b, blocks),
                        4 => $kernel::<4>(s, inp, out, b, blocks),
                        _ => $kernel::<0>(s, inp, out, b, blocks),
                    }
                };
            }
            // SAFETY: task (b, blocks) reads and writes only rows of sequence b and the
            // channel columns of its blocks in u/y and in the checkpoints; features checked
            // by the caller through `applies` (and `has_avx512` for `avx512`).
            unsafe {
                match (lanes, avx512) {
                    (16, _) => by_state!(run_blocks_x16),
                    (_, true) => by_state!(run_blocks_avx512),
                    _ => by_state!(run_blocks_avx2),
                }
            }
        });
}

/// Whether the forward writes its outputs with non-temporal stores: in training (with
/// checkpoints), where `y`, `dt` and the checkpoints are fresh buffers written once and
/// read again only after the whole scan, by which time they have left the cache. Ordinary
/// stores first read every line they write (for the paper's grid, `y` and `dt` 65 MB
/// each), which measured slower (docs/performance.md, "Kernel choices"). Not in
/// inference, where `y` overwrites `u` in lines the scan just read, nor for scoring's
/// orderings, where the mean over orderings reads `y` next and streaming it measured no
/// gain. The stores need 16-byte alignment;
/// a misaligned buffer falls back to ordinary stores.
fn streams(u: *const f32, y: *mut f32, ckpt: Option<&[f32]>, delta: Option<&[f32]>) -> bool {
    ckpt.is_some_and(|c| stream_aligned(c.as_ptr()))
        && !std::ptr::eq(u, y)
        && stream_aligned(y)
        && delta.is_none_or(|d| stream_aligned(d.as_ptr()))
}

/// Whether `p` may take [`store`]'s non-temporal stores (16-byte aligned).
pub(super) fn stream_aligned(p: *const f32) -> bool {
    (p as usize).is_multiple_of(16)
}

/// Stores 8 lanes at `p`, bypassing the cache when `stream` (then `p` must be 16-byte
/// aligned).
///
/// # Safety
/// `p` must address 8 writable floats, 16-byte aligned when `stream`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn store(p: *mut f32, v: __m256, stream: bool) {
    // SAFETY: the caller's contract; the CPU has AVX2 and FMA (this function's features).
    unsafe { put::<Avx2>(p, v, stream) }
}

/// `N` as the kernels see it: `FIXED` when it is not 0, so that the loops over the state
/// unroll and their accumulators stay in registers (with `N` known only at run time the
/// read-out's accumulator lived on the stack and the loop kept its bounds checks:
/// `perf annotate`), else the run-time `d_state`.
#[inline(always)]
pub(super) fn state_count<const FIXED: usize>(s: &ScanDims) -> usize {
    if FIXED == 0 {
        s.d_state
    } else {
        debug_assert_eq!(FIXED, s.d_state);
        FIXED
    }
}

/// Most channels one task walks together: their states (`channels x N` floats, 8 KB at
/// N = 16) stay in L1.
const MAX_CHANNELS_PER_TASK: usize = 128;

/// `(blocks per task, tasks per sequence)` for `blocks` blocks of `lanes` channels per
/// sequence: few tasks, so each reads whole stretches of a token's row (one task per
/// block walked rows `Di` floats apart and spent half its time waiting for memory), yet
/// at least two per thread when there are few sequences. Which channels share a task does
/// not change any result.
fn split(blocks: usize, lanes: usize, batch: usize, threads: usize) -> (usize, usize) {
    let mut tasks = blocks.div_ceil(MAX_CHANNELS_PER_TASK / lanes).max(1);
    while batch * tasks < 2 * threads && tasks < blocks {
        tasks += 1;
    }
    let per_task = blocks.div_ceil(tasks).max(1);
    (per_task, blocks.div_ceil(per_task).max(1))
}

/// Per-block constants of a task.
struct BlockConsts<V> {
    /// `A log2(e)` (`A = -exp(A_log)`), `[blocks][N]`: the decay is `2^(dt A log2(e))`.
    a_log2e: Vec<V>,
    /// `D` per block.
    d: Vec<V>,
    /// dt_proj's weight transposed, `[blocks][R]` (empty for stored `dt`).
    dt_weight: Vec<V>,
    /// dt_proj's bias per block (empty for stored `dt`).
    dt_bias: Vec<V>,
}

/// # Safety
/// The CPU features of `S` (see [`Simd`]).
#[inline(always)]
unsafe fn block_consts<S: Simd>(
    s: &ScanDims,
    inp: &Inputs,
    blocks: &std::ops::Range<usize>,
) -> BlockConsts<S::V> {
    let (ns, r) = (s.d_state, s.b_offset);
    let mut c = BlockConsts {
        a_log2e: Vec::new(),
        d: Vec::new(),
        dt_weight: Vec::new(),
        dt_bias: Vec::new(),
    };
    // SAFETY: the caller's contract.
    unsafe {
        for d0 in blocks.clone().map(|j| j * S::LANES) {
            c.a_log2e.extend((0..ns).map(|n| {
                S::lanes(|w| -inp.a_log[(d0 + w) * ns + n].exp() * std::f32::consts::LOG2_E)
            }));
            c.d.push(S::lanes(|w| inp.d[d0 + w]));
            if let Delta::LowRank { weight, bias } = inp.delta {
                c.dt_weight
                    .extend((0..r).map(|k| S::lanes(|w| weight[(d0 + w) * r + k])));
                c.dt_bias.push(S::lanes(|w| bias[d0 + w]));
            }
        }
    }
    c
}

/// `v` to `p`, with non-temporal stores when `stream` (then 16-byte aligned).
///
/// # Safety
/// `p` must address `S::LANES` writable floats; the CPU features of `S`.
#[inline(always)]
unsafe fn put<S: Simd>(p: *mut f32, v: S::V, stream: bool) {
    // SAFETY: the caller's contract.
    unsafe {
        if stream {
            S::stream(p, v);
        } else {
            S::store(p, v);
        }
    }
}

/// The scan of sequence `b` over the channels of `blocks` (`S::LANES` each), token by
/// token; compiled into [`run_blocks_avx2`], [`run_blocks_avx512`] and
/// [`run_blocks_x16`].
///
/// # Safety
/// As [`forward_raw`], for the task's sequence and blocks; the CPU features of `S`.
#[inline(always)]
unsafe fn run_blocks<S: Simd, const FIXED: usize>(
    s: &ScanDims,
    inp: &Inputs,
    out: Out,
    b: usize,
    blocks: std::ops::Range<usize>,
) {
    let (di, ns, r, w) = (s.d_inner, state_count::<FIXED>(s), s.b_offset, S::LANES);
    // SAFETY: the caller's contract, for everything below.
    unsafe {
        let c = block_consts::<S>(s, inp, &blocks);
        let mut h = vec![S::zero(); blocks.len() * ns];
        let mut dts = vec![S::zero(); blocks.len()];
        let mut decays = vec![S::zero(); blocks.len() * ns];
        let mut dts_next = dts.clone();
        let xdbl = inp.xdbl.as_ptr();
        if s.len > 0 {
            deltas::<S>(s, inp, out, &c, blocks.start, b * s.len, &mut dts);
        }
        for t in 0..s.len {
            let row = b * s.len + t;
            if let Some(ck) = out.ckpt {
                if t % s.chunk == 0 {
                    let base = (b * s.n_chunks() + t / s.chunk) * ns;
                    for (j, hb) in h.chunks_exact(ns).enumerate() {
                        let d0 = (blocks.start + j) * w;
                        for (n, hn) in hb.iter().enumerate() {
                            // Inside the checkpoint buffer, columns of this block.
                            put::<S>(ck.get().add((base + n) * di + d0), *hn, out.stream);
                        }
                    }
                }
            }
            if t + PREFETCH_ROWS < s.len {
                prefetch_row(s, inp, out, row + PREFETCH_ROWS, &blocks, w);
            }
            // row < rows, so the row of x_dbl is inside the buffer checked in `forward_raw`.
            let xr = xdbl.add(row * s.ld_xdbl);
            // Then every decay of the step, into `decays`: computed inside each block's
            // state updates, the exponentials' dozen registers of temporaries left too few
            // for the rest, whose values were spilled and reloaded.
            for (j, &dl) in dts.iter().enumerate() {
                let a = &c.a_log2e[j * ns..(j + 1) * ns];
                for (e, &an) in decays[j * ns..(j + 1) * ns].iter_mut().zip(a) {
                    *e = S::exp2_nonpositive(S::mul(dl, an));
                }
            }
            // The next row's `dt` of every block, between this row's decays and its state
            // updates, which do not need it: its softplus is a chain of a few dozen
            // dependent operations that the state updates now run beside, where at the
            // start of the row the decays waited on it.
            if t + 1 < s.len {
                deltas::<S>(s, inp, out, &c, blocks.start, row + 1, &mut dts_next);
            }
            // The row of x_dbl holds B and C after the R values of `dt`.
            let (bp, cp) = (xr.add(r), xr.add(r + ns));
            for (j, (hb, eb)) in h
                .chunks_exact_mut(ns)
                .zip(decays.chunks_exact(ns))
                .enumerate()
            {
                let d0 = (blocks.start + j) * w;
                let off = row * di + d0;
                // The `w` columns at `off` (and at the same columns of z's row) are inside
                // the buffers checked in `forward_raw`; B and C hold N values each.
                let uu = S::load(out.u.add(off));
                let du = S::mul(dts[j], uu);
                // Two named accumulators (an indexed pair lived on the stack, and every FMA
                // of the read-out waited on a store-to-load round trip).
                let (mut acc0, mut acc1) = (S::zero(), S::zero());
                // Pointers, not indices: with the slices' bounds checks the states and the
                // broadcasts of B and C went through the stack.
                let (hp, ep) = (hb.as_mut_ptr(), eb.as_ptr());
                let mut n = 0;
                while n + 2 <= ns {
                    acc0 =
                        state_update::<S>(hp.add(n), *ep.add(n), du, *bp.add(n), *cp.add(n), acc0);
                    let (b1, c1) = (*bp.add(n + 1), *cp.add(n + 1));
                    acc1 = state_update::<S>(hp.add(n + 1), *ep.add(n + 1), du, b1, c1, acc1);
                    n += 2;
                }
                if n < ns {
                    acc0 =
                        state_update::<S>(hp.add(n), *ep.add(n), du, *bp.add(n), *cp.add(n), acc0);
                }
                let yv = S::fmadd(c.d[j], uu, S::add(acc0, acc1));
                let z_row = inp.z_rows.map_or(row, |zr| zr[row] as usize);
                let z = S::load(inp.z.as_ptr().add(z_row * inp.ld_z + d0));
                put::<S>(out.y.get().add(off), S::mul(yv, S::silu(z)), out.stream);
            }
            std::mem::swap(&mut dts, &mut dts_next);
        }
        if out.stream {
            // Non-temporal stores are weakly ordered: drain them before the task reports
            // done, so that whoever reads the buffers next sees them.
            _mm_sfence();
        }
    }
}

/// Defines `$name`: [`run_blocks`] on `$simd`'s vectors, compiled for `$features`.
macro_rules! run_blocks_build {
    ($(#[$doc:meta])* $name:ident, $simd:ty, $features:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As [`run_blocks`]; the CPU has the features this build is compiled for.
        #[target_feature(enable = $features)]
        unsafe fn $name<const FIXED: usize>(
            s: &ScanDims,
            inp: &Inputs,
            out: Out,
            b: usize,
            blocks: std::ops::Range<usize>,
        ) {
            // SAFETY: the caller's contract.
            unsafe { run_blocks::<$simd, FIXED>(s, inp, out, b, blocks) }
        }
    };
}

run_blocks_build!(
    /// [`run_blocks`] with 8 lanes, compiled for AVX2 and FMA.
    run_blocks_avx2,
    Avx2,
    "avx2,fma"
);
run_blocks_build!(
    /// [`run_blocks`] with 8 lanes on CPUs with AVX-512, for `Di` that is not a multiple
    /// of 16: the same code, which the compiler then gives 32 vector registers instead of
    /// 16 (fewer of a block's states and decays round-trip through the stack). Same
    /// instructions on the values, so the same results bit for bit (tested), and faster
    /// (docs/performance.md, "Kernel choices").
    run_blocks_avx512,
    Avx2,
    "avx2,fma,avx512f,avx512vl"
);
run_blocks_build!(
    /// [`run_blocks`] with 16 lanes (AVX-512F), for `Di` a multiple of 16: half the
    /// instructions of the 8-lane build for the same lanes, the same operations on each
    /// lane, so the same bits (tested).
    run_blocks_x16,
    Avx512,
    "avx2,fma,avx512f,avx512vl"
);

/// `dt` of row `row` for each block of a task whose first block is `first_block`, into
/// `dts` (and kept when asked).
///
/// # Safety
/// `row` must be a row of the scan and the blocks the task's, as checked in
/// [`forward_raw`]; the CPU features of `S`.
#[inline(always)]
unsafe fn deltas<S: Simd>(
    s: &ScanDims,
    inp: &Inputs,
    out: Out,
    c: &BlockConsts<S::V>,
    first_block: usize,
    row: usize,
    dts: &mut [S::V],
) {
    let r = s.b_offset;
    for (j, dl) in dts.iter_mut().enumerate() {
        let off = row * s.d_inner + (first_block + j) * S::LANES;
        // SAFETY: the caller's contract: the columns at `off` are inside the buffers
        // checked in `forward_raw`, and the row of x_dbl holds the R values read.
        unsafe {
            *dl = match inp.delta {
                Delta::Stored(dl) => S::load(dl.as_ptr().add(off)),
                Delta::LowRank { .. } => {
                    let xr = inp.xdbl.as_ptr().add(row * s.ld_xdbl);
                    let mut raw = c.dt_bias[j];
                    for (k, wk) in c.dt_weight[j * r..(j + 1) * r].iter().enumerate() {
                        raw = S::fmadd(S::splat(*xr.add(k)), *wk, raw);
                    }
                    let dl = S::softplus(raw);
                    if let Some(keep) = out.delta {
                        put::<S>(keep.get().add(off), dl, out.stream);
                    }
                    dl
                }
            };
        }
    }
}

/// Rows ahead of the scan whose inputs are prefetched. A task reads a few hundred bytes
/// of each row, rows thousands of bytes apart, a pattern the hardware prefetchers missed:
/// a third of the kernel's samples sat on the loads of `dt` and `z` (`perf annotate`).
/// One row's work (hundreds of cycles per block) covers a memory latency, two leave room.
const PREFETCH_ROWS: usize = 2;

/// Asks for the cache lines of `row` that the task over `blocks` (of `lanes` channels)
/// will read.
#[inline(always)]
fn prefetch_row(
    s: &ScanDims,
    inp: &Inputs,
    out: Out,
    row: usize,
    blocks: &std::ops::Range<usize>,
    lanes: usize,
) {
    let (first, end) = (blocks.start * lanes, blocks.end * lanes);
    let z_row = inp.z_rows.map_or(row, |zr| zr[row] as usize);
    let di = s.d_inner;
    // Inside the buffers (row < rows); see `prefetch_lines`.
    let lines = |base: *const f32| prefetch_lines(base.wrapping_add(first), end - first);
    lines(out.u.wrapping_add(row * di));
    lines(inp.z.as_ptr().wrapping_add(z_row * inp.ld_z));
    if let Delta::Stored(dl) = inp.delta {
        lines(dl.as_ptr().wrapping_add(row * di));
    }
    // SAFETY: SSE is part of x86_64; a prefetch never faults.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(inp.xdbl.as_ptr().wrapping_add(row * s.ld_xdbl).cast()) };
}

/// One state entry of the forward: `h = decay h + dt u B`, and returns `acc + C h`.
///
/// # Safety
/// `h` must point to a valid, exclusively accessed vector; the CPU features of `S`.
#[inline(always)]
unsafe fn state_update<S: Simd>(
    h: *mut S::V,
    decay: S::V,
    du: S::V,
    b: f32,
    c: f32,
    acc: S::V,
) -> S::V {
    // SAFETY: the caller's contract.
    unsafe {
        let next = S::fmadd(decay, *h, S::mul(du, S::splat(b)));
        *h = next;
        S::fmadd(next, S::splat(c), acc)
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn splat(v: f32) -> __m256 {
    _mm256_set1_ps(v)
}

/// `[f(0), .., f(7)]` as a vector (setup only, outside the loops).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn lanes(f: impl Fn(usize) -> f32) -> __m256 {
    // SAFETY: the CPU has AVX2 and FMA (this function's features).
    unsafe { Avx2::lanes(f) }
}

/// [`Simd::exp2_nonpositive`] on 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn exp2_nonpositive(x: __m256) -> __m256 {
    // SAFETY: the CPU has AVX2 and FMA (this function's features).
    unsafe { Avx2::exp2_nonpositive(x) }
}

/// The decays `2^(dt A log2 e)` of four consecutive states, `a_log2e` their `A log2 e`
/// (the backward's recomputation; the forward computes a step's decays in one plain loop
/// ahead of its state updates, which measured faster there).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn decays_x4(dt: __m256, a_log2e: &[__m256]) -> [__m256; 4] {
    exp2_nonpositive_x4([
        _mm256_mul_ps(dt, a_log2e[0]),
        _mm256_mul_ps(dt, a_log2e[1]),
        _mm256_mul_ps(dt, a_log2e[2]),
        _mm256_mul_ps(dt, a_log2e[3]),
    ])
}

/// [`exp2_nonpositive`] of four vectors, written stage by stage across the four: each
/// decay is a chain of a dozen dependent operations, and in lockstep each stage's inputs
/// are ready when it issues (faster than one at a time: docs/performance.md, "Kernel
/// choices").
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp2_nonpositive_x4(mut x: [__m256; 4]) -> [__m256; 4] {
    // Plain loops over the four: closures (`map`) do not inherit the target features and
    // were called, not inlined.
    let mut kr = [_mm256_setzero_ps(); 4];
    let mut f = [_mm256_setzero_ps(); 4];
    for v in x.iter_mut() {
        *v = _mm256_max_ps(*v, splat(EXP2_MIN));
    }
    for i in 0..4 {
        kr[i] = _mm256_add_ps(x[i], splat(ROUND));
    }
    for i in 0..4 {
        f[i] = _mm256_sub_ps(x[i], _mm256_sub_ps(kr[i], splat(ROUND)));
    }
    let mut p = [splat(EXP2_POLY[0]); 4];
    for c in &EXP2_POLY[1..] {
        for i in 0..4 {
            p[i] = _mm256_fmadd_ps(p[i], f[i], splat(*c));
        }
    }
    for i in 0..4 {
        // SAFETY: the CPU has AVX2 and FMA (this function's features).
        p[i] = unsafe { Avx2::add_shifted_exponent(p[i], kr[i]) };
    }
    p
}

/// [`Simd::exp`] on 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn exp(x: __m256) -> __m256 {
    // SAFETY: the CPU has AVX2 and FMA (this function's features).
    unsafe { Avx2::exp(x) }
}

/// [`Simd::softplus`] on 8 lanes.
#[cfg(test)]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn softplus(x: __m256) -> __m256 {
    // SAFETY: the CPU has AVX2 and FMA (this function's features).
    unsafe { Avx2::softplus(x) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::scan::applies;

    /// Worst relative error of `f` over `[lo, hi]` against the f64 `reference`.
    fn worst(lo: f32, hi: f32, f: unsafe fn(__m256) -> __m256, reference: fn(f64) -> f64) -> f64 {
        let mut worst = 0f64;
        let mut x = lo;
        while x < hi {
            let xs: [f32; LANES] = std::array::from_fn(|i| (x + i as f32 * 1e-3).min(hi));
            let mut out = [0f32; LANES];
            // SAFETY: the callers checked the CPU's features; 8 floats in and out.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), f(_mm256_loadu_ps(xs.as_ptr()))) };
            for (x, y) in xs.iter().zip(out) {
                let want = reference(*x as f64);
                worst = worst.max((y as f64 - want).abs() / want);
            }
            x += 0.0117;
        }
        worst
    }

    #[test]
    fn exponentials_match_libm() {
        if !applies(LANES) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        let e2 = worst(-125.0, 0.0, exp2_nonpositive, f64::exp2);
        assert!(e2 < 2e-7, "exp2: worst relative error {e2}");
        let e = worst(-87.0, 88.0, exp, f64::exp);
        assert!(e < 3e-7, "exp: worst relative error {e}");
        let sp = worst(-15.0, 30.0, softplus, |x| {
            if x > 20.0 {
                x
            } else {
                x.exp().ln_1p()
            }
        });
        assert!(sp < 5e-7, "softplus: worst relative error {sp}");
    }

    #[test]
    fn four_exponentials_in_lockstep_equal_four_alone() {
        if !applies(LANES) {
            eprintln!("skipped: this CPU lacks AVX2/FMA");
            return;
        }
        let mut x = [[0f32; LANES]; 4];
        for (i, v) in x.iter_mut().flatten().enumerate() {
            *v = -130.0 + 4.1 * i as f32;
        }
        x[3][7] = 0.0;
        // SAFETY: the CPU has AVX2 and FMA (checked above); 8 floats per load and store.
        unsafe {
            let v = x.map(|l| _mm256_loadu_ps(l.as_ptr()));
            let four = exp2_nonpositive_x4(v);
            for i in 0..4 {
                let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
                _mm256_storeu_ps(a.as_mut_ptr(), four[i]);
                _mm256_storeu_ps(b.as_mut_ptr(), exp2_nonpositive(v[i]));
                assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits), "vector {i}");
            }
        }
    }

    #[test]
    fn only_the_training_forward_streams_and_only_to_aligned_buffers() {
        // The twin tests of `super::super::scan` run the streaming path (training, distinct
        // buffers) against the portable kernel and against the in-place forward, bit for
        // bit; this pins down when it is taken.
        let u = vec![0f32; 64];
        let mut y = vec![0f32; 65];
        let (ck, dt) = (vec![0f32; 16], vec![0f32; 64]);
        let y_ptr = y.as_mut_ptr();
        assert!(streams(u.as_ptr(), y_ptr, Some(&ck), Some(&dt)));
        assert!(streams(u.as_ptr(), y_ptr, Some(&ck), None));
        assert!(!streams(u.as_ptr(), y_ptr, None, None), "inference");
        let in_place = u.as_ptr().cast_mut();
        assert!(!streams(u.as_ptr(), in_place, Some(&ck), None), "y over u");
        assert!(!streams(u.as_ptr(), y_ptr.wrapping_add(1), Some(&ck), None));
        assert!(!streams(u.as_ptr(), y_ptr, Some(&ck[1..]), Some(&dt)));
        assert!(!streams(u.as_ptr(), y_ptr, Some(&ck), Some(&dt[1..])));
    }
}
