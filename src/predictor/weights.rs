//! The trainable tensors of one residual block, under mamba_ssm's names.

use super::config::PredictorConfig;
use super::float::Float;

/// Tensor names within a block, in the order they are listed and saved.
pub const NAMES: [&str; 10] = [
    "norm.weight",
    "mixer.in_proj.weight",
    "mixer.conv1d.weight",
    "mixer.conv1d.bias",
    "mixer.x_proj.weight",
    "mixer.dt_proj.weight",
    "mixer.dt_proj.bias",
    "mixer.A_log",
    "mixer.D",
    "mixer.out_proj.weight",
];

/// One block's parameters (or their gradients: same names and shapes), each a flat
/// row-major tensor with the shape [`LayerParams::shapes`] gives.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParams<T> {
    /// `norm.weight`, `[C]`.
    pub norm_weight: Vec<T>,
    /// `mixer.in_proj.weight`, `[2 Di, C]`: rows `0..Di` make `x`, rows `Di..` make `z`.
    pub in_proj: Vec<T>,
    /// `mixer.conv1d.weight`, `[Di, 1, d_conv]`.
    pub conv_weight: Vec<T>,
    /// `mixer.conv1d.bias`, `[Di]`.
    pub conv_bias: Vec<T>,
    /// `mixer.x_proj.weight`, `[R + 2N, Di]`: rows `dt_low | B | C`.
    pub x_proj: Vec<T>,
    /// `mixer.dt_proj.weight`, `[Di, R]`.
    pub dt_proj_weight: Vec<T>,
    /// `mixer.dt_proj.bias`, `[Di]`.
    pub dt_proj_bias: Vec<T>,
    /// `mixer.A_log`, `[Di, N]`; `A = -exp(A_log)`.
    pub a_log: Vec<T>,
    /// `mixer.D`, `[Di]`.
    pub d: Vec<T>,
    /// `mixer.out_proj.weight`, `[C, Di]`.
    pub out_proj: Vec<T>,
}

impl<T: Float> LayerParams<T> {
    /// The shapes of [`NAMES`] for `cfg`.
    pub fn shapes(cfg: &PredictorConfig) -> [Vec<usize>; 10] {
        let (c, di, n, r) = (cfg.d_model, cfg.d_inner(), cfg.d_state, cfg.dt_rank);
        [
            vec![c],
            vec![2 * di, c],
            vec![di, 1, cfg.d_conv],
            vec![di],
            vec![r + 2 * n, di],
            vec![di, r],
            vec![di],
            vec![di, n],
            vec![di],
            vec![c, di],
        ]
    }

    /// All zeros, the starting point of a gradient accumulation.
    pub fn zeros(cfg: &PredictorConfig) -> Self {
        let s = Self::shapes(cfg);
        let z = |i: usize| vec![T::ZERO; s[i].iter().product()];
        LayerParams {
            norm_weight: z(0),
            in_proj: z(1),
            conv_weight: z(2),
            conv_bias: z(3),
            x_proj: z(4),
            dt_proj_weight: z(5),
            dt_proj_bias: z(6),
            a_log: z(7),
            d: z(8),
            out_proj: z(9),
        }
    }

    /// The tensors in [`NAMES`] order.
    pub fn tensors(&self) -> [&[T]; 10] {
        [
            &self.norm_weight,
            &self.in_proj,
            &self.conv_weight,
            &self.conv_bias,
            &self.x_proj,
            &self.dt_proj_weight,
            &self.dt_proj_bias,
            &self.a_log,
            &self.d,
            &self.out_proj,
        ]
    }

    /// The tensors in [`NAMES`] order, mutable.
    pub fn tensors_mut(&mut self) -> [&mut Vec<T>; 10] {
        [
            &mut self.norm_weight,
            &mut self.in_proj,
            &mut self.conv_weight,
            &mut self.conv_bias,
            &mut self.x_proj,
            &mut self.dt_proj_weight,
            &mut self.dt_proj_bias,
            &mut self.a_log,
            &mut self.d,
            &mut self.out_proj,
        ]
    }

    /// The same parameters in another float type.
    pub fn cast<U: Float>(&self) -> LayerParams<U> {
        let c = |v: &[T]| {
            v.iter()
                .map(|x| U::from_f64(x.to_f64()))
                .collect::<Vec<U>>()
        };
        LayerParams {
            norm_weight: c(&self.norm_weight),
            in_proj: c(&self.in_proj),
            conv_weight: c(&self.conv_weight),
            conv_bias: c(&self.conv_bias),
            x_proj: c(&self.x_proj),
            dt_proj_weight: c(&self.dt_proj_weight),
            dt_proj_bias: c(&self.dt_proj_bias),
            a_log: c(&self.a_log),
            d: c(&self.d),
            out_proj: c(&self.out_proj),
        }
    }
}

/// The full name of tensor `i` of [`NAMES`] in block `layer`.
pub fn full_name(layer: usize, i: usize) -> String {
    format!("layers.{layer}.{}", NAMES[i])
}
