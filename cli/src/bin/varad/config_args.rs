//! The model-configuration flags shared by `train`, `eval` and `bench`.

use std::path::{Path, PathBuf};

use varad::model::{BankLevels, BankSelection, MapNorm, NeighbourTerm};
use varad::score::BeyondData;
use varad::{Config, Device, Error, Result};

/// Configuration flags: a full `Config` JSON file and/or single settings over it.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// A full model configuration as JSON (the library's `Config`, as stored in a model
    /// file's metadata); the flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Training epochs [default: 10].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Backbone outputs to use, comma-separated, finest first, e.g. stride8,stride16
    /// [default: all].
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub levels: Option<Vec<String>>,
    /// Backbone input size, WxH, a multiple of the backbone's input multiple
    /// [default: the backbone's preferred size].
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub input_size: Option<(u32, u32)>,
    /// Prediction step m (rows or columns the predictor looks back) [default: 4].
    #[arg(long, value_name = "M")]
    pub step: Option<usize>,
    /// Device: auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long)]
    pub device: Option<Device>,
    /// Worker threads, 0 = one per physical core [default: 0].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Seed of every random choice [default: 0].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Stop the gradient through the prediction target (the adapted tokens): true or
    /// false; the flag alone means true [default: the configuration's, false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub detach_target: Option<bool>,
    /// Average the four directions' predictions over those with context only (not the
    /// BOS-only guesses near the borders): true or false; the flag alone means true
    /// [default: the configuration's, false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub context_mean: Option<bool>,
    /// How each level's prediction errors become its map before the levels are summed:
    /// none (the paper's raw squared error), level, channel, position or
    /// position_two_sided (see the library's `MapNorm`) [default: the configuration's].
    #[arg(long, value_name = "NORM", value_parser = parse_map_norm)]
    pub map_norm: Option<MapNorm>,
    /// Scan directions to use, comma-separated: 0 row-major, 1 its reverse, 2
    /// column-major, 3 its reverse (the paper's scan ablation) [default: 0,1,2,3].
    #[arg(long, value_name = "K,...", value_delimiter = ',', value_parser = parse_direction)]
    pub directions: Option<Vec<usize>>,
    /// Train the adapters: true or false (false keeps them at the identity, the paper's
    /// ablation without adapters); the flag alone means true [default: the
    /// configuration's, true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub adapters: Option<bool>,
    /// Weight of the nearest-neighbour term added to a normalised map, 0 = off (see the
    /// library's `ScoreConfig::neighbour_weight`) [default: the configuration's, 1].
    #[arg(long, value_name = "W")]
    pub neighbour_weight: Option<f32>,
    /// Tokens of each of that term's memory banks, 0 = no bank [default: the
    /// configuration's, 8192].
    #[arg(long, value_name = "N")]
    pub neighbour_bank_tokens: Option<usize>,
    /// How that bank's tokens are chosen from the training images': random (a seeded
    /// draw) or coreset (greedy k-center: covers rare normal patterns too) [default: the
    /// configuration's, coreset].
    #[arg(long, value_name = "RULE", value_parser = parse_bank_selection)]
    pub neighbour_bank_selection: Option<BankSelection>,
    /// Which levels get a bank: coarsest or all (each its own bank of
    /// --neighbour-bank-tokens tokens) [default: the configuration's, all].
    #[arg(long, value_name = "LEVELS", value_parser = parse_bank_levels)]
    pub neighbour_bank_levels: Option<BankLevels>,
    /// How a position's distance to a bank becomes the term: above_normal (standard
    /// deviations above the normal mean, 0 below it) or scaled (the whole distance in
    /// standard deviations) [default: the configuration's, scaled].
    #[arg(long, value_name = "TERM", value_parser = parse_neighbour_term)]
    pub neighbour_term: Option<NeighbourTerm>,
    /// How the term searches each bank: 0 = exactly, N = in an inverted-file index,
    /// measuring only the tokens of each position's N nearest cells of about
    /// sqrt(bank tokens) [default: the configuration's, 8].
    #[arg(long, value_name = "N")]
    pub neighbour_probes: Option<usize>,
    /// Folds of the cross-fitting that scores every training image out-of-sample for the
    /// calibration, 0 = none (only held-back images are scored) [default: the
    /// configuration's, 5].
    #[arg(long, value_name = "K")]
    pub cross_fit_folds: Option<usize>,
    /// The share of good parts the review threshold may send to review (or fail), in
    /// (0, 1) [default: the configuration's, 0.01].
    #[arg(long, value_name = "RATE")]
    pub target_false_reject_rate: Option<f64>,
    /// The share of good parts the fail threshold may fail, in [0, 1); 0 = the review
    /// threshold plus the review band (no stated rate) [default: the configuration's,
    /// 0.001].
    #[arg(long, value_name = "RATE")]
    pub target_false_fail_rate: Option<f64>,
    /// When the good images are too few for a requested rate: log_normal_tail
    /// (extrapolate, flagged in the calibration report) or refuse (stop, saying how many
    /// images the rate needs) [default: the configuration's, log_normal_tail].
    #[arg(long, value_name = "RULE", value_parser = parse_beyond_data)]
    pub beyond_data: Option<BeyondData>,
    /// Lower the review threshold until no known-defective example (train
    /// --known-defects) passes: true or false; the flag alone means true [default: the
    /// configuration's, false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub catch_known_defects: Option<bool>,
}

