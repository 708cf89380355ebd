//! ONNX Runtime sessions shared by every backbone opened from the same file bytes, on the
//! same device, with the same thread count: a process-wide registry of weak references,
//! so that eight models of one backbone (one per camera) hold one set of sessions, freed
//! with the last model that uses them.
//!
//! A set is a small pool rather than one session because the `ort` binding's
//! `Session::run` takes `&mut self` (its authors name execution-provider allocators and
//! statistics that are not thread-safe), so a run needs a session to itself. The pool
//! grows on demand up to one session per concurrent run that the cores can serve (the
//! physical cores divided by each run's intra-op threads, at least one); a run beyond
//! that waits for a session to come back. A session's working memory (ONNX Runtime's
//! arena, grown to a run's peak and kept) is most of its size, so the pool holds as few as
//! the concurrency that can use them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Weak};

use once_cell::sync::Lazy;
use ort::session::Session;
use parking_lot::{Condvar, Mutex};

use super::contract::{ElementType, GraphDescription, TensorSpec};
use super::onnx_file;
use super::runtime::Runtime;
use super::session::ActiveDevice;
use crate::{Device, Error, ErrorKind, Result};

/// What makes two opened backbones interchangeable: the same bytes, asked for on the
/// same device, with the same intra-op threads per run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    sha256: String,
    device: Device,
    intra_threads: usize,
}

/// Every live pool, by key. Entries whose pool is gone are pruned at the next open.
static REGISTRY: Lazy<Mutex<HashMap<SessionKey, Weak<SessionPool>>>> =
    Lazy::new(|| Mutex::new(HashMap::new()));

/// The sessions of one key, with what every backbone opened from them shares.
pub(crate) struct SessionPool {
    key: SessionKey,
    runtime: &'static Runtime,
    /// The file's bytes, for the sessions made later (none kept for a pool of one).
    bytes: Vec<u8>,
    /// Where the sessions run (resolved once, by the first session).
    device: ActiveDevice,
    /// What the graph declares (read from the first session).
    graph: GraphDescription,
    /// Most sessions this pool makes.
    capacity: usize,
    state: Mutex<PoolState>,
    /// Signalled when a session comes back.
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    /// Sessions made, idle or in use.
    created: usize,
    /// A session beyond the first failed to open: run with those there are.
    stop_growing: bool,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("key", &self.key)
            .field("device", &self.device)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SessionPool {
    /// The pool for `bytes` (whose SHA-256 is `sha256`, read from `path`) on `device`
    /// with `intra_threads`: the live one if any backbone holds it, else a new one with
    /// its first session open.
    pub(crate) fn open(
        runtime: &'static Runtime,
        bytes: Vec<u8>,
        sha256: String,
        path: &Path,
        device: Device,
        intra_threads: usize,
    ) -> Result<Arc<SessionPool>> {
        let key = SessionKey {
            sha256,
            device,
            intra_threads,
        };
        // Held while the first session opens, so two opens of one key make one pool.
        let mut registry = REGISTRY.lock();
        registry.retain(|_, pool| pool.strong_count() > 0);
        if let Some(pool) = registry.get(&key).and_then(Weak::upgrade) {
            return Ok(pool);
        }
        onnx_file::check(&bytes).map_err(|e| e.context(path.display()))?;
        let (session, device) = create_session(runtime, &bytes, path, device, intra_threads)?;
        let capacity = (crate::platform::physical_cores() / intra_threads).max(1);
        let pool = Arc::new(SessionPool {
            graph: describe(&session),
            key: key.clone(),
            runtime,
            bytes: if capacity > 1 { bytes } else { Vec::new() },
            device,
            capacity,
            state: Mutex::new(PoolState {
                idle: vec![session],
                created: 1,
                stop_growing: false,
            }),
            returned: Condvar::new(),
        });
        registry.insert(key, Arc::downgrade(&pool));
        Ok(pool)
    }

    /// Where the sessions run.
    pub(crate) fn device(&self) -> &ActiveDevice {
        &self.device
    }

    /// What the graph declares.
    pub(crate) fn graph(&self) -> &GraphDescription {
        &self.graph
    }

    /// Sessions made so far (idle or in use).
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn sessions(&self) -> usize {
        self.state.lock().created
    }

    /// Runs `f` with a session to itself: an idle one, a new one while the pool is below
    /// its capacity, else the first to come back. Waiting here never deadlocks: a lease is
    /// held only across one `f`, which takes no other lock and waits for nothing.
    pub(crate) fn with_session<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let mut lease = self.lease();
        f(lease.session.as_mut().expect("a lease holds its session"))
    }

    fn lease(&self) -> Lease<'_> {
        let mut state = self.state.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Lease {
                    pool: self,
                    session: Some(session),
                };
            }
            if state.created < self.capacity && !state.stop_growing {
                state.created += 1;
                drop(state);
                match self.new_session() {
                    Ok(session) => {
                        return Lease {
                            pool: self,
                            session: Some(session),
                        }
                    }
                    Err(reason) => {
                        log::warn!(
                            "backbone {}: no further ONNX Runtime session ({reason}); \
                             runs wait for the open ones",
                            self.key.sha256
                        );
                        state = self.state.lock();
                        state.created -= 1;
                        state.stop_growing = true;
                        continue;
                    }
                }
            }
            self.returned.wait(&mut state);
        }
    }

    /// One more session, on the device the first one resolved to.
    fn new_session(&self) -> std::result::Result<Session, OpenError> {
        let cuda_index = match self.device.active {
            Device::Cuda(i) => Some(i),
            _ => None,
        };
        build_session(
            self.runtime,
            &self.bytes,
            self.key.intra_threads,
            cuda_index,
        )
    }
}

