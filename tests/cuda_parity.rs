//! The CUDA predictor against the CPU: forward, every gradient, and AdamW steps, on
//! small random shapes chosen to hit the kernels' edges (several chunks, partial channel
//! blocks, d_state below / equal to a warp, several layers).
//!
//! One body per check, run on each device as candle's `test_device!` does: the `_cpu`
//! test always runs (so the body and its reference are exercised everywhere), the
//! `_cuda` test runs where a usable GPU is found and otherwise prints why it skipped.
//! The reference is the CPU predictor in f64; each device must agree with it to 1e-4
//! relative (the largest difference over the tensor's largest magnitude), the contract
//! of DESIGN.md.

use std::ops::ControlFlow;
use std::sync::Arc;

mod common;

use varad::config::TrainConfig;
use varad::cuda::emulator::{emulated_device, emulated_device_with, ScheduleOrder};
use varad::cuda::{self, CudaAdamW, CudaDevice, CudaPredictor};
use varad::image::{ImageView, PixelFormat};
use varad::predictor::{Predictor, PredictorConfig};
use varad::train::adamw::AdamW;
use varad::{Device, ErrorKind, Model};

const TOL: f64 = 1e-4;

enum Dev {
    Cpu,
    Cuda(Arc<CudaDevice>),
}

macro_rules! test_device {
    ($body:ident, $cpu:ident, $cuda:ident, $emulated:ident) => {
        #[test]
        fn $cpu() {
            $body(&Dev::Cpu);
        }

        #[test]
        fn $cuda() {
            match cuda::device(0) {
                Ok(d) => $body(&Dev::Cuda(d)),
                Err(e) => eprintln!("SKIPPED on CUDA ({}): {}", stringify!($body), e.message()),
            }
        }

        #[test]
        fn $emulated() {
            $body(&Dev::Cuda(emulated(ScheduleOrder::Ascending)));
        }
    };
}

/// The kernels and host code on the CPU emulator; it must be available (it needs only a
/// C++ compiler), so a failure to build it fails the test.
fn emulated(order: ScheduleOrder) -> Arc<CudaDevice> {
    emulated_device(order).unwrap_or_else(|e| panic!("{}", e.message()))
}

/// `(batch, len, d_model, d_state, n_layers, d_conv)`.
const SHAPES: [(usize, usize, usize, usize, usize, usize); 5] = [
    (2, 5, 8, 16, 1, 4),
    // Several checkpoint chunks; N = 4 leaves lanes of each channel group idle.
    (3, 70, 12, 4, 2, 4),
    // Di = 40: the last channel block is partial; N = 12 is not a power of two.
    (1, 130, 20, 12, 1, 3),
    // N = 32: a whole warp per channel, chunk 16.
    (2, 40, 16, 32, 1, 4),
    // A length-1 sequence and three layers.
    (4, 1, 8, 16, 3, 4),
];

fn predictor(shape: (usize, usize, usize, usize, usize, usize), seed: u64) -> Predictor<f32> {
    let (_, _, c, n, layers, kw) = shape;
    let cfg = PredictorConfig {
        d_state: n,
        n_layers: layers,
        d_conv: kw,
        ..PredictorConfig::new(c)
    };
    let mut p = Predictor::init(cfg, seed).unwrap();
    // Non-zero everywhere (init leaves some biases at zero), so every gradient path
    // carries signal.
    let mut rng = Lcg(seed ^ 0x9e37);
    for (_, t) in p.params_mut() {
        for v in t.iter_mut() {
            *v += 0.05 * rng.next();
        }
    }
    p
}

struct Lcg(u64);

