//! The C ABI called from Rust as C would call it: null pointers, bad sizes, bad formats,
//! out-parameters untouched on error, cancel, busy, save/load, thresholds.

#[path = "common/c_structs.rs"]
mod c_structs;
mod common;

use std::ffi::{c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;

use varad::ffi::*;
use VaradStatus::*;

fn tiny_backbone() -> CString {
    CString::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tiny_vit.onnx"
    ))
    .unwrap()
}

/// The tiny test configuration of `common::tiny_config`, as C params.
fn tiny_params(backbone: &CString) -> VaradParams {
    let mut p = c_structs::params();
    p.backbone_path = backbone.as_ptr();
    p.input_width = 112;
    p.input_height = 112;
    p.device = VaradDevice::VARAD_DEVICE_CPU as u32;
    p.threads = 2;
    p.prediction_step = 2;
    p.d_state = 4;
    p.epochs = 3;
    p.learning_rate = 2e-3;
    p.seed = 5;
    p
}

fn last_error() -> String {
    let p = varad_last_error_message();
    assert!(!p.is_null(), "no last error message");
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn view(pixels: &[u8], size: u32) -> VaradImageView {
    VaradImageView {
        data: pixels.as_ptr(),
        width: size,
        height: size,
        stride: size as usize * 3,
        format: VaradPixelFormat::VARAD_PIXEL_FORMAT_RGB8 as u32,
    }
}

/// A handle that tests share across threads.
struct Shared(*mut VaradModel);
// SAFETY: the C ABI documents a const VaradModel* as usable from many threads.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

fn new_model() -> *mut VaradModel {
    let backbone = tiny_backbone();
    let params = tiny_params(&backbone);
    let mut model = ptr::null_mut();
    let status = unsafe { varad_create(&params, &mut model) };
    assert_eq!(status, VARAD_OK, "{}", last_error());
    model
}

fn training_set(model: *const VaradModel, n: u64) -> *mut VaradTrainingSet {
    let mut set = ptr::null_mut();
    unsafe {
        assert_eq!(varad_training_set_create(model, &mut set), VARAD_OK);
        for i in 0..n {
            let pixels = common::texture(i, 128);
            assert_eq!(
                varad_training_set_add(set, model, &view(&pixels, 128)),
                VARAD_OK,
                "{}",
                last_error()
            );
        }
    }
    set
}

/// One model trained through the C ABI, shared by the tests that only read it.
fn trained() -> *const VaradModel {
    static MODEL: OnceLock<Shared> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let model = new_model();
            let set = training_set(model, 6);
            let mut report = VaradTrainReport {
                size: std::mem::size_of::<VaradTrainReport>(),
                train_images: 0,
                calibration_images: 0,
                epochs: 0,
                steps: 0,
                final_loss: 0.0,
                elapsed_seconds: 0.0,
                cache_memory_bytes: 0,
                cache_spilled_bytes: 0,
            };
            let status = unsafe { varad_train(model, set, None, ptr::null_mut(), &mut report) };
            assert_eq!(status, VARAD_OK, "{}", last_error());
            assert_eq!(report.train_images + report.calibration_images, 6);
            assert_eq!(report.epochs, 3);
            assert!(report.final_loss.is_finite());
            unsafe { varad_training_set_destroy(set) };
            Shared(model)
        })
        .0
}

fn score(model: *const VaradModel, pixels: &[u8], size: u32) -> Vec<f32> {
    let mut result = ptr::null_mut();
    unsafe {
        assert_eq!(
            varad_score(model, &view(pixels, size), ptr::null(), &mut result),
            VARAD_OK,
            "{}",
            last_error()
        );
        let (mut map, mut len) = (ptr::null(), 0usize);
        assert_eq!(
            varad_result_map(result, &mut map, &mut len, ptr::null_mut(), ptr::null_mut()),
            VARAD_OK
        );
        let out = std::slice::from_raw_parts(map, len).to_vec();
        varad_score_result_destroy(result);
        out
    }
}

#[test]
fn destroy_null_is_a_no_op() {
    unsafe {
        varad_destroy(ptr::null_mut());
        varad_training_set_destroy(ptr::null_mut());
        varad_score_result_destroy(ptr::null_mut());
        varad_image_destroy(ptr::null_mut());
    }
}

