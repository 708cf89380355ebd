//! The Mamba predictor: `n_layers` residual blocks `x <- x + Mixer(RMSNorm(x))` over token
//! sequences, forward and backward, on CPU (DESIGN.md, "Numerical contract of the
//! predictor").
//!
//! # Use
//!
//! ```
//! # // Internal API: public with the `internals` feature only.
//! # #[cfg(feature = "internals")] {
//! use varad::predictor::{Predictor, PredictorConfig};
//! let cfg = PredictorConfig::new(8); // d_model = 8, mamba_ssm's other defaults
//! let p = Predictor::init(cfg, 42).unwrap();
//! let (batch, len) = (2, 5);
//! let input = vec![0.1f32; batch * len * 8]; // [B, L, C], row-major
//! let out = p.forward(&input, batch, len).unwrap();
//!
//! // Training: the tape holds what the backward needs.
//! let (out2, tape) = p.forward_train(&input, batch, len).unwrap();
//! assert_eq!(out, out2);
//! let grad_out = vec![1.0f32; out.len()];
//! let (grad_in, grads) = p.backward(&tape, &grad_out).unwrap();
//! assert_eq!(grad_in.len(), input.len());
//! assert!(grads.get("layers.0.mixer.A_log").is_some());
//! # }
//! ```
//!
//! - [`Predictor`] holds only the weights and is `Send + Sync`: share one (e.g. in an
//!   `Arc`) between threads and call [`Predictor::forward`] from all of them at once.
//!   Scratch buffers live outside it: [`Predictor::forward_in_place_with`] keeps them in a
//!   caller's [`Workspace`] (one per concurrent call; a [`WorkspacePool`] hands them out),
//!   so a stream of calls needs no new memory; the plain calls use a fresh one.
//! - Several orderings of one token set (the scan directions of a grid):
//!   [`Predictor::forward_orderings`] runs them and averages the outputs back onto the
//!   tokens with the per-token work (RMSNorm, in_proj) and out_proj done once, not once
//!   per ordering.
//! - Sequences are causal: output position `l` depends on inputs `0..=l` only.
//! - Training: [`Predictor::forward_train`] returns the output and a [`Tape`];
//!   [`Predictor::backward`] turns `dL/d(output)` into `dL/d(input)` and [`Gradients`]
//!   with the same names as the weights. An optimizer walks
//!   [`Predictor::params_mut`] and looks each name up with [`Gradients::get`]. A training
//!   loop passes one [`TrainBuffers`] to [`Predictor::forward_train_with`] and
//!   [`Predictor::backward_with`] on every step, so each step reuses the last one's
//!   memory.
//! - Weights: [`Predictor::tensors`] lists `(name, shape, data)` for safetensors, and
//!   [`Predictor::from_tensors`] loads them back, checking every name and shape. Names are
//!   `layers.{n}.norm.weight` and `layers.{n}.mixer.{in_proj.weight, conv1d.weight,
//!   conv1d.bias, x_proj.weight, dt_proj.weight, dt_proj.bias, A_log, D, out_proj.weight}`
//!   (the model prefixes `predictors.{h}.`).
//! - Threads: all parallel work runs on rayon's *current* pool. To control the thread
//!   count, call inside your own pool: `pool.install(|| p.forward(...))`.
//! - Numbers: `f32` storage and arithmetic. The same code runs in `f64`
//!   (`Predictor<f64>`, via [`Predictor::cast`]), which the gradient tests use.
//! - Training memory: the scan keeps its state only every [`mixer::CHUNK`] steps and
//!   recomputes in between, so a step needs `O(B L Di)` memory, not `O(B L Di N)`.
//!
//! # Layout of the module
//!
//! [`mixer`] runs one residual block from the kernels: [`rmsnorm`], [`gemm`] (the linear
//! layers, `matrixmultiply` split over rayon), [`conv`] (causal depthwise conv + SiLU) and
//! [`scan`] (the fused selective scan and its chunked backward; on AVX2 + FMA its `f32`
//! forward is `scan::avx2`, intrinsics, with `dt_proj` and softplus fused in, and its
//! backward `scan::avx2_backward`); scoring's orderings run the conv, SiLU and x_proj in
//! one AVX2 pass (`conv_project_avx2`). The forward scan and that pass are written once
//! over a vector trait (`simd`) and use AVX-512 where the CPU has it. [`weights`] names
//! the tensors, [`init`] draws them as mamba_ssm does from the seeded [`rng`], and
//! [`float`] holds the scalar trait and the vectorisable `exp`/`ln_1p`.
//!
//! # Tests
//!
//! Next to the code: finite-difference gradient checks in `f64` of every parameter and
//! the input on several shapes (`tests.rs`), and each fast kernel against a slow twin.
//! `tests/predictor_parity.rs` compares the forward with fixtures that
//! `tests/predictor_reference.py` (plain numpy, f64) writes into `tests/data/`. The
//! benchmark is `cargo bench --features internals --bench predictor`.

