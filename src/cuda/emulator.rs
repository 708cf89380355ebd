//! The predictor's CUDA kernels run on the CPU, so that CI checks every kernel and the
//! host code around it on machines without a GPU.
//!
//! [`emulated_device`] returns a [`CudaDevice`] whose kernels, memory and GEMMs are the
//! host's: the kernel sources NVRTC compiles for a GPU (`kernels/*`) are compiled here,
//! unchanged, with the system C++ compiler (`$CXX`, else `c++`) together with
//! `emulator/runtime.hpp`, which runs each CUDA thread as a fiber with CUDA's barrier and
//! shuffle semantics; the library is built once per source and compiler into the
//! temporary folder and opened with `dlopen`. Everything above the kernels is the real
//! host code of [`super::CudaPredictor`]: its launch shapes, argument lists, buffer sizes
//! and offsets, cuBLAS calls (emulated with cuBLAS's column-major semantics) and order
//! of operations.
//!
//! Checks a GPU does not make, so that a host or kernel bug fails here loudly:
//! - every kernel argument must match the kernel's parameter kinds, and every pointer
//!   must point into a live buffer;
//! - every buffer sits between guard zones of a NaN pattern: a read out of bounds
//!   poisons the result, a write out of bounds is reported after the launch;
//! - GEMM operands' full extents (from sizes and leading dimensions) must lie inside
//!   their buffers;
//! - launch shapes outside CUDA's limits are refused as a GPU would refuse them.
//!
//! What it cannot show: the driver's and cuBLAS's own behaviour, NVRTC's compilation
//! (its compile check is `tests/cuda_kernels_compile.rs`), asynchrony between host and
//! device (every emulated call completes before it returns), and timing. Fibers switch
//! with a few instructions of our own on x86-64 and with `ucontext` elsewhere; CI runs
//! the former only.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use super::{kernels, Arg, CudaDevice, Launch};
use crate::{Error, ErrorKind, Result};

/// The C++ side: the fiber runtime and the CUDA names it defines for the kernels.
const RUNTIME: &str = include_str!("emulator/runtime.hpp");

/// The order in which the emulator runs threads, warps and blocks. A correct kernel
/// gives bit-identical results under both; a race or a missing barrier usually does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleOrder {
    /// Lane 0 first, warp 0 first, block 0 first.
    Ascending,
    /// The last lane, warp and block first.
    Descending,
}

type LaunchFn = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const *mut c_void,
    u32,
    u32,
    u32,
    u32,
    u32,
    c_int,
    c_int,
    *mut c_char,
    usize,
) -> c_int;

/// The compiled kernels, opened once per process.
struct Library {
    _lib: libloading::Library,
    launch: LaunchFn,
    path: PathBuf,
}

/// The translation unit the C++ compiler builds: runtime, kernels, kernel table.
fn translation_unit(program: &str) -> String {
    let mut s = String::from(RUNTIME);
    s.push('\n');
    s.push_str(program);
    s.push_str(
        "\nconst std::vector<varad_emu::Kernel>& varad_emu::kernels() {\n    \
         static const std::vector<varad_emu::Kernel> table = {\n",
    );
    for k in kernels::KERNEL_NAMES {
        s.push_str(&format!("        varad_emu::kernel(\"{k}\", {k}),\n"));
    }
    s.push_str("    };\n    return table;\n}\n");
    s
}

fn compiler() -> String {
    std::env::var("CXX")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "c++".to_string())
}

/// Flags of the emulator's build: optimised, since the scans walk thousands of steps per
/// thread; no fast math, as NVRTC compiles them (DESIGN.md's parity contract).
const FLAGS: [&str; 8] = [
    "-std=c++17",
    "-O2",
    "-fPIC",
    "-shared",
    "-pthread",
    "-fvisibility=hidden",
    "-Wall",
    "-Wno-unknown-pragmas",
];