#[test]
fn create_checks_pointers_and_sizes_and_leaves_out_params_alone() {
    let backbone = tiny_backbone();
    let sentinel = 0x1234usize as *mut VaradModel;
    let mut model = sentinel;
    unsafe {
        assert_eq!(
            varad_create(ptr::null(), &mut model),
            VARAD_ERR_NULL_POINTER
        );
        assert!(last_error().contains("params"));
        let params = tiny_params(&backbone);
        assert_eq!(
            varad_create(&params, ptr::null_mut()),
            VARAD_ERR_NULL_POINTER
        );
        let mut p = params;
        p.backbone_path = ptr::null();
        assert_eq!(varad_create(&p, &mut model), VARAD_ERR_NULL_POINTER);
        assert!(last_error().contains("backbone_path"));
        // Sizes no init call writes: below `size` + `backbone_path` (the fields without
        // a default), not a multiple of 8, or beyond any layout (never initialised).
        for size in [0, 8, 15, 17, 203, 4104, usize::MAX] {
            let mut p = params;
            p.size = size;
            assert_eq!(varad_create(&p, &mut model), VARAD_ERR_INVALID_ARGUMENT);
            assert!(last_error().contains("params.size is"), "{}", last_error());
        }
        let mut p = params;
        p.device = 7;
        assert_eq!(varad_create(&p, &mut model), VARAD_ERR_INVALID_ARGUMENT);
        let mut p = params;
        p.epochs = 0;
        assert_eq!(varad_create(&p, &mut model), VARAD_ERR_CONFIG);
        let mut p = params;
        p.resize_mode = 9;
        assert_eq!(varad_create(&p, &mut model), VARAD_ERR_INVALID_ARGUMENT);
        let missing = CString::new("/nonexistent/backbone.onnx").unwrap();
        let mut p = params;
        p.backbone_path = missing.as_ptr();
        assert_ne!(varad_create(&p, &mut model), VARAD_OK);
        assert!(last_error().contains("/nonexistent/backbone.onnx"));
    }
    assert_eq!(model, sentinel, "out_model written on error");
}

#[test]
fn a_larger_params_size_from_a_newer_caller_is_accepted() {
    // A newer header's struct is larger: the known prefix is read, and the fields this
    // library does not know must be zero (as init leaves them) or the call is refused.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Newer {
        base: VaradParams,
        extra: u64,
    }
    let backbone = tiny_backbone();
    let mut newer = Newer {
        base: tiny_params(&backbone),
        extra: 0,
    };
    newer.base.size = std::mem::size_of::<Newer>();
    let mut model = ptr::null_mut();
    unsafe {
        newer.extra = 42;
        assert_eq!(
            varad_create(&newer.base, &mut model),
            VARAD_ERR_INVALID_ARGUMENT
        );
        assert!(model.is_null());
        assert!(
            last_error().contains("sets a field this library"),
            "{}",
            last_error()
        );
        newer.extra = 0;
        assert_eq!(
            varad_create(&newer.base, &mut model),
            VARAD_OK,
            "{}",
            last_error()
        );
        varad_destroy(model);
    }
}

#[test]
fn scoring_checks_views_params_and_leaves_out_params_alone() {
    let model = new_model();
    let pixels = common::texture(1, 64);
    let sentinel = 0x99usize as *mut VaradScoreResult;
    let mut result = sentinel;
    unsafe {
        let good = view(&pixels, 64);
        assert_eq!(
            varad_score(ptr::null(), &good, ptr::null(), &mut result),
            VARAD_ERR_NULL_POINTER
        );
        assert_eq!(
            varad_score(model, ptr::null(), ptr::null(), &mut result),
            VARAD_ERR_NULL_POINTER
        );
        assert_eq!(
            varad_score(model, &good, ptr::null(), ptr::null_mut()),
            VARAD_ERR_NULL_POINTER
        );
        for format in [0u32, 7, 255] {
            let mut v = good;
            v.format = format;
            assert_eq!(
                varad_score(model, &v, ptr::null(), &mut result),
                VARAD_ERR_INVALID_IMAGE
            );
            assert!(last_error().contains("image.format is"), "{}", last_error());
        }
        let mut v = good;
        v.data = ptr::null();
        assert_eq!(
            varad_score(model, &v, ptr::null(), &mut result),
            VARAD_ERR_INVALID_IMAGE
        );
        let mut v = good;
        v.width = 0;
        assert_eq!(
            varad_score(model, &v, ptr::null(), &mut result),
            VARAD_ERR_INVALID_IMAGE
        );
        let mut v = good;
        v.stride = 10;
        assert_eq!(
            varad_score(model, &v, ptr::null(), &mut result),
            VARAD_ERR_INVALID_IMAGE
        );
        let mut v = good;
        v.width = 1 << 16;
        v.height = 1 << 16;
        assert_eq!(
            varad_score(model, &v, ptr::null(), &mut result),
            VARAD_ERR_IMAGE_TOO_LARGE
        );
        let mut params = c_structs::score_params();
        params.size = 4;
        assert_eq!(
            varad_score(model, &good, &params, &mut result),
            VARAD_ERR_INVALID_ARGUMENT
        );
        let roi = [1u8; 10];
        let mut params = c_structs::score_params();
        params.roi = roi.as_ptr();
        params.roi_len = roi.len();
        assert_eq!(
            varad_score(model, &good, &params, &mut result),
            VARAD_ERR_INVALID_ARGUMENT
        );
        let mut params = c_structs::score_params();
        params.roi_len = 5;
        assert_eq!(
            varad_score(model, &good, &params, &mut result),
            VARAD_ERR_NULL_POINTER
        );
        let mut results = [sentinel; 2];
        assert_eq!(
            varad_score_batch(model, &good, 0, ptr::null(), results.as_mut_ptr()),
            VARAD_ERR_INVALID_ARGUMENT
        );
        let views = [good, VaradImageView { format: 0, ..good }];
        assert_eq!(
            varad_score_batch(model, views.as_ptr(), 2, ptr::null(), results.as_mut_ptr()),
            VARAD_ERR_INVALID_IMAGE
        );
        assert_eq!(results, [sentinel; 2]);
        varad_destroy(model);
    }
    assert_eq!(result, sentinel, "out_result written on error");
}

