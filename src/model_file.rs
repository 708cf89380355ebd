//! The model file (DESIGN.md, "The model file"): one safetensors file holding every
//! trainable tensor under stable names, and under the `varad` key of `__metadata__` a JSON
//! with the format version, the full configuration, the backbone's identity and the
//! calibration.
//!
//! Saving is atomic: the bytes go to a temporary file in the same folder, which is synced
//! and renamed over the target, so a crash leaves either the old file or the new one.
//! Loading checks everything and names every mismatch.
//!
//! Integrity: model files travel between machines (networks, USB sticks), and a flipped
//! bit in a weight changes every decision without any error. So the file records the
//! SHA-256 of every tensor's bytes (in the metadata JSON, `tensor_sha256`) and of the
//! metadata JSON itself (under a second `__metadata__` key, `varad.sha256`, since the JSON
//! cannot hold its own digest). Loading verifies both before anything in the file is
//! used, and refuses a mismatch with [`ErrorKind::ModelFile`] naming the tensor (or "the
//! metadata"). Then it validates what the scorer computes with: every tensor finite, the
//! variances and spreads it divides by at or above the floor the scorer uses
//! (`LevelStats::check`, [`NeighbourBank::check`]), the calibration consistent.
//!
//! Files of format 1 (varad 1.0) carry no checksums. They still load, since refusing them
//! would strand every model trained with 1.0, but unverified: a warning is logged (the
//! `log` facade; the C API's log callback receives it) saying so, and that saving the
//! model again adds the checksums. The semantic validation runs on them as on any file.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::digest::sha256_hex;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::config::MAX_BANK_TOKENS;
use crate::model::neighbours::NeighbourBank;
use crate::model::normal_stats::LevelStats;
use crate::model::{LevelParams, Model, NormalStats, Weights};
use crate::predictor::Predictor;
use crate::score::Calibration;
use crate::{Config, Device, Error, ErrorKind, Result};

/// The format this library writes, and the newest it reads.
///
/// 1: varad 1.0, no checksums (still read, unverified, with a warning). 2: the SHA-256
/// of every tensor and of the metadata. 3: the same layout; the calibration keeps its
/// normal scores by source, its extrapolation flags and known-defect scores, and the
/// configuration has the conformal calibration's settings (a 1.1 library, which reads up
/// to 2, then says the file is newer instead of naming an unknown field). Formats 1 and
/// 2 are read with the calibration rules they were written with. 4: a neighbour bank per
/// level (`neighbour_banks`, tensors `normal_stats.neighbours.{level}.tokens`) and the
/// configuration's bank selection and levels; a format 3 file's single bank
/// (`neighbours`, tensor `normal_stats.neighbours.tokens`) is still read. 5: the same
/// layout; the configuration has the neighbour search's `score.neighbour_probes` (a 1.3
/// library then says the file is newer instead of naming an unknown field; format 4 files
/// load with exact search, as they were calibrated).
pub const FORMAT_VERSION: u32 = 5;

/// The first format whose files carry checksums: files of this format or newer without
/// them are refused.
const CHECKSUMMED_FORMAT: u64 = 2;

/// The `__metadata__` key that holds the JSON.
const METADATA_KEY: &str = "varad";

/// The `__metadata__` key that holds the SHA-256 (lowercase hex) of the JSON's bytes.
const METADATA_SHA256_KEY: &str = "varad.sha256";

/// What the metadata JSON records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetadata {
    format_version: u32,
    library_version: String,
    config: Config,
    backbone: BackboneRecord,
    calibration: Option<Calibration>,
    /// Whether the `normal_stats.*` tensors are present. (Absent from files written before
    /// they existed: `false`.)
    #[serde(default)]
    normal_stats: bool,
    /// Format 3's nearest-neighbour bank beside the `normal_stats.neighbours.tokens`
    /// tensor, when the model had one. (Absent from files written before it existed, and
    /// never written from format 4 on: `neighbour_banks` holds every bank.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    neighbours: Option<NeighbourRecord>,
    /// The nearest-neighbour banks, in level order, each beside its
    /// `normal_stats.neighbours.{level}.tokens` tensor. (Absent from files written before
    /// format 4: none.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    neighbour_banks: Vec<NeighbourRecord>,
    /// The SHA-256 (lowercase hex) of every tensor's bytes, by tensor name. (Absent from
    /// format 1 files, written before checksums existed.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tensor_sha256: Option<BTreeMap<String, String>>,
}

