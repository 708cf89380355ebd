//! The selective scan's forward in `f32` on AVX2 + FMA, written with intrinsics.
//!
//! The generic kernel of [`super::scan`] leaves vectorisation to the compiler, which spills
//! its 16-lane state rows and re-materialises the exponential's constants on every state
//! entry (about 48 cycles per 8 lanes and entry, measured with `perf annotate`), and its
//! one task per channel block walks rows `Di` floats apart, waiting on memory. Here a
//! task walks token rows over a group of 8-channel blocks (one `__m256` each, the group's
//! states in L1), the decay `exp(dt A)` is a base-2 exponential of 11 vector instructions
//! (each step's, for all of the task's channels, computed ahead of its state updates), and
//! `<C_t, h_t>` is summed into two accumulators so the read-out's chain of dependent FMAs
//! is half as long.
//!
//! It also computes `dt = softplus(dt_low W_dt^T + b)` itself when asked
//! ([`Delta::LowRank`]): `R` broadcast FMAs per step and block instead of a separate GEMM,
//! a softplus pass and a `[rows, Di]` buffer written and read back; each step computes the
//! next step's, beside its own state updates.
//!
//! On CPUs with AVX-512 the same 8-lane kernel runs as a second build compiled for them
//! (`run_blocks_avx512`: 32 vector registers), giving the same bits.
//!
//! Same arithmetic as the generic kernel up to rounding: the exponentials are polynomials
//! as accurate as [`super::float::exp_f32_with`] (tested against libm), and the read-out's
//! sum runs in another order. Tests compare it with the generic kernel.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::gemm::SendPtr;
use super::prefetch::prefetch_lines;
use super::scan::ScanDims;

/// Channels per task: one AVX2 vector of `f32`.
pub const LANES: usize = 8;

/// Where the kernel reads `dt` (after softplus) from.
#[derive(Clone, Copy)]
pub enum Delta<'a> {
    /// Computed beforehand, `[rows, Di]` (training keeps it for the backward).
    Stored(&'a [f32]),
    /// `softplus(dt_low W^T + bias)` computed in the kernel from the first `dt_rank`
    /// columns of `x_dbl` (`ScanDims::b_offset`): `weight` is dt_proj's `[Di, R]`,
    /// `bias` its `[Di]`.
    LowRank {
        /// dt_proj.weight, `[Di, R]`.
        weight: &'a [f32],
        /// dt_proj.bias, `[Di]`.
        bias: &'a [f32],
    },
}

/// Read-only inputs of the scan (see [`super::scan::ScanInputs`] for the layouts).
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// `A_log`, `[Di, N]`.
    pub a_log: &'a [f32],
    /// `D`, `[Di]`.
    pub d: &'a [f32],
    /// `dt` or how to compute it.
    pub delta: Delta<'a>,
    /// `x_proj` output, `[rows, ld_xdbl]`.
    pub xdbl: &'a [f32],
    /// The gate `z`, `[rows, ld_z]`.
    pub z: &'a [f32],
    /// Row stride of `z`.
    pub ld_z: usize,
    /// The row of `z` each scanned row reads, when not the row itself (sequences that
    /// read one token set in different orders).
    pub z_rows: Option<&'a [u32]>,
}

/// Whether this kernel runs here: the CPU has AVX2 and FMA, and the channels split into
/// whole vectors.
pub fn applies(d_inner: usize) -> bool {
    d_inner.is_multiple_of(LANES)
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
}

/// Whether the CPU has AVX-512F and VL, for [`run_blocks_avx512`].
pub(super) fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
}

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

