//! One hierarchy level of VarAD: the adapter, the BOS vector and the predictor of one
//! feature map, and the level's anomaly map `A_h` with its gradient (DESIGN.md, "Adapter",
//! "Shift", "Map").
//!
//! Tokens arrive in the backbone's layout, `[C, h, w]` per image, and are transposed once
//! to token-major `[L, C]`, the layout every later step reads.

use rayon::prelude::*;

use crate::predictor::gemm::{linear, linear_grad_weight};
use crate::predictor::workspace::grown;
use crate::predictor::{
    Float, Gradients, Ordering, Predictor, PredictorConfig, TrainBuffers, Workspace,
};
use crate::Result;

use super::scan::Scans;

/// The trainable parameters of one level.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelParams<T = f32> {
    /// Channels `C_h`.
    pub channels: usize,
    /// Adapter weight `W` `[C, C]` (row `o` holds the weights of output channel `o`).
    pub adapter_weight: Vec<T>,
    /// Adapter bias `b` `[C]`.
    pub adapter_bias: Vec<T>,
    /// The learned BOS token `[C]`.
    pub bos: Vec<T>,
    /// The level's Mamba predictor.
    pub predictor: Predictor<T>,
}

/// Gradients of the non-predictor parameters of a level, plus the predictor's (`G`: the
/// CPU's [`Gradients`], or `()` when they stay with a predictor on its device).
#[derive(Debug, Clone)]
pub struct LevelGradients<T = f32, G = Gradients<T>> {
    /// `dL/dW`, `[C, C]`.
    pub adapter_weight: Vec<T>,
    /// `dL/db`, `[C]`.
    pub adapter_bias: Vec<T>,
    /// `dL/d bos`, `[C]`.
    pub bos: Vec<T>,
    /// The predictor's gradients.
    pub predictor: G,
}

impl LevelParams<f32> {
    /// A new level: the adapter at zero (so `F^ = F` at the start), the BOS vector at zero,
    /// the predictor initialised as mamba_ssm does from `seed`.
    pub fn init(cfg: PredictorConfig, seed: u64) -> Result<Self> {
        let c = cfg.d_model;
        Ok(LevelParams {
            channels: c,
            adapter_weight: vec![0.0; c * c],
            adapter_bias: vec![0.0; c],
            bos: vec![0.0; c],
            predictor: Predictor::init(cfg, seed)?,
        })
    }
}

impl<T: Float> LevelParams<T> {
    /// The same parameters in another float type (the gradient tests run in `f64`).
    pub fn cast<U: Float>(&self) -> LevelParams<U> {
        let cast = |v: &[T]| v.iter().map(|x| U::from_f64(x.to_f64())).collect();
        LevelParams {
            channels: self.channels,
            adapter_weight: cast(&self.adapter_weight),
            adapter_bias: cast(&self.adapter_bias),
            bos: cast(&self.bos),
            predictor: self.predictor.cast(),
        }
    }

    /// `[C, L]` (channel-first, as the backbone gives it) to `[L, C]`, for `batch` images.
    pub fn to_token_major(&self, features: &[T], batch: usize, len: usize) -> Vec<T> {
        let mut tokens = vec![T::ZERO; batch * len * self.channels];
        self.to_token_major_into(features, len, &mut tokens);
        tokens
    }

    /// [`LevelParams::to_token_major`] into `tokens` (`[batch, L, C]`, every value
    /// written).
    fn to_token_major_into(&self, features: &[T], len: usize, tokens: &mut [T]) {
        let c = self.channels;
        // Tasks of consecutive positions of one image, each reading a stretch of every
        // channel's plane in turn.
        tokens
            .par_chunks_mut(len * c)
            .enumerate()
            .for_each(|(b, image)| {
                let planes = &features[b * c * len..(b + 1) * c * len];
                image
                    .par_chunks_mut(TOKENS_PER_TASK * c)
                    .enumerate()
                    .for_each(|(task, dst)| {
                        let (first, n) = (task * TOKENS_PER_TASK, dst.len() / c);
                        for ch in 0..c {
                            for (l, &v) in planes[ch * len + first..][..n].iter().enumerate() {
                                dst[l * c + ch] = v;
                            }
                        }
                    });
            });
    }

