//! [`CudaPredictor`]: the predictor's forward, training forward, backward and AdamW on a
//! GPU, step for step the computation of `crate::predictor::mixer` (same tensors, same
//! order of operations up to summation order), so results agree with the CPU to about
//! 1e-4 relative (DESIGN.md) and gradients come back in the CPU's [`Gradients`] layout.

use std::sync::Arc;

use super::blas::{linear, linear_grad_input, linear_grad_weight};
use super::{Arg, CudaDevice, DeviceBuffer};
use crate::config::TrainConfig;
use crate::predictor::{Gradients, LayerParams, Predictor, PredictorConfig, NAMES};
use crate::{Error, ErrorKind, Result};

// Indices into a layer's tensors, in `NAMES` order.
const NORM: usize = 0;
const IN_PROJ: usize = 1;
const CONV_W: usize = 2;
const CONV_B: usize = 3;
const X_PROJ: usize = 4;
const DT_W: usize = 5;
const DT_B: usize = 6;
const A_LOG: usize = 7;
const D: usize = 8;
const OUT_PROJ: usize = 9;

/// Threads per block of the elementwise kernels and of the scans.
const THREADS: u32 = 256;
/// Rows per partial sum of the weight gradients (rmsnorm, conv).
const ROWS_PER_PART: usize = 256;
/// Largest `d_state` the scan kernels take: a channel's states share one warp.
pub const MAX_D_STATE: usize = 32;
/// The scan kernels' `MAX_CHUNK`.
const MAX_CHUNK: usize = 32;

type Buf = DeviceBuffer;

/// Sizes derived from a config, shared by every launch.
#[derive(Debug, Clone, Copy)]
struct Dims {
    c: usize,
    di: usize,
    ns: usize,
    r: usize,
    s: usize,
    kw: usize,
    /// Lanes per channel in the scans (`ns` rounded up to a power of two).
    nl: usize,
    /// Scan steps per checkpoint: shared memory of the backward is
    /// `warps x chunk x 2N` floats, kept at 32 KB.
    chunk: usize,
}

impl Dims {
    fn new(cfg: &PredictorConfig) -> Self {
        let ns = cfg.d_state;
        Dims {
            c: cfg.d_model,
            di: cfg.d_inner(),
            ns,
            r: cfg.dt_rank,
            s: cfg.x_proj_out(),
            kw: cfg.d_conv,
            nl: ns.next_power_of_two(),
            chunk: (512 / ns).clamp(1, MAX_CHUNK),
        }
    }

    /// Channel groups (scan blocks) per sequence.
    fn groups(&self) -> usize {
        self.di.div_ceil(THREADS as usize / self.nl)
    }

    fn n_chunks(&self, len: usize) -> usize {
        len.div_ceil(self.chunk)
    }
}

fn blocks(n: usize) -> u32 {
    n.div_ceil(THREADS as usize).max(1) as u32
}

fn int(v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::new(
            ErrorKind::Cuda,
            format!("size {v} exceeds the CUDA kernels' 32-bit int"),
        )
    })
}

/// A predictor's weights on a GPU. Build it from a CPU [`Predictor`] with
/// [`CudaPredictor::from_predictor`]; get the weights back with
/// [`CudaPredictor::to_predictor`]. Calls on one GPU are serialised.
pub struct CudaPredictor {
    dev: Arc<CudaDevice>,
    cfg: PredictorConfig,
    layers: Vec<Vec<Buf>>,
}

impl std::fmt::Debug for CudaPredictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaPredictor")
            .field("device", &self.dev)
            .field("config", &self.cfg)
            .finish()
    }
}

/// What [`CudaPredictor::backward`] needs from [`CudaPredictor::forward_train`], kept on
/// the GPU.
pub struct CudaTape {
    batch: usize,
    len: usize,
    layers: Vec<LayerTape>,
}

struct LayerTape {
    input: Buf,
    rstd: Buf,
    xz: Buf,
    u: Buf,
    xdbl: Buf,
    delta: Buf,
    ckpt: Buf,
}

/// Parameter gradients on the GPU, in the layout of [`Predictor::tensors`].
pub struct CudaGradients {
    layers: Vec<Vec<Buf>>,
}

/// Working memory on the GPU of one call; every buffer is freed when the call ends.
struct Call<'a> {
    dev: &'a CudaDevice,
}

