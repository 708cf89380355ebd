//! CUDA for the predictor: finding a usable GPU, the context and stream, the runtime
//! compiled kernels (`kernels/*.cu`, compiled with NVRTC once per process and device),
//! cuBLAS for the linear layers, and [`CudaPredictor`], the device twin of
//! [`crate::predictor::Predictor`].
//!
//! Nothing here is linked at build time: the driver (`libcuda`), cuBLAS and NVRTC are
//! opened with `dlopen` on first use, so the crate builds on machines without a CUDA
//! toolkit and runs where no driver exists. Every way of failing (no driver, no GPU,
//! a missing library, a kernel that does not compile or load, a panic inside a binding)
//! ends as an [`ErrorKind::Cuda`] error whose message says what is missing; under
//! [`Device::Auto`] the caller falls back to the CPU and records that message
//! ([`resolve`]). The first touch of each library runs inside `catch_unwind`, because
//! cudarc's loaders panic when a symbol is missing.
//!
//! # Use
//!
//! ```no_run
//! # // Internal API: public with the `internals` feature only.
//! # #[cfg(feature = "internals")] {
//! use varad::cuda::{self, CudaPredictor};
//! use varad::predictor::{Predictor, PredictorConfig};
//! let cpu = Predictor::init(PredictorConfig::new(8), 1).unwrap();
//! let dev = cuda::device(0).unwrap(); // Err(ErrorKind::Cuda) without a usable GPU
//! let gpu = CudaPredictor::from_predictor(&dev, &cpu).unwrap();
//! let out = gpu.forward(&vec![0.1f32; 2 * 5 * 8], 2, 5).unwrap();
//! assert_eq!(out.len(), 80);
//! # }
//! ```

// The device's facts, the PTX and cubin compiles and the host copies of gradients serve
// the tests, benches and the GPU check (with `internals`); the library itself does not
// call them.
#![cfg_attr(not(feature = "internals"), allow(dead_code))]

mod blas;
#[cfg(feature = "internals")]
pub mod emulator;
pub mod kernels;
pub mod nvrtc;
mod predictor;

// The state-size limit is also a configuration bound (`crate::config::ranges`).
pub use predictor::{CudaAdamW, CudaGradients, CudaPredictor, CudaTape, MAX_D_STATE};

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig,
    PushKernelArg,
};

use crate::{Device, Error, ErrorKind, Result};

/// One GPU ready for the predictor: context, stream, cuBLAS handle and the compiled
/// kernels. Shared (`Arc`) by every [`CudaPredictor`] on that GPU; calls are serialised
/// on its one stream by an internal lock, so it may be used from many threads.
///
/// With the `internals` feature it may also be the CPU emulator of a GPU
/// (`emulator::emulated_device`), which runs the same kernels and host code.
pub struct CudaDevice {
    ordinal: u32,
    name: String,
    compute_capability: (i32, i32),
    arch: String,
    engine: Engine,
    lock: Mutex<()>,
}

/// What executes the device's work.
enum Engine {
    Driver(Driver),
    #[cfg(feature = "internals")]
    Emulated(emulator::Emulator),
}

/// A real GPU through the driver, cuBLAS and the NVRTC-compiled module.
struct Driver {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    functions: HashMap<&'static str, CudaFunction>,
    // Keeps the module loaded while the functions are in use.
    _module: Arc<CudaModule>,
}

/// One kernel launch: a 1-D block of `block` threads over `grid`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Launch<'a> {
    pub name: &'a str,
    pub grid: (u32, u32, u32),
    pub block: u32,
    pub shared_bytes: u32,
    pub args: &'a [Arg],
}

