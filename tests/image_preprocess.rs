//! Preprocessing through the public API the way the C layer and the tokenizer use it:
//! a view built from a raw pointer and a format code, two images batched into one
//! `[B, 3, H, W]` buffer, and results mapped back with the geometry.

use varad::image::reference::to_backbone_input_naive;
use varad::image::{
    read_image_file, to_backbone_input, ImageLimits, ImageView, InputSpec, OwnedImage, PixelFormat,
    ResizeMode,
};
use varad::ErrorKind;

#[test]
fn raw_region_of_interest_into_a_batch() {
    // A 40 x 30 BGR8 "cv::Mat" whose 25 x 17 region of interest starts at (6, 5): the
    // view's stride is the full row and the pointer points inside the buffer.
    let (full_w, full_h) = (40usize, 30usize);
    let stride = full_w * 3;
    let buf: Vec<u8> = (0..stride * full_h).map(|i| (i * 31 % 251) as u8).collect();
    let roi = unsafe { buf.as_ptr().add(5 * stride + 6 * 3) };
    let format = PixelFormat::from_u32(4).unwrap();
    let view = unsafe { ImageView::from_raw(roi, 25, 17, stride, format) }.unwrap();
    // A Mono16 image at an odd address, as the second image of the batch.
    let mono: Vec<u8> = (0..1 + 9 * 11 * 2).map(|i| (i * 7) as u8).collect();
    let mono_view = ImageView::packed(&mono[1..], 9, 11, PixelFormat::Mono16).unwrap();

    let spec = InputSpec::new(14, 28).with_mode(ResizeMode::KeepAspect);
    let per_image = spec.buffer_len().unwrap();
    let mut batch = vec![f32::NAN; 2 * per_image];
    let (first, second) = batch.split_at_mut(per_image);
    let g0 = to_backbone_input(&view, &spec, first).unwrap();
    let g1 = to_backbone_input(&mono_view, &spec, second).unwrap();

    for (view, got, g) in [(view, first, g0), (mono_view, second, g1)] {
        let mut want = vec![0.0; per_image];
        assert_eq!(to_backbone_input_naive(&view, &spec, &mut want).unwrap(), g);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 2e-6, "{a} vs {b}");
        }
        // The image fills the width; mapping its far corner lands on the rect's.
        let r = g.input_rect_for_image();
        assert_eq!((r.x, r.width), (0, 14));
        let (x, y) = g.image_to_input(f64::from(view.width()), f64::from(view.height()));
        assert!((x - 14.0).abs() < 1e-9 && (y - f64::from(r.y + r.height)).abs() < 1e-9);
    }
}

#[test]
fn a_decoded_file_feeds_the_preprocessing() {
    let img = OwnedImage::new(3, 2, PixelFormat::Rgb8, vec![255; 18]).unwrap();
    let path = std::env::temp_dir().join(format!("varad-pre-{}.png", std::process::id()));
    varad::image::write_png(&path, &img.view()).unwrap();
    let back = read_image_file(&path, &ImageLimits::default()).unwrap();
    let _ = std::fs::remove_file(&path);
    let spec = InputSpec::new(8, 8);
    let mut out = vec![0.0; spec.buffer_len().unwrap()];
    to_backbone_input(&back.view(), &spec, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 1.0));
}

#[test]
fn a_view_over_the_limit_is_refused_untouched() {
    let buf = vec![0u8; 100 * 100];
    let view = ImageView::packed(&buf, 100, 100, PixelFormat::Mono8).unwrap();
    let spec = InputSpec {
        limits: ImageLimits { max_pixels: 9_999 },
        ..InputSpec::new(4, 4)
    };
    let mut out = vec![3.0; spec.buffer_len().unwrap()];
    let e = to_backbone_input(&view, &spec, &mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ImageTooLarge);
    assert!(
        e.message().contains("100 x 100") && e.message().contains("9999"),
        "{e}"
    );
    assert!(out.iter().all(|&v| v == 3.0));
}

/// Fuzzing found 1.0000001 in the input of a white 7 x 1 image shrunk into a 4 x 122
/// input (keeping the aspect): the filters' f32 weights summed past 1. Every value of
/// the backbone input is in [0, 1]. (The fuzz input itself is replayed from
/// fuzz/regressions/image/ by tests/fuzz_corpus.rs.)
#[test]
fn white_pixels_shrunk_stay_at_most_one() {
    use varad::image::{to_backbone_input, ImageView, InputSpec, PixelFormat, ResizeMode};
    for (w, h, iw, ih) in [(7u32, 1u32, 4u32, 122u32), (7, 3, 4, 4), (13, 13, 5, 7)] {
        for format in [PixelFormat::Mono8, PixelFormat::Rgb8, PixelFormat::Mono16] {
            let pixels = vec![255u8; (w * h) as usize * format.bytes_per_pixel()];
            let view = ImageView::packed(&pixels, w, h, format).unwrap();
            for mode in [ResizeMode::Stretch, ResizeMode::KeepAspect] {
                let spec = InputSpec::new(iw, ih).with_mode(mode);
                let mut out = vec![0f32; spec.buffer_len().unwrap()];
                to_backbone_input(&view, &spec, &mut out).unwrap();
                assert!(
                    out.iter().all(|v| (0.0..=1.0).contains(v)),
                    "{w}x{h} {format:?} into {iw}x{ih} {mode:?}: {:?}",
                    out.iter().copied().fold(f32::MIN, f32::max)
                );
            }
        }
    }
}
