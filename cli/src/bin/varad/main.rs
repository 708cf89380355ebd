//! The `varad` command-line tool. This file only parses and dispatches; each subcommand
//! lives in its own file.

use std::path::PathBuf;
use std::process::ExitCode;

mod bench;
mod calibration_report;
mod config_args;
mod eval;
mod info;
mod score;
mod score_layout;
mod score_summary;
mod train;

use clap::{Parser, Subcommand};

/// High-resolution industrial anomaly detection (VarAD).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The ONNX Runtime library file (default: ORT_DYLIB_PATH, then the folder of the
    /// varad library, then the project's setup folder, then the system library path).
    #[arg(long, global = true, value_name = "FILE")]
    runtime: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the library version, the ONNX Runtime loaded, and a backbone's contract.
    Info(info::Args),
    /// Train a model on images of good parts and save it.
    Train(train::Args),
    /// Score images with a saved model: anomaly maps, overlays and verdicts.
    Score(score::Args),
    /// Evaluate VarAD and a PatchCore baseline on an MVTec AD, VisA or BTAD data set.
    Eval(Box<eval::Args>),
    /// Time each stage of scoring one image: decode, preprocess, backbone, predictor,
    /// post-processing.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // clap's message spans several lines (usage, hint); a tool run from scripts
            // and logs is easier to read with one: the first paragraph, its lines joined
            // (a missing argument is named on the line after the sentence).
            let text = e.render().to_string();
            let first = text
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            let first = first.trim_start_matches("error: ");
            eprintln!(
                "varad: {} (see `varad --help`)",
                if first.is_empty() {
                    "invalid arguments"
                } else {
                    first
                }
            );
            return ExitCode::from(2);
        }
    };
    let runtime = cli.runtime;
    let result = match cli.command {
        Command::Info(args) => info::run(args, runtime),
        Command::Train(args) => train::run(args, runtime),
        Command::Score(args) => score::run(args, runtime),
        Command::Eval(args) => eval::run(*args, runtime),
        Command::Bench(args) => bench::run(args, runtime),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("varad: error: {e}");
            ExitCode::FAILURE
        }
    }
}