/// What a neighbour bank is besides its tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NeighbourRecord {
    /// The level whose tokens the bank holds.
    level: usize,
    /// Tokens in the bank.
    tokens: usize,
    /// Mean squared nearest distance on normal images.
    mean: f32,
    /// Its standard deviation.
    std: f32,
}

/// Format 3's single neighbour bank's tensor.
const NEIGHBOUR_TOKENS_V3: &str = "normal_stats.neighbours.tokens";

/// The tensor of the neighbour bank on level `level`.
fn neighbour_tokens_name(level: usize) -> String {
    format!("normal_stats.neighbours.{level}.tokens")
}

impl FileMetadata {
    /// Every neighbour bank the file records, with its tensor's name: format 3's single
    /// one or format 4's list.
    fn banks(&self) -> Vec<(&NeighbourRecord, String)> {
        self.neighbours
            .iter()
            .map(|r| (r, NEIGHBOUR_TOKENS_V3.to_string()))
            .chain(
                self.neighbour_banks
                    .iter()
                    .map(|r| (r, neighbour_tokens_name(r.level))),
            )
            .collect()
    }
}

/// The backbone a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackboneRecord {
    name: String,
    sha256: String,
    /// Every output of the file, in order.
    outputs: Vec<String>,
    /// The levels the model uses: output name, channels, grid `(h, w)`.
    levels: Vec<(String, usize, (usize, usize))>,
}

/// What may differ when a model is loaded on another machine: where its files are and how
/// it runs. What it computes (the configuration and the backbone's bytes) may not.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The backbone file, if not where the configuration says; its SHA-256 must match.
    pub backbone: Option<PathBuf>,
    /// The ONNX Runtime library.
    pub runtime_path: Option<PathBuf>,
    /// The device.
    pub device: Option<Device>,
    /// Worker threads (0 = one per physical core).
    pub threads: Option<usize>,
}

fn tensor_names(h: usize) -> [String; 3] {
    [
        format!("adapters.{h}.weight"),
        format!("adapters.{h}.bias"),
        format!("bos.{h}"),
    ]
}

