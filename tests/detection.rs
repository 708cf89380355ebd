//! Detection end to end on the bundled EfficientNet-Lite0: train on generated normal
//! textures at 512 x 512, then separate planted defects from normal images (image AUROC),
//! locate them (the defect region overlaps the planted one), and keep normal images
//! passing. Required under `make test` (VARAD_REQUIRE_BACKBONES=1).

use std::ops::ControlFlow;

mod common;

use common::lite0;
use varad::image::{ImageView, PixelFormat};
use varad::model::ScoreOptions;
use varad::score::Decision;
use varad::train::TrainingSet;
use varad::{Config, Device, Model};

const SIZE: usize = 512;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// A woven texture (two crossing stripe families with jitter and grain); with `defect`,
/// a dark stain of radius 18 px at a seeded place. Returns the pixels and the stain's centre.
fn image(seed: u64, defect: bool) -> (Vec<u8>, Option<(f32, f32)>) {
    let mut rng = Lcg(seed.wrapping_mul(7919) + 1);
    let (px, py) = (rng.next() * 12.0, rng.next() * 12.0);
    let centre = defect.then(|| (80.0 + rng.next() * 350.0, 80.0 + rng.next() * 350.0));
    let mut out = Vec::with_capacity(SIZE * SIZE * 3);
    for y in 0..SIZE {
        for x in 0..SIZE {
            let (fx, fy) = (x as f32, y as f32);
            let weave = ((fx + px) * 0.52).sin() * ((fy + py) * 0.52).cos();
            let mut v = 128.0 + 70.0 * weave + (rng.next() - 0.5) * 30.0;
            if let Some((cx, cy)) = centre {
                let d2 = (fx - cx).powi(2) + (fy - cy).powi(2);
                if d2 < 18.0 * 18.0 {
                    v = v * 0.3 + 20.0;
                }
            }
            let v = v.clamp(0.0, 255.0) as u8;
            out.extend_from_slice(&[v, (v as f32 * 0.8) as u8, (v as f32 * 0.6) as u8]);
        }
    }
    (out, centre)
}

fn auroc(normal: &[f32], anomalous: &[f32]) -> f64 {
    let mut wins = 0.0;
    for &a in anomalous {
        for &n in normal {
            wins += if a > n {
                1.0
            } else if a == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (normal.len() * anomalous.len()) as f64
}

#[test]
fn lite0_separates_planted_defects() {
    let Some(backbone) = lite0() else { return };
    let mut config = Config::new(backbone);
    config.input_size = Some((SIZE as u32, SIZE as u32));
    config.levels = vec!["stride8".into(), "stride16".into()];
    config.device = Device::Cpu;
    config.train.epochs = 4;
    config.seed = 1;
    let mut model = Model::new(config).unwrap();
    let mut set = TrainingSet::new(&model);
    for i in 0..12 {
        let (pixels, _) = image(i, false);
        set.add(
            &model,
            &[ImageView::packed(&pixels, SIZE as u32, SIZE as u32, PixelFormat::Rgb8).unwrap()],
        )
        .unwrap();
    }
    let report = model.fit(&set, |_| ControlFlow::Continue(())).unwrap();
    eprintln!(
        "epoch losses {:?}, variance ratios {:?}",
        report.epoch_losses, report.variance_ratios
    );

    let score = |seed: u64, defect: bool| {
        let (pixels, centre) = image(seed, defect);
        let view = ImageView::packed(&pixels, SIZE as u32, SIZE as u32, PixelFormat::Rgb8).unwrap();
        let result = model
            .score(&[view], &ScoreOptions::default())
            .unwrap()
            .remove(0);
        (result, centre)
    };
    let mut normal = Vec::new();
    let mut anomalous = Vec::new();
    let mut located = 0;
    let mut normal_passed = 0;
    for seed in 100..106 {
        let (result, _) = score(seed, false);
        normal.push(result.image_score);
        if result.assessment.as_ref().unwrap().decision == Decision::Pass {
            normal_passed += 1;
        }
        let (result, centre) = score(seed + 50, true);
        anomalous.push(result.image_score);
        let (cx, cy) = centre.unwrap();
        let assessment = result.assessment.unwrap();
        if let Some(top) = assessment.regions.first() {
            let inside =
                |v: f64, lo: u32, len: u32| v + 20.0 >= lo as f64 && v - 20.0 <= (lo + len) as f64;
            if inside(cx as f64, top.x, top.width) && inside(cy as f64, top.y, top.height) {
                located += 1;
            }
        }
    }
    let auc = auroc(&normal, &anomalous);
    eprintln!("normal {normal:?}\nanomalous {anomalous:?}\nAUROC {auc}, located {located}/6, normal passed {normal_passed}/6");
    assert!(auc > 0.9, "image AUROC {auc}");
    assert!(located >= 5, "defects located {located}/6");
    assert!(normal_passed >= 4, "normal images passed {normal_passed}/6");
}