mod config;
pub mod conv;
#[cfg(target_arch = "x86_64")]
pub mod conv_project_avx2;
pub mod float;
pub mod gemm;
pub mod init;
pub mod mixer;
pub mod prefetch;
pub mod rmsnorm;
pub mod rng;
pub mod scan;
#[cfg(target_arch = "x86_64")]
mod simd;
pub mod weights;
pub mod workspace;

pub use config::PredictorConfig;
pub use float::Float;
pub use mixer::Ordering;
pub use weights::{LayerParams, NAMES};
pub use workspace::{TrainBuffers, Workspace, WorkspacePool};

use crate::{Error, ErrorKind, Result};

/// A Mamba predictor's weights. Immutable during inference, so one instance serves any
/// number of threads.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictor<T = f32> {
    cfg: PredictorConfig,
    layers: Vec<LayerParams<T>>,
}

/// What [`Predictor::backward`] needs from a [`Predictor::forward_train`] call.
#[derive(Debug, Clone)]
pub struct Tape<T = f32> {
    batch: usize,
    len: usize,
    layers: Vec<mixer::LayerTape<T>>,
}

impl<T: Float> Tape<T> {
    /// Bytes held by the tape (for memory accounting by callers).
    pub fn bytes(&self) -> usize {
        let per = |l: &mixer::LayerTape<T>| {
            l.input.len()
                + l.rstd.len()
                + l.normed.len()
                + l.xz.len()
                + l.u.len()
                + l.xdbl.len()
                + l.delta.len()
                + l.ckpt.len()
        };
        self.layers.iter().map(per).sum::<usize>() * std::mem::size_of::<T>()
    }
}

/// Gradients of a loss with respect to every parameter, under the parameters' names.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients<T = f32> {
    layers: Vec<LayerParams<T>>,
}

impl<T: Float> Gradients<T> {
    /// Gradients from per-layer tensors (the CUDA predictor's, copied back).
    pub(crate) fn from_layers(layers: Vec<LayerParams<T>>) -> Self {
        Gradients { layers }
    }

    /// The gradient of the parameter called `name` (as in [`Predictor::tensors`]).
    pub fn get(&self, name: &str) -> Option<&[T]> {
        let (layer, i) = parse_name(name)?;
        self.layers.get(layer).map(|l| l.tensors()[i])
    }

    /// Every `(name, gradient)`, in the order of [`Predictor::tensors`].
    pub fn iter(&self) -> impl Iterator<Item = (String, &[T])> {
        self.layers.iter().enumerate().flat_map(|(n, l)| {
            l.tensors()
                .into_iter()
                .enumerate()
                .map(move |(i, t)| (weights::full_name(n, i), t))
        })
    }
}

