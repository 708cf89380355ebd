//! Row-major GEMMs through cuBLAS, which is column-major: a row-major `C = op(A) op(B)`
//! is the column-major `C^T = op(B)^T op(A)^T`, so the operands swap places and keep
//! their transpose flags; no data moves. The three shapes of a linear layer mirror
//! `crate::predictor::gemm`.

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::CudaBlas;
use cudarc::driver::CudaStream;

use super::{cuda_error, CudaDevice};
use crate::{Error, ErrorKind, Result};

fn int(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::new(
            ErrorKind::Cuda,
            format!("GEMM {what} = {v} exceeds cuBLAS's 32-bit sizes"),
        )
    })
}

/// One column-major `sgemm` as cuBLAS takes it: `C = alpha op(A) op(B) + beta C` with
/// `C` `m x n`, `op(A)` `m x k`, `op(B)` `k x n`, pointers being device addresses and
/// `ld*` column strides in elements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColMajorGemm {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub alpha: f32,
    pub a: u64,
    pub lda: i32,
    pub b: u64,
    pub ldb: i32,
    pub beta: f32,
    pub c: u64,
    pub ldc: i32,
}

/// [`ColMajorGemm`] through cuBLAS on `stream`.
pub(crate) fn sgemm_driver(stream: &CudaStream, blas: &CudaBlas, g: &ColMajorGemm) -> Result<()> {
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    // cuBLAS works in the calling thread's current context, and predictor calls may come
    // from any thread.
    stream
        .context()
        .bind_to_thread()
        .map_err(|e| cuda_error("binding the CUDA context", e))?;
    // SAFETY: the callers pass live device buffers that hold the views these sizes and
    // strides describe (the emulator checks every extent); the handle's stream is the
    // device's one stream.
    unsafe {
        cudarc::cublas::result::sgemm(
            *blas.handle(),
            op(g.trans_a),
            op(g.trans_b),
            g.m,
            g.n,
            g.k,
            &g.alpha,
            g.a as *const f32,
            g.lda,
            g.b as *const f32,
            g.ldb,
            &g.beta,
            g.c as *mut f32,
            g.ldc,
        )
    }
    .map_err(|e| cuda_error("cublasSgemm", e))
}

/// Row-major `c[m, n] = alpha op(a) op(b) + beta c`; `op(a)` is `m x k`, `op(b)` is
/// `k x n`; `ta`/`tb` say that `a`/`b` are stored transposed. Pointers are device
/// addresses; `ld*` are row strides in elements.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_rm(
    dev: &CudaDevice,
    (ta, tb): (bool, bool),
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    (a, lda): (u64, usize),
    (b, ldb): (u64, usize),
    beta: f32,
    (c, ldc): (u64, usize),
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    dev.sgemm(&ColMajorGemm {
        trans_a: tb,
        trans_b: ta,
        m: int(n, "n")?,
        n: int(m, "m")?,
        k: int(k, "k")?,
        alpha,
        a: b,
        lda: int(ldb, "ldb")?,
        b: a,
        ldb: int(lda, "lda")?,
        beta,
        c,
        ldc: int(ldc, "ldc")?,
    })
}

/// `out[m, n] = beta out + x[m, k] w[n, k]^T` (a linear layer's forward).
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear(
    dev: &CudaDevice,
    (m, k, n): (usize, usize, usize),
    x: (u64, usize),
    w: u64,
    beta: f32,
    out: (u64, usize),
) -> Result<()> {
    gemm_rm(dev, (false, true), (m, n, k), 1.0, x, (w, k), beta, out)
}

/// `gx[m, k] = beta gx + g[m, n] w[n, k]` (the input gradient).
pub(crate) fn linear_grad_input(
    dev: &CudaDevice,
    (m, n, k): (usize, usize, usize),
    g: (u64, usize),
    w: u64,
    beta: f32,
    gx: (u64, usize),
) -> Result<()> {
    gemm_rm(dev, (false, false), (m, k, n), 1.0, g, (w, k), beta, gx)
}

/// `gw[n, k] = beta gw + g[m, n]^T x[m, k]` (the weight gradient).
pub(crate) fn linear_grad_weight(
    dev: &CudaDevice,
    (m, n, k): (usize, usize, usize),
    g: (u64, usize),
    x: (u64, usize),
    beta: f32,
    gw: u64,
) -> Result<()> {
    gemm_rm(dev, (true, false), (n, k, m), 1.0, g, x, beta, (gw, k))
}
