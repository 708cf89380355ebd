//! The VarAD model: adapters, BOS vectors, one predictor per feature map, the four scans
//! with their shift, and the anomaly map (DESIGN.md, "The pipeline").

internal_mod!(combine);
internal_mod!(coreset);
mod inference;
internal_mod!(inverted_file);
internal_mod!(level);
mod live;
internal_mod!(neighbours);
pub(crate) mod normal_stats;
internal_mod!(scan);
mod varad;

pub use inference::{GridMap, ScoreOptions, ScoreResult};
pub use live::LiveModel;
pub use neighbours::{BankLevels, BankSelection, NeighbourBank, NeighbourTerm, SearchIndex};
pub use normal_stats::{MapNorm, NormalStats};
pub use varad::{LevelLayout, MapSettings, Model, PredictorDevice, Weights};

pub(crate) use level::LevelParams;
pub use scan::DIRECTIONS;
pub(crate) use varad::predictor_config;
