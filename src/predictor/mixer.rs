//! One residual block `x + Mixer(RMSNorm(x))`: forward for inference, forward for
//! training (keeping a tape), and backward.
//!
//! Shapes: `rows = B*L` tokens of `C` channels; in_proj gives `[rows, 2 Di]` (`x | z`);
//! the conv + SiLU gives `u [rows, Di]`; x_proj gives `x_dbl [rows, R + 2N]`
//! (`dt_low | B | C`); dt_proj + softplus gives `delta [rows, Di]`; the scan gives the
//! gated `y [rows, Di]`; out_proj adds `[rows, C]` to the residual stream.

use super::config::PredictorConfig;
use super::float::{as_f32, as_f32_mut, multiversion, softplus, Float};
use super::gemm::{linear, linear_grad_input, linear_grad_weight};
use super::scan::{self, ScanDims, ScanGrads, ScanInputs};
#[cfg(target_arch = "x86_64")]
use super::scan_avx2;
use super::weights::LayerParams;
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

/// The forward's tensors before the scan.
struct PreScan<T> {
    rstd: Vec<T>,
    xz: Vec<T>,
    u: Vec<T>,
    xdbl: Vec<T>,
    delta: Vec<T>,
}

/// Everything of the forward up to (not including) `dt` and the scan ([`run_scan`]).
fn pre_scan<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    x: &[T],
    len: usize,
) -> PreScan<T> {
    let (c, di, s) = (cfg.d_model, cfg.d_inner(), cfg.x_proj_out());
    let rows = x.len() / c;
    let mut normed = vec![T::ZERO; rows * c];
    let mut rstd = vec![T::ZERO; rows];
    rmsnorm::forward(x, &p.norm_weight, c, &mut normed, Some(&mut rstd));
    let mut xz = vec![T::ZERO; rows * 2 * di];
    linear(
        rows,
        c,
        2 * di,
        &normed,
        c,
        &p.in_proj,
        T::ZERO,
        &mut xz,
        2 * di,
    );
    drop(normed);
    let mut u = vec![T::ZERO; rows * di];
    conv::forward(
        &xz,
        2 * di,
        &p.conv_weight,
        &p.conv_bias,
        len,
        cfg.d_conv,
        &mut u,
    );
    let mut xdbl = vec![T::ZERO; rows * s];
    linear(rows, di, s, &u, di, &p.x_proj, T::ZERO, &mut xdbl, s);
    PreScan {
        rstd,
        xz,
        u,
        xdbl,
        delta: Vec::new(),
    }
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

/// `dt` and the scan of one block, from the tensors before them: the gated output into
/// `y`, or over `pre.u` when `y` is `None`. With `tape` (the checkpoint buffer) the
/// backward's inputs are kept: `pre.delta` and the states at chunk starts. The `f32`
/// AVX2 kernel computes `dt` itself (writing it into `pre.delta` only for the tape);
/// elsewhere dt_proj and softplus fill `pre.delta` first.
fn run_scan<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    s: &ScanDims,
    pre: &mut PreScan<T>,
    y: Option<&mut [T]>,
    tape: Option<&mut [T]>,
) {
    let rows = s.batch * s.len;
    if tape.is_some() {
        pre.delta = vec![T::ZERO; rows * s.d_inner];
    }
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(weight), Some(bias)) = (
        scan_avx2::applies(s.d_inner),
        as_f32(&p.dt_proj_weight),
        as_f32(&p.dt_proj_bias),
    ) {
        let fast = scan_inputs(cfg, p, &[], &pre.xdbl, &pre.xz)
            .with_delta_f32(scan_avx2::Delta::LowRank { weight, bias })
            .expect("T is f32");
        let u = as_f32_mut(&mut pre.u).expect("T is f32").as_mut_ptr();
        let y = y.map_or(u, |y| as_f32_mut(y).expect("T is f32").as_mut_ptr());
        let (ckpt, delta_out) = match tape {
            Some(ckpt) => (
                Some(as_f32_mut(ckpt).expect("T is f32")),
                Some(as_f32_mut(&mut pre.delta).expect("T is f32")),
            ),
            None => (None, None),
        };
        // SAFETY: `u` (pre.u) and `y` hold rows * Di elements each and are exclusively
        // borrowed here; when they are the same buffer each element is read before the
        // task that owns it writes it.
        unsafe { scan_avx2::forward_raw(s, &fast, u, y, ckpt, delta_out) };
        return;
    }
    if pre.delta.is_empty() {
        pre.delta = vec![T::ZERO; rows * s.d_inner];
    }
    dt_forward(cfg, p, &pre.xdbl, rows, &mut pre.delta);
    let inputs = scan_inputs(cfg, p, &pre.delta, &pre.xdbl, &pre.xz);
    match y {
        Some(y) => scan::forward(s, &inputs, &pre.u, y, tape),
        None => scan::forward_in_place(s, &inputs, &mut pre.u),
    }
}