fn build(dir: &Path, program: &str) -> Result<PathBuf> {
    let source = translation_unit(program);
    let cxx = compiler();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&source, &cxx, FLAGS).hash(&mut h);
    let lib = dir.join(format!("varad-cuda-emulator-{:016x}.so", h.finish()));
    if lib.exists() {
        return Ok(lib);
    }
    let err = |what: String| Error::new(ErrorKind::Cuda, format!("CUDA emulator: {what}"));
    std::fs::create_dir_all(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    // Unique names, then an atomic rename: test processes may build side by side.
    let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id());
    let tag: String = tag.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let src = dir.join(format!("varad-cuda-emulator-{tag}.cpp"));
    let tmp = dir.join(format!("varad-cuda-emulator-{tag}.so.tmp"));
    std::fs::write(&src, &source).map_err(|e| err(format!("writing {}: {e}", src.display())))?;
    let out = Command::new(&cxx)
        .args(FLAGS)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .output()
        .map_err(|e| {
            err(format!(
                "running the C++ compiler `{cxx}` (set CXX to another): {e}"
            ))
        })?;
    let _ = std::fs::remove_file(&src);
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(format!(
            "`{cxx}` could not compile the kernels for the CPU:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    std::fs::rename(&tmp, &lib)
        .map_err(|e| err(format!("moving the build to {}: {e}", lib.display())))?;
    Ok(lib)
}

/// The emulator built from `program` (kernel sources), once per process and program.
fn library(program: &str) -> Result<&'static Library> {
    type Built = std::result::Result<&'static Library, String>;
    static LIBS: OnceLock<Mutex<HashMap<String, Built>>> = OnceLock::new();
    let mut libs = LIBS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    libs.entry(program.to_string())
        .or_insert_with(|| open(program).map(|l| &*Box::leak(Box::new(l))))
        .clone()
        .map_err(|m| Error::new(ErrorKind::Cuda, m))
}

fn open(program: &str) -> std::result::Result<Library, String> {
    let dir = std::env::temp_dir().join("varad-cuda-emulator");
    let path = build(&dir, program).map_err(|e| e.message().to_string())?;
    // SAFETY: the library was built from our own sources just now (or earlier from the
    // same sources, as its hashed name says); loading runs no constructors of ours beyond
    // static initialisers of the C++ standard library.
    let lib = unsafe { libloading::Library::new(&path) }
        .map_err(|e| format!("CUDA emulator: opening {}: {e}", path.display()))?;
    // SAFETY: the symbol is varad_emu_launch of runtime.hpp, of type LaunchFn.
    let launch = unsafe { lib.get::<LaunchFn>(b"varad_emu_launch\0") }
        .map(|s| *s)
        .map_err(|e| format!("CUDA emulator: {e}"))?;
    Ok(Library {
        _lib: lib,
        launch,
        path,
    })
}

/// Floats of NaN pattern before and after every buffer.
const GUARD: usize = 1024;
/// A NaN with a payload no arithmetic produces, so a changed guard is always a write.
const CANARY: u32 = 0x7fa5_5a5a;

/// A buffer in host memory standing for device memory, with guard zones.
pub(crate) struct HostBuffer {
    /// Start of the whole allocation (guards included), from `Box::into_raw`.
    base: *mut f32,
    len: usize,
    registry: Arc<Mutex<Registry>>,
}

// SAFETY: the memory is owned by the buffer and only reached through kernel launches and
// copies, which the device's lock serialises.
unsafe impl Send for HostBuffer {}
unsafe impl Sync for HostBuffer {}

impl HostBuffer {
    /// The number of floats.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The address kernels see.
    pub(crate) fn address(&self) -> u64 {
        // SAFETY: inside the allocation of GUARD + max(len, 1) + GUARD floats.
        unsafe { self.base.add(GUARD) as u64 }
    }

    fn data(&self) -> *mut f32 {
        // SAFETY: as in address().
        unsafe { self.base.add(GUARD) }
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        let total = 2 * GUARD + self.len.max(1);
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .remove(&(self.address() as usize));
        // SAFETY: base came from Box::into_raw of a boxed slice of `total` floats.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.base, total)) });
    }
}

/// The live buffers of one emulated device: data address to length in floats.
#[derive(Default)]
struct Registry {
    live: HashMap<usize, usize>,
}