impl Call<'_> {
    /// `b`'s address plus `offset` floats (a column range of a wider matrix).
    fn pa(&self, b: &Buf, offset: usize) -> u64 {
        b.address() + (offset * std::mem::size_of::<f32>()) as u64
    }

    /// `out (+)= sum of n_parts partials`, see kernels/elementwise.cu.
    #[allow(clippy::too_many_arguments)]
    fn sum_partials(
        &self,
        out: u64,
        part: u64,
        n_parts: usize,
        part_stride: usize,
        n: usize,
        width: usize,
        ld_out: usize,
        accumulate: bool,
    ) -> Result<()> {
        self.dev.launch(
            "sum_partials",
            (blocks(n), 1, 1),
            THREADS,
            0,
            &[
                Arg::P(out),
                Arg::P(part),
                Arg::I(int(n_parts)?),
                Arg::U(part_stride as u64),
                Arg::U(n as u64),
                Arg::I(int(width)?),
                Arg::I(int(ld_out)?),
                Arg::I(accumulate as i32),
            ],
        )
    }

    fn rmsnorm_fwd(
        &self,
        x: &Buf,
        w: &Buf,
        out: &Buf,
        rstd: Option<&Buf>,
        rows: usize,
        c: usize,
    ) -> Result<()> {
        self.dev.launch(
            "rmsnorm_fwd",
            (blocks(rows * 32), 1, 1),
            THREADS,
            0,
            &[
                Arg::P(x.address()),
                Arg::P(w.address()),
                Arg::P(out.address()),
                Arg::P(rstd.map_or(0, |r| r.address())),
                Arg::U(rows as u64),
                Arg::I(int(c)?),
            ],
        )
    }

    /// The forward's tensors before the scan, as `mixer::pre_scan`.
    fn pre_scan(&self, dm: &Dims, p: &[Buf], x: &Buf, batch: usize, len: usize) -> Result<PreScan> {
        let rows = batch * len;
        let Dims {
            c, di, r, s, kw, ..
        } = *dm;
        let normed = self.dev.alloc_zeros(rows * c)?;
        let rstd = self.dev.alloc_zeros(rows)?;
        self.rmsnorm_fwd(x, &p[NORM], &normed, Some(&rstd), rows, c)?;
        let xz = self.dev.alloc_zeros(rows * 2 * di)?;
        linear(
            self.dev,
            (rows, c, 2 * di),
            (normed.address(), c),
            p[IN_PROJ].address(),
            0.0,
            (xz.address(), 2 * di),
        )?;
        drop(normed);
        let u = self.dev.alloc_zeros(rows * di)?;
        self.dev.launch(
            "conv_fwd",
            (blocks(rows * di), 1, 1),
            THREADS,
            0,
            &[
                Arg::P(xz.address()),
                Arg::I(int(2 * di)?),
                Arg::P(p[CONV_W].address()),
                Arg::P(p[CONV_B].address()),
                Arg::P(u.address()),
                Arg::U(rows as u64),
                Arg::I(int(di)?),
                Arg::I(int(len)?),
                Arg::I(int(kw)?),
            ],
        )?;
        let xdbl = self.dev.alloc_zeros(rows * s)?;
        linear(
            self.dev,
            (rows, di, s),
            (u.address(), di),
            p[X_PROJ].address(),
            0.0,
            (xdbl.address(), s),
        )?;
        let delta = self.dev.alloc_zeros(rows * di)?;
        linear(
            self.dev,
            (rows, r, di),
            (xdbl.address(), s),
            p[DT_W].address(),
            0.0,
            (delta.address(), di),
        )?;
        self.dev.launch(
            "softplus_bias",
            (blocks(rows * di), 1, 1),
            THREADS,
            0,
            &[
                Arg::P(delta.address()),
                Arg::P(p[DT_B].address()),
                Arg::U(rows as u64),
                Arg::I(int(di)?),
            ],
        )?;
        Ok(PreScan {
            rstd,
            xz,
            u,
            xdbl,
            delta,
        })
    }

    /// The scan's arguments shared by forward and backward, up to `dvec`.
    fn scan_common(&self, dm: &Dims, p: &[Buf], pre: &PreScanRef) -> Result<Vec<Arg>> {
        Ok(vec![
            Arg::P(pre.u.address()),
            Arg::P(pre.delta.address()),
            Arg::P(pre.xdbl.address()),
            Arg::I(int(dm.s)?),
            Arg::I(int(dm.r)?),
            Arg::P(self.pa(pre.xz, dm.di)),
            Arg::I(int(2 * dm.di)?),
            Arg::P(p[A_LOG].address()),
            Arg::P(p[D].address()),
        ])
    }

    /// One block forward over `x` (`[rows, C]`); returns the output and, when `train`,
    /// the tape (whose `input` is `x` itself).
    fn layer_forward(
        &self,
        dm: &Dims,
        p: &[Buf],
        x: Buf,
        batch: usize,
        len: usize,
        train: bool,
    ) -> Result<(Buf, Option<LayerTape>)> {
        let rows = batch * len;
        let Dims {
            c,
            di,
            ns,
            nl,
            chunk,
            ..
        } = *dm;
        let pre = self.pre_scan(dm, p, &x, batch, len)?;
        let y = self.dev.alloc_zeros(rows * di)?;
        let ckpt = self.dev.alloc_zeros(if train {
            batch * dm.n_chunks(len) * ns * di
        } else {
            0
        })?;
        let mut args = self.scan_common(dm, p, &pre.as_ref())?;
        args.extend([
            Arg::P(y.address()),
            Arg::P(if train { ckpt.address() } else { 0 }),
            Arg::I(int(len)?),
            Arg::I(int(di)?),
            Arg::I(int(ns)?),
            Arg::I(int(nl)?),
            Arg::I(int(chunk)?),
        ]);
        self.dev.launch(
            "scan_fwd",
            (dm.groups() as u32, int(batch)? as u32, 1),
            THREADS,
            0,
            &args,
        )?;
        let w_out = p[OUT_PROJ].address();
        if !train {
            linear(
                self.dev,
                (rows, di, c),
                (y.address(), di),
                w_out,
                1.0,
                (x.address(), c),
            )?;
            return Ok((x, None));
        }
        let out = self.dev.copy(&x)?;
        linear(
            self.dev,
            (rows, di, c),
            (y.address(), di),
            w_out,
            1.0,
            (out.address(), c),
        )?;
        let PreScan {
            rstd,
            xz,
            u,
            xdbl,
            delta,
        } = pre;
        Ok((
            out,
            Some(LayerTape {
                input: x,
                rstd,
                xz,
                u,
                xdbl,
                delta,
                ckpt,
            }),
        ))
    }

    /// Backward of one block, as `mixer::backward`: on entry `g` is dL/d(output), on
    /// return dL/d(input); parameter gradients are added into `gp`.
    #[allow(clippy::too_many_arguments)]
    fn layer_backward(
        &self,
        dm: &Dims,
        p: &[Buf],
        t: &LayerTape,
        batch: usize,
        len: usize,
        g: &Buf,
        gp: &[Buf],
    ) -> Result<()> {
        let rows = batch * len;
        let Dims {
            c,
            di,
            ns,
            r,
            s,
            kw,
            nl,
            chunk,
        } = *dm;
        let dev = self.dev;
        // out_proj: dL/dy = g W_out.
        let gy = self.dev.alloc_zeros(rows * di)?;
        linear_grad_input(
            dev,
            (rows, c, di),
            (g.address(), c),
            p[OUT_PROJ].address(),
            0.0,
            (gy.address(), di),
        )?;
        let gxz = self.dev.alloc_zeros(rows * 2 * di)?;
        let gu = self.dev.alloc_zeros(rows * di)?;
        let gdelta = self.dev.alloc_zeros(rows * di)?;
        let gxdbl = self.dev.alloc_zeros(rows * s)?;
        let y = self.dev.alloc_zeros(rows * di)?;
        let groups = dm.groups();
        let bc_part = self.dev.alloc_zeros(groups * rows * 2 * ns)?;
        let ga_part = self.dev.alloc_zeros(batch * di * ns)?;
        let gd_part = self.dev.alloc_zeros(batch * di)?;
        let gbias_part = self.dev.alloc_zeros(batch * di)?;
        let pre = PreScanRef {
            xz: &t.xz,
            u: &t.u,
            xdbl: &t.xdbl,
            delta: &t.delta,
        };
        let mut args = self.scan_common(dm, p, &pre)?;
        args.extend([
            Arg::P(t.ckpt.address()),
            Arg::P(gy.address()),
            Arg::P(y.address()),
            Arg::P(self.pa(&gxz, di)),
            Arg::I(int(2 * di)?),
            Arg::P(gu.address()),
            Arg::P(gdelta.address()),
            Arg::P(bc_part.address()),
            Arg::P(ga_part.address()),
            Arg::P(gd_part.address()),
            Arg::P(gbias_part.address()),
            Arg::I(int(batch)?),
            Arg::I(int(len)?),
            Arg::I(int(di)?),
            Arg::I(int(ns)?),
            Arg::I(int(nl)?),
            Arg::I(int(chunk)?),
        ]);
        let smem = (THREADS as usize / 32) * chunk * 2 * ns * std::mem::size_of::<f32>();
        dev.launch(
            "scan_bwd",
            (groups as u32, int(batch)? as u32, 1),
            THREADS,
            smem as u32,
            &args,
        )?;
        drop(gy);
        // dL/dB, dL/dC into their columns of gxdbl; dA_log, dD, d dt_proj.bias summed
        // over sequences.
        self.sum_partials(
            self.pa(&gxdbl, r),
            bc_part.address(),
            groups,
            rows * 2 * ns,
            rows * 2 * ns,
            2 * ns,
            s,
            false,
        )?;
        drop(bc_part);
        self.sum_partials(
            gp[A_LOG].address(),
            ga_part.address(),
            batch,
            di * ns,
            di * ns,
            di * ns,
            di * ns,
            true,
        )?;
        self.sum_partials(
            gp[D].address(),
            gd_part.address(),
            batch,
            di,
            di,
            di,
            di,
            true,
        )?;
        self.sum_partials(
            gp[DT_B].address(),
            gbias_part.address(),
            batch,
            di,
            di,
            di,
            di,
            true,
        )?;
        linear_grad_weight(
            dev,
            (rows, c, di),
            (g.address(), c),
            (y.address(), di),
            1.0,
            gp[OUT_PROJ].address(),
        )?;
        drop(y);
        // dt_proj (the scan went through the softplus already).
        linear_grad_input(
            dev,
            (rows, di, r),
            (gdelta.address(), di),
            p[DT_W].address(),
            0.0,
            (gxdbl.address(), s),
        )?;
        linear_grad_weight(
            dev,
            (rows, di, r),
            (gdelta.address(), di),
            (t.xdbl.address(), s),
            1.0,
            gp[DT_W].address(),
        )?;
        drop(gdelta);
        // x_proj.
        linear_grad_input(
            dev,
            (rows, s, di),
            (gxdbl.address(), s),
            p[X_PROJ].address(),
            1.0,
            (gu.address(), di),
        )?;
        linear_grad_weight(
            dev,
            (rows, s, di),
            (gxdbl.address(), s),
            (t.u.address(), di),
            1.0,
            gp[X_PROJ].address(),
        )?;
        drop(gxdbl);
        // conv + SiLU: dL/dpre in place over gu, weight/bias partials, dL/dx into gxz.
        let conv_args = |gpre: &Buf| -> Result<Vec<Arg>> {
            Ok(vec![
                Arg::P(t.xz.address()),
                Arg::I(int(2 * di)?),
                Arg::P(p[CONV_W].address()),
                Arg::P(p[CONV_B].address()),
                Arg::P(gpre.address()),
                Arg::U(rows as u64),
                Arg::I(int(di)?),
                Arg::I(int(len)?),
                Arg::I(int(kw)?),
            ])
        };
        dev.launch(
            "conv_bwd_pre",
            (blocks(rows * di), 1, 1),
            THREADS,
            0,
            &conv_args(&gu)?,
        )?;
        let parts = rows.div_ceil(ROWS_PER_PART).max(1);
        let wb_part = self.dev.alloc_zeros(parts * di * (kw + 1))?;
        dev.launch(
            "conv_bwd_wb_partial",
            (blocks(di), int(parts)? as u32, 1),
            THREADS,
            0,
            &[
                Arg::P(t.xz.address()),
                Arg::I(int(2 * di)?),
                Arg::P(gu.address()),
                Arg::P(wb_part.address()),
                Arg::U(rows as u64),
                Arg::I(int(di)?),
                Arg::I(int(len)?),
                Arg::I(int(kw)?),
                Arg::I(int(ROWS_PER_PART)?),
            ],
        )?;
        let stride = di * (kw + 1);
        self.sum_partials(
            gp[CONV_W].address(),
            wb_part.address(),
            parts,
            stride,
            di * kw,
            di * kw,
            di * kw,
            true,
        )?;
        self.sum_partials(
            gp[CONV_B].address(),
            self.pa(&wb_part, di * kw),
            parts,
            stride,
            di,
            di,
            di,
            true,
        )?;
        drop(wb_part);
        dev.launch(
            "conv_bwd_x",
            (blocks(rows * di), 1, 1),
            THREADS,
            0,
            &[
                Arg::P(gu.address()),
                Arg::P(p[CONV_W].address()),
                Arg::P(gxz.address()),
                Arg::I(int(2 * di)?),
                Arg::U(rows as u64),
                Arg::I(int(di)?),
                Arg::I(int(len)?),
                Arg::I(int(kw)?),
            ],
        )?;
        drop(gu);
        // in_proj, with the normalised input recomputed rather than stored.
        let normed = self.dev.alloc_zeros(rows * c)?;
        self.rmsnorm_fwd(&t.input, &p[NORM], &normed, None, rows, c)?;
        linear_grad_weight(
            dev,
            (rows, 2 * di, c),
            (gxz.address(), 2 * di),
            (normed.address(), c),
            1.0,
            gp[IN_PROJ].address(),
        )?;
        let gnormed = normed;
        linear_grad_input(
            dev,
            (rows, 2 * di, c),
            (gxz.address(), 2 * di),
            p[IN_PROJ].address(),
            0.0,
            (gnormed.address(), c),
        )?;
        drop(gxz);
        // RMSNorm, adding into the residual gradient already in g.
        dev.launch(
            "rmsnorm_bwd_x",
            (blocks(rows * 32), 1, 1),
            THREADS,
            0,
            &[
                Arg::P(t.input.address()),
                Arg::P(p[NORM].address()),
                Arg::P(t.rstd.address()),
                Arg::P(gnormed.address()),
                Arg::P(g.address()),
                Arg::U(rows as u64),
                Arg::I(int(c)?),
            ],
        )?;
        let w_part = self.dev.alloc_zeros(parts * c)?;
        dev.launch(
            "rmsnorm_bwd_w_partial",
            (blocks(c), int(parts)? as u32, 1),
            THREADS,
            0,
            &[
                Arg::P(t.input.address()),
                Arg::P(t.rstd.address()),
                Arg::P(gnormed.address()),
                Arg::P(w_part.address()),
                Arg::U(rows as u64),
                Arg::I(int(c)?),
                Arg::I(int(ROWS_PER_PART)?),
            ],
        )?;
        self.sum_partials(gp[NORM].address(), w_part.address(), parts, c, c, c, c, true)?;
        Ok(())
    }
}

