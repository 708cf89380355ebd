//! Finite-difference gradient checks (in `f64`, through the same generic code as `f32`),
//! API behaviour, and the safetensors round trip.

use super::*;
use crate::predictor::rng::SplitMix64;

fn cfg(c: usize, n: usize, d_conv: usize, layers: usize, r: usize) -> PredictorConfig {
    PredictorConfig {
        d_model: c,
        n_layers: layers,
        d_state: n,
        expand: 2,
        d_conv,
        dt_rank: r,
    }
}

/// A predictor in `f64` with every parameter moved off its structured initial value
/// (norm weight 1, D 1, A_log = log n) so each gradient path carries a generic signal.
fn random_predictor(cfg: PredictorConfig, seed: u64) -> Predictor<f64> {
    let mut p = Predictor::init(cfg, seed).unwrap().cast::<f64>();
    let mut rng = SplitMix64::new(seed ^ 0xABCD);
    for (name, t) in p.params_mut() {
        // dt is initialised small (1e-3..1e-1); larger dt makes every scan term matter.
        let (lo, hi) = if name.ends_with("dt_proj.bias") {
            (1.0, 4.0)
        } else {
            (-0.3, 0.3)
        };
        for v in t.iter_mut() {
            *v += rng.uniform(lo, hi);
        }
    }
    p
}

