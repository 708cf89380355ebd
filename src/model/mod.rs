//! The VarAD model: adapters, BOS vectors, one predictor per feature map, the four scans
//! with their shift, and the anomaly map (DESIGN.md, "The pipeline").

pub mod combine;
mod inference;
pub mod level;
pub mod normal_stats;
pub mod scan;
mod varad;

pub use inference::{GridMap, ScoreOptions, ScoreResult};
pub use level::{LevelGradients, LevelParams};
pub use normal_stats::{MapNorm, NormalStats};
pub use scan::{DirectionMean, Scans, DIRECTIONS};
pub use varad::{predictor_config, LevelLayout, Model, PredictorDevice, Weights};
