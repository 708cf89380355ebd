//! Training: the token cache, AdamW, and the loop with progress and cancel.

internal_mod!(adamw);
mod cache;
mod cross_fit;
mod predictor_training;
mod trainer;

pub use cross_fit::{calibration_plan, CalibrationPlan, MIN_IMAGES_PER_FOLD_FIT};
pub use trainer::{calibration_split, Progress, TrainReport, TrainingSet};