fn rand_vec(n: usize, rng: &mut SplitMix64) -> Vec<f64> {
    (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn loss(p: &Predictor<f64>, x: &[f64], b: usize, l: usize, w: &[f64]) -> f64 {
    p.forward(x, b, l)
        .unwrap()
        .iter()
        .zip(w)
        .map(|(o, w)| o * w)
        .sum()
}

/// Finite difference of `loss` along `v` for parameter `name` (or the input when `None`).
#[allow(clippy::too_many_arguments)]
fn fd(
    p: &Predictor<f64>,
    x: &[f64],
    b: usize,
    l: usize,
    w: &[f64],
    name: Option<&str>,
    v: &[f64],
    eps: f64,
) -> f64 {
    let eval = |sign: f64| {
        let mut q = p.clone();
        let mut xq = x.to_vec();
        match name {
            Some(name) => {
                let mut ps = q.params_mut();
                let t = &mut ps.iter_mut().find(|(n, _)| n == name).unwrap().1;
                t.iter_mut().zip(v).for_each(|(a, d)| *a += sign * eps * d);
            }
            None => xq.iter_mut().zip(v).for_each(|(a, d)| *a += sign * eps * d),
        }
        loss(&q, &xq, b, l, w)
    };
    // Fourth-order stencil: truncation O(eps^4) lets eps be large enough that rounding
    // (about 1e-16 |loss| / eps) stays far below the tolerance.
    (8.0 * (eval(1.0) - eval(-1.0)) - (eval(2.0) - eval(-2.0))) / (12.0 * eps)
}

const TOL: f64 = 1e-6;

/// Relative error, with a floor: central differences carry a rounding error of about
/// `1e-16 |loss| / eps` in absolute terms, which a near-zero coordinate of the gradient
/// cannot be measured below. The floor is a thousandth of the tensor's largest gradient.
fn rel(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(floor).max(1e-300)
}

/// Checks `<grad, v>` against finite differences for random directions `v`, for every
/// parameter tensor and the input; with `every_entry`, also each coordinate alone.
fn check_gradients(cfg: PredictorConfig, b: usize, l: usize, seed: u64, every_entry: bool) -> f64 {
    let p = random_predictor(cfg, seed);
    let mut rng = SplitMix64::new(seed + 1);
    let x = rand_vec(b * l * cfg.d_model, &mut rng);
    let w = rand_vec(x.len(), &mut rng);
    let (out, tape) = p.forward_train(&x, b, l).unwrap();
    assert_eq!(out, p.forward(&x, b, l).unwrap());
    let (gx, grads) = p.backward(&tape, &w).unwrap();
    let mut worst = 0f64;
    let mut targets: Vec<(Option<String>, Vec<f64>)> = p
        .tensors()
        .into_iter()
        .map(|(n, _, t)| (Some(n), vec![0.0; t.len()]))
        .collect();
    targets.push((None, vec![0.0; x.len()]));
    for (name, zeros) in targets {
        let g: &[f64] = match &name {
            Some(n) => grads.get(n).unwrap(),
            None => &gx,
        };
        let mut dirs = vec![rand_vec(zeros.len(), &mut rng)];
        if every_entry {
            for i in 0..zeros.len() {
                let mut e = zeros.clone();
                e[i] = 1.0;
                dirs.push(e);
            }
        }
        let floor = 1e-3 * g.iter().fold(0f64, |m, v| m.max(v.abs()));
        for v in dirs {
            let an: f64 = g.iter().zip(&v).map(|(a, b)| a * b).sum();
            let num = fd(&p, &x, b, l, &w, name.as_deref(), &v, 1e-3);
            let e = rel(an, num, floor);
            assert!(
                e < TOL,
                "{name:?}: analytic {an:e} vs finite difference {num:e} (rel {e:e})"
            );
            worst = worst.max(e);
        }
    }
    eprintln!("{cfg:?} B {b} L {l}: worst relative error {worst:.1e}");
    worst
}

#[test]
fn gradients_tiny_every_entry() {
    // L shorter than d_conv and than the scan chunk; every coordinate checked.
    check_gradients(cfg(3, 3, 4, 1, 1), 2, 3, 1, true);
}

#[test]
fn gradients_two_layers_across_chunks() {
    // L = 70 crosses one checkpoint (chunk 64); two layers; d_conv 3; dt_rank 2.
    check_gradients(cfg(5, 4, 3, 2, 2), 2, 70, 2, false);
}

#[test]
fn gradients_vector_blocks_long_sequence() {
    // Di = 20: one 16-channel vector block plus 4 single channels; N = 16; three chunks.
    check_gradients(cfg(10, 16, 2, 1, 3), 1, 130, 3, false);
}

#[test]
fn gradients_d_conv_one_and_wide_rank() {
    check_gradients(cfg(8, 2, 1, 1, 5), 3, 9, 4, false);
}

#[test]
fn f32_forward_and_backward_track_f64() {
    let c = cfg(24, 16, 4, 2, 2);
    let p32 = Predictor::init(c, 9).unwrap();
    let p64 = p32.cast::<f64>();
    let mut rng = SplitMix64::new(10);
    let (b, l) = (2, 100);
    let x64 = rand_vec(b * l * 24, &mut rng);
    let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    let o32 = p32.forward(&x32, b, l).unwrap();
    let o64 = p64.forward(&x64, b, l).unwrap();
    let scale = o64.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (a, e) in o32.iter().zip(&o64) {
        assert!((*a as f64 - e).abs() < 1e-5 * scale, "{a} vs {e}");
    }
    let w64 = rand_vec(x64.len(), &mut rng);
    let w32: Vec<f32> = w64.iter().map(|&v| v as f32).collect();
    let (_, t32) = p32.forward_train(&x32, b, l).unwrap();
    let (_, t64) = p64.forward_train(&x64, b, l).unwrap();
    let (gx32, g32) = p32.backward(&t32, &w32).unwrap();
    let (gx64, g64) = p64.backward(&t64, &w64).unwrap();
    let close = |what: &str, a: &[f32], e: &[f64]| {
        let scale = e.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(e).enumerate() {
            assert!(
                (*x as f64 - y).abs() < 1e-4 * scale,
                "{what}[{i}]: {x} vs {y}"
            );
        }
    };
    close("input", &gx32, &gx64);
    for (name, g) in g32.iter() {
        close(&name, g, g64.get(&name).unwrap());
    }
}

#[test]
fn predictor_is_shareable_and_forward_is_thread_safe() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Predictor>();
    assert_send_sync::<Tape>();
    let p = std::sync::Arc::new(Predictor::init(PredictorConfig::new(16), 1).unwrap());
    let x: Vec<f32> = (0..3 * 20 * 16).map(|i| (i as f32 * 0.37).sin()).collect();
    let want = p.forward(&x, 3, 20).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (p, x, want) = (p.clone(), &x, &want);
            s.spawn(move || assert_eq!(&p.forward(x, 3, 20).unwrap(), want));
        }
    });
}

