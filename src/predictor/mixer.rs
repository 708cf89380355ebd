//! One residual block `x + Mixer(RMSNorm(x))`: forward for inference, forward for
//! training (keeping a tape), and backward.
//!
//! Shapes: `rows = B*L` tokens of `C` channels; in_proj gives `[rows, 2 Di]` (`x | z`);
//! the conv + SiLU gives `u [rows, Di]`; x_proj gives `x_dbl [rows, R + 2N]`
//! (`dt_low | B | C`); dt_proj + softplus gives `delta [rows, Di]`; the scan gives the
//! gated `y [rows, Di]`; out_proj adds `[rows, C]` to the residual stream.

use super::config::PredictorConfig;
#[cfg(target_arch = "x86_64")]
use super::conv_project_avx2::ConvProject;
use super::float::{as_f32, as_f32_mut, multiversion, softplus, Float};
use super::gemm::{linear, linear_grad_input, linear_grad_weight};
use super::prefetch::prefetch_read;
use super::scan::{self, ScanDims, ScanGrads, ScanInputs};
#[cfg(target_arch = "x86_64")]
use super::weights::LayerParams;
use super::workspace::{TrainBuffers, Workspace};
use super::{conv, rmsnorm};
use rayon::prelude::*;

/// Steps between scan state checkpoints in training: the chunk's recomputed states
/// (`chunk x N x 16` floats, 64 KB at N = 16) stay in L2 while the backward walks them.
pub const CHUNK: usize = 64;

/// What the backward of one block needs from its forward. Everything is `O(B L Di)`;
/// the scan's states are kept only at chunk starts.
#[derive(Debug, Clone)]
pub struct LayerTape<T> {
    /// The block's input (residual stream), `[rows, C]`.
    pub input: Vec<T>,
    /// `1 / rms` per token.
    pub rstd: Vec<T>,
    /// The normalised input, `[rows, C]`: in_proj's weight gradient reads it. Kept
    /// rather than recomputed in the backward: a pass over the block's input saved per
    /// step, for `rows x C` floats (33 MB at the paper's grid).
    pub normed: Vec<T>,
    /// in_proj output `x | z`, `[rows, 2 Di]`.
    pub xz: Vec<T>,
    /// After conv and SiLU, `[rows, Di]`.
    pub u: Vec<T>,
    /// `x_proj` output, `[rows, R + 2N]`.
    pub xdbl: Vec<T>,
    /// `dt` after softplus, `[rows, Di]`.
    pub delta: Vec<T>,
    /// Scan states at chunk starts, `[B, L/CHUNK, N, Di]`.
    pub ckpt: Vec<T>,
}

impl<T: Float> LayerTape<T> {
    /// Hands the tape's buffers to `bufs` for the next step.
    pub(crate) fn give_to(self, bufs: &mut TrainBuffers<T>) {
        for v in [
            self.input,
            self.rstd,
            self.normed,
            self.xz,
            self.u,
            self.xdbl,
            self.delta,
            self.ckpt,
        ] {
            bufs.recycle(v);
        }
    }
}

fn dims(cfg: &PredictorConfig, batch: usize, len: usize) -> ScanDims {
    ScanDims {
        batch,
        len,
        d_inner: cfg.d_inner(),
        d_state: cfg.d_state,
        b_offset: cfg.dt_rank,
        ld_xdbl: cfg.x_proj_out(),
        chunk: CHUNK,
    }
}

/// `row = softplus(row + bias)`.
#[inline(always)]
fn softplus_row_body<T: Float>(row: &mut [T], bias: &[T]) {
    for (v, &b) in row.iter_mut().zip(bias) {
        *v = softplus(*v + b);
    }
}

multiversion!(fn softplus_row => softplus_row_body(row: &mut [T], bias: &[T]));

/// `delta = softplus(dt_low W_dt^T + b)` into `delta` (`[rows, Di]`).
fn dt_forward<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    xdbl: &[T],
    rows: usize,
    delta: &mut [T],
) {
    let (di, r, s) = (cfg.d_inner(), cfg.dt_rank, cfg.x_proj_out());
    linear(rows, r, di, xdbl, s, &p.dt_proj_weight, T::ZERO, delta, di);
    delta
        .par_chunks_mut(di)
        .with_min_len(64)
        .for_each(|row| softplus_row(row, &p.dt_proj_bias));
}

