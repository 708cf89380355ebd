//! `varad eval`: VarAD against the PatchCore baseline on a labelled data set; writes
//! `report.json`, `report.md` and a montage per category, and prints the table. With
//! `--input-sizes` it runs the whole evaluation once per input size (a resolution sweep),
//! each size's report under `<out>/<WxH>/`, and writes `sweep.md` and `sweep.json`.

use std::path::PathBuf;

use varad::{Config, Error, Result};
use varad_cli::eval::dataset::Dataset;
use varad_cli::eval::harness::{evaluate, EvalOptions, Method};
use varad_cli::eval::patchcore::PatchCoreConfig;
use varad_cli::eval::report::{Report, SweepReport};

use crate::config_args::{parse_size, ConfigArgs};

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
    /// A resolution sweep: the whole evaluation once per input size, comma-separated
    /// WxH, each size's report under <out>/<WxH>/, and sweep.md + sweep.json in <out>
    /// comparing them (e.g. 256x256,512x512,768x768,1024x1024).
    #[arg(
        long,
        value_name = "WxH,...",
        value_delimiter = ',',
        value_parser = parse_size,
        conflicts_with = "input_size"
    )]
    input_sizes: Option<Vec<(u32, u32)>>,
    /// PatchCore: share of the training tokens kept in each level's memory bank.
    #[arg(long, value_name = "F", default_value = "0.1")]
    coreset_fraction: f64,
    /// PatchCore: at most this many memory-bank tokens per level [default: no cap].
    #[arg(long, value_name = "N")]
    coreset_max: Option<usize>,
    /// PatchCore: folds its training images are cross-fitted in for its calibration (each
    /// fold's memory banks selected without the fold: about (K - 1)^2 / K times the bank
    /// selection's time more), 0 = none (the held-out images alone calibrate it)
    /// [default: as VarAD's training cross-fits].
    #[arg(long, value_name = "K")]
    patchcore_cross_fit_folds: Option<usize>,
    /// Also report VarAD under these map normalisations, comma-separated (each a row of
    /// its own, scored with the same trained model), e.g. none,level,channel,position,position_two_sided.
    #[arg(long, value_name = "NORMS", value_delimiter = ',', value_parser = crate::config_args::parse_map_norm)]
    compare_map_norms: Vec<varad::model::MapNorm>,
    /// Also report VarAD with these nearest-neighbour weights, comma-separated (a row
    /// each, scored with the same trained model, without decisions), e.g. 0,2.
    #[arg(long, value_name = "WEIGHTS", value_delimiter = ',')]
    compare_neighbour_weights: Vec<f32>,
    /// Also report VarAD with these nearest-neighbour terms, comma-separated (a row each,
    /// and one for each with every weight of --compare-neighbour-weights), e.g. scaled.
    #[arg(long, value_name = "TERMS", value_delimiter = ',', value_parser = crate::config_args::parse_neighbour_term)]
    compare_neighbour_terms: Vec<varad::model::NeighbourTerm>,
    /// Also report VarAD searching its neighbour banks probing these numbers of cells,
    /// comma-separated (a row each, same trained model, without decisions; 0 = exact
    /// search), e.g. 0,4,16.
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    compare_neighbour_probes: Vec<usize>,
    /// Also report VarAD with the image score the mean of the map's top K pixels, for
    /// each K, comma-separated (a row each, the same maps, without decisions), e.g.
    /// 100,1000.
    #[arg(long, value_name = "K,...", value_delimiter = ',')]
    compare_top_k: Vec<usize>,
    /// Test images shown in each category's montage (0 = no montage).
    #[arg(long, value_name = "N", default_value = "12")]
    montage: usize,
    /// Montage tile side in pixels.
    #[arg(long, value_name = "PX", default_value = "256")]
    tile: usize,
}

/// Runs the evaluation, or one per input size with `--input-sizes`.
pub fn run(args: Args, runtime: Option<PathBuf>) -> Result<()> {
    let config = args
        .config
        .build(args.backbone.as_deref(), runtime.as_deref())?;
    if args.tile == 0 {
        return Err(Error::invalid_argument("--tile must be at least 1"));
    }
    let dataset = Dataset::open(&args.data, &args.category)?;
    eprintln!(
        "{} data set at {}: {} categories",
        match dataset.layout {
            varad_cli::eval::dataset::Layout::MvtecAd => "MVTec AD",
            varad_cli::eval::dataset::Layout::Visa => "VisA",
            varad_cli::eval::dataset::Layout::Btad => "BTAD",
        },
        args.data.display(),
        dataset.categories.len()
    );
    let Some(sizes) = &args.input_sizes else {
        let report = evaluate_once(&args, &dataset, config, &args.out)?;
        println!("{}", report.to_markdown());
        eprintln!("wrote {}/report.json and report.md", args.out.display());
        return Ok(());
    };
    let mut distinct = sizes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != sizes.len() {
        return Err(Error::invalid_argument("--input-sizes names a size twice"));
    }
    // Every size's configuration is checked before the first (long) run starts.
    let configs: Vec<(String, Config)> = sizes
        .iter()
        .map(|&(w, h)| {
            let mut c = config.clone();
            c.input_size = Some((w, h));
            c.validate()?;
            Ok((format!("{w}x{h}"), c))
        })
        .collect::<Result<_>>()?;
    let mut reports = Vec::new();
    for (name, c) in configs {
        eprintln!("input size {name}");
        let report = evaluate_once(&args, &dataset, c, &args.out.join(&name))
            .map_err(|e| e.context(format!("input size {name}")))?;
        reports.push((name, report));
    }
    let runs: Vec<(String, &Report)> = reports.iter().map(|(n, r)| (n.clone(), r)).collect();
    let sweep = SweepReport::new(&runs);
    write(&args.out, "sweep.json", sweep.to_json() + "\n")?;
    let markdown = sweep.to_markdown();
    write(&args.out, "sweep.md", markdown.clone())?;
    println!("{markdown}");
    eprintln!(
        "wrote {0}/sweep.json and sweep.md, and each size's report under {0}/<WxH>/",
        args.out.display()
    );
    Ok(())
}

fn write(dir: &std::path::Path, name: &str, text: String) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| Error::io(&path, "write", &e))
}

/// One whole evaluation with `config`: report.json, report.md and the montages in `out`.
fn evaluate_once(
    args: &Args,
    dataset: &Dataset,
    config: Config,
    out: &std::path::Path,
) -> Result<Report> {
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
    options.neighbour_weights = args.compare_neighbour_weights.clone();
    options.neighbour_terms = args.compare_neighbour_terms.clone();
    options.neighbour_probes = args.compare_neighbour_probes.clone();
    options.top_k = args.compare_top_k.clone();
    if let Some(folds) = args.patchcore_cross_fit_folds {
        options.cross_fit_folds = folds;
    }
    options.montage_images = args.montage;
    options.montage_tile = args.tile;
    options.out_dir = Some(out.to_path_buf());
    let report = evaluate(dataset, &options, &mut |line| eprintln!("{line}"))?;
    write(out, "report.json", report.to_json() + "\n")?;
    write(out, "report.md", report.to_markdown())?;
    Ok(report)
}