#[test]
fn forward_is_causal() {
    let p = Predictor::init(PredictorConfig::new(8), 3).unwrap();
    let mut x: Vec<f32> = (0..30 * 8).map(|i| (i as f32 * 0.11).cos()).collect();
    let a = p.forward(&x, 1, 30).unwrap();
    for v in &mut x[20 * 8..] {
        *v += 1.0;
    }
    let b = p.forward(&x, 1, 30).unwrap();
    assert_eq!(a[..20 * 8], b[..20 * 8]);
    assert_ne!(a[20 * 8..], b[20 * 8..]);
}

#[test]
fn bad_shapes_are_config_errors() {
    let p = Predictor::init(PredictorConfig::new(8), 3).unwrap();
    let e = p.forward(&[0.0; 10], 1, 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("expected"), "{e}");
    assert!(p.forward(&[], 0, 5).unwrap().is_empty());
    let (out, tape) = p.forward_train(&[], 2, 0).unwrap();
    assert!(out.is_empty());
    let (gx, grads) = p.backward(&tape, &[]).unwrap();
    assert!(gx.is_empty());
    assert!(grads.iter().all(|(_, g)| g.iter().all(|&v| v == 0.0)));
    assert_eq!(
        p.backward(&tape, &[1.0]).unwrap_err().kind(),
        ErrorKind::Config
    );
}

#[test]
fn names_are_mamba_ssm_names() {
    let mut c = PredictorConfig::new(16);
    c.n_layers = 2;
    let p = Predictor::init(c, 1).unwrap();
    let t = p.tensors();
    assert_eq!(t.len(), 20);
    assert_eq!(t[1].0, "layers.0.mixer.in_proj.weight");
    assert_eq!(t[1].1, vec![64, 16]);
    assert_eq!(t[2].1, vec![32, 1, 4]);
    assert_eq!(t[4].1, vec![1 + 32, 32]);
    assert_eq!(t[17].0, "layers.1.mixer.A_log");
    assert_eq!(t[19].0, "layers.1.mixer.out_proj.weight");
    assert_eq!(t[10].0, "layers.1.norm.weight");
}

#[test]
fn safetensors_round_trip_and_named_errors() {
    use safetensors::tensor::{Dtype, TensorView};
    let mut c = PredictorConfig::new(12);
    c.n_layers = 2;
    let p = Predictor::init(c, 77).unwrap();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = p
        .tensors()
        .into_iter()
        .map(|(n, s, d)| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let file = safetensors::serialize(views, None).unwrap();
    let st = safetensors::SafeTensors::deserialize(&file).unwrap();
    let lookup = |name: &str| {
        let t = st.tensor(name).ok()?;
        let data = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some((t.shape().to_vec(), data))
    };
    let q = Predictor::from_tensors(c, lookup).unwrap();
    assert_eq!(p, q);

    // Missing and misshapen tensors are all named.
    let broken = |name: &str| {
        if name == "layers.1.mixer.D" {
            return None;
        }
        let (mut s, d) = lookup(name)?;
        if name == "layers.0.mixer.x_proj.weight" {
            s.reverse();
        }
        Some((s, d))
    };
    let e = Predictor::from_tensors(c, broken).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ModelFile);
    assert!(e.message().contains("layers.1.mixer.D is missing"), "{e}");
    assert!(
        e.message()
            .contains("layers.0.mixer.x_proj.weight has shape [24, 33], expected [33, 24]"),
        "{e}"
    );
}

#[test]
fn optimizer_can_pair_params_with_gradients() {
    let mut p = Predictor::init(PredictorConfig::new(8), 2).unwrap();
    let x = vec![0.5f32; 2 * 4 * 8];
    let (out, tape) = p.forward_train(&x, 2, 4).unwrap();
    let (_, grads) = p.backward(&tape, &out).unwrap();
    let before = p.clone();
    for (name, t) in p.params_mut() {
        let g = grads.get(&name).unwrap();
        assert_eq!(g.len(), t.len());
        t.iter_mut().zip(g).for_each(|(w, g)| *w -= 1e-3 * g);
    }
    assert_ne!(p, before);
    assert!(grads.get("layers.0.mixer.nope").is_none());
    assert!(grads.get("layers.3.norm.weight").is_none());
}

