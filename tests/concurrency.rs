//! Concurrency: 8 threads scoring 320 images with one model get bit for bit
//! what serial scoring gets (maps, scores, decisions, regions), through the Rust API and
//! through the C API; separate models trained and scored in separate threads at once
//! equal the same work done alone.

#[path = "common/c_structs.rs"]
mod c_structs;
mod common;

use std::ops::ControlFlow;
use std::ptr;

use common::{texture, tiny_config, training_set};
use varad::ffi::*;
use varad::image::{ImageView, PixelFormat};
use varad::model::{ScoreOptions, ScoreResult};
use varad::Model;

const THREADS: usize = 8;
const PER_THREAD: usize = 40;

/// Image `i` of the workload: sizes from 40 to 103 pixels, and every fifth one with a
/// dark square planted in it, so that regions and decisions vary.
fn workload_image(i: usize) -> (Vec<u8>, u32) {
    let side = 40 + (i * 7) % 64;
    let mut pixels = texture(1000 + i as u64, side);
    if i.is_multiple_of(5) {
        for y in side / 3..side / 3 + side / 4 {
            for x in side / 2..side / 2 + side / 4 {
                let at = (y * side + x) * 3;
                pixels[at..at + 3].copy_from_slice(&[0, 255, 0]);
            }
        }
    }
    (pixels, side as u32)
}

/// Bit-for-bit equality of two results: `==` on floats would equate 0.0 and -0.0 and
/// never NaN with itself.
fn assert_identical(a: &ScoreResult, b: &ScoreResult, what: &str) {
    let bits = |m: &[f32]| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.map), bits(&b.map), "{what}: map");
    assert_eq!(
        a.image_score.to_bits(),
        b.image_score.to_bits(),
        "{what}: score"
    );
    assert_eq!(a, b, "{what}: assessment, regions or raw map");
}

#[test]
fn eight_threads_score_320_images_like_serial() {
    let model = common::trained_tiny_model();
    let n = THREADS * PER_THREAD;
    let images: Vec<(Vec<u8>, u32)> = (0..n).map(workload_image).collect();
    let options = ScoreOptions {
        raw_map: true,
        roi: None,
        ..Default::default()
    };
    let score = |i: usize| {
        let (pixels, side) = &images[i];
        let view = ImageView::packed(pixels, *side, *side, PixelFormat::Rgb8).unwrap();
        model.score(&[view], &options).unwrap().remove(0)
    };
    let serial: Vec<ScoreResult> = (0..n).map(score).collect();
    let parallel: Vec<Vec<(usize, ScoreResult)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let score = &score;
                // Interleaved, so that neighbouring images run at the same time.
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|k| k * THREADS + t)
                        .map(|i| (i, score(i)))
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut compared = 0;
    for (i, result) in parallel.into_iter().flatten() {
        assert_identical(&result, &serial[i], &format!("image {i}"));
        compared += 1;
    }
    assert_eq!(compared, n);
    let with_regions = serial
        .iter()
        .filter(|r| r.assessment.as_ref().is_some_and(|a| !a.regions.is_empty()))
        .count();
    eprintln!("{THREADS} threads x {PER_THREAD} images: {compared} results identical to serial ({with_regions} with regions)");
}

/// What the C API hands back for one image, copied out of the result.
#[derive(Debug, PartialEq)]
struct CResult {
    map_bits: Vec<u32>,
    score_bits: u32,
    decision: u32,
    regions: Vec<VaradRegion>,
}

struct Shared(*mut VaradModel);
// SAFETY: the C ABI documents a const VaradModel* as usable from many threads.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// A packed RGB8 view of a square image.
fn rgb_view(pixels: &[u8], side: u32) -> VaradImageView {
    VaradImageView {
        data: pixels.as_ptr(),
        width: side,
        height: side,
        stride: 0,
        format: VaradPixelFormat::VARAD_PIXEL_FORMAT_RGB8 as u32,
    }
}

fn c_score(model: *const VaradModel, pixels: &[u8], side: u32) -> CResult {
    let view = rgb_view(pixels, side);
    let mut r = ptr::null_mut();
    // SAFETY: a live model, a view over a live buffer, valid out-pointers; the result is
    // read and then freed once.
    unsafe {
        assert_eq!(
            varad_score(model, &view, ptr::null(), &mut r),
            VaradStatus::VARAD_OK
        );
        let result = read_result(r);
        varad_score_result_destroy(r);
        result
    }
}