/// The forward's tensors up to the scan, in buffers the caller owns: fresh ones that
/// become the training tape, or a [`Workspace`]'s in inference.
struct Buffers<'a, T> {
    /// RMSNorm's output, `[rows, C]`.
    normed: &'a mut [T],
    /// `1 / rms` per token.
    rstd: &'a mut [T],
    /// in_proj output `x | z`, `[rows, 2 Di]`.
    xz: &'a mut [T],
    /// After conv and SiLU, `[rows, Di]`.
    u: &'a mut [T],
    /// `x_proj` output, `[rows, R + 2N]`.
    xdbl: &'a mut [T],
    /// `dt` after softplus, `[rows, Di]`; empty where the scan computes it itself and no
    /// tape keeps it ([`scan_computes_dt`]).
    delta: &'a mut [T],
}

/// Sizes of [`Buffers`] for `rows` tokens, in field order; `delta` only when `with_delta`.
fn buffer_sizes(cfg: &PredictorConfig, rows: usize, with_delta: bool) -> [usize; 6] {
    let (c, di, s) = (cfg.d_model, cfg.d_inner(), cfg.x_proj_out());
    [
        rows * c,
        rows,
        rows * 2 * di,
        rows * di,
        rows * s,
        if with_delta { rows * di } else { 0 },
    ]
}

/// RMSNorm and in_proj of the tokens `x` (`[rows, C]`): the per-token part of a block.
fn project_in<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    x: &[T],
    normed: &mut [T],
    rstd: &mut [T],
    xz: &mut [T],
) {
    let (c, di) = (cfg.d_model, cfg.d_inner());
    rmsnorm::forward(x, &p.norm_weight, c, normed, Some(rstd));
    linear(
        x.len() / c,
        c,
        2 * di,
        normed,
        c,
        &p.in_proj,
        T::ZERO,
        xz,
        2 * di,
    );
}

/// Everything of the forward up to (not including) `dt` and the scan ([`run_scan`]).
fn pre_scan<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    x: &[T],
    len: usize,
    b: &mut Buffers<T>,
) {
    let (c, di, s) = (cfg.d_model, cfg.d_inner(), cfg.x_proj_out());
    let rows = x.len() / c;
    project_in(cfg, p, x, b.normed, b.rstd, b.xz);
    conv::forward(
        b.xz,
        2 * di,
        &p.conv_weight,
        &p.conv_bias,
        len,
        cfg.d_conv,
        b.u,
    );
    linear(rows, di, s, b.u, di, &p.x_proj, T::ZERO, b.xdbl, s);
}

fn scan_inputs<'a, T: Float>(
    cfg: &PredictorConfig,
    p: &'a LayerParams<T>,
    delta: &'a [T],
    xdbl: &'a [T],
    xz: &'a [T],
) -> ScanInputs<'a, T> {
    let di = cfg.d_inner();
    ScanInputs {
        a_log: &p.a_log,
        d: &p.d,
        delta,
        xdbl,
        // An empty batch has no z half to slice into.
        z: &xz[di.min(xz.len())..],
        ld_z: 2 * di,
    }
}

/// Whether the scan computes `dt` itself here (the `f32` AVX2 kernel): then inference
/// needs no `dt` buffer.
fn scan_computes_dt<T: Float>(cfg: &PredictorConfig) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
            && scan::applies(cfg.d_inner())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = cfg;
        false
    }
}

/// The `f32` AVX2 scan's inputs with `dt` computed in the kernel from `x_dbl`, and the
/// gate read from `z_rows` of `xz` when given. Only where [`scan_computes_dt`].
#[cfg(target_arch = "x86_64")]
fn fused_inputs<'a, T: Float>(
    cfg: &PredictorConfig,
    p: &'a LayerParams<T>,
    xdbl: &'a [T],
    xz: &'a [T],
    z_rows: Option<&'a [u32]>,
) -> scan::Inputs<'a> {
    let low_rank = scan::Delta::LowRank {
        weight: as_f32(&p.dt_proj_weight).expect("T is f32"),
        bias: as_f32(&p.dt_proj_bias).expect("T is f32"),
    };
    scan::Inputs {
        z_rows,
        ..scan_inputs(cfg, p, &[], xdbl, xz)
            .with_delta_f32(low_rank)
            .expect("T is f32")
    }
}

