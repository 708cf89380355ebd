//! A backbone ONNX file opened in ONNX Runtime: validated against the contract, placed on
//! a device, and run on batches of preprocessed images.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use super::contract::BackboneSpec;
use super::runtime;
use super::session_pool::SessionPool;
use crate::digest::sha256_hex;
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
/// parallelises each run over its own intra-op threads, and each run has a session to
/// itself (the `ort` crate's `Session::run` takes `&mut self`) from a pool that every
/// backbone opened from the same bytes, device and thread count shares
/// ([`super::session_pool`]).
pub struct Backbone {
    spec: BackboneSpec,
    identity: BackboneIdentity,
    path: PathBuf,
    intra_threads: usize,
    sessions: Arc<SessionPool>,
}

impl std::fmt::Debug for Backbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backbone")
            .field("path", &self.path)
            .field("spec", &self.spec)
            .field("device", self.sessions.device())
            .field("intra_threads", &self.intra_threads)
            .finish_non_exhaustive()
    }
}

impl Backbone {
    /// Loads ONNX Runtime if needed, opens `path`, and checks it against the contract. The
    /// ONNX Runtime sessions are shared with every other open backbone of the same file
    /// bytes, device and intra-op threads. A file that is not an ONNX model is
    /// [`ErrorKind::BackboneContract`]; one that cannot be read, [`ErrorKind::Io`].
    pub fn open(path: &Path, options: &BackboneOptions) -> Result<Self> {
        let runtime = runtime::load(options.runtime_path.as_deref())?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read the backbone", &e))?;
        let sha256 = sha256_hex(&bytes);
        let intra_threads =
            match options.intra_threads {
                Some(0) => return Err(Error::config(
                    "intra_threads is 0; give a positive count, or none for one per physical core",
                )),
                Some(n) => n,
                None => crate::platform::physical_cores(),
            };
        let sessions = SessionPool::open(
            runtime,
            bytes,
            sha256.clone(),
            path,
            options.device,
            intra_threads,
        )?;
        let spec =
            BackboneSpec::from_graph(sessions.graph()).map_err(|e| e.context(path.display()))?;
        let identity = BackboneIdentity {
            name: spec.name.clone(),
            sha256,
            outputs: spec.levels.iter().map(|l| l.name.clone()).collect(),
        };
        Ok(Backbone {
            spec,
            identity,
            path: path.to_path_buf(),
            intra_threads,
            sessions,
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
        self.sessions.device()
    }

    /// ONNX Runtime's intra-op thread count for this session.
    pub fn intra_threads(&self) -> usize {
        self.intra_threads
    }

    /// Whether `self` and `other` run on the same ONNX Runtime sessions.
    #[cfg(any(test, feature = "internals"))]
    pub fn shares_sessions_with(&self, other: &Backbone) -> bool {
        Arc::ptr_eq(&self.sessions, &other.sessions)
    }

    /// ONNX Runtime sessions made for this backbone's pool so far.
    #[cfg(any(test, feature = "internals"))]
    pub fn sessions_opened(&self) -> usize {
        self.sessions.sessions()
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
        self.sessions.with_session(|session| {
            let outputs = session
                .run(ort::inputs![self.spec.input_name.as_str() => tensor])
                .map_err(|e| runtime_error(&format!("backbone `{}` failed", self.spec.name), e))?;
            self.feature_maps(&outputs, batch, height, width)
        })
    }

    /// Every level's map from one run's outputs, each checked against its declared stride.
    fn feature_maps(
        &self,
        outputs: &ort::session::SessionOutputs<'_>,
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<Vec<FeatureMap>> {
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