#[test]
fn an_untrained_model_refuses_to_score_and_has_no_thresholds() {
    let model = new_model();
    let pixels = common::texture(2, 112);
    let sentinel = 0x5678usize as *mut VaradScoreResult;
    let mut result = sentinel;
    unsafe {
        assert_eq!(
            varad_score(model, &view(&pixels, 112), ptr::null(), &mut result),
            VARAD_ERR_NOT_TRAINED
        );
        assert_eq!(result, sentinel, "out_result written on error");
        assert!(last_error().contains("untrained"), "{}", last_error());
        let mut results = [sentinel; 2];
        let views = [view(&pixels, 112), view(&pixels, 112)];
        assert_eq!(
            varad_score_batch(model, views.as_ptr(), 2, ptr::null(), results.as_mut_ptr()),
            VARAD_ERR_NOT_TRAINED
        );
        assert_eq!(results, [sentinel; 2]);
        let mut value = 3.0f32;
        assert_eq!(
            varad_get_threshold(
                model,
                VaradThreshold::VARAD_THRESHOLD_IMAGE as u32,
                &mut value
            ),
            VARAD_ERR_NOT_CALIBRATED
        );
        assert_eq!(value, 3.0);
        assert_eq!(varad_set_threshold(model, 1, 1.0), VARAD_ERR_NOT_CALIBRATED);
        let (mut device, mut index) = (99u32, 99u32);
        assert_eq!(
            varad_active_device(model, &mut device, &mut index),
            VARAD_OK
        );
        assert_eq!((device, index), (VaradDevice::VARAD_DEVICE_CPU as u32, 0));
        varad_destroy(model);
    }
}

#[test]
fn trained_model_decides_and_batch_equals_single_calls() {
    let model = trained();
    let images: Vec<Vec<u8>> = (10..13).map(|i| common::texture(i, 128)).collect();
    let views: Vec<VaradImageView> = images.iter().map(|p| view(p, 128)).collect();
    let mut results = [ptr::null_mut(); 3];
    unsafe {
        assert_eq!(
            varad_score_batch(model, views.as_ptr(), 3, ptr::null(), results.as_mut_ptr()),
            VARAD_OK,
            "{}",
            last_error()
        );
        for (i, &r) in results.iter().enumerate() {
            let (mut map, mut len, mut w, mut h) = (ptr::null(), 0usize, 0u32, 0u32);
            assert_eq!(
                varad_result_map(r, &mut map, &mut len, &mut w, &mut h),
                VARAD_OK
            );
            assert_eq!((w, h, len), (128, 128, 128 * 128));
            let batch = std::slice::from_raw_parts(map, len);
            assert_eq!(batch, score(model, &images[i], 128).as_slice());
            let mut decision = 0u32;
            assert_eq!(varad_result_decision(r, &mut decision), VARAD_OK);
            assert!((1..=3).contains(&decision));
            let mut norm = 0.0f32;
            assert_eq!(varad_result_normalised_score(r, &mut norm), VARAD_OK);
            assert!(norm.is_finite() && norm > 0.0);
            let (mut regions, mut count, mut found) = (ptr::null(), 99usize, 99usize);
            assert_eq!(
                varad_result_regions(r, &mut regions, &mut count, &mut found),
                VARAD_OK
            );
            assert!(count <= found);
            assert_eq!(regions.is_null(), count == 0);
            let (mut raw, mut raw_len) = (ptr::null(), 0usize);
            assert_eq!(
                varad_result_raw_map(r, &mut raw, &mut raw_len, ptr::null_mut(), ptr::null_mut()),
                VARAD_ERR_INVALID_ARGUMENT
            );
            varad_score_result_destroy(r);
        }
    }
}