impl Registry {
    /// Whether one live buffer holds `[addr, addr + floats * 4)`.
    fn holds(&self, addr: u64, floats: usize) -> bool {
        let addr = addr as usize;
        self.live.iter().any(|(&start, &len)| {
            addr >= start && (addr - start).is_multiple_of(4) && (addr - start) / 4 + floats <= len
        })
    }

    /// A buffer whose guard zones changed, if any: `(length, floats before the start
    /// written, floats after the end written)`.
    fn damaged(&self) -> Option<(usize, usize, usize)> {
        self.live.iter().find_map(|(&start, &len)| {
            let data = start as *const u32;
            // SAFETY: a live buffer's allocation spans GUARD floats either side of the
            // data (len.max(1) floats); the registry entry is removed before it is freed.
            let (before, after) = unsafe {
                let lo = std::slice::from_raw_parts(data.sub(GUARD), GUARD);
                let hi = std::slice::from_raw_parts(data.add(len.max(1)), GUARD);
                (
                    lo.iter().filter(|&&v| v != CANARY).count(),
                    hi.iter().filter(|&&v| v != CANARY).count(),
                )
            };
            (before + after > 0).then_some((len, before, after))
        })
    }
}

/// The engine behind an emulated [`CudaDevice`].
pub(crate) struct Emulator {
    library: &'static Library,
    order: ScheduleOrder,
    workers: c_int,
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("library", &self.library.path)
            .field("order", &self.order)
            .field("workers", &self.workers)
            .finish()
    }
}

fn emu_error(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Cuda, format!("CUDA emulator: {what}"))
}

impl Emulator {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `n` zeros (at least one float, as on the GPU side).
    pub(crate) fn alloc_zeros(&self, n: usize) -> HostBuffer {
        let total = 2 * GUARD + n.max(1);
        let mut v = vec![f32::from_bits(CANARY); total];
        v[GUARD..GUARD + n.max(1)].fill(0.0);
        let base = Box::into_raw(v.into_boxed_slice()) as *mut f32;
        let b = HostBuffer {
            base,
            len: n,
            registry: Arc::clone(&self.registry),
        };
        self.registry().live.insert(b.address() as usize, n);
        b
    }

    pub(crate) fn upload(&self, data: &[f32]) -> HostBuffer {
        let b = self.alloc_zeros(data.len());
        // SAFETY: the buffer holds data.len() floats.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), b.data(), data.len()) };
        b
    }

    pub(crate) fn download(&self, b: &HostBuffer, n: usize) -> Result<Vec<f32>> {
        if n > b.len {
            return Err(emu_error(format!(
                "copying {n} floats from a buffer of {}",
                b.len
            )));
        }
        let mut v = vec![0.0; n];
        // SAFETY: n <= len floats from the buffer's data.
        unsafe { std::ptr::copy_nonoverlapping(b.data(), v.as_mut_ptr(), n) };
        Ok(v)
    }

    pub(crate) fn copy(&self, b: &HostBuffer) -> HostBuffer {
        let out = self.alloc_zeros(b.len);
        // SAFETY: both hold b.len floats.
        unsafe { std::ptr::copy_nonoverlapping(b.data(), out.data(), b.len) };
        out
    }

