//! The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (libFuzzer, through
//! cargo-fuzz) and by `tests/fuzz_corpus.rs` (the seed corpus and regressions run as a
//! plain `cargo test`, so CI exercises every body without a nightly-flag build).
//!
//! Each body takes raw bytes and panics only when the library breaks its promise: a
//! status for every bad input, never a crash, an out-of-bounds read or a bad result.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;
use std::ptr;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};

use varad::backbone::contract::{ElementType, GraphDescription, TensorSpec};
use varad::backbone::BackboneSpec;
use varad::ffi::*;
use varad::image::{to_backbone_input, ImageLimits, ImageView, InputSpec, PixelFormat, ResizeMode};

/// The tiny ViT's levels' channel counts (`tests/data/tiny_vit.onnx`, all outputs), the
/// layout the model-file seed was saved with.
pub const TINY_CHANNELS: [usize; 3] = [32, 32, 32];

/// The committed tiny ViT backbone. This file is compiled into the root tests (manifest
/// at the repository root) and into the fuzz crate (manifest in `fuzz/`).
pub fn tiny_backbone() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = manifest.join("tests/data/tiny_vit.onnx");
    if here.is_file() {
        here
    } else {
        manifest.join("../tests/data/tiny_vit.onnx")
    }
}

// ---------------------------------------------------------------------------------------
// (a) model files