/// `dt` and the scan of one block, from the tensors before them: the gated output into
/// `y`, or over `b.u` when `y` is `None`. With `ckpt` (training) the backward's inputs
/// are kept: `b.delta` and the states at chunk starts. The `f32` AVX2 kernel computes
/// `dt` itself (writing it into `b.delta` only for training); elsewhere dt_proj and
/// softplus fill `b.delta` first.
fn run_scan<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    s: &ScanDims,
    b: &mut Buffers<T>,
    y: Option<&mut [T]>,
    ckpt: Option<&mut [T]>,
) {
    let rows = s.batch * s.len;
    #[cfg(target_arch = "x86_64")]
    if scan_computes_dt::<T>(cfg) {
        let fast = fused_inputs(cfg, p, b.xdbl, b.xz, None);
        let u = as_f32_mut(b.u).expect("T is f32").as_mut_ptr();
        let y = y.map_or(u, |y| as_f32_mut(y).expect("T is f32").as_mut_ptr());
        let (ckpt, delta_out) = match ckpt {
            Some(ckpt) => (
                Some(as_f32_mut(ckpt).expect("T is f32")),
                Some(as_f32_mut(b.delta).expect("T is f32")),
            ),
            None => (None, None),
        };
        // SAFETY: `u` (b.u) and `y` hold rows * Di elements each and are exclusively
        // borrowed here; when they are the same buffer each element is read before the
        // task that owns it writes it.
        unsafe { scan::avx2::forward_raw(s, &fast, u, y, ckpt, delta_out) };
        return;
    }
    dt_forward(cfg, p, b.xdbl, rows, b.delta);
    let inputs = scan_inputs(cfg, p, b.delta, b.xdbl, b.xz);
    match y {
        Some(y) => scan::forward(s, &inputs, b.u, y, ckpt),
        None => scan::forward_in_place(s, &inputs, b.u),
    }
}

/// Inference: `x <- x + Mixer(RMSNorm(x))` in place, `x` being `[batch * len, C]`, with
/// the intermediate tensors in `ws`.
pub fn forward<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    x: &mut [T],
    batch: usize,
    len: usize,
    ws: &mut Workspace<T>,
) {
    let (c, di) = (cfg.d_model, cfg.d_inner());
    let rows = batch * len;
    let s = dims(cfg, batch, len);
    let [normed, rstd, xz, u, xdbl, delta] =
        ws.buffers(buffer_sizes(cfg, rows, !scan_computes_dt::<T>(cfg)));
    let mut b = Buffers {
        normed,
        rstd,
        xz,
        u,
        xdbl,
        delta,
    };
    pre_scan(cfg, p, x, len, &mut b);
    run_scan(cfg, p, &s, &mut b, None, None);
    linear(rows, di, c, b.u, di, &p.out_proj, T::ONE, x, c);
}

/// One reading order of a token set, for [`forward_orderings`].
#[derive(Debug, Clone, Copy)]
pub struct Ordering<'a> {
    /// The token row read at each position (the token set's last row is the BOS vector).
    pub input: &'a [u32],
    /// The token each position's output predicts.
    pub target: &'a [u32],
    /// The weight of each position's prediction in the mean over orderings.
    pub weight: &'a [f64],
}

/// Whether [`forward_orderings`] runs here: it needs the `f32` AVX2 scan, which reads
/// the gate through row indices.
pub fn orderings_apply<T: Float>(cfg: &PredictorConfig) -> bool {
    scan_computes_dt::<T>(cfg)
}