/// [`forward_raw`] with the AVX-512 build of the kernel ([`run_blocks_avx512`]) or not.
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
    let (per_task, tasks_per_seq) = split(di / LANES, s.batch, rayon::current_num_threads());
    (0..s.batch * tasks_per_seq)
        .into_par_iter()
        .for_each(|task| {
            let first = (task % tasks_per_seq) * per_task;
            let blocks = first..(first + per_task).min(di / LANES);
            // SAFETY: task (b, blocks) reads and writes only rows of sequence b and the
            // channel columns of its blocks in u/y and in the checkpoints; features checked
            // by the caller through `applies`.
            unsafe {
                let b = task / tasks_per_seq;
                match (s.d_state, avx512) {
                    (16, true) => run_blocks_avx512::<16>(s, inp, out, b, blocks),
                    (8, true) => run_blocks_avx512::<8>(s, inp, out, b, blocks),
                    (4, true) => run_blocks_avx512::<4>(s, inp, out, b, blocks),
                    (_, true) => run_blocks_avx512::<0>(s, inp, out, b, blocks),
                    (16, false) => run_blocks::<16>(s, inp, out, b, blocks),
                    (8, false) => run_blocks::<8>(s, inp, out, b, blocks),
                    (4, false) => run_blocks::<4>(s, inp, out, b, blocks),
                    (_, false) => run_blocks::<0>(s, inp, out, b, blocks),
                }
            }
        });
}

/// Whether the forward writes its outputs with non-temporal stores: in training (with
/// checkpoints), where `y`, `dt` and the checkpoints are fresh buffers written once and
/// read again only after the whole scan, by which time they have left the cache. Ordinary
/// stores first read every line they write (for the paper's grid, `y` and `dt` 65 MB
/// each). At the paper's grid (B 4, L 5329, Di 768, N 16, 2 threads), ordinary and
/// streaming stores alternating in one process, best of 6, four rounds: 163-192 ms vs
/// 124-155 ms per training forward scan. Not in inference, where `y` overwrites `u` in
/// lines the scan just read, nor for scoring's orderings, where streaming `y` measured no
/// gain (`varad bench`'s predictor stage, six alternating pairs: median 147 ms plain, 150
/// streamed; the mean over orderings reads `y` next). The stores need 16-byte alignment;
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
/// aligned: the lanes go as two 4-lane non-temporal stores, AVX2 having no unaligned
/// 8-lane one).
///
/// # Safety
/// `p` must address 8 writable floats, 16-byte aligned when `stream`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn store(p: *mut f32, v: __m256, stream: bool) {
    // SAFETY: the caller's contract.
    unsafe {
        if stream {
            _mm_stream_ps(p, _mm256_castps256_ps128(v));
            _mm_stream_ps(p.add(4), _mm256_extractf128_ps::<1>(v));
        } else {
            _mm256_storeu_ps(p, v);
        }
    }
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

/// Most 8-channel blocks one task walks together: their states (`blocks x N` vectors,
/// 8 KB at N = 16) stay in L1.
const MAX_BLOCKS_PER_TASK: usize = 16;

/// `(blocks per task, tasks per sequence)` for `blocks` blocks per sequence: few tasks,
/// so each reads whole stretches of a token's row (one task per block walked rows
/// `Di` floats apart and spent half its time waiting for memory), yet at least two per
/// thread when there are few sequences. Which channels share a task does not change any
/// result.
fn split(blocks: usize, batch: usize, threads: usize) -> (usize, usize) {
    let mut tasks = blocks.div_ceil(MAX_BLOCKS_PER_TASK).max(1);
    while batch * tasks < 2 * threads && tasks < blocks {
        tasks += 1;
    }
    let per_task = blocks.div_ceil(tasks).max(1);
    (per_task, blocks.div_ceil(per_task).max(1))
}

/// Per-block constants of a task.
struct BlockConsts {
    /// `A log2(e)` (`A = -exp(A_log)`), `[blocks][N]`: the decay is `2^(dt A log2(e))`.
    a_log2e: Vec<__m256>,
    /// `D` per block.
    d: Vec<__m256>,
    /// dt_proj's weight transposed, `[blocks][R]` (empty for stored `dt`).
    dt_weight: Vec<__m256>,
    /// dt_proj's bias per block (empty for stored `dt`).
    dt_bias: Vec<__m256>,
}

#[target_feature(enable = "avx2,fma")]
fn block_consts(s: &ScanDims, inp: &Inputs, blocks: &std::ops::Range<usize>) -> BlockConsts {
    let (ns, r) = (s.d_state, s.b_offset);
    let mut c = BlockConsts {
        a_log2e: Vec::new(),
        d: Vec::new(),
        dt_weight: Vec::new(),
        dt_bias: Vec::new(),
    };
    for d0 in blocks.clone().map(|j| j * LANES) {
        c.a_log2e
            .extend((0..ns).map(|n| {
                lanes(|w| -inp.a_log[(d0 + w) * ns + n].exp() * std::f32::consts::LOG2_E)
            }));
        c.d.push(lanes(|w| inp.d[d0 + w]));
        if let Delta::LowRank { weight, bias } = inp.delta {
            c.dt_weight
                .extend((0..r).map(|k| lanes(|w| weight[(d0 + w) * r + k])));
            c.dt_bias.push(lanes(|w| bias[d0 + w]));
        }
    }
    c
}

