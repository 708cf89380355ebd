//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! The library is never linked at build time (so `varad` builds anywhere) and never
//! downloaded. It is looked for, in this order, always as an absolute path:
//!
//! 1. an explicit path from the configuration;
//! 2. the `ORT_DYLIB_PATH` environment variable;
//! 3. the folder of this library's own file (`varad.dll` or `libvarad.so`), where an
//!    application or a package ships the two side by side;
//! 4. the project's setup folder (`.deps/venv`, where `make setup` installs the
//!    `onnxruntime` wheel from PyPI), as seen from the source tree this library was
//!    built from, when that tree's path means anything on this system;
//! 5. on Linux, the system library path: the directories in `LD_LIBRARY_PATH`, then the
//!    usual system directories. Never on Windows, where a library found by name can be
//!    the old `onnxruntime.dll` that Windows itself keeps in System32.
//!
//! A path given by 1 or 2 must work: when it does not, loading fails with an error naming
//! it, instead of quietly taking another library. ONNX Runtime allows one environment per
//! process, so the first successful load is kept for the life of the process and shared by
//! every backbone.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use once_cell::sync::OnceCell;
use parking_lot::Mutex;

use crate::{Error, ErrorKind, Result};

/// The oldest ONNX Runtime release this library works with (`ort`'s API level 17).
pub const MIN_VERSION: (u32, u32) = (1, 17);

/// The environment variable that names the ONNX Runtime library file.
pub const DYLIB_ENV_VAR: &str = "ORT_DYLIB_PATH";

/// Where a runtime library was found, in the search order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeSource {
    /// The path given in the configuration.
    Explicit,
    /// The `ORT_DYLIB_PATH` environment variable.
    EnvironmentVariable,
    /// The folder of this library's own file.
    ModuleFolder,
    /// The project's setup folder (`.deps/venv`).
    SetupFolder,
    /// A directory of the system library path.
    SystemPath,
}

/// The ONNX Runtime library this process loaded.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    /// Absolute path of the loaded library file.
    pub path: PathBuf,
    /// Its version string, e.g. `1.23.2`.
    pub version: String,
    /// How it was found.
    pub source: RuntimeSource,
}

/// The loaded runtime: its identity and the process's one ONNX Runtime environment.
pub struct Runtime {
    info: RuntimeInfo,
    environment: ort::environment::Environment,
}

impl Runtime {
    /// Which library file was loaded, its version, and how it was found.
    pub fn info(&self) -> &RuntimeInfo {
        &self.info
    }

    /// The shared ONNX Runtime environment sessions are created in.
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }

    /// Whether the loaded library carries the CUDA execution provider.
    pub fn has_cuda_provider(&self) -> bool {
        use ort::ep::ExecutionProvider;
        ort::ep::CUDA::is_available().unwrap_or(false)
    }
}

static RUNTIME: OnceCell<Runtime> = OnceCell::new();
static LOADING: Mutex<()> = Mutex::new(());

/// The runtime this process loaded, if any.
pub fn loaded() -> Option<&'static Runtime> {
    RUNTIME.get()
}

/// Loads ONNX Runtime (once per process) and returns it.
///
/// `explicit` is the path from the configuration, if any. Once a library is loaded, later
/// calls return it; a later call that names a different file explicitly is an error,
/// since a process can hold only one ONNX Runtime.
pub fn load(explicit: Option<&Path>) -> Result<&'static Runtime> {
    if let Some(runtime) = RUNTIME.get() {
        return check_same_library(runtime, explicit);
    }
    let _guard = LOADING.lock();
    if let Some(runtime) = RUNTIME.get() {
        return check_same_library(runtime, explicit);
    }
    let (path, source) = locate(explicit)?;
    let version = read_version(&path)?;
    let environment = ort::init_from(&path)
        .map_err(|e| Error::new(ErrorKind::RuntimeNotFound, e.to_string()))?
        .with_name("varad")
        .with_telemetry(false)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Runtime,
                format!(
                    "cannot create the ONNX Runtime environment from {}: {e}",
                    path.display()
                ),
            )
        })?;
    let info = RuntimeInfo {
        path,
        version,
        source,
    };
    log::info!(
        "loaded ONNX Runtime {} from {} ({:?})",
        info.version,
        info.path.display(),
        info.source
    );
    Ok(RUNTIME.get_or_init(|| Runtime { info, environment }))
}