/// A model file's bytes, parsed for the tiny ViT's layout: any bytes give a result or a
/// `ModelFile` error; an accepted file's weights have the shapes the layout implies and
/// hold finite values only. An accepted file that claims a checksummed format (2 or
/// newer) is byte for byte one whose metadata and tensors match the SHA-256 it records
/// (recomputed here, independently of the library), so a flip anywhere in its tensor
/// data or metadata is refused; only a format-1 file (no checksums) loads unverified.
pub fn model_file(data: &[u8]) {
    match varad::model_file::parse(data, &TINY_CHANNELS) {
        Ok(parsed) => {
            assert_eq!(parsed.weights.levels.len(), TINY_CHANNELS.len());
            for (level, &c) in parsed.weights.levels.iter().zip(&TINY_CHANNELS) {
                assert_eq!(level.channels, c);
                assert_eq!(level.adapter_weight.len(), c * c);
                assert_eq!(level.adapter_bias.len(), c);
                assert_eq!(level.bos.len(), c);
                assert!(level
                    .adapter_weight
                    .iter()
                    .chain(&level.adapter_bias)
                    .chain(&level.bos)
                    .all(|v| v.is_finite()));
            }
            let format = recorded_format(data);
            assert_eq!(parsed.verified, format >= 2, "format {format}");
            if parsed.verified {
                assert_checksums_match(data);
            }
        }
        Err(e) => {
            assert_eq!(e.kind(), varad::ErrorKind::ModelFile, "{e}");
            assert!(!e.message().is_empty());
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The metadata JSON of a file the library accepted, and the `__metadata__` entries.
fn metadata_of(data: &[u8]) -> (serde_json::Value, HashMap<String, String>) {
    let (_, header) = safetensors::SafeTensors::read_metadata(data).expect("accepted");
    let entries = header
        .metadata()
        .clone()
        .expect("accepted files have metadata");
    let json = serde_json::from_str(&entries["varad"]).expect("accepted metadata is JSON");
    (json, entries)
}

/// The format version an accepted file records.
fn recorded_format(data: &[u8]) -> u64 {
    metadata_of(data).0["format_version"]
        .as_u64()
        .expect("a format version")
}

/// Panics unless the metadata JSON matches the digest beside it and every tensor (and
/// no other name) matches the digest the JSON records for it.
fn assert_checksums_match(data: &[u8]) {
    let (json, entries) = metadata_of(data);
    assert_eq!(
        sha256_hex(entries["varad"].as_bytes()),
        entries["varad.sha256"]
    );
    let recorded = json["tensor_sha256"].as_object().expect("tensor digests");
    let tensors = safetensors::SafeTensors::deserialize(data).expect("accepted");
    assert_eq!(recorded.len(), tensors.len());
    for (name, view) in tensors.iter() {
        assert_eq!(
            recorded[name].as_str(),
            Some(sha256_hex(view.data()).as_str()),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// (b) the backbone contract

/// Metadata keys: mostly the contract's own, so the fuzzer reaches the checks behind them.
#[derive(Debug, Arbitrary)]
enum Key {
    Contract,
    Name,
    InputMultiple,
    InputSize,
    OutputStrides,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Element {
    F32,
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct Tensor {
    name: String,
    element: Option<Element>,
    shape: Vec<i64>,
}

#[derive(Debug, Arbitrary)]
struct Graph {
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
    metadata: Vec<(Key, String)>,
    width: usize,
    height: usize,
}

fn tensor(t: Tensor) -> TensorSpec {
    TensorSpec {
        name: t.name,
        element: t.element.map(|e| match e {
            Element::F32 => ElementType::F32,
            Element::Other(s) => ElementType::Other(s),
        }),
        shape: t.shape,
    }
}

/// A graph description from arbitrary bytes, checked against the contract: an accepted
/// one is self-consistent; checking an input size against it never panics.
pub fn contract(data: &[u8]) {
    let Ok(g) = Graph::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let metadata: HashMap<String, String> = g
        .metadata
        .into_iter()
        .map(|(k, v)| {
            let key = match k {
                Key::Contract => "varad.contract".to_string(),
                Key::Name => "varad.name".to_string(),
                Key::InputMultiple => "varad.input_multiple".to_string(),
                Key::InputSize => "varad.input_size".to_string(),
                Key::OutputStrides => "varad.output_strides".to_string(),
                Key::Other(s) => s,
            };
            (key, v)
        })
        .collect();
    let n_outputs = g.outputs.len();
    let graph = GraphDescription {
        inputs: g.inputs.into_iter().map(tensor).collect(),
        outputs: g.outputs.into_iter().map(tensor).collect(),
        metadata,
    };
    match BackboneSpec::from_graph(&graph) {
        Ok(spec) => {
            assert_eq!(spec.levels.len(), n_outputs);
            assert!(spec.input_multiple > 0);
            assert!(spec.levels.iter().all(|l| l.stride > 0));
            let _ = spec.check_input_size(g.width, g.height);
            let _ = spec.check_input_size(spec.input_size.0, spec.input_size.1);
        }
        Err(e) => assert!(!e.message().is_empty()),
    }
}

// ---------------------------------------------------------------------------------------
// (c) image views and preprocessing

#[derive(Debug, Arbitrary)]
struct ImageCase {
    width: u32,
    height: u32,
    stride: usize,
    format: u32,
    /// How many of the bytes the view is given (never more than there are).
    claimed_len: u32,
    input_width: u8,
    input_height: u8,
    keep_aspect: bool,
    max_pixels: Option<u16>,
    pixels: Vec<u8>,
}

/// A view over a real buffer with arbitrary claimed sizes: accepted views are converted
/// to a small backbone input whose values are all in [0, 1].
pub fn image(data: &[u8]) {
    let Ok(c) = ImageCase::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let len = (c.claimed_len as usize).min(c.pixels.len());
    let buffer = &c.pixels[..len];
    let format = match PixelFormat::from_u32(c.format) {
        Ok(f) => f,
        Err(e) => {
            assert_eq!(e.kind(), varad::ErrorKind::InvalidImage);
            PixelFormat::Rgb8
        }
    };
    let view = match ImageView::new(buffer, c.width, c.height, c.stride, format) {
        Ok(v) => v,
        Err(e) => {
            assert_eq!(e.kind(), varad::ErrorKind::InvalidImage, "{e}");
            return;
        }
    };
    // An accepted view lies inside the buffer, every row of it.
    for y in 0..view.height() {
        assert!(view.row(y).len() >= view.width() as usize * format.bytes_per_pixel());
    }
    let mut spec = InputSpec::new(u32::from(c.input_width), u32::from(c.input_height));
    if c.keep_aspect {
        spec = spec.with_mode(ResizeMode::KeepAspect);
    }
    if let Some(m) = c.max_pixels {
        spec.limits = ImageLimits {
            max_pixels: u64::from(m),
        };
    }
    let n = match spec.buffer_len() {
        Ok(n) => n,
        Err(_) => {
            let mut out = vec![0.0f32; 3];
            assert!(to_backbone_input(&view, &spec, &mut out).is_err());
            return;
        }
    };
    // A wrong output length is refused, never written past.
    let mut short = vec![0.0f32; n.saturating_sub(1)];
    assert!(to_backbone_input(&view, &spec, &mut short).is_err());
    let mut out = vec![-1.0f32; n];
    match to_backbone_input(&view, &spec, &mut out) {
        Ok(geometry) => {
            let rect = geometry.input_rect_for_image();
            assert!(rect.x + rect.width <= spec.width && rect.y + rect.height <= spec.height);
            if let Some((i, v)) = out
                .iter()
                .enumerate()
                .find(|(_, v)| !(0.0..=1.0).contains(*v))
            {
                panic!(
                    "value {v} at {i} outside [0, 1]: {}x{} {format:?} stride {} into {}x{} \
                     ({:?}), rect {rect:?}",
                    view.width(),
                    view.height(),
                    view.stride(),
                    spec.width,
                    spec.height,
                    spec.mode
                );
            }
        }
        Err(e) => assert_eq!(e.kind(), varad::ErrorKind::ImageTooLarge, "{e}"),
    }
}

// ---------------------------------------------------------------------------------------
// (d) the C API's argument space

/// A handle shared by every run of the C API body.
struct Shared(*mut VaradModel);
// SAFETY: the C ABI documents a const VaradModel* as usable from many threads; the body
// changes thresholds only from the fuzzing thread.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

fn cstr(p: &CString) -> *const c_char {
    p.as_ptr()
}

/// A size-tagged params struct followed by zeroed caller memory up to the largest size
/// the library accepts, so any `size` a fuzz input claims is memory-safe to read (the
/// library reads `size` bytes: its own layout, then checks that the rest is zero).
#[repr(C)]
struct InCallerMemory<T> {
    value: T,
    tail: [u8; 4096],
}

impl<T> InCallerMemory<T> {
    /// `T` as its `varad_*_init` call fills it.
    fn init(init: unsafe extern "C" fn(*mut T, usize) -> VaradStatus) -> Box<Self> {
        let mut value = std::mem::MaybeUninit::<T>::uninit();
        // SAFETY: `value` is writable for size_of::<T>() bytes, which init fills in full.
        let value = unsafe {
            assert_eq!(
                init(value.as_mut_ptr(), std::mem::size_of::<T>()),
                VaradStatus::VARAD_OK
            );
            value.assume_init()
        };
        Box::new(InCallerMemory {
            value,
            tail: [0; 4096],
        })
    }
}

/// The shared tiny-ViT model, trained once through the C API (so calibrated).
fn shared_model() -> *mut VaradModel {
    static MODEL: OnceLock<Shared> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let backbone = CString::new(tiny_backbone().to_str().unwrap()).unwrap();
            let mut p = InCallerMemory::init(varad_params_init).value;
            p.backbone_path = backbone.as_ptr();
            p.input_width = 112;
            p.input_height = 112;
            p.device = VaradDevice::VARAD_DEVICE_CPU as u32;
            p.threads = 1;
            p.prediction_step = 2;
            p.d_state = 4;
            p.epochs = 1;
            p.seed = 5;
            let mut model = ptr::null_mut();
            // SAFETY: valid params and out-pointer.
            let st = unsafe { varad_create(&p, &mut model) };
            assert_eq!(st, VaradStatus::VARAD_OK, "{}", last_error());
            let mut set = ptr::null_mut();
            // SAFETY: live model, valid out-pointer, views over live buffers.
            unsafe {
                assert_eq!(
                    varad_training_set_create(model, &mut set),
                    VaradStatus::VARAD_OK
                );
                for i in 0..5u8 {
                    let pixels: Vec<u8> = (0..64 * 64 * 3)
                        .map(|k| ((k / 3 % 64 / 8 + usize::from(i)) % 2 * 120 + 40) as u8)
                        .collect();
                    let v = VaradImageView {
                        data: pixels.as_ptr(),
                        width: 64,
                        height: 64,
                        stride: 0,
                        format: VaradPixelFormat::VARAD_PIXEL_FORMAT_RGB8 as u32,
                    };
                    assert_eq!(
                        varad_training_set_add(set, model, &v),
                        VaradStatus::VARAD_OK,
                        "{}",
                        last_error()
                    );
                }
                let st = varad_train(model, set, None, ptr::null_mut(), ptr::null_mut());
                assert_eq!(st, VaradStatus::VARAD_OK, "{}", last_error());
                varad_training_set_destroy(set);
            }
            Shared(model)
        })
        .0
}

fn last_error() -> String {
    let p = varad_last_error_message();
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the library's NUL-terminated message, valid until the next call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// After a failed call: a status other than OK and a non-empty message.
fn check_failure(st: VaradStatus) {
    assert_ne!(st, VaradStatus::VARAD_OK);
    assert_ne!(st, VaradStatus::VARAD_ERR_PANIC, "panic: {}", last_error());
    assert_ne!(
        st,
        VaradStatus::VARAD_ERR_INTERNAL,
        "internal: {}",
        last_error()
    );
    assert!(!last_error().is_empty(), "{st:?} without a message");
}

/// Most bytes a view may cover in the harness: views claiming more are only passed when
/// the library must refuse them before reading a byte.
const MAX_VIEW_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Arbitrary)]
struct ViewArgs {
    null_data: bool,
    width: u32,
    height: u32,
    stride: usize,
    format: u32,
    fill: u8,
}

/// A view and the buffer behind it. The buffer covers every byte the view claims when
/// the library could accept the view; otherwise (an absurd size the library must refuse
/// before reading) the view points at a small buffer.
struct OwnedView {
    view: VaradImageView,
    _pixels: Vec<u8>,
}

/// The bytes a view claims, as the C ABI documents it (`None` on overflow).
fn claimed_bytes(a: &ViewArgs) -> Option<usize> {
    let bpp = PixelFormat::from_u32(a.format).ok()?.bytes_per_pixel();
    let row = (a.width as usize).checked_mul(bpp)?;
    let stride = if a.stride == 0 { row } else { a.stride };
    stride
        .checked_mul((a.height as usize).checked_sub(1)?)?
        .checked_add(row)
}

fn make_view(a: &ViewArgs, max_pixels: u64) -> OwnedView {
    let mut args = *a;
    let over_limit = u64::from(a.width) * u64::from(a.height) > max_pixels;
    let refused_anyway = a.null_data
        || a.width == 0
        || a.height == 0
        || PixelFormat::from_u32(a.format).is_err()
        || over_limit;
    let claim = claimed_bytes(&args);
    if !refused_anyway && claim.is_none_or(|c| c > MAX_VIEW_BYTES) {
        // Too big for the harness to back with memory, and admissible: shrink it.
        args.width = a.width % 512 + 1;
        args.height = a.height % 512 + 1;
        args.stride = a.stride % 4096;
    }
    let len = if refused_anyway {
        16
    } else {
        claimed_bytes(&args).unwrap_or(0).min(MAX_VIEW_BYTES)
    };
    let pixels: Vec<u8> = (0..len).map(|i| a.fill.wrapping_add(i as u8)).collect();
    OwnedView {
        view: VaradImageView {
            data: if a.null_data {
                ptr::null()
            } else {
                pixels.as_ptr()
            },
            width: args.width,
            height: args.height,
            stride: args.stride,
            format: args.format,
        },
        _pixels: pixels,
    }
}

#[derive(Debug, Arbitrary)]
struct ScoreArgs {
    null_params: bool,
    params_size: usize,
    /// ROI: None = no ROI; Some((real length, claimed length <= real, null pointer)).
    roi: Option<(u16, u16, bool)>,
    raw_map: u32,
}

/// Score params over a real ROI buffer whose claimed length never exceeds it.
struct OwnedParams {
    params: Box<InCallerMemory<VaradScoreParams>>,
    _roi: Vec<u8>,
    null: bool,
}

fn make_params(a: &ScoreArgs, roi_hint: usize) -> OwnedParams {
    let mut memory = InCallerMemory::init(varad_score_params_init);
    let params = &mut memory.value;
    params.size = a.params_size;
    params.raw_map = a.raw_map;
    let mut roi = Vec::new();
    if let Some((real, claimed, null)) = a.roi {
        // Half the time a ROI of the image's own size, so that scoring with one runs.
        let real = if real % 2 == 0 {
            // The image of an absurd view is refused; its "size" is no buffer length.
            roi_hint.min(MAX_VIEW_BYTES)
        } else {
            usize::from(real)
        };
        roi = (0..real).map(|i| (i % 3 != 0) as u8).collect();
        params.roi = if null { ptr::null() } else { roi.as_ptr() };
        params.roi_len = if real == roi_hint.min(MAX_VIEW_BYTES) && claimed % 2 == 0 {
            real
        } else {
            usize::from(claimed).min(real)
        };
        if null {
            params.roi_len = usize::from(claimed);
        }
    }
    OwnedParams {
        params: memory,
        _roi: roi,
        null: a.null_params,
    }
}

impl OwnedParams {
    fn ptr(&self) -> *const VaradScoreParams {
        if self.null {
            ptr::null()
        } else {
            &self.params.value
        }
    }
}

#[derive(Debug, Arbitrary)]
struct ResultArgs {
    null_map: bool,
    null_len: bool,
    null_dims: bool,
    heatmap: Option<(u8, f32)>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Score {
        view: ViewArgs,
        params: ScoreArgs,
        null_model: bool,
        null_out: bool,
        result: ResultArgs,
    },
    Batch {
        views: Vec<ViewArgs>,
        /// How many of the views the call is told about (never more than there are).
        claimed: u8,
        params: ScoreArgs,
        null_out: bool,
    },
    TrainingSetAdd {
        view: ViewArgs,
        null_set: bool,
    },
    TrainEmpty {
        report_size: usize,
        null_set: bool,
    },
    GetThreshold {
        which: u32,
        null_out: bool,
    },
    SetThreshold {
        which: u32,
        value: f32,
    },
    SetDecision {
        review: f32,
        fail: f32,
    },
    LastErrorCopy {
        len: u8,
        null_buf: bool,
        null_needed: bool,
    },
    RuntimeInfo {
        len: u8,
        version: bool,
    },
    ActiveDevice {
        null_device: bool,
        null_index: bool,
    },
    Create {
        size: usize,
        backbone: u8,
        levels: Option<String>,
        input_width: u32,
        input_height: u32,
        resize_mode: u32,
        device: u32,
        max_image_pixels: u64,
        prediction_step: u32,
        n_layers: u32,
        d_state: u32,
        expand: u32,
        d_conv: u32,
        epochs: u32,
        batch_size: u32,
        learning_rate: f64,
        sigma: f32,
        pixel_quantile: f64,
    },
    Load {
        bytes: Vec<u8>,
        params_size: Option<usize>,
        device: u32,
        threads: i32,
    },
    Save {
        path: u8,
    },
}

/// Paths the body passes: NULL, a missing folder, a folder, not UTF-8, and real files.
fn path_choice(k: u8, dir: &std::path::Path) -> Option<CString> {
    Some(match k % 6 {
        0 => return None,
        1 => CString::new("/nonexistent-varad-dir/x").unwrap(),
        2 => CString::new(dir.to_str().unwrap()).unwrap(),
        3 => CString::new(vec![0xffu8, 0xfe, b'x']).unwrap(),
        4 => CString::new(tiny_backbone().to_str().unwrap()).unwrap(),
        _ => CString::new(dir.join("out.bin").to_str().unwrap()).unwrap(),
    })
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("varad-fuzz-capi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pixel_limit(model: *const VaradModel) -> u64 {
    // The shared model keeps the default limit.
    let _ = model;
    ImageLimits::default().max_pixels
}

/// Up to eight C calls with arbitrary arguments against the shared trained model (and
/// models created or loaded on the way): each returns a status, failures carry a message,
/// out-parameters are written only on success.
pub fn capi(data: &[u8]) {
    let model = shared_model();
    let mut u = Unstructured::new(data);
    let dir = scratch_dir();
    for _ in 0..8 {
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        run_op(op, model, &dir);
    }
}

fn run_op(op: Op, model: *mut VaradModel, dir: &std::path::Path) {
    use VaradStatus::*;
    let sentinel = 0x5a5a_5a5a_usize as *mut VaradScoreResult;
    match op {
        Op::Score {
            view,
            params,
            null_model,
            null_out,
            result,
        } => {
            let v = make_view(&view, pixel_limit(model));
            let p = make_params(&params, (v.view.width as usize) * (v.view.height as usize));
            let mut out = sentinel;
            let m = if null_model { ptr::null() } else { model };
            let out_ptr = if null_out { ptr::null_mut() } else { &mut out };
            // SAFETY: every pointer is NULL or valid for what it claims.
            let st = unsafe { varad_score(m, &v.view, p.ptr(), out_ptr) };
            if st != VARAD_OK {
                check_failure(st);
                assert_eq!(out, sentinel, "out_result written on error");
                return;
            }
            check_result(out, &v.view, &result, dir);
            // SAFETY: a result of varad_score, freed once.
            unsafe { varad_score_result_destroy(out) };
        }
        Op::Batch {
            views,
            claimed,
            params,
            null_out,
        } => {
            let views: Vec<OwnedView> = views
                .iter()
                .take(4)
                .map(|a| make_view(a, pixel_limit(model)))
                .collect();
            let raw: Vec<VaradImageView> = views.iter().map(|v| v.view).collect();
            let count = usize::from(claimed).min(raw.len());
            let hint = raw
                .first()
                .map(|v| v.width as usize * v.height as usize)
                .unwrap_or(0);
            let p = make_params(&params, hint);
            let mut out = vec![sentinel; raw.len().max(1)];
            let images = if raw.is_empty() {
                ptr::null()
            } else {
                raw.as_ptr()
            };
            let out_ptr = if null_out {
                ptr::null_mut()
            } else {
                out.as_mut_ptr()
            };
            // SAFETY: `images` holds `count` views and `out` `count` slots (or NULL).
            let st = unsafe { varad_score_batch(model, images, count, p.ptr(), out_ptr) };
            if st != VARAD_OK {
                check_failure(st);
                assert!(
                    out.iter().all(|&r| r == sentinel),
                    "results written on error"
                );
                return;
            }
            for (r, v) in out.iter().take(count).zip(&raw) {
                let args = ResultArgs {
                    null_map: false,
                    null_len: false,
                    null_dims: false,
                    heatmap: None,
                };
                check_result(*r, v, &args, dir);
                // SAFETY: results of varad_score_batch, each freed once.
                unsafe { varad_score_result_destroy(*r) };
            }
        }
        Op::TrainingSetAdd { view, null_set } => {
            let mut set = ptr::null_mut();
            // SAFETY: live model, valid out-pointer.
            let st = unsafe { varad_training_set_create(model, &mut set) };
            assert_eq!(st, VARAD_OK, "{}", last_error());
            let v = make_view(&view, pixel_limit(model));
            let s = if null_set { ptr::null_mut() } else { set };
            // SAFETY: the view's buffer covers its claim; set is NULL or live.
            let st = unsafe { varad_training_set_add(s, model, &v.view) };
            if st != VARAD_OK {
                // Before the next call, which clears the message.
                check_failure(st);
            }
            let mut count = 99usize;
            // SAFETY: live set, valid out-pointer.
            assert_eq!(
                unsafe { varad_training_set_count(set, &mut count) },
                VARAD_OK
            );
            if st == VARAD_OK {
                assert_eq!(count, 1);
            } else {
                assert_eq!(count, 0, "the set changed on error");
            }
            // SAFETY: created above, freed once.
            unsafe { varad_training_set_destroy(set) };
        }
        Op::TrainEmpty {
            report_size,
            null_set,
        } => {
            let mut set = ptr::null_mut();
            // SAFETY: live model, valid out-pointer.
            unsafe { varad_training_set_create(model, &mut set) };
            let mut report = VaradTrainReport {
                size: report_size,
                train_images: 7,
                calibration_images: 7,
                epochs: 7,
                steps: 7,
                final_loss: 7.0,
                elapsed_seconds: 7.0,
                cache_memory_bytes: 7,
                cache_spilled_bytes: 7,
            };
            let s = if null_set { ptr::null() } else { set };
            // SAFETY: the report is a real struct (any claimed size is read at most to
            // its own size); an empty set cannot train.
            let st = unsafe { varad_train(model, s, None, ptr::null_mut(), &mut report) };
            check_failure(st);
            assert_eq!(report.train_images, 7, "report written on error");
            // SAFETY: created above, freed once.
            unsafe { varad_training_set_destroy(set) };
        }
        Op::GetThreshold { which, null_out } => {
            let mut v = -7.0f32;
            let out = if null_out { ptr::null_mut() } else { &mut v };
            // SAFETY: live model; out NULL or valid.
            let st = unsafe { varad_get_threshold(model, which, out) };
            if st == VARAD_OK {
                assert!(v.is_finite());
            } else {
                check_failure(st);
                assert_eq!(v, -7.0);
            }
        }
        Op::SetThreshold { which, value } => {
            // SAFETY: live model, used by this thread only.
            let st = unsafe { varad_set_threshold(model, which, value) };
            if st != VARAD_OK {
                check_failure(st);
            }
        }
        Op::SetDecision { review, fail } => {
            // SAFETY: live model, used by this thread only.
            let st = unsafe { varad_set_decision_thresholds(model, review, fail) };
            if st != VARAD_OK {
                check_failure(st);
            }
        }
        Op::LastErrorCopy {
            len,
            null_buf,
            null_needed,
        } => {
            let mut buf = vec![1 as c_char; usize::from(len)];
            let mut needed = 0usize;
            let b = if null_buf {
                ptr::null_mut()
            } else {
                buf.as_mut_ptr()
            };
            let n = if null_needed {
                ptr::null_mut()
            } else {
                &mut needed
            };
            // SAFETY: `buf` holds `len` bytes (or is NULL).
            let st = unsafe { varad_last_error_copy(b, buf.len(), n) };
            if st == VARAD_OK {
                assert!(buf.contains(&0), "not NUL-terminated");
            }
        }
        Op::RuntimeInfo { len, version } => {
            let mut buf = vec![1 as c_char; usize::from(len)];
            let mut needed = 0usize;
            // SAFETY: `buf` holds `len` bytes.
            let st = unsafe {
                if version {
                    varad_runtime_version(buf.as_mut_ptr(), buf.len(), &mut needed)
                } else {
                    varad_runtime_path(buf.as_mut_ptr(), buf.len(), &mut needed)
                }
            };
            if st == VARAD_OK {
                assert!(needed <= buf.len() && buf[needed - 1] == 0);
            } else {
                check_failure(st);
            }
        }
        Op::ActiveDevice {
            null_device,
            null_index,
        } => {
            let (mut d, mut i) = (77u32, 77u32);
            let dp = if null_device { ptr::null_mut() } else { &mut d };
            let ip = if null_index { ptr::null_mut() } else { &mut i };
            // SAFETY: live model; outs NULL or valid.
            let st = unsafe { varad_active_device(model, dp, ip) };
            if st == VARAD_OK {
                assert_eq!(d, VaradDevice::VARAD_DEVICE_CPU as u32);
            } else {
                check_failure(st);
            }
        }
        Op::Create {
            size,
            backbone,
            levels,
            input_width,
            input_height,
            resize_mode,
            device,
            max_image_pixels,
            prediction_step,
            n_layers,
            d_state,
            expand,
            d_conv,
            epochs,
            batch_size,
            learning_rate,
            sigma,
            pixel_quantile,
        } => {
            let path = path_choice(backbone, dir);
            let levels = levels.and_then(|l| CString::new(l).ok());
            let mut memory = InCallerMemory::init(varad_params_init);
            let p = &mut memory.value;
            p.size = size;
            p.backbone_path = path.as_ref().map_or(ptr::null(), cstr);
            p.levels = levels.as_ref().map_or(ptr::null(), cstr);
            // Small input sizes only: a real session is built when everything else holds.
            p.input_width = input_width % 300;
            p.input_height = input_height % 300;
            p.resize_mode = resize_mode;
            // Never CUDA: this is about arguments, not devices.
            p.device = if device % 3 == 2 { 1 } else { device };
            p.threads = 1;
            p.max_image_pixels = max_image_pixels;
            p.prediction_step = prediction_step;
            p.n_layers = n_layers;
            p.d_state = d_state;
            p.expand = expand;
            p.d_conv = d_conv;
            p.epochs = epochs;
            p.batch_size = batch_size;
            p.learning_rate = learning_rate;
            p.sigma = sigma;
            p.pixel_quantile = pixel_quantile;
            let mut out = 0x5a5a_usize as *mut VaradModel;
            // SAFETY: a params struct in 4096 bytes of caller memory (any size the library
            // accepts is readable), strings NUL-terminated or NULL.
            let st = unsafe { varad_create(&memory.value, &mut out) };
            if st == VARAD_OK {
                // SAFETY: a fresh model, destroyed once.
                unsafe { varad_destroy(out) };
            } else {
                check_failure(st);
                assert_eq!(out, 0x5a5a_usize as *mut VaradModel);
            }
        }
        Op::Load {
            bytes,
            params_size,
            device,
            threads,
        } => {
            let file = dir.join("load.varad");
            std::fs::write(&file, &bytes).unwrap();
            let path = CString::new(file.to_str().unwrap()).unwrap();
            let mut memory = InCallerMemory::init(varad_load_params_init);
            let p = &mut memory.value;
            if let Some(s) = params_size {
                p.size = s;
            }
            p.device = if device % 3 == 2 { 1 } else { device };
            p.threads = threads;
            let mut out = 0x5a5a_usize as *mut VaradModel;
            let pp = if params_size.is_some() {
                &memory.value as *const VaradLoadParams
            } else {
                ptr::null()
            };
            // SAFETY: a real path, params NULL or a real struct.
            let st = unsafe { varad_load(path.as_ptr(), pp, &mut out) };
            if st == VARAD_OK {
                // SAFETY: a fresh model, destroyed once.
                unsafe { varad_destroy(out) };
            } else {
                check_failure(st);
                assert_eq!(out, 0x5a5a_usize as *mut VaradModel);
            }
        }
        Op::Save { path } => {
            let p = path_choice(path, dir);
            // Never overwrite the committed backbone.
            if path % 6 == 4 {
                return;
            }
            // SAFETY: live model; path NULL or NUL-terminated.
            let st = unsafe { varad_save(model, p.as_ref().map_or(ptr::null(), cstr)) };
            if st != VARAD_OK {
                check_failure(st);
            }
        }
    }
}

/// Reads everything a successful result offers and checks it against the image.
fn check_result(
    r: *mut VaradScoreResult,
    v: &VaradImageView,
    a: &ResultArgs,
    dir: &std::path::Path,
) {
    use VaradStatus::*;
    let mut map: *const f32 = ptr::null();
    let mut len = 0usize;
    let (mut w, mut h) = (0u32, 0u32);
    let mp = if a.null_map {
        ptr::null_mut()
    } else {
        &mut map
    };
    let lp = if a.null_len {
        ptr::null_mut()
    } else {
        &mut len
    };
    let (wp, hp) = if a.null_dims {
        (ptr::null_mut(), ptr::null_mut())
    } else {
        (&mut w as *mut u32, &mut h as *mut u32)
    };
    // SAFETY: a live result; outs NULL or valid.
    let st = unsafe { varad_result_map(r, mp, lp, wp, hp) };
    if a.null_map || a.null_len {
        assert_eq!(st, VARAD_ERR_NULL_POINTER);
    } else {
        assert_eq!(st, VARAD_OK);
        assert_eq!(len, v.width as usize * v.height as usize);
        // SAFETY: the library says `len` floats lie at `map`.
        let values = unsafe { std::slice::from_raw_parts(map, len) };
        assert!(values.iter().all(|x| x.is_finite()), "non-finite map value");
        if !a.null_dims {
            assert_eq!((w, h), (v.width, v.height));
        }
    }
    let mut score = 0f32;
    // SAFETY: live result, valid out.
    assert_eq!(unsafe { varad_result_image_score(r, &mut score) }, VARAD_OK);
    assert!(score.is_finite());
    // SAFETY: live result, valid outs.
    unsafe {
        let mut regions: *const VaradRegion = ptr::null();
        let (mut count, mut found) = (0usize, 0usize);
        let st = varad_result_regions(r, &mut regions, &mut count, &mut found);
        if st == VARAD_OK && count > 0 {
            for region in std::slice::from_raw_parts(regions, count) {
                assert!(region.x + region.width <= v.width && region.y + region.height <= v.height);
            }
        }
        let mut raw: *const f32 = ptr::null();
        let st = varad_result_raw_map(r, &mut raw, &mut len, &mut w, &mut h);
        if st == VARAD_OK {
            assert_eq!(len, w as usize * h as usize);
            let _ = std::slice::from_raw_parts(raw, len).iter().sum::<f32>();
        }
        let mut d = 0u32;
        let _ = varad_result_decision(r, &mut d);
        let _ = varad_result_normalised_score(r, &mut score);
    }
    if let Some((k, scale)) = a.heatmap {
        let p = path_choice(k, dir);
        if k % 6 == 4 {
            return;
        }
        // SAFETY: live result; path NULL or NUL-terminated.
        let st = unsafe { varad_write_heatmap_png(r, p.as_ref().map_or(ptr::null(), cstr), scale) };
        if st != VARAD_OK {
            check_failure(st);
        }
    }
}