impl Lcg {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    let diff = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    diff / scale
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    let e = rel_err(got, want);
    eprintln!("{what}: relative error {e:.2e} (tolerance {TOL:.0e})");
    assert!(e <= TOL, "{what}: relative error {e:.3e} > {TOL:.0e}");
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn forward_on(dev: &Dev, p: &Predictor<f32>, x: &[f32], b: usize, l: usize) -> Vec<f32> {
    match dev {
        Dev::Cpu => p.forward(x, b, l).unwrap(),
        Dev::Cuda(d) => CudaPredictor::from_predictor(d, p)
            .unwrap()
            .forward(x, b, l)
            .unwrap(),
    }
}

/// `(output, dL/dinput, [(name, gradient)])`.
type Grads = (Vec<f32>, Vec<f32>, Vec<(String, Vec<f32>)>);

fn grads_on(dev: &Dev, p: &Predictor<f32>, x: &[f32], b: usize, l: usize, gout: &[f32]) -> Grads {
    match dev {
        Dev::Cpu => {
            let (out, tape) = p.forward_train(x, b, l).unwrap();
            let (gin, g) = p.backward(&tape, gout).unwrap();
            (out, gin, g.iter().map(|(n, v)| (n, v.to_vec())).collect())
        }
        Dev::Cuda(d) => {
            let gp = CudaPredictor::from_predictor(d, p).unwrap();
            let (out, tape) = gp.forward_train(x, b, l).unwrap();
            let (gin, g) = gp.backward(&tape, gout).unwrap();
            let g = g.to_host(&gp).unwrap();
            (out, gin, g.iter().map(|(n, v)| (n, v.to_vec())).collect())
        }
    }
}

fn check_forward(dev: &Dev) {
    for (i, &shape) in SHAPES.iter().enumerate() {
        let (b, l, c, ..) = shape;
        let p = predictor(shape, i as u64 + 1);
        let x = Lcg(100 + i as u64).vec(b * l * c);
        let want = p.cast::<f64>().forward(&to64(&x), b, l).unwrap();
        let got = forward_on(dev, &p, &x, b, l);
        assert_close(&format!("forward {shape:?}"), &got, &want);
    }
}

fn check_gradients(dev: &Dev) {
    for (i, &shape) in SHAPES.iter().enumerate() {
        let (b, l, c, ..) = shape;
        let p = predictor(shape, i as u64 + 11);
        let x = Lcg(200 + i as u64).vec(b * l * c);
        let gout = Lcg(300 + i as u64).vec(b * l * c);
        let p64 = p.cast::<f64>();
        let (out64, tape) = p64.forward_train(&to64(&x), b, l).unwrap();
        let (gin64, g64) = p64.backward(&tape, &to64(&gout)).unwrap();
        let (out, gin, grads) = grads_on(dev, &p, &x, b, l, &gout);
        assert_close(&format!("train forward {shape:?}"), &out, &out64);
        assert_close(&format!("dL/dinput {shape:?}"), &gin, &gin64);
        assert_eq!(grads.len(), g64.iter().count());
        for (name, g) in &grads {
            assert_close(&format!("{name} {shape:?}"), g, g64.get(name).unwrap());
        }
    }
}

/// Matrices take weight decay, as in the trainer.
fn decays(name: &str) -> bool {
    name.ends_with("proj.weight") || name.ends_with("conv1d.weight")
}

/// Two AdamW steps (forward, backward, update) on `dev`; returns the weights.
fn train_on(
    dev: &Dev,
    p: &Predictor<f32>,
    x: &[f32],
    b: usize,
    l: usize,
    gout: &[f32],
    cfg: &TrainConfig,
) -> Predictor<f32> {
    let names: Vec<String> = p.tensors().into_iter().map(|t| t.0).collect();
    let decay: Vec<bool> = names.iter().map(|n| decays(n)).collect();
    match dev {
        Dev::Cpu => {
            let mut p = p.clone();
            let lengths: Vec<usize> = p.tensors().iter().map(|t| t.2.len()).collect();
            let mut opt = AdamW::new(cfg, &lengths);
            for _ in 0..2 {
                let (_, tape) = p.forward_train(x, b, l).unwrap();
                let (_, g) = p.backward(&tape, gout).unwrap();
                let grads: Vec<Vec<f32>> =
                    names.iter().map(|n| g.get(n).unwrap().to_vec()).collect();
                let grefs: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
                let mut params: Vec<&mut [f32]> = p.params_mut().into_iter().map(|t| t.1).collect();
                opt.step(&mut params, &grefs, &decay);
            }
            p
        }
        Dev::Cuda(d) => {
            let mut gp = CudaPredictor::from_predictor(d, p).unwrap();
            let mut opt = CudaAdamW::new(cfg, &gp).unwrap();
            for _ in 0..2 {
                let (_, tape) = gp.forward_train(x, b, l).unwrap();
                let (_, g) = gp.backward(&tape, gout).unwrap();
                opt.step(&mut gp, &g, &decay).unwrap();
            }
            assert_eq!(opt.steps(), 2);
            gp.to_predictor().unwrap()
        }
    }
}

fn check_training_step(dev: &Dev) {
    let cfg = TrainConfig {
        learning_rate: 1e-2,
        weight_decay: 0.1,
        ..TrainConfig::default()
    };
    for (i, &shape) in SHAPES.iter().enumerate().take(4) {
        let (b, l, c, ..) = shape;
        let p = predictor(shape, i as u64 + 21);
        let x = Lcg(400 + i as u64).vec(b * l * c);
        let gout = Lcg(500 + i as u64).vec(b * l * c);
        let want = train_on(&Dev::Cpu, &p, &x, b, l, &gout, &cfg);
        let got = train_on(dev, &p, &x, b, l, &gout, &cfg);
        for ((name, _, w), (_, _, g)) in want.tensors().into_iter().zip(got.tensors()) {
            assert_close(
                &format!("{name} after 2 AdamW steps {shape:?}"),
                g,
                &to64(w),
            );
        }
        // The step moved the weights (the comparison is not of two untouched copies).
        assert_ne!(want, p);
    }
}

test_device!(check_forward, forward_cpu, forward_cuda, forward_emulated);
test_device!(
    check_gradients,
    gradients_cpu,
    gradients_cuda,
    gradients_emulated
);
test_device!(
    check_training_step,
    training_step_cpu,
    training_step_cuda,
    training_step_emulated
);

#[test]
fn requested_cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back() {
    let auto = cuda::resolve(Device::Auto).unwrap();
    match cuda::device(0) {
        Ok(d) => {
            eprintln!("GPU present ({}): checking that it resolves", d.name());
            assert_eq!(auto.active, Device::Cuda(0));
            assert!(auto.fallback_reason.is_none());
            assert!(cuda::resolve(Device::Cuda(0)).is_ok());
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Cuda);
            let err = cuda::resolve(Device::Cuda(0)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Cuda);
            assert!(
                err.message().contains("cuda:0 was requested"),
                "{}",
                err.message()
            );
            assert_eq!(auto.active, Device::Cpu);
            let reason = auto.fallback_reason.expect("a recorded reason");
            assert!(!reason.is_empty());
            eprintln!("no GPU: Auto falls back with the reason: {reason}");
        }
    }
    // A device index no machine has is an error, never a panic.
    let err = cuda::resolve(Device::Cuda(999)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cuda);
    assert_eq!(cuda::resolve(Device::Cpu).unwrap().active, Device::Cpu);
}