/// Defines the scan of sequence `b` over the channels of `blocks` (8 each), token by
/// token, compiled for the CPU features `$features`.
macro_rules! run_blocks_for {
    ($(#[$doc:meta])* $name:ident, $features:literal) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        unsafe fn $name<const FIXED: usize>(
            s: &ScanDims,
            inp: &Inputs,
            out: Out,
            b: usize,
            blocks: std::ops::Range<usize>,
        ) {
            let (di, ns, r) = (s.d_inner, state_count::<FIXED>(s), s.b_offset);
            let c = block_consts(s, inp, &blocks);
            let mut h = vec![_mm256_setzero_ps(); blocks.len() * ns];
            let mut dts = vec![_mm256_setzero_ps(); blocks.len()];
            let mut decays = vec![_mm256_setzero_ps(); blocks.len() * ns];
            let mut dts_next = dts.clone();
            let xdbl = inp.xdbl.as_ptr();
            if s.len > 0 {
                deltas(s, inp, out, &c, blocks.start, b * s.len, &mut dts);
            }
            for t in 0..s.len {
                let row = b * s.len + t;
                if let Some(ck) = out.ckpt {
                    if t % s.chunk == 0 {
                        let base = (b * s.n_chunks() + t / s.chunk) * ns;
                        for (j, hb) in h.chunks_exact(ns).enumerate() {
                            let d0 = (blocks.start + j) * LANES;
                            for (n, hn) in hb.iter().enumerate() {
                                // SAFETY: inside the checkpoint buffer, columns of this block.
                                unsafe { store(ck.get().add((base + n) * di + d0), *hn, out.stream) };
                            }
                        }
                    }
                }
                if t + PREFETCH_ROWS < s.len {
                    prefetch_row(s, inp, out, row + PREFETCH_ROWS, &blocks);
                }
                // SAFETY: row < rows, so the row of x_dbl is inside the buffer checked in
                // `forward_raw`.
                let xr = unsafe { xdbl.add(row * s.ld_xdbl) };
                // Then every decay of the step, into `decays`: computed inside each block's
                // state updates, the exponentials' dozen registers of temporaries left too few
                // for the rest, whose values were spilled and reloaded.
                for (j, &dl) in dts.iter().enumerate() {
                    let a = &c.a_log2e[j * ns..(j + 1) * ns];
                    for (e, &an) in decays[j * ns..(j + 1) * ns].iter_mut().zip(a) {
                        *e = exp2_nonpositive(_mm256_mul_ps(dl, an));
                    }
                }
                // The next row's `dt` of every block, between this row's decays and its
                // state updates, which do not need it: its softplus is a chain of a few
                // dozen dependent operations that the state updates now run beside, where
                // at the start of the row the decays waited on it.
                if t + 1 < s.len {
                    deltas(s, inp, out, &c, blocks.start, row + 1, &mut dts_next);
                }
                // SAFETY: the row of x_dbl holds B and C after the R values of `dt`.
                let (bp, cp) = unsafe { (xr.add(r), xr.add(r + ns)) };
                for (j, (hb, eb)) in h
                    .chunks_exact_mut(ns)
                    .zip(decays.chunks_exact(ns))
                    .enumerate()
                {
                    let d0 = (blocks.start + j) * LANES;
                    let off = row * di + d0;
                    // SAFETY: the 8 columns at `off` (and at the same columns of z's row) are
                    // inside the buffers checked in `forward_raw`; B and C hold N values each.
                    unsafe {
                        let uu = _mm256_loadu_ps(out.u.add(off));
                        let du = _mm256_mul_ps(dts[j], uu);
                        // Two named accumulators (an indexed pair lived on the stack, and every
                        // FMA of the read-out waited on a store-to-load round trip).
                        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                        // Pointers, not indices: with the slices' bounds checks the states and
                        // the broadcasts of B and C went through the stack.
                        let (hp, ep) = (hb.as_mut_ptr(), eb.as_ptr());
                        let mut n = 0;
                        while n + 2 <= ns {
                            acc0 = state_update(hp.add(n), *ep.add(n), du, *bp.add(n), *cp.add(n), acc0);
                            let (b1, c1) = (*bp.add(n + 1), *cp.add(n + 1));
                            acc1 = state_update(hp.add(n + 1), *ep.add(n + 1), du, b1, c1, acc1);
                            n += 2;
                        }
                        if n < ns {
                            acc0 = state_update(hp.add(n), *ep.add(n), du, *bp.add(n), *cp.add(n), acc0);
                        }
                        let yv = _mm256_fmadd_ps(c.d[j], uu, _mm256_add_ps(acc0, acc1));
                        let z_row = inp.z_rows.map_or(row, |zr| zr[row] as usize);
                        let z = _mm256_loadu_ps(inp.z.as_ptr().add(z_row * inp.ld_z + d0));
                        store(out.y.get().add(off), _mm256_mul_ps(yv, silu(z)), out.stream);
                    }
                }
                std::mem::swap(&mut dts, &mut dts_next);
            }
            if out.stream {
                // Non-temporal stores are weakly ordered: drain them before the task reports
                // done, so that whoever reads the buffers next sees them.
                _mm_sfence();
            }
        }
    };
}

