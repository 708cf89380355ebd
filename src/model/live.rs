//! A model in service: scoring threads read it while training and threshold changes
//! replace it. The current [`Model`] is an immutable value behind an atomically swapped
//! pointer; a scoring call takes the value once and uses it to the end, and a change
//! builds the next value off to the side and publishes it in one store. So scoring never
//! waits for a change, a change never waits for scoring, and no result mixes two states.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::score::Calibration;
use crate::train::{Progress, TrainReport, TrainingSet};
use crate::{Error, ErrorKind, Result};

use super::Model;

/// A model that many threads score while one trains or recalibrates it.
pub struct LiveModel {
    current: ArcSwap<Model>,
    /// Set while a training runs: one change at a time, and a threshold change during a
    /// training would be overwritten by the thresholds the training publishes.
    training: AtomicBool,
}

impl std::fmt::Debug for LiveModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveModel")
            .field("current", &self.current.load())
            .field("training", &self.training.load(Ordering::Relaxed))
            .finish()
    }
}

/// Clears the training flag when a training ends, however it ends.
struct TrainingGuard<'a>(&'a AtomicBool);

impl Drop for TrainingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl LiveModel {
    /// Puts `model` in service.
    pub fn new(model: Model) -> Self {
        LiveModel {
            current: ArcSwap::from_pointee(model),
            training: AtomicBool::new(false),
        }
    }

    /// The model as it is now. Score with it, save it, read its thresholds: the value
    /// never changes, whatever is published after this call.
    pub fn current(&self) -> Arc<Model> {
        self.current.load_full()
    }

    /// Whether a training is running.
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Acquire)
    }

    /// Trains a copy of the current model on `set` (see [`Model::fit`]) while other
    /// threads go on scoring the current one, and publishes the trained copy when it
    /// succeeds. On cancellation or any error nothing is published. [`ErrorKind::Busy`]
    /// when another training runs.
    pub fn fit(
        &self,
        set: &TrainingSet,
        progress: impl FnMut(&Progress) -> ControlFlow<()>,
    ) -> Result<TrainReport> {
        if self
            .training
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::new(
                ErrorKind::Busy,
                "the model is already being trained by another thread; retry when that \
                 training has returned",
            ));
        }
        let _guard = TrainingGuard(&self.training);
        let mut next = Model::clone(&self.current.load());
        let report = next.fit(set, progress)?;
        self.current.store(Arc::new(next));
        Ok(report)
    }

    /// Changes the current model's calibration with `change` (given a copy to edit) and
    /// publishes the result. Concurrent changes compose (each applies to the model the
    /// other published). [`ErrorKind::NotTrained`] for a model without a calibration;
    /// [`ErrorKind::Busy`] while a training runs (it will publish thresholds of its own).
    /// On any error nothing changes.
    pub fn change_calibration(
        &self,
        mut change: impl FnMut(&mut Calibration) -> Result<()>,
    ) -> Result<()> {
        if self.is_training() {
            return Err(Error::new(
                ErrorKind::Busy,
                "the model is being trained by another thread, and the training will publish \
                 thresholds of its own; change them when it has returned",
            ));
        }
        let mut failure = None;
        self.current.rcu(|model| {
            let changed = match model.calibration() {
                Some(current) => {
                    let mut next = current.clone();
                    change(&mut next).map(|()| next)
                }
                None => Err(Error::new(
                    ErrorKind::NotTrained,
                    "the model is not calibrated: train it (or load a trained model) first",
                )),
            };
            match changed {
                Ok(calibration) => {
                    let mut next = Model::clone(model);
                    next.set_calibration(calibration);
                    failure = None;
                    Arc::new(next)
                }
                Err(e) => {
                    failure = Some(e);
                    // Publishing the same value back changes nothing for any reader.
                    Arc::clone(model)
                }
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
