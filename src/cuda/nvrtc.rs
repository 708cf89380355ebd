//! NVRTC, loaded with `dlopen` by this module (not through cudarc) so that it can come
//! from an explicit path: a pip wheel (`nvidia-cuda-nvrtc`) is not on the loader's
//! search path, and NVRTC needs no driver, which is what lets the kernels be
//! compile-checked on machines without a GPU.
//!
//! Search order of [`load`]: `VARAD_NVRTC_PATH` (the library file, or a folder holding
//! it), then the loader's usual search for the CUDA 13 and 12 sonames, then
//! `$CUDA_HOME`/`$CUDA_PATH` and `/usr/local/cuda`.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{Error, ErrorKind, Result};

type NvrtcProgram = *mut std::ffi::c_void;
type NvrtcResult = c_int;
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult;
type CreateFn = unsafe extern "C" fn(
    *mut NvrtcProgram,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> NvrtcResult;
type CompileFn = unsafe extern "C" fn(NvrtcProgram, c_int, *const *const c_char) -> NvrtcResult;
type SizeFn = unsafe extern "C" fn(NvrtcProgram, *mut usize) -> NvrtcResult;
type GetFn = unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> NvrtcResult;
type DestroyFn = unsafe extern "C" fn(*mut NvrtcProgram) -> NvrtcResult;

/// File names NVRTC goes by, newest first.
#[cfg(not(windows))]
const NAMES: [&str; 3] = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];
#[cfg(windows)]
const NAMES: [&str; 2] = ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll"];

/// A loaded NVRTC library.
pub struct Nvrtc {
    lib: libloading::Library,
    // NVRTC opens its builtins library by soname when it compiles; loaded here first
    // from NVRTC's own folder, the loader finds it already in the process (a wheel's
    // folder is on no search path).
    _builtins: Option<libloading::Library>,
    /// Where it was loaded from (a path, or a soname the loader resolved).
    pub origin: String,
    /// `(major, minor)` as `nvrtcVersion` reports it.
    pub version: (i32, i32),
}

impl std::fmt::Debug for Nvrtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvrtc")
            .field("origin", &self.origin)
            .field("version", &self.version)
            .finish()
    }
}

/// Where [`load`] looks, in order.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("VARAD_NVRTC_PATH") {
        let p = PathBuf::from(p);
        if p.is_dir() {
            out.extend(NAMES.iter().map(|n| p.join(n)));
        } else {
            out.push(p);
        }
    }
    out.extend(NAMES.iter().map(PathBuf::from));
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = std::env::var_os(var) {
            for sub in ["lib64", "lib", "bin"] {
                out.extend(NAMES.iter().map(|n| Path::new(&root).join(sub).join(n)));
            }
        }
    }
    out.extend(
        NAMES
            .iter()
            .map(|n| Path::new("/usr/local/cuda/lib64").join(n)),
    );
    out
}

/// The process-wide NVRTC, loaded on first use; the error says everywhere it looked.
pub fn load() -> Result<&'static Nvrtc> {
    static NVRTC: OnceLock<std::result::Result<Nvrtc, String>> = OnceLock::new();
    NVRTC
        .get_or_init(|| {
            let mut tried = Vec::new();
            for c in candidates() {
                match Nvrtc::open(&c) {
                    Ok(n) => return Ok(n),
                    Err(e) => tried.push(format!("{}: {}", c.display(), e.message())),
                }
            }
            Err(format!(
                "NVRTC (the CUDA runtime compiler) was not found; set VARAD_NVRTC_PATH to \
                 libnvrtc. Tried: {}",
                tried.join("; ")
            ))
        })
        .as_ref()
        .map_err(|m| Error::new(ErrorKind::Cuda, m.clone()))
}

/// Looks up `name` (NUL-terminated) in `lib`.
///
/// # Safety
/// `T` must be the symbol's C signature.
unsafe fn sym<'l, T>(
    lib: &'l libloading::Library,
    name: &[u8],
) -> std::result::Result<libloading::Symbol<'l, T>, String> {
    // SAFETY: the caller states the type.
    unsafe { lib.get(name) }.map_err(|e| {
        format!(
            "NVRTC lacks {}: {e}",
            String::from_utf8_lossy(&name[..name.len() - 1])
        )
    })
}

impl Nvrtc {
    /// Loads NVRTC from `path` (a file path, or a bare name for the loader to resolve).
    pub fn open(path: &Path) -> Result<Nvrtc> {
        // SAFETY: loading NVRTC runs only its own initialisers, which have no
        // preconditions.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| Error::new(ErrorKind::Cuda, e.to_string()))?;
        let mut v = (0, 0);
        {
            // SAFETY: NVRTC's signature of nvrtcVersion.
            let version = unsafe { sym::<VersionFn>(&lib, b"nvrtcVersion\0") }
                .map_err(|m| Error::new(ErrorKind::Cuda, m))?;
            // SAFETY: two valid out-pointers.
            let rc = unsafe { version(&mut v.0, &mut v.1) };
            if rc != 0 {
                return Err(Error::new(
                    ErrorKind::Cuda,
                    format!("nvrtcVersion failed with code {rc}"),
                ));
            }
        }
        let builtins = path.parent().and_then(|dir| {
            let name = format!("libnvrtc-builtins.so.{}.{}", v.0, v.1);
            let file = dir.join(name);
            // SAFETY: NVRTC's own companion library; its initialisers have no
            // preconditions.
            file.is_file()
                .then(|| unsafe { libloading::Library::new(&file) }.ok())
                .flatten()
        });
        Ok(Nvrtc {
            lib,
            _builtins: builtins,
            origin: path.display().to_string(),
            version: v,
        })
    }

