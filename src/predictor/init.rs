//! Initialisation as mamba_ssm's `Mamba.__init__` does it (with torch's layer defaults).

use super::config::PredictorConfig;
use super::rng::SplitMix64;
use super::weights::LayerParams;

/// torch's default for `nn.Linear` and `nn.Conv1d` weights and biases:
/// `kaiming_uniform_(a = sqrt(5))` reduces to `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
fn torch_default(rng: &mut SplitMix64, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    (0..n).map(|_| rng.uniform(-bound, bound) as f32).collect()
}

/// One block's parameters, drawn from `rng` in a fixed order (the order of the tensors
/// in the file), so a seed always gives the same weights.
pub fn layer(cfg: &PredictorConfig, rng: &mut SplitMix64) -> LayerParams<f32> {
    let (c, di, n, r, k) = (
        cfg.d_model,
        cfg.d_inner(),
        cfg.d_state,
        cfg.dt_rank,
        cfg.d_conv,
    );
    let norm_weight = vec![1.0; c];
    let in_proj = torch_default(rng, 2 * di * c, c);
    // Depthwise conv: fan_in = in_channels / groups * kernel = d_conv.
    let conv_weight = torch_default(rng, di * k, k);
    let conv_bias = torch_default(rng, di, k);
    let x_proj = torch_default(rng, (r + 2 * n) * di, di);
    // dt_init = "random", dt_scale = 1: U(-R^-0.5, R^-0.5).
    let std = (r as f64).powf(-0.5);
    let dt_proj_weight = (0..di * r).map(|_| rng.uniform(-std, std) as f32).collect();
    // dt log-uniform in [dt_min, dt_max] = [1e-3, 1e-1], floored at 1e-4, and the bias is
    // its inverse softplus so that softplus(bias) = dt at initialisation.
    let (lo, hi) = (1e-3f64.ln(), 1e-1f64.ln());
    let dt_proj_bias = (0..di)
        .map(|_| {
            let dt = rng.uniform(lo, hi).exp().max(1e-4);
            (dt + (-(-dt).exp_m1()).ln()) as f32
        })
        .collect();
    let a_log = (0..di)
        .flat_map(|_| (1..=n).map(|i| (i as f64).ln() as f32))
        .collect();
    let d = vec![1.0; di];
    let out_proj = torch_default(rng, c * di, di);
    LayerParams {
        norm_weight,
        in_proj,
        conv_weight,
        conv_bias,
        x_proj,
        dt_proj_weight,
        dt_proj_bias,
        a_log,
        d,
        out_proj,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_mamba_ssm_init() {
        let cfg = PredictorConfig::new(32);
        let mut rng = SplitMix64::new(5);
        let p = layer(&cfg, &mut rng);
        let di = cfg.d_inner();
        assert!(p.in_proj.iter().all(|v| v.abs() <= 1.0 / 32f32.sqrt()));
        assert!(p.in_proj.iter().any(|v| v.abs() > 0.9 / 32f32.sqrt()));
        assert!(p.conv_weight.iter().all(|v| v.abs() <= 0.5));
        assert!(p
            .dt_proj_weight
            .iter()
            .all(|v| v.abs() <= 1.0 / (cfg.dt_rank as f32).sqrt()));
        for &b in &p.dt_proj_bias {
            let dt = (b as f64).exp().ln_1p();
            assert!((1e-3 * 0.999..=0.1 * 1.001).contains(&dt), "dt {dt}");
        }
        assert_eq!(p.a_log[di * 16 - 1], 16f32.ln());
        assert_eq!(p.a_log[16], 0.0);
        assert!(p.d.iter().all(|&v| v == 1.0));
        assert!(p.norm_weight.iter().all(|&v| v == 1.0));
        let mut rng2 = SplitMix64::new(5);
        assert_eq!(layer(&cfg, &mut rng2), p);
    }
}