fn check_same_library(
    runtime: &'static Runtime,
    explicit: Option<&Path>,
) -> Result<&'static Runtime> {
    let Some(wanted) = explicit else {
        return Ok(runtime);
    };
    let wanted = absolute(wanted);
    let same = match (wanted.canonicalize(), runtime.info.path.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => wanted == runtime.info.path,
    };
    if same {
        Ok(runtime)
    } else {
        Err(Error::new(
            ErrorKind::RuntimeNotFound,
            format!(
                "ONNX Runtime is already loaded in this process from {}; a process can hold only one, \
                 so {} cannot be loaded as well",
                runtime.info.path.display(),
                wanted.display()
            ),
        ))
    }
}

/// Finds the library file, in the documented order. A path named by the configuration or
/// the environment variable must exist; the other places are searched.
pub fn locate(explicit: Option<&Path>) -> Result<(PathBuf, RuntimeSource)> {
    if let Some(path) = explicit {
        return existing(path, RuntimeSource::Explicit, "the configured runtime path");
    }
    if let Some(value) = std::env::var_os(DYLIB_ENV_VAR).filter(|v| !v.is_empty()) {
        return existing(
            Path::new(&value),
            RuntimeSource::EnvironmentVariable,
            DYLIB_ENV_VAR,
        );
    }
    let candidates = crate::platform::own_module_dir()
        .into_iter()
        .map(|dir| (dir, RuntimeSource::ModuleFolder))
        .chain(
            setup_folder_dirs()
                .into_iter()
                .map(|dir| (dir, RuntimeSource::SetupFolder)),
        )
        .chain(
            crate::platform::system_library_dirs()
                .into_iter()
                .map(|dir| (dir, RuntimeSource::SystemPath)),
        );
    let mut searched = Vec::new();
    for (dir, source) in candidates {
        if let Some(file) = newest_library_in(&dir) {
            return Ok((file, source));
        }
        searched.push(dir);
    }
    let list: Vec<String> = searched.iter().map(|d| d.display().to_string()).collect();
    Err(Error::new(
        ErrorKind::RuntimeNotFound,
        format!(
            "ONNX Runtime {}.{} or newer was not found: no {} configured, {DYLIB_ENV_VAR} is not set, \
             and no {}* in {}. Run `make setup` (installs the onnxruntime wheel from PyPI into .deps/) \
             or set {DYLIB_ENV_VAR} to the library file",
            MIN_VERSION.0,
            MIN_VERSION.1,
            "runtime path",
            library_stem(),
            list.join(", ")
        ),
    ))
}

fn existing(path: &Path, source: RuntimeSource, what: &str) -> Result<(PathBuf, RuntimeSource)> {
    let path = absolute(path);
    if path.is_file() {
        Ok((path, source))
    } else {
        Err(Error::new(
            ErrorKind::RuntimeNotFound,
            format!(
                "{what} names {}, which is not a file (ONNX Runtime {}.{} or newer expected there)",
                path.display(),
                MIN_VERSION.0,
                MIN_VERSION.1
            ),
        ))
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `libonnxruntime.so` on Linux, the platform's equivalent elsewhere.
fn library_stem() -> String {
    format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The `onnxruntime/capi` folders of every Python in the setup venv (the wheel keeps
/// the library there, under its versioned name only). None when the source tree's path
/// is not absolute here (a library cross-built on Linux, running on Windows).
fn setup_folder_dirs() -> Vec<PathBuf> {
    let source_tree = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !source_tree.is_absolute() {
        return Vec::new();
    }
    let venv = source_tree.join(".deps/venv");
    let mut dirs = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python"))
            })
            .collect();
        pythons.sort();
        dirs.extend(
            pythons
                .into_iter()
                .map(|p| p.join("site-packages/onnxruntime/capi")),
        );
    }
    if dirs.is_empty() {
        dirs.push(venv.join("lib/python3/site-packages/onnxruntime/capi"));
    }
    dirs
}

/// The library file in `dir` with the highest version: the plain name, or a versioned
/// one (`libonnxruntime.so.1.23.2`), which is all a wheel ships.
fn newest_library_in(dir: &Path) -> Option<PathBuf> {
    let stem = library_stem();
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(&stem)?;
            let version = if rest.is_empty() {
                Vec::new()
            } else {
                parse_version(rest.strip_prefix('.')?)?
            };
            e.path().is_file().then(|| (version, e.path()))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, path)| path)
}