run_blocks_for!(
    /// The scan of sequence `b` over the channels of `blocks` (8 each), token by token.
    run_blocks,
    "avx2,fma"
);
run_blocks_for!(
    /// [`run_blocks`] on CPUs with AVX-512: the same 8-lane code, which the compiler then
    /// gives 32 vector registers instead of 16 (fewer of a block's states and decays
    /// round-trip through the stack). Same instructions on the values, so the same
    /// results bit for bit (tested). `score_one_features` at 1024 x 1024, Lite0 stride 8 +
    /// 16, 2 threads, three alternating runs of a scratch program: 57.7-60.7 ms -> 54.8-58.8
    /// (best of each 57.0-58.1 -> 54.2-55.6).
    run_blocks_avx512,
    "avx2,fma,avx512f,avx512vl"
);

/// `dt` of row `row` for each block of a task whose first block is `first_block`, into
/// `dts` (and kept when asked).
///
/// # Safety
/// `row` must be a row of the scan and the blocks the task's, as checked in
/// [`forward_raw`].
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn deltas(
    s: &ScanDims,
    inp: &Inputs,
    out: Out,
    c: &BlockConsts,
    first_block: usize,
    row: usize,
    dts: &mut [__m256],
) {
    let r = s.b_offset;
    for (j, dl) in dts.iter_mut().enumerate() {
        let off = row * s.d_inner + (first_block + j) * LANES;
        // SAFETY: the caller's contract: the 8 columns at `off` are inside the buffers
        // checked in `forward_raw`, and the row of x_dbl holds the R values read.
        unsafe {
            *dl = match inp.delta {
                Delta::Stored(dl) => _mm256_loadu_ps(dl.as_ptr().add(off)),
                Delta::LowRank { .. } => {
                    let xr = inp.xdbl.as_ptr().add(row * s.ld_xdbl);
                    let mut raw = c.dt_bias[j];
                    for (k, wk) in c.dt_weight[j * r..(j + 1) * r].iter().enumerate() {
                        raw = _mm256_fmadd_ps(_mm256_broadcast_ss(&*xr.add(k)), *wk, raw);
                    }
                    let dl = softplus(raw);
                    if let Some(keep) = out.delta {
                        store(keep.get().add(off), dl, out.stream);
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

/// Asks for the cache lines of `row` that the task over `blocks` will read.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn prefetch_row(s: &ScanDims, inp: &Inputs, out: Out, row: usize, blocks: &std::ops::Range<usize>) {
    let (first, end) = (blocks.start * LANES, blocks.end * LANES);
    let z_row = inp.z_rows.map_or(row, |zr| zr[row] as usize);
    let di = s.d_inner;
    // Inside the buffers (row < rows); see `prefetch_lines`.
    let lines = |base: *const f32| prefetch_lines(base.wrapping_add(first), end - first);
    lines(out.u.wrapping_add(row * di));
    lines(inp.z.as_ptr().wrapping_add(z_row * inp.ld_z));
    if let Delta::Stored(dl) = inp.delta {
        lines(dl.as_ptr().wrapping_add(row * di));
    }
    _mm_prefetch::<_MM_HINT_T0>(inp.xdbl.as_ptr().wrapping_add(row * s.ld_xdbl).cast());
}

/// One state entry of the forward: `h = decay h + dt u B`, and returns `acc + C h`.
///
/// # Safety
/// `h` must point to a valid, exclusively accessed `__m256`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn state_update(
    h: *mut __m256,
    decay: __m256,
    du: __m256,
    b: f32,
    c: f32,
    acc: __m256,
) -> __m256 {
    // SAFETY: the caller's contract.
    unsafe {
        let next = _mm256_fmadd_ps(decay, *h, _mm256_mul_ps(du, splat(b)));
        *h = next;
        _mm256_fmadd_ps(next, splat(c), acc)
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
    let v: [f32; LANES] = std::array::from_fn(f);
    // SAFETY: 8 readable floats.
    unsafe { _mm256_loadu_ps(v.as_ptr()) }
}

/// `exp(x)` for `x <= 0` (every decay `exp(dt A)` has `dt > 0`, `A < 0`): the polynomial
/// of [`super::float::exp_f32_with`], without its upper clamp.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp_nonpositive(x: __m256) -> __m256 {
    exp_clamped(_mm256_max_ps(x, splat(-87.0)))
}

/// `2^x` for `x <= 0`: the scan's decays, `2^(dt A log2(e))`, its innermost and most
/// frequent operation. In base 2 the range reduction `x = k + f`, `|f| <= 1/2`, is exact
/// (`f = x - k` needs no split constant), and a degree-5 polynomial fitted to `2^f` on
/// `[-1/2, 1/2]` (least squares in relative error, reweighted towards minimax) is within
/// 1.6e-7 of `2^f` in f32 arithmetic, as close as the degree-7 `exp` of
/// [`super::float::exp_f32_with`] with 5 fewer multiply-adds. The factor `2^k` is added
/// to the polynomial's exponent field with integer instructions ([`scale_by_rounded`])
/// rather than multiplied, off the multiply-add units that the polynomial keeps busy.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn exp2_nonpositive(x: __m256) -> __m256 {
    let x = _mm256_max_ps(x, splat(EXP2_MIN));
    let kr = _mm256_add_ps(x, splat(EXP2_ROUND));
    let f = _mm256_sub_ps(x, _mm256_sub_ps(kr, splat(EXP2_ROUND)));
    let mut p = splat(EXP2_POLY[0]);
    for c in &EXP2_POLY[1..] {
        p = _mm256_fmadd_ps(p, f, splat(*c));
    }
    scale_by_rounded(p, kr)
}

/// `p 2^k` for `p` in `[2^-1/2, 2^1/2]` (the polynomial of [`exp2_nonpositive`]) and
/// `kr = k + 1.5 * 2^23` with `k >= -125`: `k << 23` added to `p`'s bits. The rounding
/// constant's bits shift out of the word (its low 9 bits are zero), so `kr << 23` is
/// `k << 23` itself; with `k >= -125` the result stays a normal number.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn scale_by_rounded(p: __m256, kr: __m256) -> __m256 {
    _mm256_castsi256_ps(_mm256_add_epi32(
        _mm256_castps_si256(p),
        _mm256_slli_epi32::<23>(_mm256_castps_si256(kr)),
    ))
}

/// `1.5 * 2^23`: adding it rounds to an integer kept in the low mantissa bits.
const EXP2_ROUND: f32 = 12_582_912.0;
/// Where the decays stop falling: `2^-125` (3e-38) keeps [`scale_by_rounded`]'s result
/// a normal number, and is far below anything a state can notice (`exp` stops at `e^-87`,
/// about `2^-125.5`, likewise).
const EXP2_MIN: f32 = -125.0;
/// The degree-5 polynomial for `2^f` on `[-1/2, 1/2]`, highest degree first.
// The fitted linear coefficient sits next to ln 2, and is not it.
#[allow(clippy::approx_constant)]
const EXP2_POLY: [f32; 6] = [
    1.326_472_7e-3,
    9.671_513e-3,
    5.550_733_6e-2,
    2.402_224_2e-1,
    0.693_147,
    1.0,
];

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
/// are ready when it issues. Measured on the scan forward (then computing its decays
/// inside the state updates) with its data in cache, one thread: 4.3-5.6 -> 3.9-5.0 ns
/// per 8 lanes and state entry.
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
        kr[i] = _mm256_add_ps(x[i], splat(EXP2_ROUND));
    }
    for i in 0..4 {
        f[i] = _mm256_sub_ps(x[i], _mm256_sub_ps(kr[i], splat(EXP2_ROUND)));
    }
    let mut p = [splat(EXP2_POLY[0]); 4];
    for c in &EXP2_POLY[1..] {
        for i in 0..4 {
            p[i] = _mm256_fmadd_ps(p[i], f[i], splat(*c));
        }
    }
    for i in 0..4 {
        p[i] = scale_by_rounded(p[i], kr[i]);
    }
    p
}

