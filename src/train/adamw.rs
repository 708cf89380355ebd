//! AdamW (Loshchilov and Hutter), as PyTorch's `torch.optim.AdamW` computes it:
//! decoupled weight decay, bias-corrected moments, `eps` added after the square root.

use crate::config::TrainConfig;

/// The optimiser's state for a fixed list of parameter tensors (the caller passes the
/// tensors in the same order at every step).
#[derive(Debug, Clone)]
pub struct AdamW {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: u64,
    first: Vec<Vec<f32>>,
    second: Vec<Vec<f32>>,
}

impl AdamW {
    /// State for tensors of the given lengths, moments at zero.
    pub fn new(config: &TrainConfig, lengths: &[usize]) -> Self {
        AdamW {
            lr: config.learning_rate,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            weight_decay: config.weight_decay,
            step: 0,
            first: lengths.iter().map(|&n| vec![0.0; n]).collect(),
            second: lengths.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    #[cfg(any(test, feature = "internals"))]
    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One step: `params[i]` moves along `grads[i]`; `decay[i]` says whether tensor `i`
    /// takes weight decay.
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], decay: &[bool]) {
        assert_eq!(
            params.len(),
            self.first.len(),
            "AdamW: tensor count changed"
        );
        self.step += 1;
        let t = self.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        let step_size = (self.lr / bias1) as f32;
        let bias2_sqrt = bias2.sqrt() as f32;
        let (b1, b2, eps) = (self.beta1 as f32, self.beta2 as f32, self.eps as f32);
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            assert_eq!(
                p.len(),
                g.len(),
                "AdamW: tensor {i} and its gradient differ in length"
            );
            let shrink = if decay[i] {
                (1.0 - self.lr * self.weight_decay) as f32
            } else {
                1.0
            };
            for (((w, &gv), m), v) in p
                .iter_mut()
                .zip(g.iter())
                .zip(self.first[i].iter_mut())
                .zip(self.second[i].iter_mut())
            {
                *w *= shrink;
                *m = b1 * *m + (1.0 - b1) * gv;
                *v = b2 * *v + (1.0 - b2) * gv * gv;
                *w -= step_size * *m / (v.sqrt() / bias2_sqrt + eps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_on_a_hand_computed_case() {
        // torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.5),
        // p = [1.0, -2.0], grads [0.5, 0.25] then [-0.1, 0.3]; values derived by hand from
        // the update rule (first step moves each weight by lr * sign(g) after decay).
        let config = TrainConfig {
            learning_rate: 0.1,
            weight_decay: 0.5,
            ..TrainConfig::default()
        };
        let mut opt = AdamW::new(&config, &[2]);
        let mut p = vec![1.0f32, -2.0];
        opt.step(&mut [&mut p], &[&[0.5, 0.25]], &[true]);
        // decay: 1 * (1 - 0.05) = 0.95, then - 0.1 * 1 = 0.85; -2 * 0.95 = -1.9, - 0.1 = -2.0.
        assert!(
            (p[0] - 0.85).abs() < 1e-6 && (p[1] + 2.0).abs() < 1e-6,
            "{p:?}"
        );
        opt.step(&mut [&mut p], &[&[-0.1, 0.3]], &[true]);
        // Second step, weight 0: m = 0.9*0.05 - 0.01 = 0.035, v = 0.999*0.00025 + 0.001*0.01
        // = 0.00025975; mhat = 0.035/0.19, vhat = 0.00025975/0.001999.
        let (mhat, vhat) = (0.035f64 / 0.19, 0.00025975f64 / (1.0 - 0.999f64.powi(2)));
        let want = 0.85 * 0.95 - 0.1 * mhat / (vhat.sqrt() + 1e-8);
        assert!((p[0] as f64 - want).abs() < 1e-5, "{} vs {want}", p[0]);
        assert_eq!(opt.steps(), 2);
    }

    #[test]
    fn no_decay_leaves_a_zero_gradient_weight_alone() {
        let mut opt = AdamW::new(&TrainConfig::default(), &[1, 1]);
        let (mut a, mut b) = (vec![3.0f32], vec![3.0f32]);
        opt.step(&mut [&mut a, &mut b], &[&[0.0], &[0.0]], &[false, true]);
        assert_eq!(a, [3.0]);
        assert!(b[0] < 3.0);
    }
}