/// Bit patterns, so that NaNs compare too.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A kernel whose result depends on the order threads run in (a missing barrier, two
/// threads writing one value, a reduction in timing order) gives different bits when the
/// emulator runs lanes, warps and blocks in the opposite order.
#[test]
fn emulated_results_do_not_depend_on_the_thread_order() {
    let up = emulated(ScheduleOrder::Ascending);
    let down = emulated(ScheduleOrder::Descending);
    for (i, &shape) in SHAPES.iter().enumerate() {
        let (b, l, c, ..) = shape;
        let p = predictor(shape, i as u64 + 31);
        let x = Lcg(600 + i as u64).vec(b * l * c);
        let gout = Lcg(700 + i as u64).vec(b * l * c);
        let (out_a, gin_a, grads_a) = grads_on(&Dev::Cuda(up.clone()), &p, &x, b, l, &gout);
        let (out_d, gin_d, grads_d) = grads_on(&Dev::Cuda(down.clone()), &p, &x, b, l, &gout);
        assert_eq!(bits(&out_a), bits(&out_d), "train forward {shape:?}");
        assert_eq!(bits(&gin_a), bits(&gin_d), "dL/dinput {shape:?}");
        for ((name, ga), (_, gd)) in grads_a.iter().zip(&grads_d) {
            assert_eq!(bits(ga), bits(gd), "{name} {shape:?}");
        }
    }
}

