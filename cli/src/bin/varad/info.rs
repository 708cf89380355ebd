//! `varad info`: the library version, the ONNX Runtime found, a backbone's contract, and
//! a model file's calibration report.

use std::path::PathBuf;

use varad::backbone::{runtime, Backbone, BackboneOptions};
use varad::model_file::LoadOptions;
use varad::{Device, Model, Result};

use crate::calibration_report;

/// Arguments of `varad info`.
#[derive(clap::Args)]
pub struct Args {
    /// A backbone ONNX file to open and describe (with --model: the model's backbone, if
    /// it is no longer where the model says).
    #[arg(long, value_name = "FILE")]
    backbone: Option<PathBuf>,
    /// A model file: print its calibration report (how many good images its thresholds
    /// rest on and what they promise).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Device for the backbone: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: Device,
}

/// Prints the information.
pub fn run(args: Args, runtime_path: Option<PathBuf>) -> Result<()> {
    println!("varad {}", varad::VERSION);
    let rt = runtime::load(runtime_path.as_deref())?;
    let info = rt.info();
    println!(
        "ONNX Runtime {} from {} (found via {:?}; CUDA provider: {})",
        info.version,
        info.path.display(),
        info.source,
        if rt.has_cuda_provider() { "yes" } else { "no" }
    );
    let backbone_override = args.backbone.clone();
    let runtime_for_model = runtime_path.clone();
    if let Some(path) = args.backbone {
        let options = BackboneOptions {
            runtime_path,
            device: args.device,
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
    if let Some(path) = args.model {
        let model = Model::load(
            &path,
            &LoadOptions {
                backbone: backbone_override,
                runtime_path: runtime_for_model,
                device: Some(args.device),
                threads: None,
            },
        )?;
        println!("model {}", path.display());
        match model.calibration() {
            Some(c) => println!("{}", calibration_report::format(&c.report())),
            None => println!("calibration: none (the model is not trained)"),
        }
    }
    Ok(())
}