/// A session taken from its pool, put back when dropped (also when a run panics).
struct Lease<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.state.lock().idle.push(session);
            self.pool.returned.notify_one();
        }
    }
}

/// Pools alive in this process (held by at least one backbone).
#[cfg(any(test, feature = "internals"))]
pub fn live_pools() -> usize {
    REGISTRY
        .lock()
        .values()
        .filter(|pool| pool.strong_count() > 0)
        .count()
}

/// Builds the session on the requested device. `Auto` tries CUDA only where the loaded
/// runtime has its provider, and records why it fell back; `ort` itself would fall back
/// silently, so CUDA is registered with `error_on_failure` and the error handled here.
fn create_session(
    runtime: &Runtime,
    bytes: &[u8],
    path: &Path,
    device: Device,
    intra_threads: usize,
) -> Result<(Session, ActiveDevice)> {
    let cuda_index = match device {
        Device::Cpu => None,
        Device::Cuda(i) => Some(i),
        Device::Auto => Some(0),
    };
    let mut fallback_reason = None;
    if let Some(index) = cuda_index {
        let attempt = if runtime.has_cuda_provider() {
            build_session(runtime, bytes, intra_threads, Some(index)).map_err(|e| e.message)
        } else {
            Err(format!(
                "the loaded ONNX Runtime ({} {}) has no CUDA execution provider",
                runtime.info().path.display(),
                runtime.info().version
            ))
        };
        match attempt {
            Ok(session) => {
                return Ok((
                    session,
                    ActiveDevice {
                        requested: device,
                        active: Device::Cuda(index),
                        fallback_reason: None,
                    },
                ))
            }
            Err(reason) if device == Device::Auto => {
                log::warn!(
                    "backbone {}: CUDA not used, running on the CPU: {reason}",
                    path.display()
                );
                fallback_reason = Some(reason);
            }
            Err(reason) => {
                return Err(Error::new(
                    ErrorKind::Cuda,
                    format!(
                        "{device} was requested for backbone {}: {reason}",
                        path.display()
                    ),
                ))
            }
        }
    }
    let session = build_session(runtime, bytes, intra_threads, None).map_err(|e| {
        if e.invalid_model {
            Error::new(
                ErrorKind::BackboneContract,
                format!("{}: not a valid ONNX model: {}", path.display(), e.message),
            )
        } else {
            Error::new(
                ErrorKind::Runtime,
                format!("cannot open backbone {}: {}", path.display(), e.message),
            )
        }
    })?;
    Ok((
        session,
        ActiveDevice {
            requested: device,
            active: Device::Cpu,
            fallback_reason,
        },
    ))
}

/// One session's builder. Its intra-op threads do not spin-wait for more work after a
/// run: the predictor runs next on the same cores, and on 2 cores ONNX Runtime's spinning
/// workers took about a quarter of its time, while the backbone's own time did not change
/// (docs/performance.md, "Kernel choices"). ONNX Runtime's CPU memory arena and memory
/// pattern stay on: without the arena a session holds less between runs, but every run
/// then faults its activations in afresh and the backbone is slower (docs/performance.md,
/// "Memory per camera"); sharing the sessions is what bounds the memory.
fn build_session(
    runtime: &Runtime,
    bytes: &[u8],
    intra_threads: usize,
    cuda_index: Option<u32>,
) -> std::result::Result<Session, OpenError> {
    let mut builder = Session::builder(runtime.environment())
        .map_err(OpenError::other)?
        .with_intra_threads(intra_threads)
        .map_err(OpenError::other)?
        .with_intra_op_spinning(false)
        .map_err(OpenError::other)?;
    if let Some(index) = cuda_index {
        let cuda = ort::ep::CUDA::default()
            .with_device_id(index as i32)
            .build()
            .error_on_failure();
        builder = builder
            .with_execution_providers([cuda])
            .map_err(OpenError::other)?;
    }
    builder.commit_from_memory(bytes).map_err(|e| OpenError {
        invalid_model: e.code() == ort::error::ErrorCode::InvalidProtobuf,
        message: e.to_string(),
    })
}

/// Why a session did not open.
#[derive(Debug)]
struct OpenError {
    message: String,
    /// ONNX Runtime found no valid model in the bytes (past the top-level check of
    /// [`super::onnx_file`]: a damaged file).
    invalid_model: bool,
}

impl OpenError {
    fn other(e: impl std::fmt::Display) -> Self {
        OpenError {
            message: e.to_string(),
            invalid_model: false,
        }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn describe(session: &Session) -> GraphDescription {
    let spec = |outlet: &ort::value::Outlet| {
        let (element, shape) = match outlet.dtype() {
            ort::value::ValueType::Tensor { ty, shape, .. } => {
                let element = if *ty == ort::value::TensorElementType::Float32 {
                    ElementType::F32
                } else {
                    ElementType::Other(format!("{ty:?}"))
                };
                (Some(element), shape.iter().copied().collect())
            }
            _ => (None, Vec::new()),
        };
        TensorSpec {
            name: outlet.name().to_string(),
            element,
            shape,
        }
    };
    let metadata = session
        .metadata()
        .ok()
        .map(|meta| {
            meta.custom_keys()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|key| meta.custom(&key).map(|value| (key, value)))
                .collect()
        })
        .unwrap_or_default();
    GraphDescription {
        inputs: session.inputs().iter().map(spec).collect(),
        outputs: session.outputs().iter().map(spec).collect(),
        metadata,
    }
}