/// One block over several orderings of one token set `tokens` (`[L + 1, C]`, the last
/// row the BOS vector), averaged back onto the tokens: returns `[L, C]` with
/// `out[target[l]] = sum over orderings of weight[l] * (x + Mixer(RMSNorm(x)))[l]`, `x`
/// being the ordering's sequence `tokens[input[l]]`.
///
/// Equal to running each ordering's sequence through [`forward`] and averaging, up to
/// rounding, with less work: RMSNorm and in_proj act on each token alone, so they run once
/// per token instead of once per ordering (the conv and the scan read the rows through
/// the orderings' indices), and out_proj is linear, so it runs once on the averaged gated
/// output. With four orderings that is a quarter of in_proj's and out_proj's FLOPs.
/// Only where [`orderings_apply`].
pub fn forward_orderings<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    tokens: &[T],
    orderings: &[Ordering],
    ws: &mut Workspace<T>,
) -> Vec<T> {
    assert!(orderings_apply::<T>(cfg));
    let (c, di, sx) = (cfg.d_model, cfg.d_inner(), cfg.x_proj_out());
    let n_tokens = tokens.len() / c;
    let len = n_tokens - 1;
    let rows = orderings.len() * len;
    let mut out = ws.take_output(len * c);
    let ([normed, rstd, xz, u, xdbl, mean_y], [inputs, positions]) = ws.buffers_and_indices(
        [
            n_tokens * c,
            n_tokens,
            n_tokens * 2 * di,
            rows * di,
            rows * sx,
            len * di,
        ],
        [rows, rows],
    );
    for (dst, o) in inputs.chunks_exact_mut(len).zip(orderings) {
        dst.copy_from_slice(o.input);
    }
    let inputs = &*inputs;
    project_in(cfg, p, tokens, normed, rstd, xz);
    #[cfg(not(target_arch = "x86_64"))]
    {
        conv::forward_gathered(
            xz,
            2 * di,
            inputs,
            &p.conv_weight,
            &p.conv_bias,
            len,
            cfg.d_conv,
            u,
        );
        linear(rows, di, sx, u, di, &p.x_proj, T::ZERO, xdbl, sx);
    }
    #[cfg(target_arch = "x86_64")]
    {
        fn f32s<T: Float>(v: &[T]) -> &[f32] {
            as_f32(v).expect("T is f32")
        }
        let conv_project = ConvProject::new(
            f32s(&p.conv_weight),
            f32s(&p.conv_bias),
            cfg.d_conv,
            f32s(&p.x_proj),
        );
        conv_project.forward_gathered(
            f32s(xz),
            2 * di,
            inputs,
            len,
            as_f32_mut(u).expect("T is f32"),
            as_f32_mut(xdbl).expect("T is f32"),
        );
        let fast = fused_inputs(cfg, p, xdbl, xz, Some(inputs));
        let u = as_f32_mut(u).expect("T is f32").as_mut_ptr();
        // SAFETY: `u` holds rows * Di elements and is exclusively borrowed; each element
        // is read before the task that owns it writes it.
        unsafe {
            scan::avx2::forward_raw(&dims(cfg, orderings.len(), len), &fast, u, u, None, None)
        };
    }
    // Where each ordering reads each target, so the mean runs in parallel over targets
    // and adds the orderings in a fixed order.
    for (at, o) in positions.chunks_exact_mut(len).zip(orderings) {
        for (l, &t) in o.target.iter().enumerate() {
            at[t as usize] = l as u32;
        }
    }
    let positions = &*positions;
    mean_y
        .par_chunks_mut(di)
        .zip(out.par_chunks_mut(c))
        .enumerate()
        .with_min_len(64)
        .for_each(|(t, (my, o))| {
            my.iter_mut().chain(o.iter_mut()).for_each(|v| *v = T::ZERO);
            // Column-major orders read rows a grid width apart: ask for the rows of a
            // target a few ahead (see `prefetch`).
            if t + MEAN_PREFETCH < len {
                for (k, at) in positions.chunks_exact(len).enumerate() {
                    prefetch_read(u, (k * len + at[t + MEAN_PREFETCH] as usize) * di, di);
                }
            }
            for (k, (ord, at)) in orderings
                .iter()
                .zip(positions.chunks_exact(len))
                .enumerate()
            {
                let l = at[t] as usize;
                let w = T::from_f64(ord.weight[l]);
                let y = &u[(k * len + l) * di..][..di];
                for (m, &v) in my.iter_mut().zip(y) {
                    *m += w * v;
                }
                let x = &tokens[ord.input[l] as usize * c..][..c];
                for (a, &v) in o.iter_mut().zip(x) {
                    *a += w * v;
                }
            }
        });
    linear(len, di, c, mean_y, di, &p.out_proj, T::ONE, &mut out, c);
    out
}

/// How many targets ahead the mean over orderings prefetches its rows.
const MEAN_PREFETCH: usize = 4;

/// Training forward: returns the block's output and its tape, their buffers (and the
/// temporaries') taken from `bufs`.
pub fn forward_train<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    x: Vec<T>,
    batch: usize,
    len: usize,
    bufs: &mut TrainBuffers<T>,
) -> (Vec<T>, LayerTape<T>) {
    let (c, di) = (cfg.d_model, cfg.d_inner());
    let rows = batch * len;
    let s = dims(cfg, batch, len);
    // Every buffer is written in full before it is read (as the inference workspace's).
    let [mut normed, mut rstd, mut xz, mut u, mut xdbl, mut delta] =
        buffer_sizes(cfg, rows, true).map(|n| bufs.take(n));
    let mut ckpt = bufs.take(s.ckpt_len());
    let mut y = bufs.take(rows * di);
    let mut b = Buffers {
        normed: &mut normed,
        rstd: &mut rstd,
        xz: &mut xz,
        u: &mut u,
        xdbl: &mut xdbl,
        delta: &mut delta,
    };
    pre_scan(cfg, p, &x, len, &mut b);
    run_scan(cfg, p, &s, &mut b, Some(&mut y), Some(&mut ckpt));
    let mut out = bufs.take_copy(&x);
    linear(rows, di, c, &y, di, &p.out_proj, T::ONE, &mut out, c);
    bufs.recycle(y);
    let tape = LayerTape {
        input: x,
        rstd,
        normed,
        xz,
        u,
        xdbl,
        delta,
        ckpt,
    };
    (out, tape)
}