/// `2^k` from `kr = k + 1.5 * 2^23` (an integer `k` rounded into the low mantissa bits,
/// see [`super::float::exp_f32_with`]), built with integer adds and a shift.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn pow2_of_rounded(kr: __m256) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_castps_si256(kr),
        _mm256_set1_epi32(127 - 0x4B40_0000),
    )))
}

/// `exp(x)` over f32's range, as [`super::float::exp_f32_with`].
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn exp(x: __m256) -> __m256 {
    exp_clamped(_mm256_min_ps(_mm256_max_ps(x, splat(-87.0)), splat(88.0)))
}

/// The exponential's range reduction and polynomial for `x` in `[-87, 88]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp_clamped(x: __m256) -> __m256 {
    const ROUND: f32 = 12_582_912.0;
    let kr = _mm256_fmadd_ps(x, splat(std::f32::consts::LOG2_E), splat(ROUND));
    let k = _mm256_sub_ps(kr, splat(ROUND));
    let r = _mm256_fmadd_ps(
        k,
        splat(2.121_944_4e-4),
        _mm256_fmadd_ps(k, splat(-0.693_359_4), x),
    );
    let mut p = splat(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm256_fmadd_ps(p, r, splat(c));
    }
    let p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, splat(1.0)));
    _mm256_mul_ps(p, pow2_of_rounded(kr))
}