/// The launch shapes of the paper's setting, DINOv2 ViT-S/14 at 1022 x 1022: a 73 x 73
/// grid (L = 5329 tokens), C = 384, the 4 scan directions as the batch, one block. The
/// scans get 48 channel blocks per direction and 167 checkpoint chunks; the forward and
/// every gradient are checked against the CPU in f64.
#[test]
fn emulated_kernels_at_the_papers_1022_pixel_grid() {
    let dev = Dev::Cuda(emulated(ScheduleOrder::Ascending));
    let (b, l, c) = (4, 73 * 73, 384);
    let shape = (b, l, c, 16, 1, 4);
    let p = predictor(shape, 41);
    let x = Lcg(800).vec(b * l * c);
    let gout = Lcg(801).vec(b * l * c);
    let p64 = p.cast::<f64>();
    let (out64, tape) = p64.forward_train(&to64(&x), b, l).unwrap();
    let (gin64, g64) = p64.backward(&tape, &to64(&gout)).unwrap();
    let (out, gin, grads) = grads_on(&dev, &p, &x, b, l, &gout);
    assert_close("train forward at 1022 px", &out, &out64);
    assert_close("dL/dinput at 1022 px", &gin, &gin64);
    for (name, g) in &grads {
        assert_close(&format!("{name} at 1022 px"), g, g64.get(name).unwrap());
    }
    let inference = forward_on(&dev, &p, &x, b, l);
    assert_close("forward at 1022 px", &inference, &out64);
}