#[test]
fn thresholds_get_and_set_with_range_checks() {
    // A model of its own: changing thresholds must not disturb the other tests.
    let model = new_model();
    let set = training_set(model, 5);
    unsafe {
        assert_eq!(
            varad_train(model, set, None, ptr::null_mut(), ptr::null_mut()),
            VARAD_OK,
            "{}",
            last_error()
        );
        varad_training_set_destroy(set);
        let get = |which: u32| {
            let mut v = f32::NAN;
            assert_eq!(varad_get_threshold(model, which, &mut v), VARAD_OK);
            v
        };
        let (image, review, fail) = (get(1), get(2), get(3));
        assert!(image > 0.0 && review <= fail);
        assert_eq!(varad_set_threshold(model, 1, 2.5), VARAD_OK);
        assert_eq!(get(1), 2.5);
        assert_eq!(
            varad_set_threshold(model, 1, -1.0),
            VARAD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            varad_set_threshold(model, 2, fail + 1.0),
            VARAD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(get(2), review, "a refused change changes nothing");
        assert_eq!(
            varad_set_threshold(model, 9, 1.0),
            VARAD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            varad_set_decision_thresholds(model, 5.0, 4.0),
            VARAD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(varad_set_decision_thresholds(model, 4.0, 5.0), VARAD_OK);
        assert_eq!((get(2), get(3)), (4.0, 5.0));
        assert_eq!(varad_set_threshold(model, 4, 0.25), VARAD_OK);
        assert_eq!(get(4), 0.25);
        let mut v = 0.0;
        assert_eq!(
            varad_get_threshold(model, 0, &mut v),
            VARAD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            varad_get_threshold(model, 1, ptr::null_mut()),
            VARAD_ERR_NULL_POINTER
        );

        // Saved thresholds come back on load; so do the scores, bit for bit.
        let dir = std::env::temp_dir().join(format!("varad-ffi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = CString::new(dir.join("m.varad").to_str().unwrap()).unwrap();
        assert_eq!(
            varad_save(model, path.as_ptr()),
            VARAD_OK,
            "{}",
            last_error()
        );
        let mut loaded = ptr::null_mut();
        let mut lp = c_structs::load_params();
        lp.threads = 1;
        assert_eq!(
            varad_load(path.as_ptr(), &lp, &mut loaded),
            VARAD_OK,
            "{}",
            last_error()
        );
        let mut v = 0.0;
        assert_eq!(varad_get_threshold(loaded, 3, &mut v), VARAD_OK);
        assert_eq!(v, 5.0);
        let pixels = common::texture(20, 96);
        assert_eq!(score(model, &pixels, 96), score(loaded, &pixels, 96));
        varad_destroy(loaded);

        let sentinel = 0x77usize as *mut VaradModel;
        let mut out = sentinel;
        let missing = CString::new(dir.join("missing.varad").to_str().unwrap()).unwrap();
        assert_eq!(
            varad_load(missing.as_ptr(), ptr::null(), &mut out),
            VARAD_ERR_IO
        );
        lp.size = 3;
        assert_eq!(
            varad_load(path.as_ptr(), &lp, &mut out),
            VARAD_ERR_INVALID_ARGUMENT
        );
        let mut lp = c_structs::load_params();
        lp.threads = -4;
        assert_eq!(
            varad_load(path.as_ptr(), &lp, &mut out),
            VARAD_ERR_INVALID_ARGUMENT
        );
        // A folder is an I/O problem with that path; an empty path is named as such.
        let folder = CString::new(dir.to_str().unwrap()).unwrap();
        assert_eq!(
            varad_load(folder.as_ptr(), ptr::null(), &mut out),
            VARAD_ERR_IO
        );
        assert!(
            last_error().contains("not a regular file"),
            "{}",
            last_error()
        );
        assert_eq!(varad_save(model, c"".as_ptr()), VARAD_ERR_INVALID_ARGUMENT);
        assert_eq!(last_error(), "the path is empty");
        // A damaged file is refused, naming the tensor.
        let mut bytes = std::fs::read(dir.join("m.varad")).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        let damaged = dir.join("damaged.varad");
        std::fs::write(&damaged, bytes).unwrap();
        let damaged = CString::new(damaged.to_str().unwrap()).unwrap();
        assert_eq!(
            varad_load(damaged.as_ptr(), ptr::null(), &mut out),
            VARAD_ERR_MODEL_FILE
        );
        assert!(
            last_error().contains("does not match its SHA-256"),
            "{}",
            last_error()
        );
        assert_eq!(out, sentinel);
        assert_eq!(varad_save(model, ptr::null()), VARAD_ERR_NULL_POINTER);
        std::fs::remove_dir_all(&dir).ok();
        varad_destroy(model);
    }
}

unsafe extern "C" fn cancel_at_step_two(p: *const VaradProgress, user: *mut c_void) -> i32 {
    let p = unsafe { &*p };
    let calls = unsafe { &*(user as *const AtomicU32) };
    calls.fetch_add(1, Ordering::SeqCst);
    assert!(p.size >= std::mem::size_of::<VaradProgress>());
    assert!(p.epoch >= 1 && p.step >= 1 && p.steps >= p.step && p.loss.is_finite());
    assert!(p.elapsed_seconds >= 0.0 && p.remaining_seconds >= 0.0);
    (p.step >= 2) as i32
}

#[test]
fn cancelling_leaves_the_model_unchanged_and_the_report_unwritten() {
    let model = new_model();
    let set = training_set(model, 5);
    let pixels = common::texture(30, 112);
    let mut threshold = 0.0;
    unsafe {
        // Untrained, and a cancelled training leaves it so.
        let mut r = ptr::null_mut();
        let v = view(&pixels, 112);
        let status = varad_train(
            model,
            set,
            Some(cancel_at_step_two),
            &AtomicU32::new(0) as *const AtomicU32 as *mut c_void,
            ptr::null_mut(),
        );
        assert_eq!(status, VARAD_ERR_CANCELLED);
        assert_eq!(
            varad_score(model, &v, ptr::null(), &mut r),
            VARAD_ERR_NOT_TRAINED
        );
        // Trained; then a cancelled training changes nothing of it.
        assert_eq!(
            varad_train(model, set, None, ptr::null_mut(), ptr::null_mut()),
            VARAD_OK
        );
        assert_eq!(varad_get_threshold(model, 1, &mut threshold), VARAD_OK);
    }
    let before = score(model, &pixels, 112);
    let calls = AtomicU32::new(0);
    let mut report = VaradTrainReport {
        size: std::mem::size_of::<VaradTrainReport>(),
        train_images: 12345,
        calibration_images: 0,
        epochs: 0,
        steps: 0,
        final_loss: 0.0,
        elapsed_seconds: 0.0,
        cache_memory_bytes: 0,
        cache_spilled_bytes: 0,
    };
    unsafe {
        let status = varad_train(
            model,
            set,
            Some(cancel_at_step_two),
            &calls as *const AtomicU32 as *mut c_void,
            &mut report,
        );
        assert_eq!(status, VARAD_ERR_CANCELLED);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(report.train_images, 12345);
        assert_eq!(score(model, &pixels, 112), before);
        let mut v = 0.0;
        assert_eq!(varad_get_threshold(model, 1, &mut v), VARAD_OK);
        assert_eq!(v.to_bits(), threshold.to_bits());

        let mut small = report;
        small.size = 12;
        assert_eq!(
            varad_train(model, set, None, ptr::null_mut(), &mut small),
            VARAD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            varad_train(ptr::null_mut(), set, None, ptr::null_mut(), ptr::null_mut()),
            VARAD_ERR_NULL_POINTER
        );
        assert_eq!(
            varad_train(model, ptr::null(), None, ptr::null_mut(), ptr::null_mut()),
            VARAD_ERR_NULL_POINTER
        );
        let mut count = 0;
        assert_eq!(varad_training_set_count(set, &mut count), VARAD_OK);
        assert_eq!(count, 5);
        let bad = VaradImageView {
            format: 0,
            ..view(&pixels, 112)
        };
        assert_eq!(
            varad_training_set_add(set, model, &bad),
            VARAD_ERR_INVALID_IMAGE
        );
        assert_eq!(varad_training_set_count(set, &mut count), VARAD_OK);
        assert_eq!(count, 5, "a refused image is not added");
        varad_training_set_destroy(set);
        varad_destroy(model);
    }
}

struct TrainingProbe {
    model: *mut VaradModel,
    set: *const VaradTrainingSet,
    statuses: Vec<VaradStatus>,
    thresholds: Vec<f32>,
}

/// Called from inside a training: what every other call on the model does meanwhile.
unsafe extern "C" fn probe_from_callback(_: *const VaradProgress, user: *mut c_void) -> i32 {
    let probe = unsafe { &mut *(user as *mut TrainingProbe) };
    let pixels = common::texture(3, 64);
    let mut result = ptr::null_mut();
    let status = unsafe { varad_score(probe.model, &view(&pixels, 64), ptr::null(), &mut result) };
    if status == VARAD_OK {
        unsafe { varad_score_result_destroy(result) };
    }
    probe.statuses.push(status);
    let mut v = 0.0;
    probe
        .statuses
        .push(unsafe { varad_get_threshold(probe.model, 1, &mut v) });
    probe.thresholds.push(v);
    probe
        .statuses
        .push(unsafe { varad_set_threshold(probe.model, 1, v * 2.0) });
    probe.statuses.push(unsafe {
        varad_train(
            probe.model,
            probe.set,
            None,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    });
    1
}

#[test]
fn during_training_scoring_uses_the_published_model_and_other_changes_are_busy() {
    let model = new_model();
    let set = training_set(model, 5);
    unsafe {
        assert_eq!(
            varad_train(model, set, None, ptr::null_mut(), ptr::null_mut()),
            VARAD_OK
        );
        let mut before = 0.0;
        assert_eq!(varad_get_threshold(model, 1, &mut before), VARAD_OK);
        let mut probe = TrainingProbe {
            model,
            set,
            statuses: Vec::new(),
            thresholds: Vec::new(),
        };
        let status = varad_train(
            model,
            set,
            Some(probe_from_callback),
            &mut probe as *mut TrainingProbe as *mut c_void,
            ptr::null_mut(),
        );
        assert_eq!(status, VARAD_ERR_CANCELLED);
        // Scoring and reading go on with the published model; a threshold change and a
        // second training are refused while the training runs.
        assert_eq!(
            probe.statuses,
            vec![VARAD_OK, VARAD_OK, VARAD_ERR_BUSY, VARAD_ERR_BUSY]
        );
        assert_eq!(probe.thresholds, vec![before]);
        // The cancelled training published nothing; the refused change changed nothing.
        let mut after = 0.0;
        assert_eq!(varad_get_threshold(model, 1, &mut after), VARAD_OK);
        assert_eq!(after.to_bits(), before.to_bits());
        // Once the training has returned, changes go through again.
        assert_eq!(varad_set_threshold(model, 1, before * 2.0), VARAD_OK);
        varad_training_set_destroy(set);
        varad_destroy(model);
    }
}

unsafe extern "C" fn cancel_at_once(_: *const VaradProgress, _: *mut c_void) -> i32 {
    1
}

#[test]
fn training_while_another_thread_scores_is_never_busy() {
    let model = new_model();
    let set = training_set(model, 5);
    unsafe {
        assert_eq!(
            varad_train(model, set, None, ptr::null_mut(), ptr::null_mut()),
            VARAD_OK
        );
    }
    let shared = Shared(model);
    let stop = AtomicBool::new(false);
    let scored = AtomicU32::new(0);
    std::thread::scope(|s| {
        let (shared, stop, scored) = (&shared, &stop, &scored);
        s.spawn(move || {
            let pixels = common::texture(4, 112);
            while !stop.load(Ordering::SeqCst) {
                let mut r = ptr::null_mut();
                let st = unsafe { varad_score(shared.0, &view(&pixels, 112), ptr::null(), &mut r) };
                assert_eq!(st, VARAD_OK);
                unsafe { varad_score_result_destroy(r) };
                scored.fetch_add(1, Ordering::SeqCst);
            }
        });
        while scored.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // Under the old exclusive lock, a try soon met the scoring thread (BUSY); now every
        // try runs (and is cancelled at its first step).
        for _ in 0..200 {
            let st = unsafe {
                varad_train(
                    shared.0,
                    set,
                    Some(cancel_at_once),
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
            assert_eq!(st, VARAD_ERR_CANCELLED, "{}", last_error());
        }
        stop.store(true, Ordering::SeqCst);
    });
    unsafe {
        varad_training_set_destroy(set);
        varad_destroy(model);
    }
}

#[test]
fn image_files_read_and_view() {
    let dir = std::env::temp_dir().join(format!("varad-ffi-img-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.png");
    let pixels = common::texture(5, 40);
    varad::image::write_png(
        &file,
        &varad::image::ImageView::packed(&pixels, 40, 40, varad::image::PixelFormat::Rgb8).unwrap(),
    )
    .unwrap();
    let path = CString::new(file.to_str().unwrap()).unwrap();
    let mut image = ptr::null_mut();
    unsafe {
        assert_eq!(varad_image_read(path.as_ptr(), &mut image), VARAD_OK);
        let mut v = VaradImageView {
            data: ptr::null(),
            width: 0,
            height: 0,
            stride: 0,
            format: 0,
        };
        assert_eq!(varad_image_view(image, &mut v), VARAD_OK);
        assert_eq!((v.width, v.height, v.stride, v.format), (40, 40, 120, 3));
        assert_eq!(
            std::slice::from_raw_parts(v.data, 40 * 40 * 3),
            pixels.as_slice()
        );
        varad_image_destroy(image);
        let sentinel = ptr::dangling_mut::<VaradImage>();
        let mut out = sentinel;
        let missing = CString::new(dir.join("no.png").to_str().unwrap()).unwrap();
        assert_eq!(varad_image_read(missing.as_ptr(), &mut out), VARAD_ERR_IO);
        let text = dir.join("t.txt");
        std::fs::write(&text, "not an image").unwrap();
        let text = CString::new(text.to_str().unwrap()).unwrap();
        assert_eq!(
            varad_image_read(text.as_ptr(), &mut out),
            VARAD_ERR_IMAGE_DECODE
        );
        assert_eq!(
            varad_image_read(ptr::null(), &mut out),
            VARAD_ERR_NULL_POINTER
        );
        assert_eq!(out, sentinel);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn heatmap_png_is_written() {
    let model = trained();
    let pixels = common::texture(6, 64);
    let dir = std::env::temp_dir().join(format!("varad-ffi-heat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("h.png");
    let path = CString::new(file.to_str().unwrap()).unwrap();
    let mut result = ptr::null_mut();
    unsafe {
        assert_eq!(
            varad_score(model, &view(&pixels, 64), ptr::null(), &mut result),
            VARAD_OK
        );
        assert_eq!(
            varad_write_heatmap_png(result, path.as_ptr(), 0.0),
            VARAD_OK
        );
        assert_eq!(
            varad_write_heatmap_png(result, path.as_ptr(), f32::NAN),
            VARAD_ERR_INVALID_ARGUMENT
        );
        varad_score_result_destroy(result);
    }
    let img = varad::image::read_image_file(&file, &Default::default()).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
    assert_eq!(img.format(), varad::image::PixelFormat::Mono8);
    assert!(img.data().contains(&255));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn status_codes_are_stable() {
    assert_eq!(VARAD_OK as i32, 0);
    assert_eq!(VARAD_ERR_INTERNAL as i32, 16);
    assert_eq!(VARAD_ERR_BUSY as i32, 17);
    assert_eq!(VARAD_ERR_NOT_CALIBRATED as i32, 18);
    let header = include_str!("../include/varad.h");
    assert!(header.contains("VARAD_ERR_BUSY = 17"));
    assert!(header.contains("VARAD_ERR_NOT_CALIBRATED = 18"));
}

#[test]
fn map_norm_defaults_to_two_sided_position_and_unknown_codes_are_refused() {
    let defaults = c_structs::params();
    assert_eq!(
        defaults.map_norm,
        VaradMapNorm::VARAD_MAP_NORM_POSITION_TWO_SIDED as u32
    );
    let backbone = tiny_backbone();
    let mut params = tiny_params(&backbone);
    params.map_norm = 5;
    let mut model = ptr::null_mut();
    unsafe {
        assert_eq!(
            varad_create(&params, &mut model),
            VARAD_ERR_INVALID_ARGUMENT
        );
        assert!(model.is_null());
        assert!(
            last_error().contains("params.map_norm is 5, not a valid value"),
            "{}",
            last_error()
        );
        // The paper's map is one code away, and a model trained under it scores.
        params.map_norm = VaradMapNorm::VARAD_MAP_NORM_NONE as u32;
        assert_eq!(
            varad_create(&params, &mut model),
            VARAD_OK,
            "{}",
            last_error()
        );
        let set = training_set(model, 5);
        assert_eq!(
            varad_train(model, set, None, ptr::null_mut(), ptr::null_mut()),
            VARAD_OK
        );
        varad_training_set_destroy(set);
        let pixels = common::texture(2, 112);
        assert!(!score(model, &pixels, 112).is_empty());
        varad_destroy(model);
    }
}

#[test]
fn init_calls_write_only_the_callers_size_and_refuse_sizes_no_struct_has() {
    // An older caller's VaradParams ends at `pixel_quantile` (any prefix that keeps
    // `size` and `backbone_path` is one): init writes exactly its bytes, with defaults.
    let old = std::mem::offset_of!(VaradParams, max_batch_bytes);
    let full = std::mem::size_of::<VaradParams>();
    let mut memory = vec![0xA5u8; full + 64];
    unsafe {
        let p = memory.as_mut_ptr().cast::<VaradParams>();
        assert_eq!(varad_params_init(p, old), VARAD_OK, "{}", last_error());
        assert!(memory[old..].iter().all(|&b| b == 0xA5), "wrote past size");
        let read = ptr::read_unaligned(p);
        let defaults = c_structs::params();
        assert_eq!(read.size, old);
        assert_eq!(read.epochs, defaults.epochs);
        assert_eq!(read.pixel_quantile, defaults.pixel_quantile);
        assert!(read.backbone_path.is_null());
        // A newer caller's larger struct: the bytes this library does not know are zeroed.
        assert_eq!(varad_params_init(p, full + 32), VARAD_OK);
        assert!(memory[full..full + 32].iter().all(|&b| b == 0));
        assert!(memory[full + 32..].iter().all(|&b| b == 0xA5));

        for size in [0, 8, 12, full + 4, 4104, usize::MAX] {
            memory.fill(0xA5);
            assert_eq!(
                varad_params_init(p, size),
                VARAD_ERR_INVALID_ARGUMENT,
                "{size}"
            );
            assert!(
                last_error().contains("varad_params_init"),
                "{}",
                last_error()
            );
            assert!(memory.iter().all(|&b| b == 0xA5), "wrote on error");
        }
        assert_eq!(
            varad_params_init(ptr::null_mut(), full),
            VARAD_ERR_NULL_POINTER
        );
        let mut lp = std::mem::MaybeUninit::<VaradLoadParams>::uninit();
        assert_eq!(
            varad_load_params_init(lp.as_mut_ptr(), 4),
            VARAD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            varad_load_params_init(lp.as_mut_ptr(), std::mem::size_of::<VaradLoadParams>()),
            VARAD_OK
        );
        let lp = lp.assume_init();
        assert_eq!(lp.device, VaradDevice::VARAD_DEVICE_AS_SAVED as u32);
        assert_eq!(lp.threads, -1);
        let sp = c_structs::score_params();
        assert!(sp.roi.is_null());
        assert_eq!((sp.roi_len, sp.raw_map), (0, 0));
    }
}

#[test]
fn unknown_enum_values_are_refused_naming_the_field_and_the_valid_values() {
    let backbone = tiny_backbone();
    let mut model = ptr::null_mut();
    unsafe {
        for (field, set) in [
            (
                "params.device",
                (|p: &mut VaradParams| p.device = 7) as fn(&mut VaradParams),
            ),
            ("params.resize_mode", |p: &mut VaradParams| {
                p.resize_mode = 2
            }),
            ("params.map_norm", |p: &mut VaradParams| p.map_norm = 5),
            ("params.beyond_data", |p: &mut VaradParams| {
                p.beyond_data = 2
            }),
        ] {
            let mut p = tiny_params(&backbone);
            set(&mut p);
            assert_eq!(varad_create(&p, &mut model), VARAD_ERR_INVALID_ARGUMENT);
            let message = last_error();
            assert!(message.starts_with(&format!("{field} is ")), "{message}");
            assert!(message.contains("0 = VARAD_"), "{message}");
        }
        let mut p = tiny_params(&backbone);
        p.device = VaradDevice::VARAD_DEVICE_AS_SAVED as u32;
        assert_eq!(varad_create(&p, &mut model), VARAD_ERR_INVALID_ARGUMENT);
        assert!(
            last_error().contains("only for VaradLoadParams"),
            "{}",
            last_error()
        );
        // The valid values listed are those VaradParams.device takes.
        for device in [VaradDevice::VARAD_DEVICE_AS_SAVED as u32, 7] {
            p.device = device;
            assert_eq!(varad_create(&p, &mut model), VARAD_ERR_INVALID_ARGUMENT);
            let message = last_error();
            assert!(
                message.contains(
                    "(0 = VARAD_DEVICE_AUTO, 1 = VARAD_DEVICE_CPU, 2 = VARAD_DEVICE_CUDA)"
                ),
                "{message}"
            );
            assert!(!message.contains("255 ="), "{message}");
        }
        assert!(model.is_null());
    }
}

/// A zeroed calibration report of `size` bytes, as a caller prepares one (with room for
/// a newer, longer layout).
#[repr(C)]
struct ReportMemory {
    report: VaradCalibrationReport,
    newer_fields: [u64; 2],
}

#[test]
fn the_calibration_report_is_written_for_the_callers_size_and_matches_the_thresholds() {
    let model = trained();
    let known = std::mem::size_of::<VaradCalibrationReport>();
    unsafe {
        // A newer caller's longer struct: the library fills its own layout and zeroes
        // the rest.
        let mut memory: ReportMemory = std::mem::zeroed();
        memory.newer_fields = [u64::MAX; 2];
        memory.report.size = known + 16;
        assert_eq!(
            varad_get_calibration_report(model, &mut memory.report),
            VARAD_OK,
            "{}",
            last_error()
        );
        assert_eq!(memory.newer_fields, [0, 0]);
        let r = memory.report;
        assert_eq!(r.size, known + 16);
        assert_eq!(r.n, r.cross_fitted + r.held_out);
        assert!(r.n >= 3, "{r:?}");
        assert_eq!(r.achievable_rate, 1.0 / (f64::from(r.n) + 1.0));
        let mut review = 0.0f32;
        let mut fail = 0.0f32;
        assert_eq!(
            varad_get_threshold(
                model,
                VaradThreshold::VARAD_THRESHOLD_REVIEW as u32,
                &mut review
            ),
            VARAD_OK
        );
        assert_eq!(
            varad_get_threshold(
                model,
                VaradThreshold::VARAD_THRESHOLD_FAIL as u32,
                &mut fail
            ),
            VARAD_OK
        );
        assert_eq!((r.review_threshold, r.fail_threshold), (review, fail));
        assert_eq!((r.review_requested, r.fail_requested), (0.01, 0.001));
        assert!(r.review_upper_bound >= r.fail_upper_bound && r.review_upper_bound <= 1.0);
        assert_eq!((r.known_defects, r.escapes, r.review_lowered), (0, 0, 0));

        // Sizes no struct has, and NULLs: refused, nothing written.
        for size in [0, 8, known - 8, known + 4, 1 << 20] {
            let mut out: VaradCalibrationReport = std::mem::zeroed();
            out.size = size;
            assert_eq!(
                varad_get_calibration_report(model, &mut out),
                VARAD_ERR_INVALID_ARGUMENT,
                "{size}"
            );
            assert!(last_error().contains("out_report.size"), "{}", last_error());
            assert_eq!(out.n, 0);
        }
        let mut out: VaradCalibrationReport = std::mem::zeroed();
        out.size = known;
        assert_eq!(
            varad_get_calibration_report(ptr::null(), &mut out),
            VARAD_ERR_NULL_POINTER
        );
        assert_eq!(
            varad_get_calibration_report(model, ptr::null_mut()),
            VARAD_ERR_NULL_POINTER
        );

        // Every decided result has a p-value in [1 / (n + 1), 1].
        let pixels = common::texture(40, 128);
        let mut result = ptr::null_mut();
        assert_eq!(
            varad_score(model, &view(&pixels, 128), ptr::null(), &mut result),
            VARAD_OK
        );
        let mut p = 0.0f64;
        assert_eq!(varad_result_p_value(result, &mut p), VARAD_OK);
        assert!(p >= r.achievable_rate && p <= 1.0, "{p}");
        // The p-value counts the normal scores at or above the image score.
        let count = p * (f64::from(r.n) + 1.0);
        assert!((count - count.round()).abs() < 1e-9, "{p}");
        assert_eq!(
            varad_result_p_value(result, ptr::null_mut()),
            VARAD_ERR_NULL_POINTER
        );
        varad_score_result_destroy(result);
    }
}

#[test]
fn known_defective_examples_are_counted_apart_from_the_training_images() {
    let model = new_model();
    let set = training_set(model, 2);
    unsafe {
        let mut pixels = common::texture(50, 128);
        for px in pixels.chunks_mut(3).skip(128 * 40).take(128 * 30) {
            px.copy_from_slice(&[255, 255, 255]);
        }
        assert_eq!(
            varad_training_set_add_defective(set, model, &view(&pixels, 128)),
            VARAD_OK,
            "{}",
            last_error()
        );
        let mut bad = view(&pixels, 128);
        bad.format = 0;
        assert_eq!(
            varad_training_set_add_defective(set, model, &bad),
            VARAD_ERR_INVALID_IMAGE
        );
        assert_eq!(
            varad_training_set_add_defective(ptr::null_mut(), model, &view(&pixels, 128)),
            VARAD_ERR_NULL_POINTER
        );
        let (mut good, mut defective) = (0usize, 0usize);
        assert_eq!(varad_training_set_count(set, &mut good), VARAD_OK);
        assert_eq!(
            varad_training_set_defective_count(set, &mut defective),
            VARAD_OK
        );
        assert_eq!((good, defective), (2, 1));
        assert_eq!(
            varad_training_set_defective_count(ptr::null(), &mut defective),
            VARAD_ERR_NULL_POINTER
        );
        varad_training_set_destroy(set);
        varad_destroy(model);
    }
}