impl Driver {
    fn launch(&self, l: &Launch<'_>) -> Result<()> {
        let Launch {
            name,
            grid,
            block,
            shared_bytes,
            args,
        } = *l;
        let f = self.functions.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("CUDA kernel {name} is not loaded"),
            )
        })?;
        let mut b = self.stream.launch_builder(f);
        for a in args {
            match a {
                Arg::P(v) | Arg::U(v) => b.arg(v),
                Arg::I(v) => b.arg(v),
                Arg::F(v) => b.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: (block, 1, 1),
            shared_mem_bytes: shared_bytes,
        };
        // SAFETY: each kernel's argument list in predictor.rs matches its C signature in
        // kernels/*.cu (the emulator checks the kinds on every launch), and every pointer
        // addresses a live buffer of the size the kernel indexes (the callers compute
        // grids and sizes from the same dimensions).
        unsafe { b.launch(cfg) }
            .map(|_| ())
            .map_err(|e| cuda_error(format!("launching {name}"), e))
    }
}

/// Device memory of `f32`s: on the GPU, or host memory standing for it in the emulator.
pub(crate) enum DeviceBuffer {
    Driver(CudaSlice<f32>),
    #[cfg(feature = "internals")]
    Emulated(emulator::HostBuffer),
}

impl DeviceBuffer {
    /// The number of floats.
    pub(crate) fn len(&self) -> usize {
        match self {
            DeviceBuffer::Driver(s) => s.len(),
            #[cfg(feature = "internals")]
            DeviceBuffer::Emulated(b) => b.len(),
        }
    }

    /// The device address, as kernels and cuBLAS take it.
    pub(crate) fn address(&self) -> u64 {
        match self {
            // The guard only records events, which are disabled for this context.
            DeviceBuffer::Driver(s) => s.device_ptr(s.stream()).0,
            #[cfg(feature = "internals")]
            DeviceBuffer::Emulated(h) => h.address(),
        }
    }
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .field("compute_capability", &self.compute_capability)
            .field("arch", &self.arch)
            .finish()
    }
}

/// A kernel argument: device pointers, sizes and scalars, pushed by value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg {
    /// A device pointer (or 0 for null).
    P(u64),
    /// A 64-bit count.
    U(u64),
    /// A 32-bit integer.
    I(i32),
    /// A float.
    F(f32),
}

