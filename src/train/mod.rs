//! Training: the token cache, AdamW, and the loop with progress and cancel.

internal_mod!(adamw);
mod cache;
mod predictor_training;
mod trainer;

pub use trainer::{calibration_split, Progress, TrainReport, TrainingSet};
