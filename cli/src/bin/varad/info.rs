//! `varad info`: the library version, the ONNX Runtime found, and a backbone's contract.

use std::path::PathBuf;

use varad::backbone::{runtime, Backbone, BackboneOptions};
use varad::{Device, Result};

/// Arguments of `varad info`.
#[derive(clap::Args)]
pub struct Args {
    /// A backbone ONNX file to open and describe.
    #[arg(long, value_name = "FILE")]
    backbone: Option<PathBuf>,
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
    Ok(())
}