    /// Runs kernel `name` to completion, with the checks of the module's documentation.
    pub(crate) fn launch(&self, l: &Launch<'_>) -> Result<()> {
        let name = l.name;
        let mut kinds = String::with_capacity(l.args.len());
        // Each argument in its own 8-byte slot; 4-byte ones in the low bytes, which is
        // where a little-endian read of an int or float finds them.
        let mut slots = vec![0u64; l.args.len()];
        {
            let reg = self.registry();
            for (i, (a, slot)) in l.args.iter().zip(&mut slots).enumerate() {
                let (k, bits) = match *a {
                    Arg::P(p) => {
                        if p != 0 && !reg.holds(p, 0) {
                            return Err(emu_error(format!(
                                "{name}: argument {i} ({p:#x}) points into no live buffer"
                            )));
                        }
                        ('P', p)
                    }
                    Arg::U(v) => ('U', v),
                    Arg::I(v) => ('I', v as u32 as u64),
                    Arg::F(v) => ('F', v.to_bits() as u64),
                };
                kinds.push(k);
                *slot = bits;
            }
        }
        let mut ptrs: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect();
        let c_name = CString::new(name).map_err(|_| emu_error("kernel name with NUL"))?;
        let c_kinds = CString::new(kinds).map_err(|_| emu_error("argument kinds"))?;
        let mut msg = vec![0u8; 1024];
        // SAFETY: the arguments are in slots that outlive the call, every pointer
        // argument addresses a live buffer (checked above), and the message buffer's
        // length is passed with it.
        let rc = unsafe {
            (self.library.launch)(
                c_name.as_ptr(),
                c_kinds.as_ptr(),
                ptrs.as_mut_ptr(),
                l.grid.0,
                l.grid.1,
                l.grid.2,
                l.block,
                l.shared_bytes,
                (self.order == ScheduleOrder::Descending) as c_int,
                self.workers,
                msg.as_mut_ptr() as *mut c_char,
                msg.len(),
            )
        };
        if rc != 0 {
            let end = msg.iter().position(|&b| b == 0).unwrap_or(msg.len());
            return Err(emu_error(String::from_utf8_lossy(&msg[..end])));
        }
        if let Some((len, before, after)) = self.registry().damaged() {
            return Err(emu_error(format!(
                "{name} wrote outside a buffer of {len} floats ({before} floats of the \
                 guard before it, {after} after it)"
            )));
        }
        Ok(())
    }

    /// cuBLAS's `sgemm` on host memory: column-major `C = alpha op(A) op(B) + beta C`,
    /// `C` being `m x n`; with `beta = 0`, `C` is not read. Operands must lie inside
    /// live buffers over their whole extent.
    pub(crate) fn sgemm(&self, g: &super::blas::ColMajorGemm) -> Result<()> {
        let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
        if m == 0 || n == 0 {
            return Ok(());
        }
        let (a_rows, a_cols) = if g.trans_a { (k, m) } else { (m, k) };
        let (b_rows, b_cols) = if g.trans_b { (n, k) } else { (k, n) };
        let check = |what: &str, p: u64, ld: i32, rows: usize, cols: usize| -> Result<()> {
            if (ld as usize) < rows.max(1) {
                return Err(emu_error(format!(
                    "sgemm: ld{what} = {ld} below the {rows} rows of {what}"
                )));
            }
            let extent = if cols == 0 {
                0
            } else {
                (cols - 1) * ld as usize + rows
            };
            if !self.registry().holds(p, extent) {
                return Err(emu_error(format!(
                    "sgemm: {what} ({rows} x {cols}, ld {ld}) does not fit in a live buffer \
                     from {p:#x}"
                )));
            }
            Ok(())
        };
        check("a", g.a, g.lda, a_rows, a_cols)?;
        check("b", g.b, g.ldb, b_rows, b_cols)?;
        check("c", g.c, g.ldc, m, n)?;
        // Column-major strides: element (i, j) of a stored matrix at i + j * ld.
        let strides = |trans: bool, ld: i32| {
            if trans {
                (ld as isize, 1isize)
            } else {
                (1isize, ld as isize)
            }
        };
        let (rsa, csa) = strides(g.trans_a, g.lda);
        let (rsb, csb) = strides(g.trans_b, g.ldb);
        // SAFETY: every operand's extent was checked against a live buffer above; c does
        // not overlap a or b in the predictor's calls (distinct buffers).
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                g.alpha,
                g.a as *const f32,
                rsa,
                csa,
                g.b as *const f32,
                rsb,
                csb,
                g.beta,
                g.c as *mut f32,
                1,
                g.ldc as isize,
            );
        }
        Ok(())
    }
}

/// A [`CudaDevice`] whose kernels run on the CPU (see the module's documentation),
/// threads scheduled in `order`. Errors when the kernels cannot be compiled for the
/// host (no C++ compiler).
pub fn emulated_device(order: ScheduleOrder) -> Result<Arc<CudaDevice>> {
    emulated_device_with(order, &kernels::program_source())
}