/// `z * sigmoid(z)`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn silu(z: __m256) -> __m256 {
    let neg = _mm256_sub_ps(_mm256_setzero_ps(), z);
    _mm256_div_ps(z, _mm256_add_ps(splat(1.0), exp(neg)))
}

/// Softplus with [`super::float::softplus`]'s threshold (`x` above 20), else
/// `max(x, 0) + ln(1 + e)`, `e = exp(-|x|)` in `(0, 1]`, and `ln(1 + e) = 2 atanh(s)` with
/// `s = e / (2 + e)` in `(0, 1/3]`: the odd series of `atanh` up to `s^13` is within
/// 2e-8 there, and `2 + e` rounds without the cancellation that `ln` of `1 + e` must
/// correct for. One division and 7 multiply-adds where `ln(1 + e)` by way of `1 + e`
/// (as [`super::float::ln_1p_f32`]) took two divisions, blends and twice the
/// instructions; within 2.2e-7 of libm (measured over `[-20, 30]`).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn softplus(x: __m256) -> __m256 {
    let abs = _mm256_andnot_ps(splat(-0.0), x);
    let e = exp_nonpositive(_mm256_sub_ps(_mm256_setzero_ps(), abs));
    let s = _mm256_div_ps(e, _mm256_add_ps(splat(2.0), e));
    let s2 = _mm256_mul_ps(s, s);
    let mut p = splat(1.0 / 13.0);
    for c in [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 0.2, 1.0 / 3.0, 1.0] {
        p = _mm256_fmadd_ps(p, s2, splat(c));
    }
    let soft = _mm256_fmadd_ps(
        _mm256_add_ps(s, s),
        p,
        _mm256_max_ps(x, _mm256_setzero_ps()),
    );
    _mm256_blendv_ps(soft, x, _mm256_cmp_ps::<_CMP_GT_OQ>(x, splat(20.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
