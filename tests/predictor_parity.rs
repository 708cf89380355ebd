//! Forward parity against an independent f64 numpy implementation with mamba_ssm
//! semantics (`tests/predictor_reference.py`, which wrote the fixtures in `tests/data`).

use safetensors::{Dtype, SafeTensors};
use varad::predictor::{Predictor, PredictorConfig};

fn to_f64(t: &safetensors::tensor::TensorView) -> Vec<f64> {
    match t.dtype() {
        Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        Dtype::F64 => t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        d => panic!("unexpected dtype {d:?}"),
    }
}

/// Returns the largest `|rust - numpy|` over the largest `|numpy|`, for f32 and f64 runs.
fn parity(name: &str) -> (f64, f64) {
    let path = format!(
        "{}/tests/data/predictor_fixture_{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let get = |k: &str| -> usize { meta[k].parse().unwrap() };
    let cfg = PredictorConfig {
        d_model: get("d_model"),
        n_layers: get("n_layers"),
        d_state: get("d_state"),
        expand: get("expand"),
        d_conv: get("d_conv"),
        dt_rank: get("dt_rank"),
    };
    let (batch, len) = (get("batch"), get("len"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let p = Predictor::from_tensors(cfg, |n| {
        let t = st.tensor(n).ok()?;
        Some((
            t.shape().to_vec(),
            to_f64(&t).into_iter().map(|v| v as f32).collect(),
        ))
    })
    .unwrap();
    let input = to_f64(&st.tensor("input").unwrap());
    let expected = to_f64(&st.tensor("expected").unwrap());
    let scale = expected.iter().fold(0f64, |m, v| m.max(v.abs()));
    let err = |out: &[f64]| {
        out.iter()
            .zip(&expected)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
            / scale
    };

    let x32: Vec<f32> = input.iter().map(|&v| v as f32).collect();
    let out32: Vec<f64> = p
        .forward(&x32, batch, len)
        .unwrap()
        .into_iter()
        .map(|v| v as f64)
        .collect();
    let (train32, _) = p.forward_train(&x32, batch, len).unwrap();
    assert_eq!(train32.iter().map(|&v| v as f64).collect::<Vec<_>>(), out32);
    let out64 = p.cast::<f64>().forward(&input, batch, len).unwrap();
    (err(&out32), err(&out64))
}

#[test]
fn forward_matches_numpy_reference() {
    for name in ["small", "two_layers"] {
        let (e32, e64) = parity(name);
        eprintln!("{name}: f32 relative error {e32:.2e}, f64 {e64:.2e}");
        assert!(e32 <= 1e-5, "{name}: f32 forward off by {e32:e} relative");
        assert!(e64 <= 1e-12, "{name}: f64 forward off by {e64:e} relative");
    }
}
