//! What every scan kernel shares: the sizes of a call, its inputs and gradient outputs,
//! the size checks, the final reduction of the backward's partial sums, and the probe for
//! the AVX2 kernels.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use crate::predictor::float::{as_f32, Float};
#[cfg(not(target_arch = "x86_64"))]
use crate::predictor::float::Float;

/// Channels per vector block of the portable kernels.
pub(super) const W: usize = 16;

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

    pub(super) fn rows(&self) -> usize {
        self.batch * self.len
    }

    /// The `(first channel, width)` of each vector block: full blocks, then single
    /// channels for the remainder.
    pub(super) fn blocks(&self) -> Vec<(usize, usize)> {
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
    pub(super) fn check(&self, s: &ScanDims) {
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
    pub(super) fn as_f32(&self) -> Option<Inputs<'a>> {
        self.with_delta_f32(Delta::Stored(as_f32(self.delta)?))
    }

    /// These inputs with `T = f32`, when it is.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn as_f32_inputs(&self) -> Option<ScanInputs<'a, f32>> {
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
    pub fn with_delta_f32(&self, delta: Delta<'a>) -> Option<Inputs<'a>> {
        Some(Inputs {
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
    pub(super) fn a_block<const V: usize>(&self, s: &ScanDims, d0: usize) -> Vec<[T; V]> {
        (0..s.d_state)
            .map(|n| std::array::from_fn(|w| -self.a_log[(d0 + w) * s.d_state + n].exp()))
            .collect()
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

/// The size checks both backward kernels rely on.
pub(super) fn check_backward<T: Float>(
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

#[cfg(target_arch = "x86_64")]
/// Channels per task: one AVX2 vector of `f32`.
pub const LANES: usize = 8;

#[cfg(target_arch = "x86_64")]
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

#[cfg(target_arch = "x86_64")]
/// Read-only inputs of the `f32` kernels (see [`ScanInputs`] for the layouts).
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

#[cfg(target_arch = "x86_64")]
/// Whether the `f32` kernels run here: the CPU has AVX2 and FMA, and the channels split into
/// whole vectors.
pub fn applies(d_inner: usize) -> bool {
    d_inner.is_multiple_of(LANES)
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
}