impl CudaDevice {
    /// The device's index.
    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    /// The GPU's name as the driver reports it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(major, minor)` compute capability.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// The virtual architecture the kernels were compiled for (`compute_XY`).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Serialises a sequence of launches and copies (one predictor call) on the stream.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Launches kernel `name` on the device's stream.
    pub(crate) fn launch(
        &self,
        name: &str,
        grid: (u32, u32, u32),
        block: u32,
        shared_bytes: u32,
        args: &[Arg],
    ) -> Result<()> {
        if !kernels::KERNEL_NAMES.contains(&name) {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("CUDA kernel {name} is not loaded"),
            ));
        }
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        if grid.1 > 65535 {
            return Err(Error::new(
                ErrorKind::Cuda,
                format!(
                    "{name}: {} sequences exceed CUDA's grid limit of 65535",
                    grid.1
                ),
            ));
        }
        let launch = Launch {
            name,
            grid,
            block,
            shared_bytes,
            args,
        };
        match &self.engine {
            Engine::Driver(d) => d.launch(&launch),
            #[cfg(feature = "internals")]
            Engine::Emulated(e) => e.launch(&launch),
        }
    }

    /// `n` floats of zeros (at least one: an empty batch still gets a valid pointer).
    pub(crate) fn alloc_zeros(&self, n: usize) -> Result<DeviceBuffer> {
        match &self.engine {
            Engine::Driver(d) => d
                .stream
                .alloc_zeros::<f32>(n.max(1))
                .map(DeviceBuffer::Driver)
                .map_err(|e| cuda_error(format!("allocating {n} floats"), e)),
            #[cfg(feature = "internals")]
            Engine::Emulated(e) => Ok(DeviceBuffer::Emulated(e.alloc_zeros(n))),
        }
    }

    /// A device copy of `data`.
    pub(crate) fn upload(&self, data: &[f32]) -> Result<DeviceBuffer> {
        if data.is_empty() {
            return self.alloc_zeros(0);
        }
        match &self.engine {
            Engine::Driver(d) => d
                .stream
                .clone_htod(data)
                .map(DeviceBuffer::Driver)
                .map_err(|e| cuda_error("copying to the GPU", e)),
            #[cfg(feature = "internals")]
            Engine::Emulated(e) => Ok(DeviceBuffer::Emulated(e.upload(data))),
        }
    }

    /// The first `n` floats of `b`, after all work queued before (the call waits).
    pub(crate) fn download(&self, b: &DeviceBuffer, n: usize) -> Result<Vec<f32>> {
        match (&self.engine, b) {
            (Engine::Driver(d), DeviceBuffer::Driver(s)) => {
                let mut v = d
                    .stream
                    .clone_dtoh(s)
                    .map_err(|e| cuda_error("copying from the GPU", e))?;
                // The copy is asynchronous in the stream's order: wait for it (and so
                // for every kernel before it) before the host reads the vector.
                self.synchronize()?;
                v.truncate(n);
                Ok(v)
            }
            #[cfg(feature = "internals")]
            (Engine::Emulated(e), DeviceBuffer::Emulated(h)) => e.download(h, n),
            #[cfg(feature = "internals")]
            _ => Err(foreign_buffer()),
        }
    }

    /// A device-side copy of `b`.
    pub(crate) fn copy(&self, b: &DeviceBuffer) -> Result<DeviceBuffer> {
        match (&self.engine, b) {
            (Engine::Driver(d), DeviceBuffer::Driver(s)) => {
                let mut out = d
                    .stream
                    .alloc_zeros::<f32>(s.len())
                    .map_err(|e| cuda_error(format!("allocating {} floats", s.len()), e))?;
                d.stream
                    .memcpy_dtod(s, &mut out)
                    .map_err(|e| cuda_error("copying on the GPU", e))?;
                Ok(DeviceBuffer::Driver(out))
            }
            #[cfg(feature = "internals")]
            (Engine::Emulated(e), DeviceBuffer::Emulated(h)) => {
                Ok(DeviceBuffer::Emulated(e.copy(h)))
            }
            #[cfg(feature = "internals")]
            _ => Err(foreign_buffer()),
        }
    }

    /// Waits for every queued kernel and copy.
    pub(crate) fn synchronize(&self) -> Result<()> {
        match &self.engine {
            Engine::Driver(d) => d
                .stream
                .synchronize()
                .map_err(|e| cuda_error("waiting for the GPU", e)),
            #[cfg(feature = "internals")]
            Engine::Emulated(_) => Ok(()),
        }
    }

    /// cuBLAS's column-major `sgemm` on the device's stream.
    pub(crate) fn sgemm(&self, g: &blas::ColMajorGemm) -> Result<()> {
        match &self.engine {
            Engine::Driver(d) => blas::sgemm_driver(&d.stream, &d.blas, g),
            #[cfg(feature = "internals")]
            Engine::Emulated(e) => e.sgemm(g),
        }
    }

    #[cfg(feature = "internals")]
    fn emulated(e: emulator::Emulator) -> Self {
        CudaDevice {
            ordinal: 0,
            name: "CPU emulator of a GPU".to_string(),
            compute_capability: (0, 0),
            arch: "host".to_string(),
            engine: Engine::Emulated(e),
            lock: Mutex::new(()),
        }
    }
}

#[cfg(feature = "internals")]
fn foreign_buffer() -> Error {
    Error::new(
        ErrorKind::Internal,
        "a device buffer used with another kind of device",
    )
}

/// An [`ErrorKind::Cuda`] error from a driver or cuBLAS error.
pub(crate) fn cuda_error(what: impl std::fmt::Display, e: impl std::fmt::Debug) -> Error {
    Error::new(ErrorKind::Cuda, format!("CUDA: {what} failed: {e:?}"))
}

/// Runs `f` with panics turned into [`ErrorKind::Cuda`] errors: cudarc panics when a
/// library or one of its symbols cannot be loaded.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Error::new(ErrorKind::Cuda, format!("CUDA: {what}: {msg}")))
        }
    }
}

/// Whether the CUDA driver library can be opened at all (no GPU is touched).
pub fn driver_present() -> bool {
    // SAFETY: only tries dlopen on the driver's names.
    guarded("looking for the driver", || {
        Ok(unsafe { cudarc::driver::sys::is_culib_present() })
    })
    .unwrap_or(false)
}

