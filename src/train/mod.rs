//! Training: the token cache, AdamW, and the loop with progress and cancel.

pub mod adamw;
pub mod cache;
mod trainer;

pub use trainer::{calibration_split, Progress, TrainReport, TrainingSet};
