//! A backbone ONNX file opened in ONNX Runtime: validated against the contract, placed on
//! a device, and run on batches of preprocessed images.

use std::path::{Path, PathBuf};

use ort::session::Session;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::contract::{BackboneSpec, ElementType, GraphDescription, TensorSpec};
use super::runtime;
use crate::{Device, Error, ErrorKind, Result};

/// How to open a backbone.
#[derive(Debug, Clone, Default)]
pub struct BackboneOptions {
    /// The ONNX Runtime library file; `None` searches (see [`runtime`]).
    pub runtime_path: Option<PathBuf>,
    /// Where the backbone runs. Default: [`Device::Auto`].
    pub device: Device,
    /// ONNX Runtime intra-op threads; `None` = the number of physical cores.
    pub intra_threads: Option<usize>,
}

/// The device a backbone actually runs on, and why, when that is not what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveDevice {
    /// What the options asked for.
    pub requested: Device,
    /// What the session uses: [`Device::Cpu`] or [`Device::Cuda`].
    pub active: Device,
    /// Why `Auto` ended on the CPU, if it did.
    pub fallback_reason: Option<String>,
}

/// What identifies a backbone in a model file: its bytes and what it outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackboneIdentity {
    /// `varad.name`.
    pub name: String,
    /// SHA-256 of the ONNX file, lowercase hex.
    pub sha256: String,
    /// Output names, finest first.
    pub outputs: Vec<String>,
}

/// One level of features for a batch: `[batch, channels, height, width]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    /// Images in the batch.
    pub batch: usize,
    /// Channels `C_h`.
    pub channels: usize,
    /// Grid rows.
    pub height: usize,
    /// Grid columns.
    pub width: usize,
    /// `batch * channels * height * width` values.
    pub data: Vec<f32>,
}

impl FeatureMap {
    /// The `[channels, height, width]` block of image `index` in the batch.
    pub fn image(&self, index: usize) -> &[f32] {
        let len = self.channels * self.height * self.width;
        &self.data[index * len..(index + 1) * len]
    }
}

/// An opened, validated backbone. `run` may be called from many threads: ONNX Runtime
/// parallelises each run over its own intra-op threads, and runs are serialised on the
/// session (the `ort` crate's `Session::run` takes `&mut self`).
pub struct Backbone {
    spec: BackboneSpec,
    identity: BackboneIdentity,
    path: PathBuf,
    device: ActiveDevice,
    intra_threads: usize,
    session: Mutex<Session>,
}

impl std::fmt::Debug for Backbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backbone")
            .field("path", &self.path)
            .field("spec", &self.spec)
            .field("device", &self.device)
            .field("intra_threads", &self.intra_threads)
            .finish_non_exhaustive()
    }
}

impl Backbone {
    /// Loads ONNX Runtime if needed, opens `path`, and checks it against the contract.
    pub fn open(path: &Path, options: &BackboneOptions) -> Result<Self> {
        let runtime = runtime::load(options.runtime_path.as_deref())?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read the backbone", &e))?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let intra_threads =
            match options.intra_threads {
                Some(0) => return Err(Error::config(
                    "intra_threads is 0; give a positive count, or none for one per physical core",
                )),
                Some(n) => n,
                None => crate::threads::physical_cores(),
            };
        let (session, device) =
            create_session(runtime, &bytes, path, options.device, intra_threads)?;
        let graph = describe(&session);
        let spec = BackboneSpec::from_graph(&graph).map_err(|e| e.context(path.display()))?;
        let identity = BackboneIdentity {
            name: spec.name.clone(),
            sha256,
            outputs: spec.levels.iter().map(|l| l.name.clone()).collect(),
        };
        Ok(Backbone {
            spec,
            identity,
            path: path.to_path_buf(),
            device,
            intra_threads,
            session: Mutex::new(session),
        })
    }

    /// What the file declares: name, input rules, output levels.
    pub fn spec(&self) -> &BackboneSpec {
        &self.spec
    }

    /// The file's hash and outputs, as a model file records them.
    pub fn identity(&self) -> &BackboneIdentity {
        &self.identity
    }