/// The tensors of level `h`'s normal-image statistics, with their shapes for `c` channels
/// on a `grid`: channel variances, the raw map's mean, the position means and spreads.
fn stats_tensors(h: usize, c: usize, grid: (usize, usize)) -> [(String, Vec<usize>); 4] {
    [
        (format!("normal_stats.{h}.channel_var"), vec![c]),
        (format!("normal_stats.{h}.level_mean"), vec![1]),
        (
            format!("normal_stats.{h}.position_mean"),
            vec![grid.0, grid.1],
        ),
        (
            format!("normal_stats.{h}.position_std"),
            vec![grid.0, grid.1],
        ),
    ]
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `model` to `path` atomically, in the current format (with checksums).
///
/// A model that loading would refuse (non-finite weights, say, from a training that
/// diverged) is not written: [`ErrorKind::ModelFile`] naming what. An empty path or one
/// naming a folder is [`ErrorKind::InvalidArgument`]; a failed write [`ErrorKind::Io`].
pub fn save(model: &Model, path: &Path) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (h, level) in model.weights().levels.iter().enumerate() {
        let c = level.channels;
        let [w, b, bos] = tensor_names(h);
        tensors.push((w, vec![c, c], le_bytes(&level.adapter_weight)));
        tensors.push((b, vec![c], le_bytes(&level.adapter_bias)));
        tensors.push((bos, vec![c], le_bytes(&level.bos)));
        for (name, shape, data) in level.predictor.tensors() {
            tensors.push((format!("predictors.{h}.{name}"), shape, le_bytes(data)));
        }
    }
    if let Some(stats) = model.normal_stats() {
        for (h, (level, layout)) in stats.levels.iter().zip(model.layout()).enumerate() {
            let values = [
                level.channel_var.clone(),
                vec![level.level_mean],
                level.position_mean.clone(),
                level.position_std.clone(),
            ];
            for ((name, shape), data) in stats_tensors(h, layout.channels, layout.grid)
                .into_iter()
                .zip(values)
            {
                tensors.push((name, shape, le_bytes(&data)));
            }
        }
    }
    let banks = model.normal_stats().map_or(&[][..], |s| &s.neighbours[..]);
    for bank in banks {
        tensors.push((
            neighbour_tokens_name(bank.level),
            vec![bank.len(), bank.dims],
            le_bytes(&bank.tokens),
        ));
    }
    let metadata = FileMetadata {
        format_version: FORMAT_VERSION,
        library_version: crate::VERSION.to_string(),
        config: model.config().clone(),
        backbone: record(model),
        calibration: model.calibration().cloned(),
        normal_stats: model.normal_stats().is_some(),
        neighbours: None,
        neighbour_banks: banks
            .iter()
            .map(|b| NeighbourRecord {
                level: b.level,
                tokens: b.len(),
                mean: b.mean,
                std: b.std,
            })
            .collect(),
        tensor_sha256: Some(
            tensors
                .iter()
                .map(|(name, _, data)| (name.clone(), sha256_hex(data)))
                .collect(),
        ),
    };
    let json = serde_json::to_string(&metadata).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot encode the model metadata: {e}"),
        )
    })?;
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|view| (name.as_str(), view))
                .map_err(|e| Error::new(ErrorKind::Internal, format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let json_sha256 = sha256_hex(json.as_bytes());
    let bytes = safetensors::tensor::serialize(
        views,
        Some(HashMap::from([
            (METADATA_KEY.to_string(), json),
            (METADATA_SHA256_KEY.to_string(), json_sha256),
        ])),
    )
    .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot encode the model: {e}")))?;
    let bytes = sorted_header(bytes)?;
    // Never write a file that loading would refuse (a model whose training diverged
    // holds non-finite weights): say so now, not on the machine that loads it.
    read_header(&bytes)
        .and_then(|(metadata, _)| extract_normal_stats(&bytes, &metadata))
        .map_err(|problems| {
            Error::new(
                ErrorKind::ModelFile,
                format!("the model cannot be saved, loading it would fail: {problems}"),
            )
        })?;
    write_atomically(path, &bytes)
}

/// `bytes` (a safetensors file) with its header's keys in sorted order: safetensors
/// writes `__metadata__` in a `HashMap`'s order, which differs from process to process,
/// and the same model must give the same bytes wherever it is saved. The header's content
/// and the data are unchanged.
fn sorted_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    type Header = BTreeMap<String, BTreeMap<String, serde_json::Value>>;
    let internal = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot encode the model's header: {e}"),
        )
    };
    let (n, _) = SafeTensors::read_metadata(&bytes).map_err(|e| internal(&e))?;
    let header: Header = serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| internal(&e))?;
    let mut text = serde_json::to_string(&header).map_err(|e| internal(&e))?;
    // The data stays 8-byte aligned, as safetensors pads it.
    text.push_str(&" ".repeat((8 - text.len() % 8) % 8));
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over `path` and
/// syncs the folder, so the rename itself survives a power cut.
///
/// The temporary file is `.<name>.<pid>.tmp` in `path`'s folder. A process killed while
/// saving leaves it behind; it never affects `path` (which holds the old or the new
/// model, whole), and the next save over the same name removes it once its process is
/// gone (see `remove_stale_temps`).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::invalid_argument("the path is empty"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        Error::invalid_argument(format!(
            "`{}` names a folder, not a file to write",
            path.display()
        ))
    })?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    remove_stale_temps(&dir, &name.to_string_lossy());
    let result = (|| {
        let mut file = std::fs::File::create(&temp).map_err(|e| Error::io(&temp, "create", &e))?;
        file.write_all(bytes)
            .map_err(|e| Error::io(&temp, "write", &e))?;
        file.sync_all().map_err(|e| Error::io(&temp, "sync", &e))?;
        drop(file);
        crate::platform::replace_file(&temp, path).map_err(|e| Error::io(path, "replace", &e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Removes the temporary files `.<name>.<pid>.tmp` in `dir` that a process killed while
/// saving over `name` left behind. Only files of processes that no longer exist are
/// removed: a live process (this one, or another saving the same path at this moment)
/// keeps its file. A pid reused by an unrelated process keeps the file too, until a later
/// save finds that pid gone; that errs on the side of keeping.
///
/// Best effort: a folder that cannot be listed, or a file that cannot be removed, is left
/// as it is and the save goes on, since a stale file only wastes space.
fn remove_stale_temps(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(pid) = file_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !crate::platform::process_exists(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn record(model: &Model) -> BackboneRecord {
    let identity = model.tokenizer().backbone().identity();
    BackboneRecord {
        name: identity.name.clone(),
        sha256: identity.sha256.clone(),
        outputs: identity.outputs.clone(),
        levels: model
            .layout()
            .iter()
            .map(|l| (l.name.clone(), l.channels, l.grid))
            .collect(),
    }
}

impl Model {
    /// Saves the model atomically (see [`save`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        save(self, path)
    }

    /// Loads a model file (see [`load`]).
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Model> {
        load(path, options)
    }
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::ModelFile, format!("{}: {what}", path.display()))
}

/// Channel counts beyond this are not a real backbone's; refusing them keeps the shape
/// arithmetic below far from overflow.
const MAX_CHANNELS: usize = 1 << 16;

/// Checks the file's tensor table (names, dtypes, shapes) against what its own metadata
/// implies, before anything is built from the metadata: a file that claims more than it
/// holds is refused without allocating for the claim (the table itself was checked
/// against the file's real size by the safetensors parser).
fn check_tensor_table(
    metadata: &FileMetadata,
    header: &safetensors::tensor::Metadata,
) -> std::result::Result<(), String> {
    let table = header.tensors();
    let mut problems = Vec::new();
    let mut expected = std::collections::BTreeSet::new();
    let mut expect = |name: String, shape: Vec<usize>, problems: &mut Vec<String>| {
        match table.get(&name) {
            None => problems.push(format!("{name} is missing")),
            Some(info) if info.dtype != Dtype::F32 => {
                problems.push(format!("{name} is {:?}; expected F32", info.dtype))
            }
            Some(info) if info.shape != shape => problems.push(format!(
                "{name} has shape {:?}, expected {shape:?}",
                info.shape
            )),
            Some(_) => {}
        }
        expected.insert(name);
    };
    for (h, (level, c, grid)) in metadata.backbone.levels.iter().enumerate() {
        let c = *c;
        if c == 0 || c > MAX_CHANNELS {
            problems.push(format!("level {h} (`{level}`) claims {c} channels"));
            continue;
        }
        if metadata.normal_stats {
            for (name, shape) in stats_tensors(h, c, *grid) {
                expect(name, shape, &mut problems);
            }
        }
        let [weight, bias, bos] = tensor_names(h);
        expect(weight, vec![c, c], &mut problems);
        expect(bias, vec![c], &mut problems);
        expect(bos, vec![c], &mut problems);
        let cfg = crate::model::predictor_config(&metadata.config, c);
        let shapes = crate::predictor::weights::LayerParams::<f32>::shapes(&cfg);
        for n in 0..metadata.config.n_layers {
            for (i, shape) in shapes.iter().enumerate() {
                let name = format!(
                    "predictors.{h}.{}",
                    crate::predictor::weights::full_name(n, i)
                );
                expect(name, shape.clone(), &mut problems);
            }
        }
    }
    if metadata.neighbours.is_some() && !metadata.neighbour_banks.is_empty() {
        problems.push("both a format 3 neighbour bank and format 4 ones".to_string());
    }
    let banks = metadata.banks();
    if banks.windows(2).any(|w| w[0].0.level >= w[1].0.level) {
        problems.push("neighbour banks not one per level in level order".to_string());
    }
    for (record, name) in banks {
        match metadata.backbone.levels.get(record.level) {
            _ if !metadata.normal_stats => {
                problems.push("a neighbour bank without the normal statistics".to_string())
            }
            Some(&(_, c, _)) if (1..=MAX_BANK_TOKENS).contains(&record.tokens) => {
                expect(name, vec![record.tokens, c], &mut problems)
            }
            Some(_) => problems.push(format!("a neighbour bank of {} tokens", record.tokens)),
            None => problems.push(format!(
                "a neighbour bank on level {} of {}",
                record.level,
                metadata.backbone.levels.len()
            )),
        }
    }
    let mut extra: Vec<&str> = table
        .keys()
        .map(String::as_str)
        .filter(|n| !expected.contains(*n))
        .collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        problems.push(format!("unexpected tensors {}", extra.join(", ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.sort();
        Err(problems.join("; "))
    }
}

/// What [`parse`] finds in a model file's bytes, before any backbone is opened.
pub struct ParsedModel {
    /// The stored configuration (validated).
    pub config: Config,
    /// The stored calibration, if the model was calibrated.
    pub calibration: Option<Calibration>,
    /// Every level's weights, finest first.
    pub weights: Weights,
    /// The normal-image statistics, when the file has them.
    pub normal_stats: Option<NormalStats>,
    /// Whether the file's checksums were verified: `false` for a format-1 file, which
    /// records none (see the module documentation).
    pub verified: bool,
}

/// Whether a file's checksums were verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Integrity {
    /// Every tensor and the metadata matched the SHA-256 recorded at save.
    Verified,
    /// A format-1 file: it records no checksums, so nothing could be verified.
    Unverified,
}

/// Reads the safetensors header and the metadata JSON, verifies the checksums (the
/// metadata's, then every tensor's; a format-1 file has none), then checks that every
/// tensor is finite, the format version, the configuration and the tensor table.
/// Nothing here depends on the backbone, and nothing is allocated for a size the file
/// merely claims. The error is the list of problems, without the path.
fn read_header(bytes: &[u8]) -> std::result::Result<(FileMetadata, Integrity), String> {
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let entries = header.metadata().as_ref();
    let json = entries
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| "no varad metadata: not a varad model file".to_string())?;
    let json_sha256 = entries.and_then(|m| m.get(METADATA_SHA256_KEY));
    if let Some(recorded) = json_sha256 {
        if sha256_hex(json.as_bytes()) != *recorded {
            return Err(format!(
                "the metadata does not match its SHA-256 recorded at save: {DAMAGED}"
            ));
        }
    }
    let version: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("the metadata is not JSON: {e}"))?;
    let checksummed = match version.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v > FORMAT_VERSION as u64 => {
            return Err(format!(
                "format version {v} was written by a newer varad; this library ({}) reads up to {FORMAT_VERSION}",
                crate::VERSION
            ))
        }
        Some(v) => v >= CHECKSUMMED_FORMAT,
        None => return Err("the metadata has no format_version".to_string()),
    };
    if checksummed && json_sha256.is_none() {
        return Err(format!(
            "the metadata's SHA-256 (`{METADATA_SHA256_KEY}`) is missing: {DAMAGED}"
        ));
    }
    // Nothing unverified rides along in a checksummed file.
    let unverified = entries
        .into_iter()
        .flat_map(|m| m.keys())
        .find(|k| *k != METADATA_KEY && *k != METADATA_SHA256_KEY);
    if let (true, Some(extra)) = (checksummed, unverified) {
        return Err(format!("unexpected metadata entry `{extra}`"));
    }
    let metadata: FileMetadata = serde_json::from_value(version)
        .map_err(|e| format!("the metadata does not match format {FORMAT_VERSION}: {e}"))?;
    let tensors =
        SafeTensors::deserialize(bytes).map_err(|e| format!("corrupt tensor data: {e}"))?;
    let integrity = match (&metadata.tensor_sha256, checksummed) {
        (Some(recorded), true) => {
            verify_tensors(&tensors, recorded)?;
            Integrity::Verified
        }
        (None, true) => {
            return Err(format!(
                "format {} records every tensor's SHA-256, but the metadata has none: {DAMAGED}",
                metadata.format_version
            ))
        }
        (Some(_), false) => {
            return Err(format!(
                "format {} records no checksums, yet the metadata has some",
                metadata.format_version
            ))
        }
        (None, false) => Integrity::Unverified,
    };
    check_finite(&tensors)?;
    metadata
        .config
        .validate()
        .map_err(|e| format!("the stored configuration is invalid: {}", e.message()))?;
    check_tensor_table(&metadata, &header)?;
    Ok((metadata, integrity))
}

/// What a checksum mismatch means to the person who gets the error.
const DAMAGED: &str =
    "the file was damaged after it was saved (copy it again from where it was saved)";

/// Checks every tensor's bytes against its recorded SHA-256, and that the file's tensors
/// and the recorded ones are the same set. Every mismatch is named.
fn verify_tensors(
    tensors: &SafeTensors<'_>,
    recorded: &BTreeMap<String, String>,
) -> std::result::Result<(), String> {
    let mut problems = Vec::new();
    let mut names = tensors.names();
    names.sort_unstable();
    for name in &names {
        match (recorded.get(*name), tensors.tensor(name)) {
            (None, _) => problems.push(format!("tensor {name} has no recorded SHA-256")),
            (Some(sha), Ok(view)) if sha256_hex(view.data()) == *sha => {}
            (Some(_), _) => problems.push(format!(
                "tensor {name} does not match its SHA-256 recorded at save"
            )),
        }
    }
    for name in recorded.keys() {
        if !names.contains(&name.as_str()) {
            problems.push(format!(
                "tensor {name} has a recorded SHA-256 but is not in the file"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {DAMAGED}", problems.join("; ")))
    }
}

/// Checks that every tensor holds finite values only (the file format is f32 throughout;
/// a dtype other than F32 is left to the table check, which names it).
fn check_finite(tensors: &SafeTensors<'_>) -> std::result::Result<(), String> {
    let mut problems: Vec<String> = tensors
        .iter()
        .filter(|(_, view)| view.dtype() == Dtype::F32)
        .filter_map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            values
                .enumerate()
                .find(|(_, v)| !v.is_finite())
                .map(|(i, v)| format!("{name} holds a non-finite value ({v}) at index {i}"))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        problems.sort();
        Err(problems.join("; "))
    }
}

/// Builds every level's weights from the tensors in `bytes`, one level per entry of
/// `channels` (finest first), with `config`'s predictor settings. Every missing,
/// mistyped, misshapen or unexpected tensor is named.
fn extract_weights(
    bytes: &[u8],
    config: &Config,
    channels: &[usize],
) -> std::result::Result<Weights, String> {
    let tensors =
        SafeTensors::deserialize(bytes).map_err(|e| format!("corrupt tensor data: {e}"))?;
    let mut problems = Vec::new();
    let mut expected = std::collections::BTreeSet::new();
    let fetch = |name: &str, problems: &mut Vec<String>| -> Option<(Vec<usize>, Vec<f32>)> {
        match tensors.tensor(name) {
            Err(_) => {
                problems.push(format!("{name} is missing"));
                None
            }
            Ok(view) if view.dtype() != Dtype::F32 => {
                problems.push(format!("{name} is {:?}; expected F32", view.dtype()));
                None
            }
            Ok(view) => Some((
                view.shape().to_vec(),
                view.data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )),
        }
    };
    let mut levels = Vec::new();
    for (h, &c) in channels.iter().enumerate() {
        let names = tensor_names(h);
        let mut small = Vec::new();
        for (name, shape) in names.iter().zip([vec![c, c], vec![c], vec![c]]) {
            expected.insert(name.clone());
            match fetch(name, &mut problems) {
                Some((s, data)) if s == shape => small.push(data),
                Some((s, _)) => {
                    problems.push(format!("{name} has shape {s:?}, expected {shape:?}"))
                }
                None => {}
            }
        }
        let prefix = format!("predictors.{h}.");
        let predictor =
            Predictor::from_tensors(crate::model::predictor_config(config, c), |name| {
                let full = format!("{prefix}{name}");
                tensors
                    .tensor(&full)
                    .ok()
                    .filter(|v| v.dtype() == Dtype::F32)
                    .map(|v| {
                        (
                            v.shape().to_vec(),
                            v.data()
                                .chunks_exact(4)
                                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                                .collect(),
                        )
                    })
            });
        for n in 0..config.n_layers {
            for i in 0..crate::predictor::NAMES.len() {
                expected.insert(format!(
                    "{prefix}{}",
                    crate::predictor::weights::full_name(n, i)
                ));
            }
        }
        match (predictor, small.len()) {
            (Ok(predictor), 3) => {
                let bos = small.pop().expect("three tensors");
                let bias = small.pop().expect("three tensors");
                let weight = small.pop().expect("three tensors");
                levels.push(LevelParams {
                    channels: c,
                    adapter_weight: weight,
                    adapter_bias: bias,
                    bos,
                    predictor,
                });
            }
            (Err(e), _) => problems.push(format!("level {h}: {}", e.message())),
            _ => {}
        }
    }
    // The statistics are read by `extract_normal_stats`; the table check already refused
    // any the metadata does not announce.
    let extra: Vec<&str> = tensors
        .names()
        .into_iter()
        .filter(|n| !expected.contains(*n) && !n.starts_with("normal_stats."))
        .collect();
    if !extra.is_empty() {
        problems.push(format!("unexpected tensors {}", extra.join(", ")));
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(problems.join("; "));
    }
    Ok(Weights { levels })
}

/// Reads the normal-image statistics of the metadata's levels when it announces them
/// (their table entries were checked by then).
fn extract_normal_stats(
    bytes: &[u8],
    metadata: &FileMetadata,
) -> std::result::Result<Option<NormalStats>, String> {
    if !metadata.normal_stats {
        return Ok(None);
    }
    let tensors =
        SafeTensors::deserialize(bytes).map_err(|e| format!("corrupt tensor data: {e}"))?;
    let read = |name: &str| -> std::result::Result<Vec<f32>, String> {
        let view = tensors
            .tensor(name)
            .map_err(|_| format!("{name} is missing"))?;
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let mut levels = Vec::new();
    for (h, (name, c, grid)) in metadata.backbone.levels.iter().enumerate() {
        let [(var, _), (mean, _), (pmean, _), (pstd, _)] = stats_tensors(h, *c, *grid);
        let stats = LevelStats {
            channel_var: read(&var)?,
            level_mean: read(&mean)?[0],
            position_mean: read(&pmean)?,
            position_std: read(&pstd)?,
        };
        // The check's message starts with the field, so this names the tensor.
        stats
            .check(*c, grid.0 * grid.1)
            .map_err(|e| format!("normal_stats.{h}.{} (level `{name}`)", e.message()))?;
        levels.push(stats);
    }
    let mut neighbours = Vec::new();
    for (record, name) in metadata.banks() {
        let bank = NeighbourBank {
            level: record.level,
            dims: metadata
                .backbone
                .levels
                .get(record.level)
                .map_or(0, |l| l.1),
            tokens: read(&name)?,
            mean: record.mean,
            std: record.std,
            index: Default::default(),
        };
        bank.check(levels.len(), bank.dims)
            .map_err(|e| format!("{name}: {}", e.message()))?;
        neighbours.push(bank);
    }
    Ok(Some(NormalStats { levels, neighbours }))
}

/// Parses a model file's bytes without opening its backbone: the safetensors header, the
/// metadata JSON, the tensor table checked against the metadata, and the tensors
/// themselves, for a backbone whose levels have `channels` channels (finest first).
///
/// This is the part of [`load`] that reads untrusted bytes, split out so it can be
/// fuzzed and tested without ONNX Runtime. [`load`] additionally checks the backbone's
/// SHA-256 and its levels' names and grids. Errors are [`ErrorKind::ModelFile`].
pub fn parse(bytes: &[u8], channels: &[usize]) -> Result<ParsedModel> {
    let err = |what: String| Error::new(ErrorKind::ModelFile, what);
    let (metadata, integrity) = read_header(bytes).map_err(err)?;
    let stored: Vec<usize> = metadata.backbone.levels.iter().map(|l| l.1).collect();
    if stored != channels {
        return Err(err(format!(
            "the model's levels have {stored:?} channels; the backbone's have {channels:?}"
        )));
    }
    let weights = extract_weights(bytes, &metadata.config, channels).map_err(err)?;
    let normal_stats = extract_normal_stats(bytes, &metadata).map_err(err)?;
    Ok(ParsedModel {
        config: metadata.config,
        calibration: metadata.calibration,
        weights,
        normal_stats,
        verified: integrity == Integrity::Verified,
    })
}

/// Refuses a path that names something other than a regular file (a folder, a device, a
/// pipe), which reading would fail on or never finish: an I/O problem with that path.
fn require_regular_file(path: &Path, what: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(Error::new(
            ErrorKind::Io,
            format!("cannot read {what} {}: not a regular file", path.display()),
        )),
        // A missing file is reported by the read that follows, with the system's reason.
        _ => Ok(()),
    }
}

/// Reads a model file, verifies its checksums, opens its backbone and checks that
/// everything matches (see the module documentation). A format-1 file (no checksums)
/// loads with a warning logged.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Model> {
    if path.as_os_str().is_empty() {
        return Err(Error::invalid_argument("the path is empty"));
    }
    require_regular_file(path, "the model file")?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read the model file", &e))?;
    let (metadata, integrity) = read_header(&bytes).map_err(|problems| bad(path, problems))?;
    if integrity == Integrity::Unverified {
        log::warn!(
            "{}: the model file carries no checksums (format {}, written before varad wrote them), so damage to it cannot be detected; saving the model again adds them",
            path.display(),
            metadata.format_version
        );
    }

    let mut config = metadata.config.clone();
    if let Some(backbone) = &options.backbone {
        config.backbone = backbone.clone();
    }
    if let Some(runtime) = &options.runtime_path {
        config.runtime_path = Some(runtime.clone());
    }
    if let Some(device) = options.device {
        config.device = device;
    }
    if let Some(threads) = options.threads {
        config.threads = threads;
    }
    // The options are settings too: checked before the backbone is read.
    config.validate()?;
    // A path read from a file may name a device or a pipe: only a regular file is read.
    require_regular_file(&config.backbone, "the backbone")?;
    let backbone_bytes = std::fs::read(&config.backbone)
        .map_err(|e| Error::io(&config.backbone, "read the backbone", &e))?;
    let sha = sha256_hex(&backbone_bytes);
    if sha != metadata.backbone.sha256 {
        return Err(bad(
            path,
            format!(
                "the model was trained on backbone `{}` with SHA-256 {}, but {} has SHA-256 {sha}: another backbone file",
                metadata.backbone.name,
                metadata.backbone.sha256,
                config.backbone.display()
            ),
        ));
    }
    let mut model = Model::new(config)?;
    let actual = record(&model);
    if actual != metadata.backbone {
        return Err(bad(
            path,
            format!(
                "the backbone's levels differ from the model's: file {:?}, now {:?}",
                metadata.backbone.levels, actual.levels
            ),
        ));
    }
    let channels: Vec<usize> = model.layout().iter().map(|l| l.channels).collect();
    let weights = extract_weights(&bytes, model.config(), &channels)
        .map_err(|problems| bad(path, problems))?;
    model.set_weights(weights)?;
    match extract_normal_stats(&bytes, &metadata).map_err(|problems| bad(path, problems))? {
        Some(stats) => model
            .set_normal_stats(stats)
            .map_err(|e| bad(path, e.message()))?,
        None => model.clear_normal_stats(),
    }
    if let Some(calibration) = metadata.calibration {
        model.set_calibration(calibration);
    }
    Ok(model)
}
