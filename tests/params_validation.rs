//! Every setting is checked before any work, against the range its documentation states.
//!
//! The ranges are read from the committed header (`include/varad.h`, generated from the
//! doc comments of `src/ffi/params.rs`): every `VaradParams` field must have a case here,
//! and every numeric field a `Range:` in its documentation; the test then tries each
//! field at both ends of that range (accepted) and just outside it, NaN and the
//! infinities (refused with `VARAD_ERR_CONFIG` naming the field), so the header and the
//! library cannot disagree. The backbone path names a file that does not exist: a
//! refusal that is the configuration error and not the missing file's proves that the
//! check ran before the backbone was touched.

#[path = "common/c_structs.rs"]
mod c_structs;
mod common;

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::path::Path;
use std::ptr;

use varad::ffi::*;
use VaradStatus::*;

/// A value written into a field: an integer or a real number.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(i128),
    Real(f64),
}

/// A field type the table can write: `None` when the type cannot hold the value (a
/// negative number in an unsigned field), so that value is skipped.
trait Assign: Sized {
    const REAL: bool;
    fn assign(value: Value) -> Option<Self>;
}

macro_rules! assign_int {
    ($($t:ty),*) => {$(
        impl Assign for $t {
            const REAL: bool = false;
            fn assign(value: Value) -> Option<Self> {
                match value {
                    Value::Int(i) => <$t>::try_from(i).ok(),
                    Value::Real(_) => None,
                }
            }
        }
    )*};
}
assign_int!(u32, u64, i32);

impl Assign for f64 {
    const REAL: bool = true;
    fn assign(value: Value) -> Option<Self> {
        match value {
            Value::Real(r) => Some(r),
            Value::Int(i) => Some(i as f64),
        }
    }
}

impl Assign for f32 {
    const REAL: bool = true;
    fn assign(value: Value) -> Option<Self> {
        let r = f64::assign(value)?;
        let narrowed = r as f32;
        // A value that f32 rounds back onto the range's end is not the value meant.
        (r.is_nan() || f64::from(narrowed) == r || r.is_infinite()).then_some(narrowed)
    }
}

/// Writes a value into one field; `false` when its type cannot hold it.
type Setter = fn(&mut VaradParams, Value) -> bool;

/// The settable fields, by name, with whether they hold real numbers.
macro_rules! setters {
    ($($field:ident: $ty:ty),* $(,)?) => {
        vec![$(
            (
                stringify!($field),
                (|p: &mut VaradParams, v: Value| match <$ty as Assign>::assign(v) {
                    Some(x) => {
                        p.$field = x;
                        true
                    }
                    None => false,
                }) as Setter,
                <$ty as Assign>::REAL,
            )
        ),*]
    };
}

/// Every numeric and enum field of `VaradParams`. The four fields that are neither
/// (`size` and the three strings) are [`POINTER_AND_SIZE_FIELDS`].
fn setters() -> Vec<(&'static str, Setter, bool)> {
    setters![
        input_width: u32,
        input_height: u32,
        resize_mode: u32,
        device: u32,
        cuda_device: u32,
        threads: u32,
        max_image_pixels: u64,
        seed: u64,
        prediction_step: u32,
        n_layers: u32,
        d_state: u32,
        expand: u32,
        d_conv: u32,
        detach_target: u32,
        epochs: u32,
        batch_size: u32,
        learning_rate: f64,
        weight_decay: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        cache_limit_bytes: u64,
        calibration_fraction: f64,
        min_calibration_images: u32,
        min_region_area: u32,
        sigma: f32,
        top_k: u32,
        target_false_reject_rate: f64,
        review_band: f64,
        pixel_quantile: f64,
        max_batch_bytes: u64,
        cache_disk_limit_bytes: u64,
        context_mean: u32,
        map_norm: u32,
        neighbour_weight: f32,
        neighbour_bank_tokens: u32,
        cross_fit_folds: u32,
        beyond_data: u32,
        target_false_fail_rate: f64,
        catch_known_defects: u32,
        reserved: u32,
        neighbour_bank_selection: u32,
        neighbour_bank_levels: u32,
        neighbour_term: u32,
        reserved2: u32,
        neighbour_probes: u32,
        reserved3: u32,
    ]
}

const POINTER_AND_SIZE_FIELDS: [&str; 4] = ["size", "backbone_path", "runtime_path", "levels"];