    /// The adapted tokens `F^ = F + F W^T + b` of `rows` tokens `[rows, C]`.
    pub fn adapt(&self, tokens: &[T], rows: usize) -> Vec<T> {
        let mut adapted = vec![T::ZERO; tokens.len()];
        self.adapt_into(tokens, rows, &mut adapted);
        adapted
    }

    /// [`LevelParams::adapt`] into `adapted` (as long as `tokens`, every value written).
    fn adapt_into(&self, tokens: &[T], rows: usize, adapted: &mut [T]) {
        let c = self.channels;
        adapted
            .par_chunks_mut(TOKENS_PER_TASK * c)
            .zip(tokens.par_chunks(TOKENS_PER_TASK * c))
            .for_each(|(rows, src)| {
                for (row, token) in rows.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
                    for ((a, &t), &b) in row.iter_mut().zip(token).zip(&self.adapter_bias) {
                        *a = t + b;
                    }
                }
            });
        linear(
            rows,
            c,
            c,
            tokens,
            c,
            &self.adapter_weight,
            T::ONE,
            adapted,
            c,
        );
    }

    /// The predictor input of the active directions for `batch` images of adapted tokens:
    /// `[batch * D, L, C]` (`D` = active directions), image-major, directions ascending.
    fn sequences(&self, scans: &Scans, adapted: &[T], batch: usize) -> Vec<T> {
        let n = scans.len() * self.channels;
        let dirs = scans.directions();
        let mut seqs = vec![T::ZERO; batch * dirs.len() * n];
        for (b, per_image) in seqs.chunks_exact_mut(dirs.len() * n).enumerate() {
            for (out, &k) in per_image.chunks_exact_mut(n).zip(dirs) {
                scans.shifted_sequence(k, &adapted[b * n..(b + 1) * n], &self.bos, out);
            }
        }
        seqs
    }

    /// The mean of the active directions' predictions on the grid, `[batch, L, C]`.
    fn unscan(&self, scans: &Scans, outputs: &[T], batch: usize) -> Vec<T> {
        let n = scans.len() * self.channels;
        let dirs = scans.directions();
        let mut predicted = vec![T::ZERO; batch * n];
        for (b, per_image) in outputs.chunks_exact(dirs.len() * n).enumerate() {
            for (seq, &k) in per_image.chunks_exact(n).zip(dirs) {
                scans.unscan_add(k, seq, &mut predicted[b * n..(b + 1) * n]);
            }
        }
        predicted
    }

    /// The level's anomaly maps `A_h` `[batch, L]` for `batch` images of features in the
    /// backbone layout `[batch, C, h, w]`.
    pub fn anomaly_maps(&self, scans: &Scans, features: &[T], batch: usize) -> Result<Vec<T>> {
        let residuals = self.residuals(scans, features, batch, &mut Workspace::default())?;
        Ok(squared_norms(&residuals, self.channels))
    }

    /// The prediction residuals on the CPU, with the predictor's intermediates in `ws`:
    /// through [`Predictor::forward_orderings`] where it runs (the directions share the
    /// per-token projections), else by building each direction's sequence.
    pub fn residuals(
        &self,
        scans: &Scans,
        features: &[T],
        batch: usize,
        ws: &mut Workspace<T>,
    ) -> Result<Vec<T>> {
        if !self.predictor.shares_orderings() {
            return self.residuals_with(scans, features, batch, |x, b, l| {
                self.predictor.forward_in_place_with(x, b, l, ws)
            });
        }
        let (len, c) = (scans.len(), self.channels);
        // The workspace's token buffers, put back below (left out on an error: the next
        // call grows new ones).
        let [mut token_major, mut adapted, mut tokens] = std::mem::take(&mut ws.level);
        let token_major_n = grown(&mut token_major, batch * len * c);
        self.to_token_major_into(features, len, token_major_n);
        let adapted_n = grown(&mut adapted, batch * len * c);
        self.adapt_into(token_major_n, batch * len, adapted_n);
        let adapted_n = &*adapted_n;
        let orderings: Vec<Ordering> = scans
            .directions()
            .iter()
            .map(|&k| Ordering {
                input: scans.input_rows(k),
                target: scans.order(k),
                weight: scans.weights(k),
            })
            .collect();
        let mut predicted = Vec::new();
        for image in adapted_n.chunks_exact(len * c) {
            tokens.clear();
            tokens.extend_from_slice(image);
            tokens.extend_from_slice(&self.bos);
            let one = self.predictor.forward_orderings(&tokens, &orderings, ws)?;
            if batch == 1 {
                predicted = one;
            } else {
                predicted.extend(one);
            }
        }
        let residuals = into_residuals(predicted, adapted_n);
        ws.level = [token_major, adapted, tokens];
        Ok(residuals)
    }

    /// The prediction residuals `F-_h - F^_h`, `[batch, L, C]` token-major, whose squared
    /// norms are the level's anomaly map, from each direction's sequence run by `forward`
    /// (`(sequences in place, batch, len)`): the CPU predictor, or a GPU copy of it.
    pub fn residuals_with(
        &self,
        scans: &Scans,
        features: &[T],
        batch: usize,
        forward: impl FnOnce(&mut [T], usize, usize) -> Result<()>,
    ) -> Result<Vec<T>> {
        let len = scans.len();
        let tokens = self.to_token_major(features, batch, len);
        let adapted = self.adapt(&tokens, batch * len);
        let mut seqs = self.sequences(scans, &adapted, batch);
        forward(&mut seqs, batch * scans.directions().len(), len)?;
        Ok(into_residuals(self.unscan(scans, &seqs, batch), &adapted))
    }

    /// Training step of one level: the maps `A_h` `[batch, L]` and the gradients of
    /// `sum(map_grad * A_h)` (the caller's loss is linear in `A_h`, so `map_grad` is its
    /// derivative, `[batch, L]`). With `detach_target`, the adapted tokens act as a
    /// constant where they are the target of the prediction (stop-gradient), and only the
    /// predictor's input path trains the adapter. The predictor's tape and temporaries
    /// live in `bufs`, which the caller keeps from step to step.
    pub fn train_step(
        &self,
        scans: &Scans,
        features: &[T],
        batch: usize,
        map_grad: &[T],
        detach_target: bool,
        bufs: &mut TrainBuffers<T>,
    ) -> Result<(Vec<T>, LevelGradients<T>)> {
        // Both closures use the buffers, one after the other.
        let bufs = std::cell::RefCell::new(bufs);
        self.train_step_with(
            scans,
            features,
            batch,
            map_grad,
            detach_target,
            |seqs, b, l| {
                self.predictor
                    .forward_train_with(seqs, b, l, &mut bufs.borrow_mut())
            },
            |tape, g| {
                self.predictor
                    .backward_with(tape, g, &mut bufs.borrow_mut())
            },
            |used| bufs.borrow_mut().recycle(used),
        )
    }

    /// [`LevelParams::train_step`] with the predictor's training forward and backward
    /// done by `forward` and `backward` (the predictor on the device training runs on,
    /// with a tape and gradients of its own types). `recycle` receives their output and
    /// input gradient once used (the CPU path hands them back to its [`TrainBuffers`];
    /// others drop them).
    #[allow(clippy::too_many_arguments)]
    pub fn train_step_with<Tp, G>(
        &self,
        scans: &Scans,
        features: &[T],
        batch: usize,
        map_grad: &[T],
        detach_target: bool,
        forward: impl FnOnce(&[T], usize, usize) -> Result<(Vec<T>, Tp)>,
        backward: impl FnOnce(Tp, &[T]) -> Result<(Vec<T>, G)>,
        mut recycle: impl FnMut(Vec<T>),
    ) -> Result<(Vec<T>, LevelGradients<T, G>)> {
        let c = self.channels;
        let len = scans.len();
        let n = len * c;
        let tokens = self.to_token_major(features, batch, len);
        let adapted = self.adapt(&tokens, batch * len);
        let seqs = self.sequences(scans, &adapted, batch);
        let dirs = scans.directions();
        let (outputs, tape) = forward(&seqs, batch * dirs.len(), len)?;
        drop(seqs);
        let residuals = into_residuals(self.unscan(scans, &outputs, batch), &adapted);
        recycle(outputs);
        let maps = squared_norms(&residuals, c);

        // d/d(pred) of g * ||pred - adapted||^2 = 2 g (pred - adapted).
        let mut d_predicted = residuals;
        for (row, &g) in d_predicted.chunks_exact_mut(c).zip(map_grad) {
            let two_g = T::from_f64(2.0) * g;
            for r in row.iter_mut() {
                *r = two_g * *r;
            }
        }
        let mut d_adapted = if detach_target {
            vec![T::ZERO; batch * n]
        } else {
            d_predicted.iter().map(|&v| -v).collect()
        };

        let mut d_outputs = vec![T::ZERO; batch * dirs.len() * n];
        for (b, per_image) in d_outputs.chunks_exact_mut(dirs.len() * n).enumerate() {
            for (dst, &k) in per_image.chunks_exact_mut(n).zip(dirs) {
                scans.unscan_backward(k, &d_predicted[b * n..(b + 1) * n], dst);
            }
        }
        drop(d_predicted);
        let (d_seqs, predictor_grads) = backward(tape, &d_outputs)?;
        drop(d_outputs);
        let mut d_bos = vec![T::ZERO; c];
        for (b, per_image) in d_seqs.chunks_exact(dirs.len() * n).enumerate() {
            for (src, &k) in per_image.chunks_exact(n).zip(dirs) {
                scans.shifted_sequence_backward(
                    k,
                    src,
                    &mut d_adapted[b * n..(b + 1) * n],
                    &mut d_bos,
                );
            }
        }
        recycle(d_seqs);

        // F^ = F + F W^T + b with F frozen: dW = dF^^T F, db = sum over tokens of dF^.
        let rows = batch * len;
        let mut d_weight = vec![T::ZERO; c * c];
        linear_grad_weight(
            rows,
            c,
            c,
            &d_adapted,
            c,
            &tokens,
            c,
            T::ZERO,
            &mut d_weight,
        );
        let mut d_bias = vec![T::ZERO; c];
        for row in d_adapted.chunks_exact(c) {
            for (a, &v) in d_bias.iter_mut().zip(row) {
                *a += v;
            }
        }
        Ok((
            maps,
            LevelGradients {
                adapter_weight: d_weight,
                adapter_bias: d_bias,
                bos: d_bos,
                predictor: predictor_grads,
            },
        ))
    }
}