/// `layers.{n}.{suffix}` -> `(n, index of suffix in NAMES)`.
fn parse_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("layers.")?;
    let (n, suffix) = rest.split_once('.')?;
    let n: usize = n.parse().ok()?;
    let i = NAMES.iter().position(|s| *s == suffix)?;
    Some((n, i))
}

impl Predictor<f32> {
    /// A predictor initialised as mamba_ssm does (see [`init::layer`]), deterministic in
    /// `seed`.
    pub fn init(cfg: PredictorConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = rng::SplitMix64::new(seed);
        let layers = (0..cfg.n_layers)
            .map(|_| init::layer(&cfg, &mut rng))
            .collect();
        Ok(Predictor { cfg, layers })
    }

    /// Loads the weights through `lookup(name) -> (shape, data)`. Checks that every tensor
    /// is present with the shape `cfg` implies; the error lists every missing name and
    /// every mismatched shape, not only the first.
    pub fn from_tensors(
        cfg: PredictorConfig,
        lookup: impl Fn(&str) -> Option<(Vec<usize>, Vec<f32>)>,
    ) -> Result<Self> {
        cfg.validate()?;
        let shapes = LayerParams::<f32>::shapes(&cfg);
        let mut problems = Vec::new();
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for n in 0..cfg.n_layers {
            let mut layer = LayerParams::<f32>::zeros(&cfg);
            for (i, slot) in layer.tensors_mut().into_iter().enumerate() {
                let name = weights::full_name(n, i);
                match lookup(&name) {
                    None => problems.push(format!("{name} is missing")),
                    Some((shape, data)) => {
                        if shape != shapes[i] {
                            problems.push(format!(
                                "{name} has shape {shape:?}, expected {:?}",
                                shapes[i]
                            ));
                        } else if data.len() != slot.len() {
                            problems.push(format!(
                                "{name} has {} values, its shape {shape:?} needs {}",
                                data.len(),
                                slot.len()
                            ));
                        } else if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
                            problems
                                .push(format!("{name} holds a non-finite value at index {bad}"));
                        } else {
                            *slot = data;
                        }
                    }
                }
            }
            layers.push(layer);
        }
        if problems.is_empty() {
            Ok(Predictor { cfg, layers })
        } else {
            Err(Error::new(
                ErrorKind::ModelFile,
                format!(
                    "predictor weights do not match the configuration: {}",
                    problems.join("; ")
                ),
            ))
        }
    }
}

impl<T: Float> Predictor<T> {
    /// The configuration.
    pub fn config(&self) -> &PredictorConfig {
        &self.cfg
    }

    /// The same weights in another float type (`f64` for gradient checks).
    pub fn cast<U: Float>(&self) -> Predictor<U> {
        Predictor {
            cfg: self.cfg,
            layers: self.layers.iter().map(|l| l.cast()).collect(),
        }
    }

