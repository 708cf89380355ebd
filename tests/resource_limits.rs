//! Resource limits (issue #8): an image over the pixel limit, a scoring batch over the
//! per-call memory limit and a full training cache each fail with their own error kind,
//! their own C status and a message naming the numbers, before any work is done.

#[path = "common/c_structs.rs"]
mod c_structs;
mod common;

use std::ffi::{CStr, CString};
use std::ptr;

use common::{texture, tiny_config};
use varad::ffi::*;
use varad::image::{ImageView, PixelFormat};
use varad::model::ScoreOptions;
use varad::train::TrainingSet;
use varad::{ErrorKind, Model};

fn rgb(pixels: &[u8], side: u32) -> ImageView<'_> {
    ImageView::packed(pixels, side, side, PixelFormat::Rgb8).unwrap()
}

#[test]
fn each_limit_has_its_own_kind_and_status() {
    let kinds = [
        ErrorKind::ImageTooLarge,
        ErrorKind::BatchTooLarge,
        ErrorKind::CacheFull,
    ];
    let statuses: Vec<VaradStatus> = kinds.iter().map(|&k| k.into()).collect();
    assert_eq!(
        statuses,
        vec![
            VaradStatus::VARAD_ERR_IMAGE_TOO_LARGE,
            VaradStatus::VARAD_ERR_BATCH_TOO_LARGE,
            VaradStatus::VARAD_ERR_CACHE_FULL
        ]
    );
    assert_eq!(VaradStatus::VARAD_ERR_BATCH_TOO_LARGE as i32, 19);
    assert_eq!(VaradStatus::VARAD_ERR_CACHE_FULL as i32, 20);
}

#[test]
fn limits_refuse_with_clear_errors() {
    let mut config = tiny_config();
    config.max_image_pixels = 100 * 100;
    // One 100 x 100 image needs about 320 kB, two about 640 kB (see check_batch_memory).
    config.score.max_batch_bytes = 500_000;
    config.train.cache_limit_bytes = 0;
    config.train.cache_disk_limit_bytes = 1;
    let model = Model::new(config).unwrap();
    let options = ScoreOptions::default();

    let big = texture(1, 101);
    let e = model.score(&[rgb(&big, 101)], &options).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ImageTooLarge, "{e}");
    assert!(
        e.message().contains("10201") && e.message().contains("10000"),
        "{e}"
    );

    // Within both limits: it gets past them to the next check (the model is untrained).
    let img = texture(2, 100);
    let e = model.score(&[rgb(&img, 100)], &options).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotTrained, "{e}");
    let e = model
        .score(&[rgb(&img, 100), rgb(&img, 100)], &options)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BatchTooLarge, "{e}");
    assert!(e.message().contains("500000"), "{e}");

    let mut set = TrainingSet::new(&model);
    let e = set.add(&model, &[rgb(&img, 100)]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CacheFull, "{e}");
    assert!(e.message().contains("cache_disk_limit_bytes"), "{e}");
    assert_eq!(set.len(), 0, "a refused image is not cached");
}

#[test]
fn the_c_api_reports_the_batch_limit_and_old_params_sizes_get_its_default() {
    let backbone = CString::new(tiny_config().backbone.to_str().unwrap()).unwrap();
    let mut p = c_structs::params();
    p.backbone_path = backbone.as_ptr();
    p.input_width = 112;
    p.input_height = 112;
    p.device = VaradDevice::VARAD_DEVICE_CPU as u32;
    p.threads = 1;
    p.max_batch_bytes = 500_000;
    let mut model = ptr::null_mut();
    let img = texture(3, 100);
    let view = VaradImageView {
        data: img.as_ptr(),
        width: 100,
        height: 100,
        stride: 0,
        format: VaradPixelFormat::VARAD_PIXEL_FORMAT_RGB8 as u32,
    };
    let views = [view, view];
    let mut results = [ptr::null_mut(); 2];
    // SAFETY: valid params, views over live buffers, out-arrays of the claimed length.
    unsafe {
        assert_eq!(varad_create(&p, &mut model), VaradStatus::VARAD_OK);
        let st = varad_score_batch(model, views.as_ptr(), 2, ptr::null(), results.as_mut_ptr());
        assert_eq!(st, VaradStatus::VARAD_ERR_BATCH_TOO_LARGE);
        let msg = CStr::from_ptr(varad_last_error_message()).to_string_lossy();
        assert!(msg.contains("max_batch_bytes"), "{msg}");
        assert!(
            results.iter().all(|r| r.is_null()),
            "results written on error"
        );
        varad_destroy(model);

        // A caller built against an older, shorter VaradParams (ending at
        // pixel_quantile) passes that size: accepted, and the limits are the defaults.
        let old_size = std::mem::offset_of!(VaradParams, max_batch_bytes);
        p.size = old_size;
        p.max_batch_bytes = 1;
        assert_eq!(varad_create(&p, &mut model), VaradStatus::VARAD_OK);
        // Past the batch limit to the next check (the model is untrained).
        let st = varad_score_batch(model, views.as_ptr(), 2, ptr::null(), results.as_mut_ptr());
        assert_eq!(
            st,
            VaradStatus::VARAD_ERR_NOT_TRAINED,
            "the stale max_batch_bytes was read"
        );
        varad_destroy(model);
        // A size no C struct has (not a multiple of its alignment) is refused.
        p.size = old_size - 1;
        assert_eq!(
            varad_create(&p, &mut model),
            VaradStatus::VARAD_ERR_INVALID_ARGUMENT
        );
    }
}
