//! Images through the tokenizer: the committed tiny ViT always, the bundled
//! EfficientNet-Lite0 when `make setup` has written it (required under `make test`, which
//! sets VARAD_REQUIRE_BACKBONES=1, so CI cannot skip it silently).

use std::path::{Path, PathBuf};

mod common;

use common::lite0;
use varad::backbone::{Backbone, BackboneOptions, Tokenizer};
use varad::image::{to_backbone_input, ImageView, InputSpec, PixelFormat};
use varad::{Device, ErrorKind};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn open(path: &Path) -> Backbone {
    Backbone::open(
        path,
        &BackboneOptions {
            device: Device::Cpu,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A 1024 x 1024 RGB8 test card: smooth gradients plus a checker, so every level sees
/// structure.
fn test_card(width: usize, height: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let checker = if (x / 64 + y / 64) % 2 == 0 { 40 } else { 0 };
            data.push((x * 200 / width) as u8 + checker);
            data.push((y * 200 / height) as u8 + checker);
            data.push(((x + y) * 100 / (width + height)) as u8 + checker);
        }
    }
    data
}

#[test]
fn tiny_vit_tokenizes_a_1024_image_like_its_parts() {
    let backbone = open(&root().join("tests/data/tiny_vit.onnx"));
    let tokenizer = Tokenizer::new(backbone, InputSpec::new(1022, 1022)).unwrap();
    assert_eq!(tokenizer.grids(), vec![(73, 73); 3]);
    let pixels = test_card(1024, 1024);
    let view = ImageView::packed(&pixels, 1024, 1024, PixelFormat::Rgb8).unwrap();
    let tokens = tokenizer.tokenize(&[view]).unwrap();
    assert_eq!(tokens.geometries.len(), 1);
    for map in &tokens.levels {
        assert_eq!(
            (map.batch, map.channels, map.height, map.width),
            (1, 32, 73, 73)
        );
        assert!(map.data.iter().all(|v| v.is_finite()));
    }
    // The tokenizer is exactly preprocessing followed by a backbone run.
    let mut input = vec![0f32; 3 * 1022 * 1022];
    to_backbone_input(&view, tokenizer.input(), &mut input).unwrap();
    let direct = tokenizer.backbone().run(&input, 1, 1022, 1022).unwrap();
    assert_eq!(direct, tokens.levels);
}

#[test]
fn a_bad_image_in_a_batch_is_named_and_nothing_runs() {
    let backbone = open(&root().join("tests/data/tiny_vit.onnx"));
    let mut spec = InputSpec::new(112, 112);
    spec.limits.max_pixels = 200 * 200;
    let tokenizer = Tokenizer::new(backbone, spec).unwrap();
    let small = test_card(100, 100);
    let big = test_card(300, 300);
    let ok = ImageView::packed(&small, 100, 100, PixelFormat::Rgb8).unwrap();
    let too_big = ImageView::packed(&big, 300, 300, PixelFormat::Rgb8).unwrap();
    let err = tokenizer.tokenize(&[ok, too_big]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ImageTooLarge, "{err}");
    assert!(err.message().starts_with("image 1:"), "{err}");
    assert_eq!(
        tokenizer.tokenize(&[]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let tokens = tokenizer.tokenize(&[ok, ok]).unwrap();
    assert_eq!(tokens.levels[0].image(0), tokens.levels[0].image(1));
}

#[test]
fn input_size_must_suit_the_backbone() {
    let backbone = open(&root().join("tests/data/tiny_vit.onnx"));
    let err = Tokenizer::new(backbone, InputSpec::new(1024, 1024)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.message().contains("nearest allowed size is 1022x1022"),
        "{err}"
    );
}

#[test]
fn efficientnet_lite0_tokenizes_a_real_photograph_at_1024() {
    let Some(path) = lite0() else { return };
    let photo = varad::image::read_image_file(
        root().join(".deps/venv/lib/python3.11/site-packages/skimage/data/brick.png"),
        &Default::default(),
    )
    .or_else(|_| {
        // Another Python minor version: find the bundled photo anywhere in the venv.
        let found =
            glob_brick(&root().join(".deps/venv")).expect("scikit-image's brick.png in .deps/venv");
        varad::image::read_image_file(found, &Default::default())
    })
    .unwrap();
    let tokenizer = Tokenizer::new(open(&path), InputSpec::new(1024, 1024)).unwrap();
    let tokens = tokenizer.tokenize(&[photo.view()]).unwrap();
    let shapes: Vec<_> = tokens
        .levels
        .iter()
        .map(|m| (m.channels, m.height, m.width))
        .collect();
    assert_eq!(shapes, vec![(24, 256, 256), (40, 128, 128), (112, 64, 64)]);
    for map in &tokens.levels {
        assert!(map.data.iter().all(|v| v.is_finite()));
        let mean = map.data.iter().map(|v| v.abs() as f64).sum::<f64>() / map.data.len() as f64;
        assert!(
            mean > 1e-3,
            "a pretrained network gives non-trivial features, mean |x| = {mean}"
        );
    }
}

fn glob_brick(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = glob_brick(&path) {
                return Some(found);
            }
        } else if path.ends_with("skimage/data/brick.png") {
            return Some(path);
        }
    }
    None
}