/// The checks above can fail: each of these one-line breakages of the kernels, compiled
/// into an emulator of its own, makes the forward or the gradients disagree with the CPU
/// or the emulator report the fault.
#[test]
fn emulated_checks_catch_a_broken_kernel() {
    let mutants = [
        (
            "a wrong index: the conv reads one row too early",
            "acc += w[d * kw + k] * x[(row + k + 1 - kw) * (u64)ldx + d];",
            "acc += w[d * kw + k] * x[(row + k - kw) * (u64)ldx + d];",
        ),
        (
            "a missing barrier before the block sums its warps' dB, dC",
            "        __syncthreads();\n        for (int idx = tid;",
            "        for (int idx = tid;",
        ),
        (
            "a missing bounds check: the conv's last block writes past its output",
            "    if (i >= rows * (u64)di) return;\n    u64 row = i / di;\n    int d = (int)(i % di);\n    u[i]",
            "    u64 row = i / di;\n    int d = (int)(i % di);\n    u[i]",
        ),
        (
            "a wrong shuffle distance in the warp sums",
            "for (int off = width >> 1; off > 0; off >>= 1)",
            "for (int off = width >> 2; off > 0; off >>= 1)",
        ),
    ];
    let source = cuda::kernels::program_source();
    for (what, from, to) in mutants {
        assert_eq!(
            source.matches(from).count(),
            1,
            "{what}: the text to change"
        );
        let broken = source.replacen(from, to, 1);
        let dev = emulated_device_with(ScheduleOrder::Ascending, &broken)
            .unwrap_or_else(|e| panic!("{}", e.message()));
        let caught = SHAPES.iter().enumerate().find_map(|(i, &shape)| {
            let (b, l, c, ..) = shape;
            let p = predictor(shape, i as u64 + 51);
            let x = Lcg(900 + i as u64).vec(b * l * c);
            let gout = Lcg(950 + i as u64).vec(b * l * c);
            let p64 = p.cast::<f64>();
            let (out64, tape) = p64.forward_train(&to64(&x), b, l).unwrap();
            let (gin64, _) = p64.backward(&tape, &to64(&gout)).unwrap();
            let gp = match CudaPredictor::from_predictor(&dev, &p) {
                Ok(gp) => gp,
                Err(e) => return Some(e.message().to_string()),
            };
            let (out, tape) = match gp.forward_train(&x, b, l) {
                Ok(r) => r,
                Err(e) => return Some(e.message().to_string()),
            };
            let gin = match gp.backward(&tape, &gout) {
                Ok((gin, _)) => gin,
                Err(e) => return Some(e.message().to_string()),
            };
            let (e_out, e_gin) = (rel_err(&out, &out64), rel_err(&gin, &gin64));
            (!(e_out <= TOL && e_gin <= TOL)).then(|| {
                format!("shape {shape:?}: forward error {e_out:.2e}, dL/dinput error {e_gin:.2e}")
            })
        });
        match caught {
            Some(how) => eprintln!("caught {what}: {how}"),
            None => panic!("not caught: {what}"),
        }
    }
}

/// The whole model on the emulated GPU: training keeps each predictor's weights and
/// AdamW moments on the device for the run (the adapters and BOS vectors train on the
/// CPU), and scoring runs the device copies. Losses, every trained tensor and the map of
/// a new image agree with the same model trained and scored on the CPU.
#[test]
fn training_and_scoring_on_the_emulated_gpu_match_the_cpu() {
    let mut cpu = Model::new(common::tiny_config()).unwrap();
    let mut gpu = Model::new(common::tiny_config()).unwrap();
    gpu.run_predictors_on(emulated(ScheduleOrder::Ascending))
        .unwrap();
    assert_eq!(gpu.predictor_device().active, Device::Cuda(0));
    let untrained = cpu.weights().clone();
    let report_cpu = cpu
        .fit(
            &common::training_set(&cpu, 8),
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
    let report_gpu = gpu
        .fit(
            &common::training_set(&gpu, 8),
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
    let losses = |r: &varad::train::TrainReport| r.epoch_losses.clone();
    assert_close(
        "epoch losses",
        &losses(&report_gpu)
            .iter()
            .map(|&v| v as f32)
            .collect::<Vec<_>>(),
        &losses(&report_cpu),
    );
    assert_ne!(cpu.weights(), &untrained, "training moved no weight");
    for (h, (c, g)) in cpu
        .weights()
        .levels
        .iter()
        .zip(&gpu.weights().levels)
        .enumerate()
    {
        for ((name, _, wc), (_, _, wg)) in
            c.predictor.tensors().into_iter().zip(g.predictor.tensors())
        {
            assert_close(&format!("level {h} {name} after training"), wg, &to64(wc));
        }
        assert_close(&format!("level {h} bos"), &g.bos, &to64(&c.bos));
        assert_close(
            &format!("level {h} adapter weight"),
            &g.adapter_weight,
            &to64(&c.adapter_weight),
        );
    }
    let pixels = common::texture(99, 128);
    let view = ImageView::packed(&pixels, 128, 128, PixelFormat::Rgb8).unwrap();
    let map_cpu = &cpu.raw_maps(&[view]).unwrap()[0].0;
    let map_gpu = &gpu.raw_maps(&[view]).unwrap()[0].0;
    assert_close("map of a new image", map_gpu, &to64(map_cpu));
}