/// What a result holds (map, score, decision, regions), read through the C API.
///
/// # Safety
/// `r` is a live result.
unsafe fn read_result(r: *const VaradScoreResult) -> CResult {
    // SAFETY: forwarded; every out-pointer is valid.
    unsafe {
        let (mut map, mut len) = (ptr::null(), 0usize);
        assert_eq!(
            varad_result_map(r, &mut map, &mut len, ptr::null_mut(), ptr::null_mut()),
            VaradStatus::VARAD_OK
        );
        let map_bits = std::slice::from_raw_parts(map, len)
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let mut score = 0f32;
        assert_eq!(
            varad_result_image_score(r, &mut score),
            VaradStatus::VARAD_OK
        );
        let mut decision = 0u32;
        assert_eq!(
            varad_result_decision(r, &mut decision),
            VaradStatus::VARAD_OK
        );
        let (mut regions, mut count) = (ptr::null(), 0usize);
        assert_eq!(
            varad_result_regions(r, &mut regions, &mut count, ptr::null_mut()),
            VaradStatus::VARAD_OK
        );
        let regions = if count == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(regions, count).to_vec()
        };
        CResult {
            map_bits,
            score_bits: score.to_bits(),
            decision,
            regions,
        }
    }
}

/// A tiny model made through the C API (untrained).
fn c_model(backbone: &std::ffi::CStr) -> *mut VaradModel {
    let mut p = c_structs::params();
    p.backbone_path = backbone.as_ptr();
    p.input_width = 112;
    p.input_height = 112;
    p.device = VaradDevice::VARAD_DEVICE_CPU as u32;
    p.threads = 2;
    p.prediction_step = 2;
    p.d_state = 4;
    p.epochs = 2;
    p.seed = 9;
    let mut model = ptr::null_mut();
    // SAFETY: valid params and out-pointer.
    unsafe { assert_eq!(varad_create(&p, &mut model), VaradStatus::VARAD_OK) };
    model
}

/// Trains `model` through the C API on the textures of `seeds`; the status of
/// `varad_train`.
fn c_train(model: *mut VaradModel, seeds: std::ops::Range<u64>) -> VaradStatus {
    // SAFETY: a live model; images are live during each call; the set is freed once.
    unsafe {
        let mut set = ptr::null_mut();
        assert_eq!(
            varad_training_set_create(model, &mut set),
            VaradStatus::VARAD_OK
        );
        for i in seeds {
            let pixels = texture(i, 96);
            let v = rgb_view(&pixels, 96);
            assert_eq!(
                varad_training_set_add(set, model, &v),
                VaradStatus::VARAD_OK
            );
        }
        let status = varad_train(model, set, None, ptr::null_mut(), ptr::null_mut());
        varad_training_set_destroy(set);
        status
    }
}

fn tiny_backbone() -> std::ffi::CString {
    std::ffi::CString::new(tiny_config().backbone.to_str().unwrap().to_string()).unwrap()
}

#[test]
fn eight_threads_score_320_images_through_the_c_api_like_serial() {
    let backbone = tiny_backbone();
    let model = c_model(&backbone);
    assert_eq!(c_train(model, 0..6), VaradStatus::VARAD_OK);
    let shared = Shared(model);
    let n = THREADS * PER_THREAD;
    let images: Vec<(Vec<u8>, u32)> = (0..n).map(workload_image).collect();
    let serial: Vec<CResult> = images
        .iter()
        .map(|(px, side)| c_score(shared.0, px, *side))
        .collect();
    let parallel: Vec<Vec<(usize, CResult)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (shared, images) = (&shared, &images);
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|k| k * THREADS + t)
                        .map(|i| (i, c_score(shared.0, &images[i].0, images[i].1)))
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut compared = 0;
    for (i, result) in parallel.into_iter().flatten() {
        assert_eq!(result, serial[i], "image {i}");
        compared += 1;
    }
    assert_eq!(compared, n);
    // SAFETY: the model from varad_create, no longer used by any thread.
    unsafe { varad_destroy(model) };
}

/// Trains a tiny model with `seed` and scores a few images with it.
fn train_and_score(seed: u64) -> (Model, Vec<ScoreResult>) {
    let mut config = tiny_config();
    config.seed = seed;
    let mut model = Model::new(config).unwrap();
    let set = training_set(&model, 6);
    model.fit(&set, |_| ControlFlow::Continue(())).unwrap();
    let results = (0..6)
        .map(|i| {
            let (pixels, side) = workload_image(i);
            let view = ImageView::packed(&pixels, side, side, PixelFormat::Rgb8).unwrap();
            model
                .score(&[view], &ScoreOptions::default())
                .unwrap()
                .remove(0)
        })
        .collect();
    (model, results)
}