/// Parses the rule for rates beyond the data: log_normal_tail or refuse.
pub fn parse_beyond_data(text: &str) -> std::result::Result<BeyondData, String> {
    text.parse::<BeyondData>()
        .map_err(|e| e.message().to_string())
}

/// Parses a map normalisation name.
pub fn parse_map_norm(text: &str) -> std::result::Result<MapNorm, String> {
    text.parse::<MapNorm>().map_err(|e| e.message().to_string())
}

/// Parses a neighbour bank selection name.
pub fn parse_bank_selection(text: &str) -> std::result::Result<BankSelection, String> {
    text.parse::<BankSelection>()
        .map_err(|e| e.message().to_string())
}

/// Parses a neighbour bank levels name.
pub fn parse_bank_levels(text: &str) -> std::result::Result<BankLevels, String> {
    text.parse::<BankLevels>()
        .map_err(|e| e.message().to_string())
}

/// Parses a neighbour term name.
pub fn parse_neighbour_term(text: &str) -> std::result::Result<NeighbourTerm, String> {
    text.parse::<NeighbourTerm>()
        .map_err(|e| e.message().to_string())
}

/// Parses one scan direction, 0 to 3.
pub fn parse_direction(text: &str) -> std::result::Result<usize, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("no scan direction given: expected one or more of 0, 1, 2, 3".into());
    }
    match text.parse::<usize>() {
        Ok(k) if k < varad::model::DIRECTIONS => Ok(k),
        _ => Err(format!(
            "`{text}` is not a scan direction: expected 0, 1, 2 or 3"
        )),
    }
}

/// Parses `WxH` (also `W,H` or `WXH`).
pub fn parse_size(text: &str) -> std::result::Result<(u32, u32), String> {
    let parts: Vec<&str> = text.split(['x', 'X', ',']).collect();
    match parts.as_slice() {
        [w, h] => match (w.trim().parse::<u32>(), h.trim().parse::<u32>()) {
            (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
            _ => Err(format!("`{text}` is not a size like 512x512")),
        },
        _ => Err(format!("`{text}` is not a size like 512x512")),
    }
}

impl ConfigArgs {
    /// The configuration: the JSON file's, or the defaults on `backbone`, with the flags
    /// applied. `backbone` (when given) also overrides the file's.
    pub fn build(&self, backbone: Option<&Path>, runtime: Option<&Path>) -> Result<Config> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io(path, "read the configuration", &e))?;
                serde_json::from_str::<Config>(&text)
                    .map_err(|e| Error::config(format!("{}: {e}", path.display())))?
            }
            None => Config::new(backbone.ok_or_else(|| {
                Error::invalid_argument("--backbone is required (or --config with a backbone)")
            })?),
        };
        if let Some(b) = backbone {
            config.backbone = b.to_path_buf();
        }
        if let Some(r) = runtime {
            config.runtime_path = Some(r.to_path_buf());
        }
        if let Some(v) = self.epochs {
            config.train.epochs = v;
        }
        if let Some(v) = &self.levels {
            config.levels = v.clone();
        }
        if let Some(v) = self.input_size {
            config.input_size = Some(v);
        }
        if let Some(v) = self.step {
            config.prediction_step = v;
        }
        if let Some(v) = self.device {
            config.device = v;
        }
        if let Some(v) = self.threads {
            config.threads = v;
        }
        if let Some(v) = self.seed {
            config.seed = v;
        }
        if let Some(v) = self.detach_target {
            config.detach_target = v;
        }
        if let Some(v) = self.context_mean {
            config.context_mean = v;
        }
        if let Some(v) = self.map_norm {
            config.score.map_norm = v;
        }
        if let Some(v) = &self.directions {
            config.directions = v.clone();
        }
        if let Some(v) = self.adapters {
            config.adapters = v;
        }
        if let Some(v) = self.neighbour_weight {
            config.score.neighbour_weight = v;
        }
        if let Some(v) = self.neighbour_bank_tokens {
            config.train.neighbour_bank_tokens = v;
        }
        if let Some(v) = self.neighbour_bank_selection {
            config.train.neighbour_bank_selection = v;
        }
        if let Some(v) = self.neighbour_bank_levels {
            config.train.neighbour_bank_levels = v;
        }
        if let Some(v) = self.neighbour_term {
            config.score.neighbour_term = v;
        }
        if let Some(v) = self.neighbour_probes {
            config.score.neighbour_probes = v;
        }
        if let Some(v) = self.cross_fit_folds {
            config.train.cross_fit_folds = v;
        }
        let calibration = &mut config.score.calibration;
        if let Some(v) = self.target_false_reject_rate {
            calibration.target_false_reject_rate = v;
        }
        if let Some(v) = self.target_false_fail_rate {
            calibration.target_false_fail_rate = v;
        }
        if let Some(v) = self.beyond_data {
            calibration.beyond_data = v;
        }
        if let Some(v) = self.catch_known_defects {
            calibration.catch_known_defects = v;
        }
        config.directions.sort_unstable();
        config.validate()?;
        Ok(config)
    }
}