struct PreScan {
    rstd: Buf,
    xz: Buf,
    u: Buf,
    xdbl: Buf,
    delta: Buf,
}

struct PreScanRef<'a> {
    xz: &'a Buf,
    u: &'a Buf,
    xdbl: &'a Buf,
    delta: &'a Buf,
}

impl PreScan {
    fn as_ref(&self) -> PreScanRef<'_> {
        PreScanRef {
            xz: &self.xz,
            u: &self.u,
            xdbl: &self.xdbl,
            delta: &self.delta,
        }
    }
}

impl CudaPredictor {
    /// The weights of `p` copied to GPU `dev`. The scan kernels keep a channel's states in
    /// one warp, so `d_state` above [`MAX_D_STATE`] is an [`ErrorKind::Cuda`] error (the
    /// CPU takes any size).
    pub fn from_predictor(dev: &Arc<CudaDevice>, p: &Predictor<f32>) -> Result<Self> {
        let cfg = *p.config();
        if cfg.d_state > MAX_D_STATE {
            return Err(Error::new(
                ErrorKind::Cuda,
                format!(
                    "the CUDA predictor takes d_state <= {MAX_D_STATE}, this one has {}",
                    cfg.d_state
                ),
            ));
        }
        let _guard = dev.lock();
        let mut layers: Vec<Vec<Buf>> = (0..cfg.n_layers)
            .map(|_| Vec::with_capacity(NAMES.len()))
            .collect();
        for (name, _, data) in p.tensors() {
            let layer: usize = name
                .strip_prefix("layers.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::new(ErrorKind::Internal, format!("tensor name {name}")))?;
            layers[layer].push(dev.upload(data)?);
        }
        Ok(CudaPredictor {
            dev: dev.clone(),
            cfg,
            layers,
        })
    }

    /// The weights copied back into a CPU [`Predictor`] (after training steps).
    pub fn to_predictor(&self) -> Result<Predictor<f32>> {
        let host = self.download_layers(&self.layers)?;
        let shapes = LayerParams::<f32>::shapes(&self.cfg);
        Predictor::from_tensors(self.cfg, |name| {
            let rest = name.strip_prefix("layers.")?;
            let (n, suffix) = rest.split_once('.')?;
            let i = NAMES.iter().position(|s| *s == suffix)?;
            let l: usize = n.parse().ok()?;
            Some((shapes[i].clone(), host.get(l)?.tensors()[i].to_vec()))
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PredictorConfig {
        &self.cfg
    }

    /// The GPU this predictor lives on.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    fn download_layers(&self, layers: &[Vec<Buf>]) -> Result<Vec<LayerParams<f32>>> {
        let _guard = self.dev.lock();
        layers
            .iter()
            .map(|l| {
                let mut host = LayerParams::<f32>::zeros(&self.cfg);
                for (slot, buf) in host.tensors_mut().into_iter().zip(l) {
                    let n = slot.len();
                    *slot = self.dev.download(buf, n)?;
                }
                Ok(host)
            })
            .collect()
    }

    fn check_input(&self, n: usize, batch: usize, len: usize) -> Result<usize> {
        let rows = batch
            .checked_mul(len)
            .ok_or_else(|| Error::config("predictor batch * len overflows"))?;
        let want = rows
            .checked_mul(self.cfg.d_model)
            .ok_or_else(|| Error::config("predictor input size overflows"))?;
        if n != want {
            return Err(Error::config(format!(
                "predictor input has {n} values, expected batch {batch} x len {len} x d_model {} = {want}",
                self.cfg.d_model
            )));
        }
        Ok(rows)
    }

    /// Inference, as [`Predictor::forward`]: `input` is `[batch, len, C]` row-major.
    pub fn forward(&self, input: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        let rows = self.check_input(input.len(), batch, len)?;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let dm = Dims::new(&self.cfg);
        let call = Call { dev: &self.dev };
        let _guard = self.dev.lock();
        let mut x = self.dev.upload(input)?;
        for p in &self.layers {
            x = call.layer_forward(&dm, p, x, batch, len, false)?.0;
        }
        self.dev.download(&x, input.len())
    }

    /// [`CudaPredictor::forward`] over a caller's buffer: on entry the input, on return
    /// the output (the signature of [`Predictor::forward_in_place`]).
    pub fn forward_in_place(&self, x: &mut [f32], batch: usize, len: usize) -> Result<()> {
        let out = self.forward(x, batch, len)?;
        x.copy_from_slice(&out);
        Ok(())
    }

    /// [`CudaPredictor::backward`] with the gradients copied to the host (the signature
    /// of [`Predictor::backward`], for callers that update the weights on the CPU).
    pub fn backward_host(
        &self,
        tape: &CudaTape,
        grad_output: &[f32],
    ) -> Result<(Vec<f32>, Gradients<f32>)> {
        let (gin, g) = self.backward(tape, grad_output)?;
        Ok((gin, g.to_host(self)?))
    }

    /// Training forward, as [`Predictor::forward_train`]; the tape stays on the GPU.
    pub fn forward_train(
        &self,
        input: &[f32],
        batch: usize,
        len: usize,
    ) -> Result<(Vec<f32>, CudaTape)> {
        let rows = self.check_input(input.len(), batch, len)?;
        if rows == 0 {
            return Err(Error::config(
                "the CUDA predictor trains on at least one token",
            ));
        }
        let dm = Dims::new(&self.cfg);
        let call = Call { dev: &self.dev };
        let _guard = self.dev.lock();
        let mut x = self.dev.upload(input)?;
        let mut tapes = Vec::with_capacity(self.layers.len());
        for p in &self.layers {
            let (out, tape) = call.layer_forward(&dm, p, x, batch, len, true)?;
            tapes.push(tape.ok_or_else(|| Error::new(ErrorKind::Internal, "no tape"))?);
            x = out;
        }
        let out = self.dev.download(&x, input.len())?;
        Ok((
            out,
            CudaTape {
                batch,
                len,
                layers: tapes,
            },
        ))
    }

    /// Backward, as [`Predictor::backward`]: returns `dL/d(input)` and the parameter
    /// gradients, kept on the GPU (for [`CudaAdamW`]); [`CudaGradients::to_host`] copies
    /// them into the CPU's [`Gradients`].
    pub fn backward(
        &self,
        tape: &CudaTape,
        grad_output: &[f32],
    ) -> Result<(Vec<f32>, CudaGradients)> {
        self.check_input(grad_output.len(), tape.batch, tape.len)?;
        if tape.layers.len() != self.layers.len() {
            return Err(Error::invalid_argument(format!(
                "tape has {} layers, predictor {}",
                tape.layers.len(),
                self.layers.len()
            )));
        }
        let dm = Dims::new(&self.cfg);
        let call = Call { dev: &self.dev };
        let _guard = self.dev.lock();
        let g = self.dev.upload(grad_output)?;
        let mut grads = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            grads.push(
                l.iter()
                    .map(|b| self.dev.alloc_zeros(b.len()))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        for ((p, t), gp) in self.layers.iter().zip(&tape.layers).zip(&grads).rev() {
            call.layer_backward(&dm, p, t, tape.batch, tape.len, &g, gp)?;
        }
        let gin = self.dev.download(&g, grad_output.len())?;
        Ok((gin, CudaGradients { layers: grads }))
    }
}

impl CudaGradients {
    /// The gradients copied to the host, in the CPU's layout and names.
    pub fn to_host(&self, p: &CudaPredictor) -> Result<Gradients<f32>> {
        Ok(Gradients::from_layers(p.download_layers(&self.layers)?))
    }
}

/// AdamW on the GPU, the update of `crate::train::adamw::AdamW` (torch.optim.AdamW) on
/// a [`CudaPredictor`]'s weights with moments kept on the device.
pub struct CudaAdamW {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: u64,
    first: Vec<Buf>,
    second: Vec<Buf>,
}

impl CudaAdamW {
    /// Moments at zero for every tensor of `p`.
    pub fn new(config: &TrainConfig, p: &CudaPredictor) -> Result<Self> {
        let _guard = p.dev.lock();
        let mut first = Vec::new();
        let mut second = Vec::new();
        for b in p.layers.iter().flatten() {
            first.push(p.dev.alloc_zeros(b.len())?);
            second.push(p.dev.alloc_zeros(b.len())?);
        }
        Ok(CudaAdamW {
            lr: config.learning_rate,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            weight_decay: config.weight_decay,
            step: 0,
            first,
            second,
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One step of every tensor of `p` along `g`; `decay[i]` says whether tensor `i` (in
    /// [`Predictor::tensors`] order) takes weight decay. The scalar factors are computed
    /// in f64 and rounded to f32 exactly as the CPU optimiser does.
    pub fn step(&mut self, p: &mut CudaPredictor, g: &CudaGradients, decay: &[bool]) -> Result<()> {
        let n_tensors = self.first.len();
        if decay.len() != n_tensors || g.layers.iter().flatten().count() != n_tensors {
            return Err(Error::invalid_argument(format!(
                "AdamW: {n_tensors} tensors, {} decay flags, {} gradients",
                decay.len(),
                g.layers.iter().flatten().count()
            )));
        }
        self.step += 1;
        let t = self.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        let step_size = (self.lr / bias1) as f32;
        let bias2_sqrt = bias2.sqrt() as f32;
        let (b1, b2, eps) = (self.beta1 as f32, self.beta2 as f32, self.eps as f32);
        let dev = p.dev.clone();
        let _guard = dev.lock();
        for (i, (w, gv)) in p
            .layers
            .iter()
            .flatten()
            .zip(g.layers.iter().flatten())
            .enumerate()
        {
            let shrink = if decay[i] {
                (1.0 - self.lr * self.weight_decay) as f32
            } else {
                1.0
            };
            let n = w.len();
            dev.launch(
                "adamw_step",
                (blocks(n), 1, 1),
                THREADS,
                0,
                &[
                    Arg::P(w.address()),
                    Arg::P(gv.address()),
                    Arg::P(self.first[i].address()),
                    Arg::P(self.second[i].address()),
                    Arg::U(n as u64),
                    Arg::F(shrink),
                    Arg::F(b1),
                    Arg::F(b2),
                    Arg::F(step_size),
                    Arg::F(bias2_sqrt),
                    Arg::F(eps),
                ],
            )?;
        }
        dev.synchronize()
    }
}
