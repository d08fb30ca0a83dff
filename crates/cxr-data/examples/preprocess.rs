//! Preprocess one image (PNG, JPEG or DICOM) exactly as a Hugging Face image processor would,
//! and write `pixel_values` `[1, 3, H, W]` f32 to a safetensors file.
//!
//! ```text
//! cargo run --release --example preprocess -- --image FILE \
//!     --processor preprocessor_config.json --out OUT.safetensors
//! ```
//!
//! DICOMs are windowed to [0, 1] (modality LUT, VOI LUT or window, MONOCHROME1 inverted; see
//! `cxr_data::decode`), quantised to 8 bits with `round(x * 255)`, then processed like an 8-bit
//! PNG; this matches feeding that 8-bit export to transformers' PIL-backed processor.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::{Device, Tensor};
use clap::{Parser, ValueEnum};
use cxr_data::{decode_file, DecodeOptions, DicomOptions, ImageProcessor, VoiChoice};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Voi {
    /// VOI LUT Sequence, else the first window, else the Bits Stored range.
    Auto,
    /// The Bits Stored range, ignoring windows.
    Range,
    /// The image's own min–max (the RAD-DINO model card's DICOM recipe).
    Minmax,
}

#[derive(Debug, Parser)]
#[command(about = "Preprocess an image as a HF image processor would and save pixel_values")]
struct Args {
    /// Input image: PNG, JPEG or DICOM.
    #[arg(long)]
    image: PathBuf,
    /// The model's preprocessor_config.json.
    #[arg(long)]
    processor: PathBuf,
    /// Output safetensors file (gets `pixel_values` [1, 3, H, W] f32).
    #[arg(long)]
    out: PathBuf,
    /// DICOM intensity window choice.
    #[arg(long, value_enum, default_value = "auto")]
    voi: Voi,
    /// JPEG 2000 DICOMs only, opt-in: discard this many finest wavelet levels (each halves
    /// the decoded size). Faster, but a different (blurrier) input than the full decode.
    /// 0 (the default) decodes every level.
    #[arg(long, default_value_t = 0)]
    j2k_reduce: u8,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let processor = ImageProcessor::from_file(&args.processor)?;
    let voi = match args.voi {
        Voi::Auto => VoiChoice::Auto,
        Voi::Range => VoiChoice::BitsStoredRange,
        Voi::Minmax => VoiChoice::MinMax,
    };
    let opts = DecodeOptions {
        dicom: DicomOptions {
            voi,
            frame: 0,
            j2k_reduce: args.j2k_reduce,
        },
    };
    let image = decode_file(&args.image, &opts)?;
    let pixels = processor.apply_tensor(&image, &Device::Cpu)?.unsqueeze(0)?;
    let (_, c, h, w) = pixels.dims4()?;
    let mean = pixels.mean_all()?.to_scalar::<f32>()?;
    let min = pixels.flatten_all()?.min(0)?.to_scalar::<f32>()?;
    let max = pixels.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let tensors: HashMap<String, Tensor> = [("pixel_values".to_string(), pixels)].into();
    candle_core::safetensors::save(&tensors, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{}: decoded {}x{} → pixel_values [1, {c}, {h}, {w}] (mean {mean:.4}, min {min:.4}, max {max:.4}) → {}",
        args.image.display(),
        image.width,
        image.height,
        args.out.display()
    );
    Ok(())
}