/// Whether `value` is one the enum field `field` takes; `None` for a field that is not
/// an enum.
fn enum_accepts(field: &str, value: u32) -> Option<bool> {
    match field {
        "resize_mode" => Some(VaradResizeMode::try_from(value).is_ok()),
        "map_norm" => Some(VaradMapNorm::try_from(value).is_ok()),
        "beyond_data" => Some(VaradBeyondData::try_from(value).is_ok()),
        "neighbour_bank_selection" => Some(VaradBankSelection::try_from(value).is_ok()),
        "neighbour_bank_levels" => Some(VaradBankLevels::try_from(value).is_ok()),
        "neighbour_term" => Some(VaradNeighbourTerm::try_from(value).is_ok()),
        "device" => Some(
            VaradDevice::try_from(value).is_ok()
                && value != VaradDevice::VARAD_DEVICE_AS_SAVED as u32,
        ),
        _ => None,
    }
}

/// One field of a struct in the header: its name and its documentation, joined into one
/// line.
struct HeaderField {
    name: String,
    doc: String,
}

/// The fields of `typedef struct NAME { ... } NAME;` in the committed header, in order.
fn header_fields(name: &str) -> Vec<HeaderField> {
    let header =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/varad.h"))
            .unwrap();
    let start = header
        .find(&format!("typedef struct {name} {{"))
        .unwrap_or_else(|| panic!("{name} not in the header"));
    let end = start + header[start..].find(&format!("}} {name};")).unwrap();
    let mut fields = Vec::new();
    let mut doc = Vec::new();
    for line in header[start..end].lines().skip(1) {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix("//") {
            doc.push(comment.trim().to_string());
        } else if let Some(decl) = line.strip_suffix(';') {
            let name = decl.rsplit([' ', '*']).next().unwrap().trim().to_string();
            fields.push(HeaderField {
                name,
                doc: doc.join(" "),
            });
            doc.clear();
        }
    }
    fields
}

/// A field's documented range.
#[derive(Debug)]
enum Range {
    /// Every value.
    Any,
    /// An enum's values.
    Enum,
    /// An interval: its ends, and whether each is included.
    Interval {
        min: Value,
        min_inclusive: bool,
        max: Value,
        max_inclusive: bool,
    },
}

/// The `Range:` a field's documentation states; `max_image_pixels` as an end is the
/// value of that field in `p`.
fn documented_range(field: &HeaderField, p: &VaradParams) -> Range {
    let text = field
        .doc
        .split_once("Range: ")
        .unwrap_or_else(|| panic!("{}: no `Range:` in its documentation", field.name))
        .1;
    assert!(
        field.doc.contains("Default: "),
        "{}: no `Default:` in its documentation",
        field.name
    );
    if text.starts_with("any") {
        return Range::Any;
    }
    if text.starts_with("a `Varad") || text.starts_with("`VARAD_") {
        return Range::Enum;
    }
    let open = text.chars().next().unwrap();
    let close_at = text.find([']', ')']).unwrap();
    let (a, b) = text[1..close_at].split_once(", ").unwrap();
    let number = |s: &str| -> Value {
        match s.trim() {
            "max_image_pixels" => Value::Int(p.max_image_pixels.into()),
            s if s.contains(['.', 'e']) => Value::Real(s.parse().unwrap()),
            s => Value::Int(s.parse().unwrap()),
        }
    };
    Range::Interval {
        min: number(a),
        min_inclusive: open == '[',
        max: number(b),
        max_inclusive: text[close_at..].starts_with(']'),
    }
}

fn real(v: Value) -> f64 {
    match v {
        Value::Int(i) => i as f64,
        Value::Real(r) => r,
    }
}

/// Values just inside each end of an interval (the end itself where it is included).
fn inside(min: Value, min_inc: bool, max: Value, max_inc: bool, is_real: bool) -> Vec<Value> {
    let (lo, hi) = (real(min), real(max));
    let nudge = (hi - lo) * 1e-6;
    if !is_real {
        let (Value::Int(a), Value::Int(b)) = (min, max) else {
            panic!("an integer field with a real range end")
        };
        return vec![
            Value::Int(if min_inc { a } else { a + 1 }),
            Value::Int(if max_inc { b } else { b - 1 }),
        ];
    }
    vec![
        if min_inc {
            min
        } else {
            Value::Real(lo + nudge)
        },
        if max_inc {
            max
        } else {
            Value::Real(hi - nudge)
        },
    ]
}