/// Backward of one block. On entry `g` is `dL/d(output)`; on return it is `dL/d(input)`.
/// Parameter gradients are added into `grads`; temporaries come from and go back to
/// `bufs`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    tape: &LayerTape<T>,
    batch: usize,
    len: usize,
    g: &mut [T],
    grads: &mut LayerParams<T>,
    bufs: &mut TrainBuffers<T>,
) {
    let (c, di, r, ns, sx) = (
        cfg.d_model,
        cfg.d_inner(),
        cfg.dt_rank,
        cfg.d_state,
        cfg.x_proj_out(),
    );
    let rows = batch * len;
    // out_proj: dL/dy = g W_out.
    // Each temporary is written in full before it is read: gy by the GEMM (beta 0), gxz's
    // halves by the scan (z) and the conv (x), gu and gdelta by the scan, gxdbl's
    // columns by the scan (B, C) and dt_proj's gradient GEMM (beta 0).
    let mut gy = bufs.take(rows * di);
    linear_grad_input(rows, c, di, g, c, &p.out_proj, T::ZERO, &mut gy, di);
    // The scan (recomputing y over gy, for out_proj's weight gradient).
    let mut gxz = bufs.take(rows * 2 * di);
    let mut gu = bufs.take(rows * di);
    let mut gdelta = bufs.take(rows * di);
    let mut gxdbl = bufs.take(rows * sx);
    let s = dims(cfg, batch, len);
    scan::backward(
        &s,
        &scan_inputs(cfg, p, &tape.delta, &tape.xdbl, &tape.xz),
        &tape.u,
        &tape.ckpt,
        ScanGrads {
            gy_then_y: &mut gy,
            gz: &mut gxz[di..],
            ld_gz: 2 * di,
            gu: &mut gu,
            gdelta: &mut gdelta,
            gxdbl: &mut gxdbl,
            ga_log: &mut grads.a_log,
            gd: &mut grads.d,
            gbias: &mut grads.dt_proj_bias,
        },
    );
    let y = gy;
    linear_grad_weight(rows, c, di, g, c, &y, di, T::ONE, &mut grads.out_proj);
    bufs.recycle(y);
    // dt_proj (the scan already went through the softplus and summed the bias grad).
    linear_grad_input(
        rows,
        di,
        r,
        &gdelta,
        di,
        &p.dt_proj_weight,
        T::ZERO,
        &mut gxdbl,
        sx,
    );
    linear_grad_weight(
        rows,
        di,
        r,
        &gdelta,
        di,
        &tape.xdbl,
        sx,
        T::ONE,
        &mut grads.dt_proj_weight,
    );
    bufs.recycle(gdelta);
    debug_assert_eq!(sx, r + 2 * ns);
    // x_proj.
    linear_grad_input(rows, sx, di, &gxdbl, sx, &p.x_proj, T::ONE, &mut gu, di);
    linear_grad_weight(
        rows,
        sx,
        di,
        &gxdbl,
        sx,
        &tape.u,
        di,
        T::ONE,
        &mut grads.x_proj,
    );
    bufs.recycle(gxdbl);
    // conv + SiLU: dL/dx into the x half of gxz.
    conv::backward(
        &tape.xz,
        2 * di,
        &p.conv_weight,
        &p.conv_bias,
        len,
        cfg.d_conv,
        &mut gu,
        &mut gxz,
        2 * di,
        &mut grads.conv_weight,
        &mut grads.conv_bias,
    );
    bufs.recycle(gu);
    // in_proj.
    linear_grad_weight(
        rows,
        2 * di,
        c,
        &gxz,
        2 * di,
        &tape.normed,
        c,
        T::ONE,
        &mut grads.in_proj,
    );
    let mut gnormed = bufs.take(rows * c);
    linear_grad_input(
        rows,
        2 * di,
        c,
        &gxz,
        2 * di,
        &p.in_proj,
        T::ZERO,
        &mut gnormed,
        c,
    );
    bufs.recycle(gxz);
    // RMSNorm, adding into the residual gradient already in g.
    rmsnorm::backward(
        &tape.input,
        &p.norm_weight,
        &tape.rstd,
        &gnormed,
        c,
        g,
        &mut grads.norm_weight,
    );
    bufs.recycle(gnormed);
}