    /// The file this backbone was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device the session runs on.
    pub fn device(&self) -> &ActiveDevice {
        &self.device
    }

    /// ONNX Runtime's intra-op thread count for this session.
    pub fn intra_threads(&self) -> usize {
        self.intra_threads
    }

    /// Runs a batch: `input` is `[batch, 3, height, width]` f32 RGB in [0, 1]. Returns one
    /// map per output level, finest first, each checked against the declared stride.
    pub fn run(
        &self,
        input: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<Vec<FeatureMap>> {
        self.spec.check_input_size(width, height)?;
        let expected = batch
            .checked_mul(3 * height)
            .and_then(|v| v.checked_mul(width))
            .filter(|&n| n > 0);
        if expected != Some(input.len()) {
            return Err(Error::invalid_argument(format!(
                "backbone input holds {} values; batch {batch} x 3 x {height} x {width} needs {}",
                input.len(),
                expected.map_or("more than fits in memory".into(), |n| n.to_string())
            )));
        }
        let shape = [batch as i64, 3, height as i64, width as i64];
        let tensor = ort::value::TensorRef::from_array_view((shape, input))
            .map_err(|e| runtime_error("cannot wrap the input", e))?;
        let mut session = self.session.lock();
        let outputs = session
            .run(ort::inputs![self.spec.input_name.as_str() => tensor])
            .map_err(|e| runtime_error(&format!("backbone `{}` failed", self.spec.name), e))?;
        let mut maps = Vec::with_capacity(self.spec.levels.len());
        for level in &self.spec.levels {
            let value = outputs.get(&level.name).ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("output `{}` missing after a run", level.name),
                )
            })?;
            let (out_shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| runtime_error(&format!("output `{}`", level.name), e))?;
            let dims: Vec<i64> = out_shape.iter().copied().collect();
            let want = [height / level.stride, width / level.stride];
            let ok = dims.len() == 4
                && dims[0] == batch as i64
                && dims[1] > 0
                && dims[2] == want[0] as i64
                && dims[3] == want[1] as i64;
            if !ok {
                return Err(Error::new(
                    ErrorKind::BackboneContract,
                    format!(
                        "{}: output `{}` has shape {dims:?} for a {batch}x3x{height}x{width} input; \
                         its declared stride {} means [{batch}, C, {}, {}]",
                        self.path.display(),
                        level.name,
                        level.stride,
                        want[0],
                        want[1]
                    ),
                ));
            }
            maps.push(FeatureMap {
                batch,
                channels: dims[1] as usize,
                height: want[0],
                width: want[1],
                data: data.to_vec(),
            });
        }
        Ok(maps)
    }
}

fn runtime_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Runtime, format!("{what}: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the session on the requested device. `Auto` tries CUDA only where the loaded
/// runtime has its provider, and records why it fell back; `ort` itself would fall back
/// silently, so CUDA is registered with `error_on_failure` and the error handled here.
fn create_session(
    runtime: &runtime::Runtime,
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
            build_session(runtime, bytes, intra_threads, Some(index))
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
    let session = build_session(runtime, bytes, intra_threads, None).map_err(|reason| {
        Error::new(
            ErrorKind::Runtime,
            format!("cannot open backbone {}: {reason}", path.display()),
        )
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
/// (docs/performance.md, "Kernel choices").
fn build_session(
    runtime: &runtime::Runtime,
    bytes: &[u8],
    intra_threads: usize,
    cuda_index: Option<u32>,
) -> std::result::Result<Session, String> {
    let mut builder = Session::builder(runtime.environment())
        .map_err(|e| e.to_string())?
        .with_intra_threads(intra_threads)
        .map_err(|e| e.to_string())?
        .with_intra_op_spinning(false)
        .map_err(|e| e.to_string())?;
    if let Some(index) = cuda_index {
        let cuda = ort::ep::CUDA::default()
            .with_device_id(index as i32)
            .build()
            .error_on_failure();
        builder = builder
            .with_execution_providers([cuda])
            .map_err(|e| e.to_string())?;
    }
    builder.commit_from_memory(bytes).map_err(|e| e.to_string())
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