/// `1.23.2` -> `[1, 23, 2]`; anything else (a suffix such as `-dev`) -> None.
fn parse_version(text: &str) -> Option<Vec<u32>> {
    text.split('.').map(|part| part.parse().ok()).collect()
}

/// Opens the library just to ask its version, so a foreign or too-old file gets a clear
/// error before `ort` binds to it.
fn read_version(path: &Path) -> Result<String> {
    let not_runtime = |why: String| {
        Error::new(
            ErrorKind::RuntimeNotFound,
            format!(
                "{} is not a usable ONNX Runtime library: {why}",
                path.display()
            ),
        )
    };
    // SAFETY: loading a shared library runs its initialisers; the file is the one the
    // user or the search order named as ONNX Runtime, which `ort` would load anyway.
    let library =
        unsafe { libloading::Library::new(path) }.map_err(|e| not_runtime(e.to_string()))?;
    // SAFETY: the symbol's type is the one ONNX Runtime's C API declares.
    let get_api_base = unsafe {
        library.get::<unsafe extern "system" fn() -> *const ort::sys::OrtApiBase>(b"OrtGetApiBase")
    }
    .map_err(|_| not_runtime("it does not export OrtGetApiBase".into()))?;
    // SAFETY: OrtGetApiBase takes no arguments and returns a static table or null.
    let base = unsafe { get_api_base() };
    if base.is_null() {
        return Err(not_runtime("OrtGetApiBase returned null".into()));
    }
    // SAFETY: `base` is non-null and points at the library's static OrtApiBase; the
    // version string it returns is static and NUL-terminated.
    let version = unsafe { CStr::from_ptr(((*base).GetVersionString)()) }
        .to_string_lossy()
        .into_owned();
    let numbers = parse_version(&version).unwrap_or_default();
    let too_old = match numbers.as_slice() {
        [major, minor, ..] => (*major, *minor) < MIN_VERSION,
        _ => true,
    };
    if too_old {
        return Err(Error::new(
            ErrorKind::RuntimeNotFound,
            format!(
                "{} is ONNX Runtime {version}; varad needs {}.{} or newer",
                path.display(),
                MIN_VERSION.0,
                MIN_VERSION.1
            ),
        ));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("varad-runtime-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn picks_the_newest_versioned_library() {
        let dir = temp_dir("newest");
        let stem = library_stem();
        let providers = format!(
            "{}onnxruntime_providers_shared{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        for name in [
            format!("{stem}.1.9.0"),
            format!("{stem}.1.23.2"),
            format!("{stem}.1.19.0"),
            providers,
            format!("{stem}.1.30.0-dev"),
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let found = newest_library_in(&dir).unwrap();
        assert_eq!(
            found.file_name().unwrap().to_str(),
            Some(&*format!("{stem}.1.23.2"))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn explicit_path_that_is_missing_is_an_error_not_a_fallback() {
        let missing = temp_dir("missing").join(library_stem());
        let err = locate(Some(&missing)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeNotFound);
        assert!(err.message().contains(&*missing.to_string_lossy()), "{err}");
    }

    #[test]
    fn a_file_that_is_not_onnx_runtime_is_named_in_the_error() {
        let dir = temp_dir("foreign");
        let file = dir.join("libonnxruntime.so.1.20.0");
        std::fs::write(&file, b"not an ELF file").unwrap();
        let err = read_version(&file).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeNotFound);
        assert!(err.message().contains(file.to_str().unwrap()), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(parse_version("1.23.2"), Some(vec![1, 23, 2]));
        assert_eq!(parse_version("1.23.2-dev"), None);
        assert_eq!(parse_version(""), None);
    }
}