    /// Every `(name, shape, data)`, in a stable order, ready for a safetensors writer.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, &[T])> {
        let shapes = LayerParams::<T>::shapes(&self.cfg);
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(n, l)| {
                let shapes = shapes.clone();
                l.tensors()
                    .into_iter()
                    .enumerate()
                    .map(move |(i, t)| (weights::full_name(n, i), shapes[i].clone(), t))
            })
            .collect()
    }

    /// Every `(name, data)` mutable, for an optimizer (pair each with
    /// [`Gradients::get`]`(name)`).
    pub fn params_mut(&mut self) -> Vec<(String, &mut [T])> {
        self.layers
            .iter_mut()
            .enumerate()
            .flat_map(|(n, l)| {
                l.tensors_mut()
                    .into_iter()
                    .enumerate()
                    .map(move |(i, t)| (weights::full_name(n, i), t.as_mut_slice()))
            })
            .collect()
    }

    fn check_input(&self, input_len: usize, batch: usize, len: usize) -> Result<usize> {
        let rows = batch
            .checked_mul(len)
            .ok_or_else(|| Error::config("predictor batch * len overflows"))?;
        let want = rows
            .checked_mul(self.cfg.d_model)
            .ok_or_else(|| Error::config("predictor input size overflows"))?;
        if input_len != want {
            return Err(Error::config(format!(
                "predictor input has {input_len} values, expected batch {batch} x len {len} x d_model {} = {want}",
                self.cfg.d_model
            )));
        }
        Ok(rows)
    }

    /// Inference over `batch` sequences of `len` tokens: `input` is `[batch, len, C]`
    /// row-major; returns the output in the same layout.
    pub fn forward(&self, input: &[T], batch: usize, len: usize) -> Result<Vec<T>> {
        let mut out = input.to_vec();
        self.forward_in_place(&mut out, batch, len)?;
        Ok(out)
    }

    /// [`Predictor::forward`] over a caller's buffer: on entry the input, on return the
    /// output (saves one copy of `[B, L, C]`).
    pub fn forward_in_place(&self, x: &mut [T], batch: usize, len: usize) -> Result<()> {
        self.forward_in_place_with(x, batch, len, &mut Workspace::default())
    }

    /// [`Predictor::forward_in_place`] with its intermediate tensors in `workspace`, which
    /// keeps them for the next call (see [`workspace`]: repeated calls then need no new
    /// memory).
    pub fn forward_in_place_with(
        &self,
        x: &mut [T],
        batch: usize,
        len: usize,
        workspace: &mut Workspace<T>,
    ) -> Result<()> {
        self.check_input(x.len(), batch, len)?;
        if x.is_empty() {
            return Ok(());
        }
        for l in &self.layers {
            mixer::forward(&self.cfg, l, x, batch, len, workspace);
        }
        Ok(())
    }

    /// Whether [`Predictor::forward_orderings`] runs here: one block, in `f32`, on a CPU
    /// with AVX2 and FMA, and `Di` a multiple of 8.
    pub fn shares_orderings(&self) -> bool {
        self.layers.len() == 1 && mixer::orderings_apply::<T>(&self.cfg)
    }

    /// The predictor over several orderings of one token set, averaged back onto the
    /// tokens (see [`mixer::forward_orderings`]): `tokens` is `[L + 1, C]` with the BOS
    /// vector last; every ordering reads `L` rows of it (`input`, any row, each index at
    /// most `L`) and predicts each token once (`target`, a permutation of `0..L`), with
    /// the weights of the mean. Returns `[L, C]`. The same as building each ordering's
    /// sequence, running [`Predictor::forward`] and averaging, up to rounding, for about
    /// a quarter of the projections' work with four orderings. Errors where
    /// [`Predictor::shares_orderings`] does not hold, or on inconsistent sizes.
    pub fn forward_orderings(
        &self,
        tokens: &[T],
        orderings: &[Ordering],
        workspace: &mut Workspace<T>,
    ) -> Result<Vec<T>> {
        if !self.shares_orderings() {
            return Err(Error::invalid_argument(
                "forward_orderings needs a one-block f32 predictor on a CPU with AVX2 and FMA, \
                 with an inner width that is a multiple of 8",
            ));
        }
        let c = self.cfg.d_model;
        if !tokens.len().is_multiple_of(c) || tokens.len() < 2 * c {
            return Err(Error::invalid_argument(format!(
                "forward_orderings: {} values are not L + 1 >= 2 tokens of {c} channels",
                tokens.len()
            )));
        }
        let len = tokens.len() / c - 1;
        for (k, o) in orderings.iter().enumerate() {
            let mut seen = vec![false; len];
            let targets_ok = o.target.len() == len
                && o.target.iter().all(|&t| {
                    let fresh = (t as usize) < len && !seen[t as usize];
                    if fresh {
                        seen[t as usize] = true;
                    }
                    fresh
                });
            if o.input.len() != len
                || o.weight.len() != len
                || !targets_ok
                || o.input.iter().any(|&r| r as usize > len)
            {
                return Err(Error::invalid_argument(format!(
                    "forward_orderings: ordering {k} must read {len} rows of 0..={len} and \
                     predict each of the {len} tokens once, with {len} weights"
                )));
            }
        }
        if orderings.is_empty() {
            return Ok(vec![T::ZERO; len * c]);
        }
        Ok(mixer::forward_orderings(
            &self.cfg,
            &self.layers[0],
            tokens,
            orderings,
            workspace,
        ))
    }

    /// Training forward: the output (same as [`Predictor::forward`]) and the tape for
    /// [`Predictor::backward`].
    pub fn forward_train(
        &self,
        input: &[T],
        batch: usize,
        len: usize,
    ) -> Result<(Vec<T>, Tape<T>)> {
        self.forward_train_with(input, batch, len, &mut TrainBuffers::default())
    }

    /// [`Predictor::forward_train`] with the tape's and the temporaries' buffers taken
    /// from `bufs`, which a training loop keeps from step to step (see
    /// [`Predictor::backward_with`]).
    pub fn forward_train_with(
        &self,
        input: &[T],
        batch: usize,
        len: usize,
        bufs: &mut TrainBuffers<T>,
    ) -> Result<(Vec<T>, Tape<T>)> {
        self.check_input(input.len(), batch, len)?;
        let mut x = bufs.take_copy(input);
        let mut tapes = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let (out, tape) = mixer::forward_train(&self.cfg, l, x, batch, len, bufs);
            tapes.push(tape);
            x = out;
        }
        Ok((
            x,
            Tape {
                batch,
                len,
                layers: tapes,
            },
        ))
    }

    /// Backward: given `dL/d(output)` (`[B, L, C]`), returns `dL/d(input)` and the
    /// parameter gradients.
    pub fn backward(&self, tape: &Tape<T>, grad_output: &[T]) -> Result<(Vec<T>, Gradients<T>)> {
        self.backward_buffered(tape, grad_output, &mut TrainBuffers::default())
    }

    /// [`Predictor::backward`] consuming the tape: its buffers, and the backward's
    /// temporaries, go back to `bufs` for the next [`Predictor::forward_train_with`], so
    /// that a training loop reuses one step's memory in the next instead of faulting in
    /// new pages (about 750 MB per step at the paper's 1024 x 1024 grid).
    pub fn backward_with(
        &self,
        tape: Tape<T>,
        grad_output: &[T],
        bufs: &mut TrainBuffers<T>,
    ) -> Result<(Vec<T>, Gradients<T>)> {
        let out = self.backward_buffered(&tape, grad_output, bufs);
        for l in tape.layers {
            l.give_to(bufs);
        }
        out
    }

    fn backward_buffered(
        &self,
        tape: &Tape<T>,
        grad_output: &[T],
        bufs: &mut TrainBuffers<T>,
    ) -> Result<(Vec<T>, Gradients<T>)> {
        let rows = self.check_input(grad_output.len(), tape.batch, tape.len)?;
        if tape.layers.len() != self.layers.len() {
            return Err(Error::invalid_argument(format!(
                "tape has {} layers, predictor {}",
                tape.layers.len(),
                self.layers.len()
            )));
        }
        let mut g = bufs.take_copy(grad_output);
        let mut grads: Vec<LayerParams<T>> = (0..self.layers.len())
            .map(|_| LayerParams::zeros(&self.cfg))
            .collect();
        if rows > 0 {
            for ((l, t), gl) in self
                .layers
                .iter()
                .zip(&tape.layers)
                .zip(grads.iter_mut())
                .rev()
            {
                mixer::backward(&self.cfg, l, t, tape.batch, tape.len, &mut g, gl, bufs);
            }
        }
        Ok((g, Gradients { layers: grads }))
    }
}

#[cfg(test)]
mod tests;