#[test]
fn kept_training_buffers_change_no_result() {
    // Two blocks; shapes that change between steps (longer, then shorter sequences), so
    // kept buffers come back at other lengths with stale contents.
    let mut c = PredictorConfig::new(16);
    c.n_layers = 2;
    let p = Predictor::init(c, 9).unwrap();
    let mut bufs = TrainBuffers::default();
    for (step, (b, l)) in [(2usize, 70usize), (3, 90), (1, 20), (2, 70)]
        .into_iter()
        .enumerate()
    {
        let x: Vec<f32> = (0..b * l * 16)
            .map(|i| ((i + step) as f32 * 0.31).sin())
            .collect();
        let (out, tape) = p.forward_train(&x, b, l).unwrap();
        let (gx, grads) = p.backward(&tape, &out).unwrap();
        let (out_k, tape_k) = p.forward_train_with(&x, b, l, &mut bufs).unwrap();
        assert!(out_k == out, "step {step}: forward differs");
        let (gx_k, grads_k) = p.backward_with(tape_k, &out_k, &mut bufs).unwrap();
        assert!(gx_k == gx, "step {step}: input gradient differs");
        for (name, g) in grads.iter() {
            assert!(
                g == grads_k.get(&name).unwrap(),
                "step {step}: {name} differs"
            );
        }
        assert!(bufs.bytes() > 0);
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // Large enough that the GEMMs split (over rows and over the reduction) and the conv and
    // RMSNorm reductions use several blocks.
    let mut c = PredictorConfig::new(16);
    c.n_layers = 2;
    let p = Predictor::init(c, 5).unwrap();
    let (b, l) = (2, 2100);
    let x: Vec<f32> = (0..b * l * 16).map(|i| ((i as f32) * 0.37).sin()).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (out, tape) = p.forward_train(&x, b, l).unwrap();
            let (gx, grads) = p.backward(&tape, &out).unwrap();
            (out, gx, grads)
        })
    };
    let one = run(1);
    let three = run(3);
    assert!(one.0 == three.0, "forward differs");
    assert!(one.1 == three.1, "input gradient differs");
    for (name, g) in one.2.iter() {
        assert!(g == three.2.get(&name).unwrap(), "{name} differs");
    }
}

#[test]
fn forward_orderings_checks_what_it_is_given() {
    let p = Predictor::<f32>::init(PredictorConfig::new(8), 1).unwrap();
    if !p.shares_orderings() {
        eprintln!("skipped: forward_orderings does not run on this CPU");
        return;
    }
    let len = 4;
    let tokens = vec![0.5f32; (len + 1) * 8];
    let weight = vec![1.0; len];
    let input = [4u32, 0, 1, 2];
    let good = [0u32, 1, 2, 3];
    let twice = [0u32, 1, 1, 3];
    let ordering = |target| Ordering {
        input: &input,
        target,
        weight: &weight,
    };
    let mut ws = Workspace::default();
    assert_eq!(
        p.forward_orderings(&tokens, &[ordering(&good)], &mut ws)
            .unwrap()
            .len(),
        len * 8
    );
    let err = p
        .forward_orderings(&tokens, &[ordering(&twice)], &mut ws)
        .unwrap_err();
    assert!(err.to_string().contains("predict each"), "{err}");
    assert!(p.forward_orderings(&tokens[..12], &[], &mut ws).is_err());
    // Two blocks do not share: the second block's input depends on the order.
    let mut two = PredictorConfig::new(8);
    two.n_layers = 2;
    let p2 = Predictor::<f32>::init(two, 1).unwrap();
    assert!(!p2.shares_orderings());
    assert!(p2
        .forward_orderings(&tokens, &[ordering(&good)], &mut ws)
        .is_err());
}