/// The GPU `ordinal`, opened and its kernels compiled on first use; later calls return
/// the same device, or the same error (the reason is computed once per process).
pub fn device(ordinal: u32) -> Result<Arc<CudaDevice>> {
    // Per ordinal: the opened device, or why it cannot be used.
    type Opened = std::result::Result<Arc<CudaDevice>, String>;
    static DEVICES: OnceLock<Mutex<HashMap<u32, Opened>>> = OnceLock::new();
    let map = DEVICES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(ordinal)
        .or_insert_with(|| {
            guarded("opening the GPU", || open(ordinal))
                .map(Arc::new)
                .map_err(|e| e.message().to_string())
        })
        .clone()
        .map_err(|m| Error::new(ErrorKind::Cuda, m))
}

/// Why CUDA cannot be used for the predictor on GPU 0, or `None` when it can (cached).
pub fn unavailable_reason() -> Option<String> {
    device(0).err().map(|e| e.message().to_string())
}

/// The outcome of resolving a requested [`Device`] for the predictor.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The GPU to use, or `None` for the CPU.
    pub device: Option<Arc<CudaDevice>>,
    /// [`Device::Cpu`] or [`Device::Cuda`].
    pub active: Device,
    /// Under [`Device::Auto`], why the CPU was taken (also logged).
    pub fallback_reason: Option<String>,
}

/// Resolves `requested`: `Cpu` is the CPU; `Cuda(i)` is GPU `i` or an
/// [`ErrorKind::Cuda`] error; `Auto` is GPU 0 when usable, else the CPU with the reason
/// recorded and logged.
pub fn resolve(requested: Device) -> Result<Resolved> {
    match requested {
        Device::Cpu => Ok(Resolved {
            device: None,
            active: Device::Cpu,
            fallback_reason: None,
        }),
        Device::Cuda(i) => device(i)
            .map(|d| Resolved {
                device: Some(d),
                active: Device::Cuda(i),
                fallback_reason: None,
            })
            .map_err(|e| e.context(format!("{requested} was requested for the predictor"))),
        Device::Auto => match device(0) {
            Ok(d) => Ok(Resolved {
                device: Some(d),
                active: Device::Cuda(0),
                fallback_reason: None,
            }),
            Err(e) => {
                log::info!(
                    "predictor: CUDA not used, running on the CPU: {}",
                    e.message()
                );
                Ok(Resolved {
                    device: None,
                    active: Device::Cpu,
                    fallback_reason: Some(e.message().to_string()),
                })
            }
        },
    }
}

/// Architectures to try, best first: the GPU's own, then older ones an older NVRTC may
/// know (PTX for an older virtual architecture runs on newer GPUs).
fn arch_candidates(cc: (i32, i32)) -> Vec<String> {
    let mut v = vec![format!("compute_{}{}", cc.0, cc.1)];
    for a in ["compute_90", "compute_80", "compute_75"] {
        let n: i32 = a[8..].parse().unwrap_or(0);
        if n <= cc.0 * 10 + cc.1 && !v.iter().any(|x| x == a) {
            v.push(a.to_string());
        }
    }
    v
}

