//! `varad eval`: VarAD against the PatchCore baseline on a labelled data set; writes
//! `report.json`, `report.md` and a montage per category, and prints the table.

use std::path::PathBuf;

use varad::eval::dataset::Dataset;
use varad::eval::harness::{evaluate, EvalOptions, Method};
use varad::eval::patchcore::PatchCoreConfig;
use varad::{Error, Result};

use crate::config_args::ConfigArgs;

/// Which methods to run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Methods {
    /// VarAD only.
    Varad,
    /// The PatchCore baseline only.
    Patchcore,
    /// Both, side by side.
    Both,
}

/// Arguments of `varad eval`.
#[derive(clap::Args)]
pub struct Args {
    /// The data set's root folder (MVTec AD, VisA or BTAD layout, detected).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Only these categories (repeat the flag or separate with commas) [default: all].
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    category: Vec<String>,
    /// The backbone ONNX file (required unless --config names one).
    #[arg(long, value_name = "FILE")]
    backbone: Option<PathBuf>,
    /// Where to write report.json, report.md and the montages.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Which methods to evaluate.
    #[arg(long, value_enum, default_value = "both")]
    method: Methods,
    #[command(flatten)]
    config: ConfigArgs,
    /// PatchCore: share of the training tokens kept in each level's memory bank.
    #[arg(long, value_name = "F", default_value = "0.1")]
    coreset_fraction: f64,
    /// PatchCore: at most this many memory-bank tokens per level [default: no cap].
    #[arg(long, value_name = "N")]
    coreset_max: Option<usize>,
    /// Also report VarAD under these map normalisations, comma-separated (each a row of
    /// its own, scored with the same trained model), e.g. none,level,channel,position.
    #[arg(long, value_name = "NORMS", value_delimiter = ',', value_parser = crate::config_args::parse_map_norm)]
    compare_map_norms: Vec<varad::model::MapNorm>,
    /// Test images shown in each category's montage (0 = no montage).
    #[arg(long, value_name = "N", default_value = "12")]
    montage: usize,
    /// Montage tile side in pixels.
    #[arg(long, value_name = "PX", default_value = "256")]
    tile: usize,
}

/// Runs the evaluation.
pub fn run(args: Args, runtime: Option<PathBuf>) -> Result<()> {
    let config = args
        .config
        .build(args.backbone.as_deref(), runtime.as_deref())?;
    if args.tile == 0 {
        return Err(Error::invalid_argument("--tile must be at least 1"));
    }
    let dataset = Dataset::open(&args.data, &args.category)?;
    let mut options = EvalOptions::new(config.clone());
    options.methods = match args.method {
        Methods::Varad => vec![Method::Varad],
        Methods::Patchcore => vec![Method::PatchCore],
        Methods::Both => vec![Method::Varad, Method::PatchCore],
    };
    options.patchcore = PatchCoreConfig {
        coreset_fraction: args.coreset_fraction,
        max_bank: args.coreset_max,
        seed: config.seed,
        ..PatchCoreConfig::default()
    };
    options.map_norms = args.compare_map_norms.clone();
    options.montage_images = args.montage;
    options.montage_tile = args.tile;
    options.out_dir = Some(args.out.clone());
    eprintln!(
        "{} data set at {}: {} categories",
        match dataset.layout {
            varad::eval::dataset::Layout::MvtecAd => "MVTec AD",
            varad::eval::dataset::Layout::Visa => "VisA",
            varad::eval::dataset::Layout::Btad => "BTAD",
        },
        args.data.display(),
        dataset.categories.len()
    );
    let report = evaluate(&dataset, &options, &mut |line| eprintln!("{line}"))?;
    let write = |name: &str, text: String| {
        let path = args.out.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, "write", &e))
    };
    write("report.json", report.to_json() + "\n")?;
    let markdown = report.to_markdown();
    write("report.md", markdown.clone())?;
    println!("{markdown}");
    eprintln!("wrote {}/report.json and report.md", args.out.display());
    Ok(())
}