/// Every image file among `inputs`: files as given, folders by their image files
/// (not recursive), in order.
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let files = varad_cli::eval::dataset::image_files(input)?;
            if files.is_empty() {
                return Err(Error::invalid_argument(format!(
                    "{} has no image files (png, jpg, bmp, tif)",
                    input.display()
                )));
            }
            out.extend(files);
        } else if input.is_file() {
            out.push(input.clone());
        } else {
            return Err(Error::new(
                varad::ErrorKind::Io,
                format!("{} does not exist", input.display()),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512x384"), Ok((512, 384)));
        assert!(parse_size("512").is_err());
        assert!(parse_size("0x5").is_err());
    }

    #[test]
    fn directions() {
        assert_eq!(parse_direction(" 3"), Ok(3));
        assert!(parse_direction("4").unwrap_err().contains("`4`"));
        assert!(parse_direction("")
            .unwrap_err()
            .contains("no scan direction"));
        let args = ConfigArgs {
            directions: Some(vec![3, 1]),
            adapters: Some(false),
            ..ConfigArgs::default()
        };
        let c = args.build(Some(Path::new("b.onnx")), None).unwrap();
        assert_eq!((c.directions, c.adapters), (vec![1, 3], false));
        let args = ConfigArgs {
            directions: Some(vec![1, 1]),
            ..ConfigArgs::default()
        };
        let err = args.build(Some(Path::new("b.onnx")), None).unwrap_err();
        assert!(err.message().contains("twice"), "{err}");
    }

    #[test]
    fn calibration_flags_reach_the_configuration() {
        assert_eq!(parse_beyond_data("refuse"), Ok(BeyondData::Refuse));
        assert!(parse_beyond_data("guess").unwrap_err().contains("guess"));
        let args = ConfigArgs {
            cross_fit_folds: Some(7),
            target_false_reject_rate: Some(0.05),
            target_false_fail_rate: Some(0.0),
            beyond_data: Some(BeyondData::Refuse),
            catch_known_defects: Some(true),
            ..ConfigArgs::default()
        };
        let c = args.build(Some(Path::new("b.onnx")), None).unwrap();
        let cal = c.score.calibration;
        assert_eq!(c.train.cross_fit_folds, 7);
        assert_eq!(
            (cal.target_false_reject_rate, cal.target_false_fail_rate),
            (0.05, 0.0)
        );
        assert_eq!(cal.beyond_data, BeyondData::Refuse);
        assert!(cal.catch_known_defects);
        let args = ConfigArgs {
            target_false_fail_rate: Some(1.0),
            cross_fit_folds: Some(1001),
            ..ConfigArgs::default()
        };
        let err = args.build(Some(Path::new("b.onnx")), None).unwrap_err();
        assert!(
            err.message()
                .contains("score.calibration.target_false_fail_rate 1 is not in [0, 1)"),
            "{err}"
        );
        assert!(
            err.message()
                .contains("train.cross_fit_folds 1001 is not in [2, 64]"),
            "{err}"
        );
    }
}
