//! Converts a PyTorch checkpoint (`torch.save` zip) to safetensors without executing pickle.
//!
//! ```text
//! cargo run --release -p vit-backbone --example convert_pt -- model.pt model.safetensors
//! cargo run --release -p vit-backbone --example convert_pt -- ckpt.pt out.safetensors --key state_dict --check-davit mi2
//! ```
//!
//! candle's reader interprets only the pickle opcodes that describe tensors (storage file,
//! offset, shape, strides), so no code in the file runs. Prints the number of tensors and
//! parameters written; with `--check-davit`, also whether the result loads as a DaViT tower
//! (naming the first missing or mis-shaped tensor if not). MI2's released
//! `medimageinsigt-v1.0.0.pt` is already safetensors and needs no conversion: the tool says
//! so and copies nothing.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use vit_backbone::davit::weights::{is_pytorch_zip, read_pytorch, write_safetensors};
use vit_backbone::davit::{DavitCheckpoint, DavitConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    /// MedImageInsight's image tower.
    Mi2,
    /// The tiny test tower.
    Tiny,
}

/// Convert a PyTorch .pt/.pth checkpoint to safetensors (no pickle execution).
#[derive(Debug, Parser)]
struct Args {
    /// The PyTorch checkpoint (zip format, as torch.save writes it since 1.6).
    input: PathBuf,
    /// Where to write the safetensors file.
    output: PathBuf,
    /// Read the tensors of this nested dict entry (e.g. `state_dict`, `model`).
    #[arg(long)]
    key: Option<String>,
    /// After writing, check that the file loads as this DaViT config.
    #[arg(long, value_enum)]
    check_davit: Option<Preset>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !is_pytorch_zip(&args.input)? {
        println!(
            "{} is not a PyTorch zip checkpoint (a safetensors file such as MI2's released \
             .pt loads directly); nothing written",
            args.input.display()
        );
        return Ok(());
    }
    let tensors = read_pytorch(&args.input, args.key.as_deref())?;
    let params: usize = tensors.values().map(|t| t.elem_count()).sum();
    write_safetensors(&tensors, &args.output)?;
    println!(
        "wrote {} tensors ({params} values) to {}",
        tensors.len(),
        args.output.display()
    );
    if let Some(preset) = args.check_davit {
        let cfg = match preset {
            Preset::Mi2 => DavitConfig::mi2(),
            Preset::Tiny => DavitConfig::tiny(),
        };
        match DavitCheckpoint::read(cfg, std::slice::from_ref(&args.output)) {
            Ok(ck) => println!(
                "loads as a DaViT tower ({} tensors; {} of other towers set aside)",
                ck.tensors.len(),
                ck.other_towers.len()
            ),
            Err(e) => println!("does not load as a DaViT tower: {e}"),
        }
    }
    Ok(())
}