fn open(ordinal: u32) -> Result<CudaDevice> {
    if !driver_present() {
        return Err(Error::new(
            ErrorKind::Cuda,
            "the NVIDIA driver library (libcuda) was not found: no GPU driver on this machine",
        ));
    }
    cudarc::driver::result::init().map_err(|e| cuda_error("cuInit", e))?;
    let count = CudaContext::device_count().map_err(|e| cuda_error("counting GPUs", e))?;
    if count <= 0 || ordinal as i64 >= count as i64 {
        return Err(Error::new(
            ErrorKind::Cuda,
            format!("no CUDA device {ordinal}: the driver reports {count} GPU(s)"),
        ));
    }
    // SAFETY: only tries dlopen on cuBLAS's names.
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return Err(Error::new(
            ErrorKind::Cuda,
            "cuBLAS (libcublas) was not found; it comes with the CUDA toolkit or the \
             nvidia-cublas pip wheel (put its lib folder on LD_LIBRARY_PATH)",
        ));
    }
    let nvrtc = nvrtc::load()?;
    let ctx =
        CudaContext::new(ordinal as usize).map_err(|e| cuda_error("creating a context", e))?;
    // One stream carries all of this library's work, so cudarc's per-buffer event
    // tracking (for multi-stream use) is pure overhead; raw pointers are then sound.
    // SAFETY: no buffer of this context is in use yet.
    unsafe { ctx.disable_event_tracking() };
    let name = ctx.name().unwrap_or_else(|_| "unknown GPU".to_string());
    let cc = ctx
        .compute_capability()
        .map_err(|e| cuda_error("reading the compute capability", e))?;
    let stream = ctx
        .new_stream()
        .map_err(|e| cuda_error("creating a stream", e))?;
    let src = kernels::program_source();
    let mut errors = Vec::new();
    let mut compiled = None;
    for arch in arch_candidates(cc) {
        match nvrtc.compile(&src, "varad_predictor.cu", &kernels::compile_options(&arch)) {
            Ok(ptx) => {
                compiled = Some((arch, ptx));
                break;
            }
            Err(log) => errors.push(format!("{arch}: {log}")),
        }
    }
    let (arch, ptx) = compiled.ok_or_else(|| {
        Error::new(
            ErrorKind::Cuda,
            format!(
                "NVRTC {}.{} ({}) could not compile the predictor kernels: {}",
                nvrtc.version.0,
                nvrtc.version.1,
                nvrtc.origin,
                errors.join("\n")
            ),
        )
    })?;
    let module = ctx
        .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
        .map_err(|e| {
            cuda_error(
                format!(
                    "loading the kernels' PTX ({arch}, NVRTC {}.{}; a driver older than \
                     NVRTC cannot load its PTX)",
                    nvrtc.version.0, nvrtc.version.1
                ),
                e,
            )
        })?;
    let mut functions = HashMap::new();
    for k in kernels::KERNEL_NAMES {
        let f = module
            .load_function(k)
            .map_err(|e| cuda_error(format!("finding kernel {k}"), e))?;
        functions.insert(k, f);
    }
    let blas = CudaBlas::new(stream.clone()).map_err(|e| cuda_error("creating cuBLAS", e))?;
    // Plain FP32 GEMMs (no TF32): the CPU parity contract is 1e-4 relative, which TF32's
    // 10-bit mantissa would break.
    // SAFETY: a live handle.
    unsafe {
        cudarc::cublas::sys::cublasSetMathMode(
            *blas.handle(),
            cudarc::cublas::sys::cublasMath_t::CUBLAS_DEFAULT_MATH,
        )
    }
    .result()
    .map_err(|e| cuda_error("setting cuBLAS's math mode", e))?;
    log::info!(
        "CUDA predictor on GPU {ordinal} ({name}, sm_{}{}), kernels for {arch} by NVRTC {}.{}",
        cc.0,
        cc.1,
        nvrtc.version.0,
        nvrtc.version.1
    );
    Ok(CudaDevice {
        ordinal,
        name,
        compute_capability: cc,
        arch,
        engine: Engine::Driver(Driver {
            stream,
            blas,
            functions,
            _module: module,
        }),
        lock: Mutex::new(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_candidates_start_with_the_gpu_and_never_exceed_it() {
        assert_eq!(
            arch_candidates((9, 0)),
            ["compute_90", "compute_80", "compute_75"]
        );
        assert_eq!(
            arch_candidates((8, 6)),
            ["compute_86", "compute_80", "compute_75"]
        );
        assert_eq!(arch_candidates((7, 5)), ["compute_75"]);
    }

    #[test]
    fn every_kernel_name_is_defined_in_the_sources() {
        let src = kernels::program_source();
        for k in kernels::KERNEL_NAMES {
            assert!(
                src.contains(&format!("__global__ void {k}(")),
                "kernel {k} is not in kernels/*.cu"
            );
        }
    }
}
