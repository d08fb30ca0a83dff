//! Times the RAD-DINO-size forward pass (ViT-B/14, 518×518, random weights, f32, CPU) and
//! prints the median of a few repeats per batch size — the quick counterpart of
//! `benches/forward.rs`, meant to run back to back with `benches/forward_pytorch.py`.
//!
//! ```text
//! cargo run --release --example time_forward -- --repeats 3 --batches 1,4
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use clap::Parser;
use cxr_core::ranges::at_least_one;
use vit_backbone::{Dinov2Config, Dinov2Model, ForwardOptions};

#[derive(Parser, Debug)]
#[command(about = "Median forward time of a RAD-DINO-size ViT on the CPU")]
struct Args {
    /// Timed repeats per batch size (after one warm-up).
    #[arg(long, default_value_t = 3, value_parser = at_least_one::<usize>)]
    repeats: usize,
    /// Comma-separated batch sizes.
    #[arg(long, default_value = "1,4", value_delimiter = ',', value_parser = at_least_one::<usize>)]
    batches: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let args = Args::parse();
    let cfg = Dinov2Config::rad_dino();
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in vit_backbone::weights::expected_tensors(&cfg) {
        tensors.insert(name, Tensor::randn(0f32, 0.02, shape, &Device::Cpu)?);
    }
    let model = Dinov2Model::new(
        &cfg,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )?;
    // 2 FLOPs per multiply-add over the GEMMs of one image at 518 (1370 tokens)
    let (n, d) = (1370.0f64, 768.0f64);
    let gflop = 2.0
        * (1369.0 * 588.0 * d + 12.0 * (4.0 * n * d * d + 2.0 * n * n * d + 8.0 * n * d * d))
        / 1e9;
    // the machine's matmul ceiling, for reading the forward's GFLOP/s
    let a = Tensor::randn(0f32, 1.0, (2048, 2048), &Device::Cpu)?;
    a.matmul(&a)?;
    let t = Instant::now();
    for _ in 0..5 {
        a.matmul(&a)?;
    }
    let peak = 5.0 * 2.0 * 2048f64.powi(3) / 1e9 / t.elapsed().as_secs_f64();
    println!("candle 2048x2048 f32 matmul: {peak:.0} GFLOP/s");
    for &b in &args.batches {
        let x = Tensor::randn(0f32, 1.0, (b, 3, 518, 518), &Device::Cpu)?;
        model.forward(&x, &ForwardOptions::default())?;
        let mut times = Vec::new();
        for _ in 0..args.repeats {
            let t = Instant::now();
            let out = model.forward(&x, &ForwardOptions::default())?;
            let _ = out.pooler_output.sum_all()?.to_scalar::<f32>()?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!(
            "candle batch{b}: median {med:.3} s ({:.3} s/image, {:.0} GFLOP/s = {:.0}% of matmul peak, min {:.3}, max {:.3})",
            med / b as f64,
            gflop * b as f64 / med,
            100.0 * gflop * b as f64 / med / peak,
            times[0],
            times[times.len() - 1]
        );
    }
    Ok(())
}