#[test]
fn separate_models_in_separate_threads_equal_the_same_work_alone() {
    let seeds = [21u64, 22, 23];
    let alone: Vec<_> = seeds.iter().map(|&s| train_and_score(s)).collect();
    let together: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| s.spawn(move || train_and_score(seed)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (k, ((m1, r1), (m2, r2))) in alone.iter().zip(&together).enumerate() {
        assert!(m1.weights() == m2.weights(), "model {k}: weights differ");
        assert_eq!(m1.calibration(), m2.calibration(), "model {k}: calibration");
        for (i, (a, b)) in r1.iter().zip(r2).enumerate() {
            assert_identical(a, b, &format!("model {k}, image {i}"));
        }
    }
    // The seeds matter, so the comparison above is not trivially true.
    assert!(alone[0].0.weights() != alone[1].0.weights());
}

/// One scoring result through the C API with the normalised score too (it moves with the
/// calibration, so a map of one model state with the thresholds of another shows).
#[derive(Debug, PartialEq)]
struct Scored {
    result: CResult,
    normalised_bits: u32,
}

fn c_score_normalised(model: *const VaradModel, pixels: &[u8], side: u32) -> Scored {
    let view = rgb_view(pixels, side);
    let mut r = ptr::null_mut();
    let mut normalised = 0f32;
    // SAFETY: a live model, a view over a live buffer, valid out-pointers; freed once.
    unsafe {
        assert_eq!(
            varad_score(model, &view, ptr::null(), &mut r),
            VaradStatus::VARAD_OK
        );
        assert_eq!(
            varad_result_normalised_score(r, &mut normalised),
            VaradStatus::VARAD_OK
        );
        let result = read_result(r);
        varad_score_result_destroy(r);
        Scored {
            result,
            normalised_bits: normalised.to_bits(),
        }
    }
}

/// Training and threshold changes while four threads score back to back: both complete
/// (neither waits for the scorers nor makes them wait), and every score the threads got
/// is exactly what one of the three published states gives alone: the first training's,
/// the second training's, or the second with its thresholds moved. A score mixing two
/// states (new weights with old statistics or thresholds) would match none of them.
#[test]
fn training_and_threshold_changes_publish_whole_states_while_four_threads_score() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const SCORERS: usize = 4;
    let backbone = tiny_backbone();
    let model = c_model(&backbone);
    // SAFETY (here and below): a live model, scored before it is destroyed.
    let untrained = unsafe {
        let (pixels, side) = workload_image(0);
        let view = rgb_view(&pixels, side);
        let mut r = ptr::null_mut();
        varad_score(model, &view, ptr::null(), &mut r)
    };
    assert_eq!(untrained, VaradStatus::VARAD_ERR_NOT_TRAINED);
    assert_eq!(c_train(model, 0..6), VaradStatus::VARAD_OK);
    let (pixels, side) = workload_image(5);
    let first = c_score_normalised(model, &pixels, side);

    let shared = Shared(model);
    let stop = AtomicBool::new(false);
    let scored = AtomicUsize::new(0);
    let (second, moved, during_training, after_change, seen) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..SCORERS)
            .map(|_| {
                let (shared, stop, scored, pixels) = (&shared, &stop, &scored, &pixels);
                s.spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Acquire) {
                        seen.push(c_score_normalised(shared.0, pixels, side));
                        scored.fetch_add(1, Ordering::AcqRel);
                    }
                    seen
                })
            })
            .collect();
        let wait_for = |n: usize| {
            while scored.load(Ordering::Acquire) < n {
                std::thread::yield_now();
            }
        };
        wait_for(SCORERS);
        let before = scored.load(Ordering::Acquire);
        // A second training on other images, from the first one's weights.
        assert_eq!(c_train(shared.0, 20..26), VaradStatus::VARAD_OK);
        let during_training = scored.load(Ordering::Acquire) - before;
        let second = c_score_normalised(shared.0, &pixels, side);
        // Move every threshold so that the decision and the normalised score change.
        let score = f32::from_bits(second.result.score_bits);
        let (review, fail) = if second.result.decision == VaradDecision::VARAD_DECISION_PASS as u32
        {
            (score * 0.25, score * 0.5)
        } else {
            (score * 2.0, score * 4.0)
        };
        // SAFETY: a live model; threshold changes may run while others score.
        unsafe {
            assert_eq!(
                varad_set_decision_thresholds(shared.0, review, fail),
                VaradStatus::VARAD_OK
            );
            assert_eq!(
                varad_set_threshold(
                    shared.0,
                    VaradThreshold::VARAD_THRESHOLD_IMAGE as u32,
                    score * 3.0
                ),
                VaradStatus::VARAD_OK
            );
        }
        let moved = c_score_normalised(shared.0, &pixels, side);
        let changed_at = scored.load(Ordering::Acquire);
        wait_for(changed_at + 2 * SCORERS);
        stop.store(true, Ordering::Release);
        let seen: Vec<Scored> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        (second, moved, during_training, changed_at, seen)
    });
    assert!(
        during_training > 0,
        "no score completed while the model trained: scoring waited for training"
    );
    assert!(seen.len() > after_change);
    assert_ne!(
        first.result.map_bits, second.result.map_bits,
        "training changed nothing"
    );
    assert_ne!(second.result.decision, moved.result.decision);
    assert_ne!(second.normalised_bits, moved.normalised_bits);
    let states = [&first, &second, &moved];
    let mut counts = [0usize; 3];
    for (i, s) in seen.iter().enumerate() {
        let k = states
            .iter()
            .position(|state| *state == s)
            .unwrap_or_else(|| panic!("score {i} matches no published state: {s:?}"));
        counts[k] += 1;
    }
    assert!(counts[0] > 0 && counts[2] > 0, "states seen: {counts:?}");
    // SAFETY: no thread uses the model any more.
    unsafe { varad_destroy(model) };
}