/// Values just outside each end of an interval (the end itself where it is excluded), and
/// for reals NaN and both infinities.
fn outside(min: Value, min_inc: bool, max: Value, max_inc: bool, is_real: bool) -> Vec<Value> {
    if !is_real {
        let (Value::Int(a), Value::Int(b)) = (min, max) else {
            panic!("an integer field with a real range end")
        };
        return vec![
            Value::Int(if min_inc { a - 1 } else { a }),
            Value::Int(if max_inc { b + 1 } else { b }),
        ];
    }
    let (lo, hi) = (real(min), real(max));
    let step = |v: f64| v.abs().max(1.0) * 1e-3;
    vec![
        Value::Real(if min_inc { lo - step(lo) } else { lo }),
        Value::Real(if max_inc { hi + step(hi) } else { hi }),
        Value::Real(f64::NAN),
        Value::Real(f64::INFINITY),
        Value::Real(f64::NEG_INFINITY),
    ]
}

fn last_error() -> String {
    let p = varad_last_error_message();
    assert!(!p.is_null(), "no last error message");
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// `varad_create` on `p`: its status and message; the model, if any, destroyed.
fn create(p: &VaradParams) -> (VaradStatus, String) {
    let mut model = ptr::null_mut();
    // SAFETY: `p` is a filled VaradParams whose strings outlive the call.
    let status = unsafe { varad_create(p, &mut model) };
    let message = if status == VARAD_OK {
        String::new()
    } else {
        last_error()
    };
    // SAFETY: NULL or the model just made.
    unsafe { varad_destroy(model) };
    (status, message)
}

/// The tiny test settings on a backbone file that does not exist.
fn params_on_missing_backbone(missing: &CString) -> VaradParams {
    let mut p = c_structs::params();
    p.backbone_path = missing.as_ptr();
    p.input_width = 112;
    p.input_height = 112;
    p.device = VaradDevice::VARAD_DEVICE_CPU as u32;
    p.threads = 2;
    p.prediction_step = 2;
    p.d_state = 4;
    p
}

#[test]
fn every_params_field_has_a_case_and_a_documented_range() {
    let header: Vec<String> = header_fields("VaradParams")
        .into_iter()
        .map(|f| f.name)
        .collect();
    let mut cased: BTreeSet<&str> = setters().iter().map(|(n, ..)| *n).collect();
    cased.extend(POINTER_AND_SIZE_FIELDS);
    let header_set: BTreeSet<&str> = header.iter().map(String::as_str).collect();
    assert_eq!(
        header_set, cased,
        "the header's VaradParams fields and this test's cases differ: a new field needs \
         a case here and a `Range:` in its documentation"
    );
    assert_eq!(header.len(), cased.len(), "a field is listed twice");
    let p = c_structs::params();
    for field in header_fields("VaradParams") {
        if !POINTER_AND_SIZE_FIELDS.contains(&field.name.as_str()) {
            documented_range(&field, &p);
        }
    }
    for name in ["VaradLoadParams", "VaradScoreParams"] {
        for field in header_fields(name) {
            if !["size", "backbone_path", "runtime_path", "roi"].contains(&field.name.as_str()) {
                assert!(
                    field.doc.contains("Range: ") && field.doc.contains("Default: "),
                    "{name}.{}: its documentation states no range or no default",
                    field.name
                );
            }
        }
    }
}

#[test]
fn every_params_field_out_of_range_is_refused_naming_it_before_the_backbone_is_read() {
    let missing = CString::new("/nonexistent/varad/backbone.onnx").unwrap();
    let base = params_on_missing_backbone(&missing);
    // Valid settings get as far as the backbone file, which is missing.
    let (reached_backbone, message) = create(&base);
    assert_eq!(reached_backbone, VARAD_ERR_IO, "{message}");

    let fields = header_fields("VaradParams");
    let mut checked = 0;
    for (name, set, is_real) in setters() {
        let doc = fields.iter().find(|f| f.name == name).unwrap();
        let with = |value: Value| -> Option<(VaradStatus, String)> {
            let mut p = base;
            if name == "cuda_device" {
                // Read only for a CUDA device.
                p.device = VaradDevice::VARAD_DEVICE_CUDA as u32;
            }
            set(&mut p, value).then(|| create(&p))
        };
        match documented_range(doc, &base) {
            Range::Any => {
                for v in [0, u32::MAX as i128, u64::MAX as i128] {
                    if let Some((status, message)) = with(Value::Int(v)) {
                        assert_eq!(status, reached_backbone, "{name} = {v}: {message}");
                    }
                }
            }
            Range::Enum => {
                let valid: Vec<u32> = (0..=300)
                    .filter(|&v| enum_accepts(name, v).unwrap())
                    .collect();
                assert!(!valid.is_empty(), "{name}");
                for &v in &valid {
                    let (status, message) = with(Value::Int(v.into())).unwrap();
                    assert_ne!(
                        status, VARAD_ERR_INVALID_ARGUMENT,
                        "{name} = {v}: {message}"
                    );
                    assert_ne!(status, VARAD_ERR_CONFIG, "{name} = {v}: {message}");
                }
                let invalid = (0..=300u32)
                    .filter(|&v| !enum_accepts(name, v).unwrap())
                    .take(3)
                    .chain([255, u32::MAX])
                    .filter(|&v| !enum_accepts(name, v).unwrap());
                for v in invalid {
                    let (status, message) = with(Value::Int(v.into())).unwrap();
                    assert_eq!(
                        status, VARAD_ERR_INVALID_ARGUMENT,
                        "{name} = {v}: {message}"
                    );
                    assert!(
                        message.contains(&format!("params.{name} is {v}")),
                        "{name} = {v}: {message}"
                    );
                    assert!(
                        !message.contains("255 = VARAD_DEVICE_AS_SAVED"),
                        "{name} = {v} lists a value the field refuses: {message}"
                    );
                }
            }
            Range::Interval {
                min,
                min_inclusive,
                max,
                max_inclusive,
            } => {
                for v in inside(min, min_inclusive, max, max_inclusive, is_real) {
                    let (status, message) = with(v).unwrap_or_else(|| {
                        panic!("{name}: the documented value {v:?} does not fit the field")
                    });
                    assert_eq!(
                        status, reached_backbone,
                        "{name} = {v:?} is documented as valid but: {message}"
                    );
                }
                for v in outside(min, min_inclusive, max, max_inclusive, is_real) {
                    let Some((status, message)) = with(v) else {
                        continue; // the field's type cannot hold it
                    };
                    assert_eq!(status, VARAD_ERR_CONFIG, "{name} = {v:?}: {message}");
                    assert!(
                        message.contains(&format!("params.{name} ")),
                        "{name} = {v:?}: the message does not name the field: {message}"
                    );
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, fields.len() - POINTER_AND_SIZE_FIELDS.len());
}

#[test]
fn the_size_and_string_fields_are_refused_naming_them() {
    let missing = CString::new("/nonexistent/varad/backbone.onnx").unwrap();
    let base = params_on_missing_backbone(&missing);
    let not_utf8 = CString::new(vec![b'a', 0xff, b'b']).unwrap();
    for (name, expected, p) in [
        ("params.size", VARAD_ERR_INVALID_ARGUMENT, {
            let mut p = base;
            p.size = 7;
            p
        }),
        ("params.size", VARAD_ERR_INVALID_ARGUMENT, {
            let mut p = base;
            p.size = 1 << 20;
            p
        }),
        ("params.backbone_path", VARAD_ERR_NULL_POINTER, {
            let mut p = base;
            p.backbone_path = ptr::null();
            p
        }),
        ("params.backbone_path", VARAD_ERR_INVALID_ARGUMENT, {
            let mut p = base;
            p.backbone_path = not_utf8.as_ptr();
            p
        }),
        ("params.runtime_path", VARAD_ERR_INVALID_ARGUMENT, {
            let mut p = base;
            p.runtime_path = not_utf8.as_ptr();
            p
        }),
        ("params.levels", VARAD_ERR_INVALID_ARGUMENT, {
            let mut p = base;
            p.levels = not_utf8.as_ptr();
            p
        }),
    ] {
        let (status, message) = create(&p);
        assert_eq!(status, expected, "{name}: {message}");
        assert!(message.contains(name), "{name}: {message}");
    }
}

#[test]
fn every_out_of_range_field_is_named_in_one_message() {
    let missing = CString::new("/nonexistent/varad/backbone.onnx").unwrap();
    let mut p = params_on_missing_backbone(&missing);
    p.sigma = 5000.0;
    p.epochs = 0;
    p.review_band = f64::NAN;
    p.input_height = 0;
    let (status, message) = create(&p);
    assert_eq!(status, VARAD_ERR_CONFIG, "{message}");
    for needle in [
        "params.sigma 5000 is not in [0, 1000]",
        "params.epochs 0 is not in [1, 10000]",
        "params.review_band NaN is not in [0, 100]",
        "params.input_height 0 is not in [1, 16384]",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
}

/// Rewrites the configuration stored in the model file at `path` with `edit`.
///
/// The one place that knows how the configuration sits in a model file: a file format
/// that protects its metadata (a checksum) must be re-signed here, so the loader reaches
/// the configuration check this test is about.
fn edit_stored_config(path: &Path, out: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let (n, _) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let header_text = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let mut header: serde_json::Value = serde_json::from_str(header_text).unwrap();
    let mut metadata: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["varad"].as_str().unwrap()).unwrap();
    edit(&mut metadata["config"]);
    let json = metadata.to_string();
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    header["__metadata__"]["varad.sha256"] = digest.into();
    header["__metadata__"]["varad"] = json.into();
    let mut text = header.to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut file = (text.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(text.as_bytes());
    file.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(out, file).unwrap();
}

/// `varad_load` of `path` with `lp`: its status and message.
fn load(path: &Path, lp: Option<&VaradLoadParams>) -> (VaradStatus, String) {
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let mut model = ptr::null_mut();
    let lp = lp.map_or(ptr::null(), |p| p as *const _);
    // SAFETY: valid strings and params for the call.
    let status = unsafe { varad_load(c_path.as_ptr(), lp, &mut model) };
    let message = if status == VARAD_OK {
        String::new()
    } else {
        last_error()
    };
    // SAFETY: NULL or the model just loaded.
    unsafe { varad_destroy(model) };
    (status, message)
}

#[test]
fn out_of_range_settings_in_a_model_file_or_the_load_params_are_refused_at_load() {
    let dir = std::env::temp_dir().join(format!("varad-params-validation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("model.safetensors");
    common::trained_tiny_model().save(&saved).unwrap();
    let (status, message) = load(&saved, None);
    assert_eq!(status, VARAD_OK, "{message}");

    // One setting of each part of the configuration, at a value the C fields above
    // refuse too (JSON has no NaN or infinity).
    let edited = dir.join("edited.safetensors");
    for (path, value, named) in [
        ("score.sigma", serde_json::json!(5000.0), "score.sigma 5000"),
        ("threads", serde_json::json!(5000), "threads 5000"),
        (
            "max_image_pixels",
            serde_json::json!(0),
            "max_image_pixels 0",
        ),
        ("train.epochs", serde_json::json!(0), "train.epochs 0"),
        (
            "train.learning_rate",
            serde_json::json!(2.0),
            "train.learning_rate 2",
        ),
        (
            "train.min_calibration_images",
            serde_json::json!(2_000_000),
            "train.min_calibration_images 2000000",
        ),
        (
            "score.neighbour_weight",
            serde_json::json!(-1.0),
            "score.neighbour_weight -1",
        ),
        (
            "score.calibration.review_band",
            serde_json::json!(1e6),
            "score.calibration.review_band 1000000",
        ),
        (
            "score.calibration.pixel_quantile",
            serde_json::json!(0.0),
            "score.calibration.pixel_quantile 0",
        ),
    ] {
        edit_stored_config(&saved, &edited, |config| {
            let mut node = config;
            let parts: Vec<&str> = path.split('.').collect();
            for part in &parts[..parts.len() - 1] {
                node = &mut node[*part];
            }
            node[*parts.last().unwrap()] = value.clone();
        });
        let (status, message) = load(&edited, None);
        assert_eq!(status, VARAD_ERR_MODEL_FILE, "{path}: {message}");
        assert!(message.contains(named), "{path}: {message}");
    }

    // The load parameters are settings too, refused before the file is read.
    let mut lp = c_structs::load_params();
    lp.threads = 5000;
    let (status, message) = load(Path::new("/nonexistent/model.safetensors"), Some(&lp));
    assert_eq!(status, VARAD_ERR_INVALID_ARGUMENT, "{message}");
    assert!(message.contains("params.threads is 5000"), "{message}");
    let mut lp = c_structs::load_params();
    lp.device = VaradDevice::VARAD_DEVICE_CUDA as u32;
    lp.cuda_device = 5000;
    let (status, message) = load(&saved, Some(&lp));
    assert_eq!(status, VARAD_ERR_INVALID_ARGUMENT, "{message}");
    assert!(message.contains("params.cuda_device is 5000"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}