    fn error_string(&self, rc: NvrtcResult) -> String {
        let f: std::result::Result<libloading::Symbol<unsafe extern "C" fn(NvrtcResult) -> *const c_char>, _> =
            // SAFETY: NVRTC's signature of nvrtcGetErrorString.
            unsafe { self.lib.get(b"nvrtcGetErrorString\0") };
        match f {
            // SAFETY: returns a static C string for any code.
            Ok(f) => unsafe { CStr::from_ptr(f(rc)) }
                .to_string_lossy()
                .into_owned(),
            Err(_) => format!("NVRTC error {rc}"),
        }
    }

    /// Compiles `src` to PTX with `options`. On failure, the error is NVRTC's message and
    /// its compile log (the compiler's diagnostics, with file and line).
    pub fn compile(
        &self,
        src: &str,
        name: &str,
        options: &[String],
    ) -> std::result::Result<String, String> {
        let bytes = self.compile_to(src, name, options, false)?;
        String::from_utf8(bytes).map_err(|_| "NVRTC's PTX is not UTF-8".to_string())
    }

    /// Compiles `src` to machine code (a cubin) for a real architecture given in
    /// `options` (`--gpu-architecture=sm_90`): NVRTC then runs the PTX assembler too,
    /// which catches what PTX alone does not (resource limits), still without a driver.
    pub fn compile_cubin(
        &self,
        src: &str,
        name: &str,
        options: &[String],
    ) -> std::result::Result<Vec<u8>, String> {
        self.compile_to(src, name, options, true)
    }

    fn compile_to(
        &self,
        src: &str,
        name: &str,
        options: &[String],
        cubin: bool,
    ) -> std::result::Result<Vec<u8>, String> {
        // SAFETY: NVRTC's documented signature.
        let create = unsafe { sym::<CreateFn>(&self.lib, b"nvrtcCreateProgram\0") }?;
        // SAFETY: NVRTC's documented signature.
        let compile = unsafe { sym::<CompileFn>(&self.lib, b"nvrtcCompileProgram\0") }?;
        // SAFETY: NVRTC's documented signature.
        let log_size = unsafe { sym::<SizeFn>(&self.lib, b"nvrtcGetProgramLogSize\0") }?;
        // SAFETY: NVRTC's documented signature.
        let get_log = unsafe { sym::<GetFn>(&self.lib, b"nvrtcGetProgramLog\0") }?;
        let (size_name, get_name): (&[u8], &[u8]) = if cubin {
            (b"nvrtcGetCUBINSize\0", b"nvrtcGetCUBIN\0")
        } else {
            (b"nvrtcGetPTXSize\0", b"nvrtcGetPTX\0")
        };
        // SAFETY: NVRTC's documented signature (the same for PTX and CUBIN).
        let ptx_size = unsafe { sym::<SizeFn>(&self.lib, size_name) }?;
        // SAFETY: as above.
        let get_ptx = unsafe { sym::<GetFn>(&self.lib, get_name) }?;
        // SAFETY: NVRTC's documented signature.
        let destroy = unsafe { sym::<DestroyFn>(&self.lib, b"nvrtcDestroyProgram\0") }?;
        let csrc = CString::new(src).map_err(|_| "kernel source holds a NUL byte".to_string())?;
        let cname = CString::new(name).map_err(|_| "program name holds a NUL byte".to_string())?;
        let copts: Vec<CString> = options
            .iter()
            .map(|o| CString::new(o.as_str()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| "an NVRTC option holds a NUL byte".to_string())?;
        let opt_ptrs: Vec<*const c_char> = copts.iter().map(|c| c.as_ptr()).collect();
        let mut prog: NvrtcProgram = std::ptr::null_mut();
        // SAFETY: valid C strings that outlive the program; no headers.
        let rc = unsafe {
            create(
                &mut prog,
                csrc.as_ptr(),
                cname.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(format!("nvrtcCreateProgram: {}", self.error_string(rc)));
        }
        // SAFETY: `prog` is a live program; the option pointers outlive the call.
        let rc = unsafe { compile(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr()) };
        let log = {
            let mut n = 0usize;
            // SAFETY: live program; the buffer has the size NVRTC asked for.
            unsafe {
                if log_size(prog, &mut n) == 0 && n > 1 {
                    let mut buf = vec![0u8; n];
                    get_log(prog, buf.as_mut_ptr().cast());
                    String::from_utf8_lossy(&buf[..n - 1]).into_owned()
                } else {
                    String::new()
                }
            }
        };
        let result = if rc != 0 {
            Err(format!(
                "nvrtcCompileProgram: {} (options {options:?})\n{log}",
                self.error_string(rc)
            ))
        } else {
            let mut n = 0usize;
            // SAFETY: live, compiled program; the buffer has the size NVRTC asked for.
            unsafe {
                let rc = ptx_size(prog, &mut n);
                if rc != 0 {
                    Err(format!(
                        "getting the output size: {}",
                        self.error_string(rc)
                    ))
                } else {
                    let mut buf = vec![0u8; n];
                    let rc = get_ptx(prog, buf.as_mut_ptr().cast());
                    if rc != 0 {
                        Err(format!("getting the output: {}", self.error_string(rc)))
                    } else {
                        if !cubin {
                            // PTX is NUL-terminated text.
                            buf.truncate(n.saturating_sub(1));
                        }
                        Ok(buf)
                    }
                }
            }
        };
        // SAFETY: destroys the program created above, once.
        unsafe { destroy(&mut prog) };
        result
    }
}