/// `predicted - adapted`, in `predicted`'s buffer.
fn into_residuals<T: Float>(mut predicted: Vec<T>, adapted: &[T]) -> Vec<T> {
    predicted
        .par_iter_mut()
        .zip(adapted)
        .with_min_len(1 << 14)
        .for_each(|(r, &a)| *r -= a);
    predicted
}

/// Tokens per task of the levels' passes over `[L, C]` rows.
const TOKENS_PER_TASK: usize = 512;

/// `A[p] = ||r[p]||^2` over rows of `c` values: the level's map from its residuals.
pub fn squared_norms<T: Float>(residuals: &[T], c: usize) -> Vec<T> {
    residuals
        .chunks_exact(c)
        .map(|r| r.iter().map(|&x| x * x).sum())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map written out: `A[p] = ||predicted[p] - adapted[p]||^2`.
    fn squared_errors<T: Float>(predicted: &[T], adapted: &[T], c: usize) -> Vec<T> {
        predicted
            .chunks_exact(c)
            .zip(adapted.chunks_exact(c))
            .map(|(p, a)| p.iter().zip(a).map(|(&x, &y)| (x - y) * (x - y)).sum())
            .collect()
    }
    use crate::model::scan::DirectionMean;

    fn random(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5) * 2.0 * scale
            })
            .collect()
    }

    fn level(c: usize, seed: u64) -> LevelParams<f64> {
        let mut cfg = PredictorConfig::new(c);
        cfg.d_state = 4;
        let mut p = LevelParams::init(cfg, seed).unwrap().cast::<f64>();
        // Non-zero adapter and BOS, so their gradients are exercised away from the init.
        p.adapter_weight = random(c * c, seed + 1, 0.2);
        p.adapter_bias = random(c, seed + 2, 0.2);
        p.bos = random(c, seed + 3, 0.5);
        p
    }

    fn loss(p: &LevelParams<f64>, scans: &Scans, feats: &[f64], batch: usize, g: &[f64]) -> f64 {
        let maps = p.anomaly_maps(scans, feats, batch).unwrap();
        maps.iter().zip(g).map(|(a, b)| a * b).sum()
    }

    /// Finite differences of the whole level (adapter, BOS, scans, predictor, unscan, map)
    /// against the analytic gradients, in f64.
    #[test]
    fn level_gradients_match_finite_differences() {
        let all: &[usize] = &[0, 1, 2, 3];
        for (detach, h, w, m, mean, dirs) in [
            (false, 4, 5, 1, DirectionMean::All, all),
            (true, 5, 4, 2, DirectionMean::All, all),
            (false, 5, 6, 2, DirectionMean::WithContext, all),
            (true, 4, 5, 1, DirectionMean::WithContext, all),
            // Subsets of the directions (the scan ablation): fewer sequences per image.
            (false, 4, 5, 1, DirectionMean::All, &[0, 2][..]),
            (true, 5, 6, 2, DirectionMean::WithContext, &[0, 2][..]),
            (false, 5, 4, 1, DirectionMean::WithContext, &[3][..]),
            (true, 4, 5, 2, DirectionMean::All, &[3][..]),
        ] {
            let c = 3;
            let batch = 2;
            let scans = Scans::new(h, w, m)
                .unwrap()
                .with_direction_mean(mean)
                .with_directions(dirs)
                .unwrap();
            let p = level(c, 11);
            let feats = random(batch * c * h * w, 5, 1.0);
            let g = random(batch * h * w, 9, 1.0);
            let (maps, grads) = p
                .train_step(
                    &scans,
                    &feats,
                    batch,
                    &g,
                    detach,
                    &mut TrainBuffers::default(),
                )
                .unwrap();
            assert_eq!(maps, p.anomaly_maps(&scans, &feats, batch).unwrap());

            let eps = 1e-6;
            let check =
                |name: &str,
                 analytic: &[f64],
                 get: &dyn Fn(&mut LevelParams<f64>) -> &mut Vec<f64>| {
                    for (i, &want) in analytic.iter().enumerate() {
                        let mut plus = p.clone();
                        get(&mut plus)[i] += eps;
                        let mut minus = p.clone();
                        get(&mut minus)[i] -= eps;
                        let numeric = if detach {
                            // With a detached target, the target side stays at the unperturbed
                            // adapted tokens: differentiate the input path only.
                            detached_loss(&plus, &p, &scans, &feats, batch, &g)
                                - detached_loss(&minus, &p, &scans, &feats, batch, &g)
                        } else {
                            loss(&plus, &scans, &feats, batch, &g)
                                - loss(&minus, &scans, &feats, batch, &g)
                        } / (2.0 * eps);
                        let err = (numeric - want).abs() / (1e-6 + numeric.abs().max(want.abs()));
                        assert!(
                            err < 1e-5,
                            "{name}[{i}] detach={detach} {dirs:?}: numeric {numeric} analytic {want}"
                        );
                    }
                };
            check("adapter_weight", &grads.adapter_weight, &|p| {
                &mut p.adapter_weight
            });
            check("adapter_bias", &grads.adapter_bias, &|p| {
                &mut p.adapter_bias
            });
            check("bos", &grads.bos, &|p| &mut p.bos);
            // The predictor's own FD tests cover each of its tensors; here one tensor checks
            // that the level feeds it the right output gradient.
            let d = grads
                .predictor
                .get("layers.0.mixer.out_proj.weight")
                .unwrap()
                .to_vec();
            for i in [0, d.len() / 2, d.len() - 1] {
                let bump = |delta: f64| {
                    let mut q = p.clone();
                    for (name, t) in q.predictor.params_mut() {
                        if name == "layers.0.mixer.out_proj.weight" {
                            t[i] += delta;
                        }
                    }
                    if detach {
                        detached_loss(&q, &p, &scans, &feats, batch, &g)
                    } else {
                        loss(&q, &scans, &feats, batch, &g)
                    }
                };
                let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps);
                let err = (numeric - d[i]).abs() / (1e-6 + numeric.abs().max(d[i].abs()));
                assert!(
                    err < 1e-5,
                    "out_proj[{i}]: numeric {numeric} analytic {}",
                    d[i]
                );
            }
        }
    }

    /// The loss with the prediction from `q` and the target from `p`'s adapter.
    fn detached_loss(
        q: &LevelParams<f64>,
        p: &LevelParams<f64>,
        scans: &Scans,
        feats: &[f64],
        batch: usize,
        g: &[f64],
    ) -> f64 {
        let len = scans.len();
        let c = q.channels;
        let target = p.adapt(&p.to_token_major(feats, batch, len), batch * len);
        let adapted = q.adapt(&q.to_token_major(feats, batch, len), batch * len);
        let mut seqs = q.sequences(scans, &adapted, batch);
        q.predictor
            .forward_in_place(&mut seqs, batch * scans.directions().len(), len)
            .unwrap();
        let predicted = q.unscan(scans, &seqs, batch);
        squared_errors(&predicted, &target, c)
            .iter()
            .zip(g)
            .map(|(a, b)| a * b)
            .sum()
    }

    /// The code before direction subsets existed: four sequences per image, always.
    fn four_direction_maps(
        p: &LevelParams<f64>,
        scans: &Scans,
        feats: &[f64],
        batch: usize,
    ) -> Vec<f64> {
        let (len, c) = (scans.len(), p.channels);
        let n = len * c;
        let adapted = p.adapt(&p.to_token_major(feats, batch, len), batch * len);
        let mut seqs = vec![0.0; batch * 4 * n];
        for b in 0..batch {
            for k in 0..4 {
                let out = &mut seqs[(b * 4 + k) * n..(b * 4 + k + 1) * n];
                scans.shifted_sequence(k, &adapted[b * n..(b + 1) * n], &p.bos, out);
            }
        }
        p.predictor
            .forward_in_place(&mut seqs, batch * 4, len)
            .unwrap();
        let mut predicted = vec![0.0; batch * n];
        for b in 0..batch {
            for k in 0..4 {
                let seq = &seqs[(b * 4 + k) * n..(b * 4 + k + 1) * n];
                scans.unscan_add(k, seq, &mut predicted[b * n..(b + 1) * n]);
            }
        }
        squared_errors(&predicted, &adapted, c)
    }

    #[test]
    fn all_four_directions_give_the_maps_of_before_bit_for_bit() {
        let (c, batch, h, w) = (3, 2, 5, 6);
        let p = level(c, 21);
        let feats = random(batch * c * h * w, 4, 1.0);
        for mean in [DirectionMean::All, DirectionMean::WithContext] {
            let default = Scans::new(h, w, 2).unwrap().with_direction_mean(mean);
            let explicit = default.clone().with_directions(&[0, 1, 2, 3]).unwrap();
            let want = four_direction_maps(&p, &default, &feats, batch);
            assert_eq!(p.anomaly_maps(&default, &feats, batch).unwrap(), want);
            assert_eq!(p.anomaly_maps(&explicit, &feats, batch).unwrap(), want);
            let g = random(batch * h * w, 2, 1.0);
            let (maps, _) = p
                .train_step(
                    &explicit,
                    &feats,
                    batch,
                    &g,
                    false,
                    &mut TrainBuffers::default(),
                )
                .unwrap();
            assert_eq!(maps, want);
        }
        // A subset is a different model: its map differs from the four-direction one.
        let two = Scans::new(h, w, 2)
            .unwrap()
            .with_directions(&[1, 2])
            .unwrap();
        let full = Scans::new(h, w, 2).unwrap();
        assert_ne!(
            p.anomaly_maps(&two, &feats, batch).unwrap(),
            p.anomaly_maps(&full, &feats, batch).unwrap()
        );
    }

    #[test]
    fn token_major_is_the_transpose_of_each_image() {
        // Grids longer than one task's tokens and not a multiple of them, two images.
        let (c, batch) = (3, 2);
        let p = level(c, 4);
        for len in [5, 512, 1300] {
            let feats = random(batch * c * len, 2, 1.0);
            let tokens = p.to_token_major(&feats, batch, len);
            for b in 0..batch {
                for l in 0..len {
                    for ch in 0..c {
                        assert_eq!(
                            tokens[(b * len + l) * c + ch],
                            feats[(b * c + ch) * len + l],
                            "len {len}, image {b}, token {l}, channel {ch}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn shared_projections_give_the_sequence_paths_residuals() {
        // f32 and C = 8 (Di = 16): where the shared path runs, it must agree with building
        // each direction's sequence (it differs only in rounding).
        let c = 8;
        let p = level(c, 31).cast::<f32>();
        if !p.predictor.shares_orderings() {
            eprintln!("skipped: the shared path does not run on this CPU");
            return;
        }
        let (batch, h, w) = (2, 6, 7);
        let feats: Vec<f32> = random(batch * c * h * w, 8, 1.0)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        for (dirs, mean) in [
            (&[0usize, 1, 2, 3][..], DirectionMean::All),
            (&[0, 1, 2, 3], DirectionMean::WithContext),
            (&[1, 2], DirectionMean::All),
        ] {
            let scans = Scans::new(h, w, 2)
                .unwrap()
                .with_direction_mean(mean)
                .with_directions(dirs)
                .unwrap();
            let shared = p
                .residuals(&scans, &feats, batch, &mut Workspace::default())
                .unwrap();
            let sequences = p
                .residuals_with(&scans, &feats, batch, |x, b, l| {
                    p.predictor.forward_in_place(x, b, l)
                })
                .unwrap();
            let scale = sequences.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, (a, b)) in shared.iter().zip(&sequences).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "{dirs:?} {mean:?} [{i}]: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn a_kept_workspace_changes_no_residual() {
        use crate::predictor::WorkspacePool;
        // The shared path's token, index and output buffers live in the workspace: calls
        // with other grids, batches and inputs in between must leave no trace in a result.
        let c = 8;
        let p = level(c, 32).cast::<f32>();
        if !p.predictor.shares_orderings() {
            eprintln!("skipped: the shared path does not run on this CPU");
            return;
        }
        let feats = |n: usize, seed: u64| -> Vec<f32> {
            random(n, seed, 1.0).into_iter().map(|v| v as f32).collect()
        };
        let calls = [
            (1, 6, 7, 1),
            (2, 9, 5, 2),
            (1, 6, 7, 3),
            (1, 4, 4, 4),
            (1, 5, 5, 5),
        ];
        let kept = WorkspacePool::default();
        for (batch, h, w, seed) in calls {
            let scans = Scans::new(h, w, 2).unwrap();
            let x = feats(batch * c * h * w, seed);
            let reused = kept.with(|ws| p.residuals(&scans, &x, batch, ws)).unwrap();
            // The next call's output starts as this one's values.
            kept.give_back(reused.clone());
            let fresh = p
                .residuals(&scans, &x, batch, &mut Workspace::default())
                .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&reused), bits(&fresh), "batch {batch}, grid {h}x{w}");
        }
    }

    #[test]
    fn a_fresh_level_predicts_from_context_only() {
        // With the adapter at zero, F^ = F: the map is the predictor's error on the raw
        // tokens, finite and non-negative.
        let c = 4;
        let scans = Scans::new(5, 6, 2).unwrap();
        let p = LevelParams::init(PredictorConfig::new(c), 3).unwrap();
        let feats: Vec<f32> = random(c * 30, 1, 1.0)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let maps = p.anomaly_maps(&scans, &feats, 1).unwrap();
        assert_eq!(maps.len(), 30);
        assert!(maps.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert_eq!(
            p.adapt(&p.to_token_major(&feats, 1, 30), 30),
            p.to_token_major(&feats, 1, 30)
        );
    }

    /// Steps that share their buffers, the predictor's output and input gradient handed
    /// back after each, give bit for bit what steps with fresh buffers give: no step reads
    /// what an earlier one left in a recycled buffer.
    #[test]
    fn recycled_training_buffers_change_no_result() {
        let c = 3;
        let p = level(c, 21).cast::<f32>();
        let mut kept = TrainBuffers::default();
        // Changing grids and batches, so recycled buffers of other sizes get reused.
        for (step, (h, w, batch)) in [(4, 5, 2), (5, 4, 1), (4, 5, 2), (3, 3, 1)]
            .into_iter()
            .enumerate()
        {
            let scans = Scans::new(h, w, 1).unwrap();
            let feats: Vec<f32> = random(batch * c * h * w, 30 + step as u64, 1.0)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let g: Vec<f32> = random(batch * h * w, 40 + step as u64, 1.0)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let fresh = p
                .train_step(
                    &scans,
                    &feats,
                    batch,
                    &g,
                    false,
                    &mut TrainBuffers::default(),
                )
                .unwrap();
            let reused = p
                .train_step(&scans, &feats, batch, &g, false, &mut kept)
                .unwrap();
            assert_eq!(fresh.0, reused.0, "maps, step {step}");
            let (a, b) = (&fresh.1, &reused.1);
            assert_eq!(a.adapter_weight, b.adapter_weight, "step {step}");
            assert_eq!(a.adapter_bias, b.adapter_bias, "step {step}");
            assert_eq!(a.bos, b.bos, "step {step}");
            assert_eq!(
                format!("{:?}", a.predictor),
                format!("{:?}", b.predictor),
                "step {step}"
            );
        }
        assert!(kept.bytes() > 0, "the buffers were kept");
    }
}
