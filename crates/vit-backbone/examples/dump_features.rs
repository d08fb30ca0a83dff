//! Runs a DINOv2 / RAD-DINO checkpoint on given pixels and writes every output, named as
//! `transformers` names them, so they can be compared with `Dinov2Model` in Python.
//!
//! ```text
//! cargo run --release --example dump_features -- \
//!     --model DIR --pixels IN.safetensors --out OUT.safetensors
//! ```
//! DIR holds `config.json` + `model.safetensors` (Hugging Face layout); IN holds
//! `pixel_values` `[B, 3, H, W]` f32. OUT gets `last_hidden_state`, `pooler_output` and
//! `hidden_states.{i}` for i = 0 (embeddings) ..= num_hidden_layers.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use vit_backbone::{Dinov2Model, ForwardOptions};

#[derive(Parser, Debug)]
#[command(about = "Dump every hidden state of a DINOv2 checkpoint for given pixel values")]
struct Args {
    /// Model directory in Hugging Face layout (config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// safetensors file with `pixel_values` [B, 3, H, W] f32 (any H, W: position embeddings
    /// are interpolated as transformers does).
    #[arg(long)]
    pixels: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
    /// Also write `attentions.{i}` (the attention probabilities of every block).
    #[arg(long)]
    attentions: bool,
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let args = Args::parse();
    let device = Device::Cpu;
    let model = Dinov2Model::from_dir(&args.model, DType::F32, &device)?;
    let inputs = candle_core::safetensors::load(&args.pixels, &device)
        .with_context(|| format!("reading {}", args.pixels.display()))?;
    let pixels = inputs.get("pixel_values").ok_or_else(|| {
        anyhow!(
            "{} has no tensor named `pixel_values`",
            args.pixels.display()
        )
    })?;
    let out = model.forward(
        pixels,
        &ForwardOptions {
            output_hidden_states: true,
            all_attentions: args.attentions,
            ..Default::default()
        },
    )?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert("last_hidden_state".into(), out.last_hidden_state.clone());
    tensors.insert("pooler_output".into(), out.pooler_output.clone());
    for (i, h) in out.hidden_states.iter().enumerate() {
        tensors.insert(format!("hidden_states.{i}"), h.clone());
    }
    for (i, a) in &out.attentions {
        tensors.insert(format!("attentions.{i}"), a.clone());
    }
    candle_core::safetensors::save(&tensors, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} tensors to {}: last_hidden_state {:?}, pooler_output {:?}, {} hidden states (grid {}x{})",
        tensors.len(),
        args.out.display(),
        out.last_hidden_state.dims(),
        out.pooler_output.dims(),
        out.hidden_states.len(),
        out.grid.0,
        out.grid.1
    );
    Ok(())
}
