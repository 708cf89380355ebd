//! The predictor's CUDA kernels: sources embedded in the library and compiled at run time
//! with NVRTC, so the crate builds with no CUDA toolkit.
//!
//! The files in `kernels/` form one NVRTC program: `common.cuh` first (helpers), then the
//! kernel files. Each kernel is `extern "C"`, so its name in the module is the name in
//! the source; [`KERNEL_NAMES`] lists every one the Rust side launches, and the compile
//! check (`tests/cuda_kernels_compile.rs`) asserts that each is present in the PTX.

use super::nvrtc;
use crate::{Error, ErrorKind, Result};

/// `(file name, source)` of every kernel file, in compilation order.
pub const SOURCES: [(&str, &str); 5] = [
    ("common.cuh", include_str!("kernels/common.cuh")),
    ("elementwise.cu", include_str!("kernels/elementwise.cu")),
    ("rmsnorm.cu", include_str!("kernels/rmsnorm.cu")),
    ("conv.cu", include_str!("kernels/conv.cu")),
    ("scan.cu", include_str!("kernels/scan.cu")),
];

/// Every kernel entry point the Rust side launches.
pub const KERNEL_NAMES: [&str; 12] = [
    "softplus_bias",
    "sum_partials",
    "adamw_step",
    "rmsnorm_fwd",
    "rmsnorm_bwd_x",
    "rmsnorm_bwd_w_partial",
    "conv_fwd",
    "conv_bwd_pre",
    "conv_bwd_wb_partial",
    "conv_bwd_x",
    "scan_fwd",
    "scan_bwd",
];

/// The whole program's source: the files concatenated, each introduced by a `#line`
/// directive so NVRTC's messages name the right file and line.
pub fn program_source() -> String {
    let mut s = String::new();
    for (name, src) in SOURCES {
        s.push_str(&format!("#line 1 \"{name}\"\n"));
        s.push_str(src);
        s.push('\n');
    }
    s
}

/// NVRTC options for a virtual architecture such as `compute_90`. No fast math: parity
/// with the CPU is part of the contract (DESIGN.md), and `expf`/`log1pf` are accurate.
pub fn compile_options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
    ]
}

/// Compiles the program to PTX for `arch` with the NVRTC that [`nvrtc::load`] finds.
/// The error carries NVRTC's full log.
pub fn compile_ptx(arch: &str) -> Result<String> {
    let lib = nvrtc::load()?;
    lib.compile(
        &program_source(),
        "varad_predictor.cu",
        &compile_options(arch),
    )
    .map_err(|log| {
        Error::new(
            ErrorKind::Cuda,
            format!("NVRTC could not compile the predictor kernels for {arch}:\n{log}"),
        )
    })
}
