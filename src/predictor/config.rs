//! The predictor's hyper-parameters.

use crate::{Error, Result};

/// Shapes of a predictor: `n_layers` residual blocks of RMSNorm + Mamba mixer over
/// `d_model` channels. The names are mamba_ssm's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictorConfig {
    /// Channels of the token stream (`C`).
    pub d_model: usize,
    /// Residual blocks.
    pub n_layers: usize,
    /// SSM state size per channel (`N`).
    pub d_state: usize,
    /// Inner width factor: `d_inner = expand * d_model`.
    pub expand: usize,
    /// Causal convolution width.
    pub d_conv: usize,
    /// Rank of the `dt` projection (`R`).
    pub dt_rank: usize,
}

impl PredictorConfig {
    /// The defaults of DESIGN.md for `d_model` channels: one layer, `N = 16`, `expand = 2`,
    /// `d_conv = 4`, `dt_rank = ceil(d_model / 16)`.
    pub fn new(d_model: usize) -> Self {
        PredictorConfig {
            d_model,
            n_layers: 1,
            d_state: 16,
            expand: 2,
            d_conv: 4,
            dt_rank: d_model.div_ceil(16),
        }
    }

    /// The inner width `Di`.
    pub fn d_inner(&self) -> usize {
        self.expand * self.d_model
    }

    /// Columns of `x_proj`'s output: `dt_rank + 2 d_state`.
    pub fn x_proj_out(&self) -> usize {
        self.dt_rank + 2 * self.d_state
    }

    /// Checks every field is positive and the sizes stay far from overflow.
    pub fn validate(&self) -> Result<()> {
        let fields = [
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("d_state", self.d_state),
            ("expand", self.expand),
            ("d_conv", self.d_conv),
            ("dt_rank", self.dt_rank),
        ];
        for (name, v) in fields {
            if v == 0 {
                return Err(Error::config(format!(
                    "predictor {name} must be positive, got 0"
                )));
            }
            if v > 1 << 20 {
                return Err(Error::config(format!(
                    "predictor {name} = {v} is larger than the limit {}",
                    1 << 20
                )));
            }
        }
        if self.d_inner() > 1 << 22 {
            return Err(Error::config(format!(
                "predictor d_inner = expand * d_model = {} is larger than the limit {}",
                self.d_inner(),
                1 << 22
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_design() {
        let c = PredictorConfig::new(384);
        assert_eq!(
            (c.d_inner(), c.dt_rank, c.d_state, c.d_conv),
            (768, 24, 16, 4)
        );
        assert_eq!(PredictorConfig::new(17).dt_rank, 2);
        assert!(c.validate().is_ok());
        let bad = PredictorConfig { d_state: 0, ..c };
        let e = bad.validate().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.message().contains("d_state"));
    }
}
