//! One level predictor's training on the device the model's predictors run on: one
//! interface, [`PredictorTraining`], with a CPU and a CUDA implementation, chosen once
//! per training run by [`start`]. Each keeps the weights, the tape of the last forward,
//! the gradients of the last backward and the AdamW moments where it computes, from the
//! first step to the last: on a GPU nothing of the predictor crosses the bus but its
//! input sequences, their output, the gradients at its boundary, and the weights when
//! the trainer asks for them.
//!
//! The update is the trainer's AdamW (torch.optim.AdamW), split by tensor: the
//! predictor's tensors here, the adapter and BOS tensors in the trainer. AdamW works
//! element by element with one step count, so the split changes no value.

use std::sync::Arc;

use crate::config::TrainConfig;
use crate::cuda::{CudaAdamW, CudaDevice, CudaGradients, CudaPredictor, CudaTape};
use crate::predictor::{Gradients, Predictor, Tape, TrainBuffers};
use crate::train::adamw::AdamW;
use crate::{Error, ErrorKind, Result};

/// A level predictor in training on one device.
pub(crate) trait PredictorTraining: Send {
    /// The training forward of `batch` sequences of `len` tokens (`[batch, len, C]`);
    /// the tape stays with the predictor for [`PredictorTraining::backward`].
    fn forward_train(&mut self, sequences: &[f32], batch: usize, len: usize) -> Result<Vec<f32>>;

    /// The backward of the last forward from `dL/d(output)`: returns `dL/d(input)`; the
    /// parameter gradients stay with the predictor for [`PredictorTraining::step`].
    fn backward(&mut self, grad_output: &[f32]) -> Result<Vec<f32>>;

    /// One AdamW step along the last backward's gradients.
    fn step(&mut self) -> Result<()>;

    /// The current weights, on the CPU.
    fn predictor(&self) -> Result<Predictor<f32>>;

    /// Takes back a vector this predictor returned, for reuse.
    fn recycle(&mut self, _used: Vec<f32>) {}
}

/// The training state of `predictor` on `device` (`None`: the CPU), its tensors
/// decayed where `decays` says so (by tensor name).
pub(crate) fn start(
    device: Option<&Arc<CudaDevice>>,
    predictor: &Predictor<f32>,
    config: &TrainConfig,
    decays: impl Fn(&str) -> bool,
) -> Result<Box<dyn PredictorTraining>> {
    let decay: Vec<bool> = predictor
        .tensors()
        .iter()
        .map(|(name, _, _)| decays(name))
        .collect();
    Ok(match device {
        None => Box::new(CpuTraining::new(predictor.clone(), config, decay)),
        Some(dev) => Box::new(CudaTraining::new(dev, predictor, config, decay)?),
    })
}

fn no_pending(what: &str) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("predictor training: {what} without the step before it"),
    )
}

/// On the CPU: the predictor's own kernels, with its training buffers kept from step to
/// step (about 100 MB per level at 1024 x 1024 with the Lite0 levels).
struct CpuTraining {
    predictor: Predictor<f32>,
    optimiser: AdamW,
    decay: Vec<bool>,
    buffers: TrainBuffers<f32>,
    tape: Option<Tape<f32>>,
    gradients: Option<Gradients<f32>>,
}

impl CpuTraining {
    fn new(predictor: Predictor<f32>, config: &TrainConfig, decay: Vec<bool>) -> Self {
        let lengths: Vec<usize> = predictor.tensors().iter().map(|t| t.2.len()).collect();
        CpuTraining {
            optimiser: AdamW::new(config, &lengths),
            predictor,
            decay,
            buffers: TrainBuffers::default(),
            tape: None,
            gradients: None,
        }
    }
}

impl PredictorTraining for CpuTraining {
    fn forward_train(&mut self, sequences: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        let (out, tape) =
            self.predictor
                .forward_train_with(sequences, batch, len, &mut self.buffers)?;
        self.tape = Some(tape);
        Ok(out)
    }

    fn backward(&mut self, grad_output: &[f32]) -> Result<Vec<f32>> {
        let tape = self.tape.take().ok_or_else(|| no_pending("backward"))?;
        let (gin, g) = self
            .predictor
            .backward_with(tape, grad_output, &mut self.buffers)?;
        self.gradients = Some(g);
        Ok(gin)
    }

    fn step(&mut self) -> Result<()> {
        let g = self.gradients.take().ok_or_else(|| no_pending("step"))?;
        let (names, mut params): (Vec<String>, Vec<&mut [f32]>) =
            self.predictor.params_mut().into_iter().unzip();
        let grads = names
            .iter()
            .map(|n| {
                g.get(n)
                    .ok_or_else(|| Error::new(ErrorKind::Internal, format!("no gradient for {n}")))
            })
            .collect::<Result<Vec<_>>>()?;
        self.optimiser.step(&mut params, &grads, &self.decay);
        Ok(())
    }

    fn predictor(&self) -> Result<Predictor<f32>> {
        Ok(self.predictor.clone())
    }

    fn recycle(&mut self, used: Vec<f32>) {
        self.buffers.recycle(used);
    }
}

/// On a GPU: [`CudaPredictor`]'s kernels and [`CudaAdamW`], weights, tape, gradients
/// and moments on the device.
struct CudaTraining {
    predictor: CudaPredictor,
    optimiser: CudaAdamW,
    decay: Vec<bool>,
    tape: Option<CudaTape>,
    gradients: Option<CudaGradients>,
}

impl CudaTraining {
    fn new(
        dev: &Arc<CudaDevice>,
        predictor: &Predictor<f32>,
        config: &TrainConfig,
        decay: Vec<bool>,
    ) -> Result<Self> {
        let predictor = CudaPredictor::from_predictor(dev, predictor)?;
        let optimiser = CudaAdamW::new(config, &predictor)?;
        Ok(CudaTraining {
            predictor,
            optimiser,
            decay,
            tape: None,
            gradients: None,
        })
    }
}

impl PredictorTraining for CudaTraining {
    fn forward_train(&mut self, sequences: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        let (out, tape) = self.predictor.forward_train(sequences, batch, len)?;
        self.tape = Some(tape);
        Ok(out)
    }

    fn backward(&mut self, grad_output: &[f32]) -> Result<Vec<f32>> {
        let tape = self.tape.take().ok_or_else(|| no_pending("backward"))?;
        let (gin, g) = self.predictor.backward(&tape, grad_output)?;
        self.gradients = Some(g);
        Ok(gin)
    }

    fn step(&mut self) -> Result<()> {
        let g = self.gradients.take().ok_or_else(|| no_pending("step"))?;
        self.optimiser.step(&mut self.predictor, &g, &self.decay)
    }

    fn predictor(&self) -> Result<Predictor<f32>> {
        self.predictor.to_predictor()
    }
}