/// Inference: `x <- x + Mixer(RMSNorm(x))` in place, `x` being `[batch * len, C]`.
pub fn forward<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    x: &mut [T],
    batch: usize,
    len: usize,
) {
    let (c, di) = (cfg.d_model, cfg.d_inner());
    let rows = batch * len;
    let s = dims(cfg, batch, len);
    let mut pre = pre_scan(cfg, p, x, len);
    run_scan(cfg, p, &s, &mut pre, None, None);
    let u = pre.u;
    linear(rows, di, c, &u, di, &p.out_proj, T::ONE, x, c);
}

/// Training forward: returns the block's output and its tape.
pub fn forward_train<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    x: Vec<T>,
    batch: usize,
    len: usize,
) -> (Vec<T>, LayerTape<T>) {
    let (c, di) = (cfg.d_model, cfg.d_inner());
    let rows = batch * len;
    let s = dims(cfg, batch, len);
    let mut pre = pre_scan(cfg, p, &x, len);
    let mut ckpt = vec![T::ZERO; s.ckpt_len()];
    let mut y = vec![T::ZERO; rows * di];
    run_scan(cfg, p, &s, &mut pre, Some(&mut y), Some(&mut ckpt));
    let PreScan {
        rstd,
        xz,
        u,
        xdbl,
        delta,
    } = pre;
    let mut out = x.clone();
    linear(rows, di, c, &y, di, &p.out_proj, T::ONE, &mut out, c);
    let tape = LayerTape {
        input: x,
        rstd,
        xz,
        u,
        xdbl,
        delta,
        ckpt,
    };
    (out, tape)
}

/// Backward of one block. On entry `g` is `dL/d(output)`; on return it is `dL/d(input)`.
/// Parameter gradients are added into `grads`.
pub fn backward<T: Float>(
    cfg: &PredictorConfig,
    p: &LayerParams<T>,
    tape: &LayerTape<T>,
    batch: usize,
    len: usize,
    g: &mut [T],
    grads: &mut LayerParams<T>,
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
    let mut gy = vec![T::ZERO; rows * di];
    linear_grad_input(rows, c, di, g, c, &p.out_proj, T::ZERO, &mut gy, di);
    // The scan (recomputing y over gy, for out_proj's weight gradient).
    let mut gxz = vec![T::ZERO; rows * 2 * di];
    let mut gu = vec![T::ZERO; rows * di];
    let mut gdelta = vec![T::ZERO; rows * di];
    let mut gxdbl = vec![T::ZERO; rows * sx];
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
    drop(y);
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
    drop(gdelta);
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
    drop(gxdbl);
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
    drop(gu);
    // in_proj, with the normalised input recomputed rather than stored.
    let mut normed = vec![T::ZERO; rows * c];
    rmsnorm::forward(&tape.input, &p.norm_weight, c, &mut normed, None);
    linear_grad_weight(
        rows,
        2 * di,
        c,
        &gxz,
        2 * di,
        &normed,
        c,
        T::ONE,
        &mut grads.in_proj,
    );
    let mut gnormed = normed;
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
    drop(gxz);
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
}
