//! The `varad` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

mod demo;

use clap::{Parser, Subcommand};
use varad::backbone::{runtime, Backbone, BackboneOptions};
use varad::Device;

/// High-resolution industrial anomaly detection (VarAD).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The ONNX Runtime library file (default: ORT_DYLIB_PATH, then the project's
    /// setup folder, then the system library path).
    #[arg(long, global = true, value_name = "FILE")]
    runtime: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the library version, the ONNX Runtime loaded, and a backbone's contract.
    Info {
        /// A backbone ONNX file to open and describe.
        #[arg(long, value_name = "FILE")]
        backbone: Option<PathBuf>,
        /// Device for the backbone: auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: Device,
    },
    /// Train on crops of a texture photograph, score crops with planted defects, and write
    /// heatmap pictures: the whole job in about a minute.
    Demo {
        /// The texture photograph (at least 384 x 384).
        #[arg(long, value_name = "FILE")]
        texture: PathBuf,
        /// The backbone ONNX file (its outputs must include stride8 and stride16).
        #[arg(long, value_name = "FILE")]
        backbone: PathBuf,
        /// Where to write the model and the pictures.
        #[arg(long, value_name = "DIR", default_value = "out/demo")]
        out: PathBuf,
        /// Device: auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: Device,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("varad: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> varad::Result<()> {
    match cli.command {
        Command::Demo {
            texture,
            backbone,
            out,
            device,
        } => demo::run(&texture, &backbone, &out, device),
        Command::Info { backbone, device } => {
            println!("varad {}", varad::VERSION);
            let rt = runtime::load(cli.runtime.as_deref())?;
            let info = rt.info();
            println!(
                "ONNX Runtime {} from {} (found via {:?}; CUDA provider: {})",
                info.version,
                info.path.display(),
                info.source,
                if rt.has_cuda_provider() { "yes" } else { "no" }
            );
            if let Some(path) = backbone {
                let options = BackboneOptions {
                    runtime_path: cli.runtime.clone(),
                    device,
                    intra_threads: None,
                };
                let bb = Backbone::open(&path, &options)?;
                let spec = bb.spec();
                println!("backbone {} ({})", spec.name, path.display());
                println!("  sha256 {}", bb.identity().sha256);
                println!(
                    "  input `{}`: multiple of {}, preferred {}x{}",
                    spec.input_name, spec.input_multiple, spec.input_size.0, spec.input_size.1
                );
                for level in &spec.levels {
                    let channels = level.channels.map_or("?".to_string(), |c| c.to_string());
                    println!(
                        "  output `{}`: stride {}, {} channels",
                        level.name, level.stride, channels
                    );
                }
                let d = bb.device();
                print!("  device {} (requested {})", d.active, d.requested);
                if let Some(reason) = &d.fallback_reason {
                    print!(": {reason}");
                }
                println!("; {} intra-op threads", bb.intra_threads());
            }
            Ok(())
        }
    }
}