/// [`emulated_device`] running `program` in place of the kernels' sources: a changed
/// copy of [`kernels::program_source`], for showing that the checks catch a broken
/// kernel. Each program is compiled once per process.
pub fn emulated_device_with(order: ScheduleOrder, program: &str) -> Result<Arc<CudaDevice>> {
    let library = library(program)?;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().min(8))
        .unwrap_or(1) as c_int;
    Ok(Arc::new(CudaDevice::emulated(Emulator {
        library,
        order,
        workers,
        registry: Arc::new(Mutex::new(Registry::default())),
    })))
}

#[cfg(test)]
mod tests {
    use super::super::blas::ColMajorGemm;
    use super::super::DeviceBuffer;
    use super::*;

    fn device() -> Arc<CudaDevice> {
        emulated_device(ScheduleOrder::Ascending).unwrap_or_else(|e| panic!("{}", e.message()))
    }

    #[test]
    fn a_kernel_runs_and_its_result_comes_back() {
        let dev = device();
        let delta = dev.upload(&[-1.0, 0.0, 30.0, 2.0]).unwrap();
        let bias = dev.upload(&[0.5, -0.5]).unwrap();
        let args = [
            Arg::P(delta.address()),
            Arg::P(bias.address()),
            Arg::U(2),
            Arg::I(2),
        ];
        dev.launch("softplus_bias", (1, 1, 1), 256, 0, &args).unwrap();
        let got = dev.download(&delta, 4).unwrap();
        let softplus = |x: f32| if x > 20.0 { x } else { x.exp().ln_1p() };
        let want = [softplus(-0.5), softplus(-0.5), 30.5, softplus(1.5)];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn arguments_of_the_wrong_kind_or_outside_buffers_are_refused() {
        let dev = device();
        let delta = dev.alloc_zeros(4).unwrap();
        let bias = dev.alloc_zeros(2).unwrap();
        let p = |b: &DeviceBuffer| Arg::P(b.address());
        let refused = |shared_bytes: u32, args: &[Arg]| {
            dev.launch("softplus_bias", (1, 1, 1), 256, shared_bytes, args)
                .unwrap_err()
        };
        // An int where the kernel takes a 64-bit count.
        let err = refused(0, &[p(&delta), p(&bias), Arg::I(2), Arg::I(2)]);
        assert!(err.message().contains("kinds PPII, the kernel takes PPUI"), "{err}");
        // A pointer past the end of its buffer.
        let err = refused(
            0,
            &[Arg::P(delta.address() + 64), p(&bias), Arg::U(2), Arg::I(2)],
        );
        assert!(err.message().contains("points into no live buffer"), "{err}");
        // More dynamic shared memory than a kernel gets without opting in.
        let err = refused(64 * 1024, &[p(&delta), p(&bias), Arg::U(2), Arg::I(2)]);
        assert!(err.message().contains("48 KiB"), "{err}");
    }

    #[test]
    fn sgemm_is_column_major_and_checks_the_operands_extents() {
        let dev = device();
        // Column-major A (2 x 3) and B (3 x 2): C = A B.
        let a = dev.upload(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
        let b = dev.upload(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]).unwrap();
        let c = dev.upload(&[f32::NAN; 4]).unwrap();
        let mut g = ColMajorGemm {
            trans_a: false,
            trans_b: false,
            m: 2,
            n: 2,
            k: 3,
            alpha: 1.0,
            a: a.address(),
            lda: 2,
            b: b.address(),
            ldb: 3,
            beta: 0.0,
            c: c.address(),
            ldc: 2,
        };
        dev.sgemm(&g).unwrap();
        // beta = 0 does not read C's NaNs, as in cuBLAS.
        assert_eq!(dev.download(&c, 4).unwrap(), [4.0, 10.0, 2.0, 5.0]);
        // A leading dimension that reaches past A's buffer.
        g.lda = 3;
        let err = dev.sgemm(&g).unwrap_err();
        assert!(err.message().contains("does not fit in a live buffer"), "{err}");
    }
}
