//! Compile check of the CUDA kernels with NVRTC, which needs no GPU and no driver.
//!
//! NVRTC is looked for in `VARAD_NVRTC_PATH` (file or folder), in the project's venv
//! (`.deps/venv`, where `make setup` installs the `nvidia-cuda-nvrtc` wheel pinned in
//! scripts/requirements.txt), then where the loader finds it. Without NVRTC the test
//! says so and passes: machines without it cannot check the kernels.

use std::path::{Path, PathBuf};

use varad::cuda::{kernels, nvrtc::Nvrtc};

/// Virtual architectures the kernels must compile for: Turing (the oldest that CUDA 13
/// supports), Ampere, Hopper (the H200 of the GPU checks).
const ARCHS: [&str; 3] = ["compute_75", "compute_80", "compute_90"];

fn venv_nvrtc() -> Vec<PathBuf> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/venv/lib");
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            let nv = e.path().join("site-packages/nvidia");
            out.push(nv.join("cu13/lib/libnvrtc.so.13"));
            out.push(nv.join("cuda_nvrtc/lib/libnvrtc.so.12"));
        }
    }
    out
}

fn find_nvrtc() -> Option<Nvrtc> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("VARAD_NVRTC_PATH") {
        let p = PathBuf::from(p);
        if p.is_dir() {
            candidates.push(p.join("libnvrtc.so.13"));
            candidates.push(p.join("libnvrtc.so.12"));
        } else {
            candidates.push(p);
        }
    }
    candidates.extend(venv_nvrtc());
    candidates.extend(varad::cuda::nvrtc::candidates());
    candidates.into_iter().find_map(|c| Nvrtc::open(&c).ok())
}

#[test]
fn every_kernel_compiles_to_ptx() {
    let Some(nvrtc) = find_nvrtc() else {
        eprintln!(
            "SKIPPED: NVRTC not found (set VARAD_NVRTC_PATH or run `make setup`, which \
             installs the nvidia-cuda-nvrtc wheel); the CUDA kernels were not compiled"
        );
        return;
    };
    eprintln!(
        "NVRTC {}.{} from {}",
        nvrtc.version.0, nvrtc.version.1, nvrtc.origin
    );
    let src = kernels::program_source();
    for arch in ARCHS {
        let ptx = nvrtc
            .compile(&src, "varad_predictor.cu", &kernels::compile_options(arch))
            .unwrap_or_else(|log| panic!("kernels do not compile for {arch}:\n{log}"));
        for k in kernels::KERNEL_NAMES {
            assert!(
                ptx.contains(&format!(".entry {k}(")),
                "{arch}: kernel {k} missing from the PTX"
            );
        }
        // Spills in the scans would mean local memory traffic on every step: report them.
        eprintln!(
            "{arch}: {} bytes of PTX, all {} kernels",
            ptx.len(),
            kernels::KERNEL_NAMES.len()
        );
    }
}

/// Through the PTX assembler as well, for the H200's sm_90 and for sm_80: catches
/// resource limits (registers, shared memory) that PTX does not show.
#[test]
fn every_kernel_assembles_to_machine_code() {
    let Some(nvrtc) = find_nvrtc() else {
        eprintln!("SKIPPED: NVRTC not found; the CUDA kernels were not assembled");
        return;
    };
    let src = kernels::program_source();
    for arch in ["sm_80", "sm_90"] {
        let mut opts = kernels::compile_options(arch);
        // Register use and spills per kernel, printed for whoever tunes them.
        opts.push("--ptxas-options=-v".to_string());
        let cubin = nvrtc
            .compile_cubin(&src, "varad_predictor.cu", &opts)
            .unwrap_or_else(|log| panic!("kernels do not assemble for {arch}:\n{log}"));
        assert!(cubin.starts_with(b"\x7fELF"), "{arch}: not an ELF cubin");
        eprintln!("{arch}: {} bytes of machine code", cubin.len());
    }
}

#[test]
fn a_broken_kernel_reports_nvrtc_log() {
    let Some(nvrtc) = find_nvrtc() else {
        eprintln!("SKIPPED: NVRTC not found");
        return;
    };
    let err = nvrtc
        .compile(
            "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }",
            "broken.cu",
            &kernels::compile_options("compute_90"),
        )
        .unwrap_err();
    assert!(err.contains("undefined_name"), "{err}");
}
