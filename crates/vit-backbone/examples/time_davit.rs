//! Times the MI2 image tower (DaViT, 480×480, random weights, f32, CPU): `encode_image` on a
//! batch, a few repeats, printing each time and the median. The quick counterpart of
//! `benches/davit_forward.rs` for slow or shared machines, meant to run back to back with
//! `benches/davit_forward_pytorch.py`.
//!
//! ```text
//! cargo run --release -p vit-backbone --example time_davit -- --batch 4 --repeats 1
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use clap::Parser;
use cxr_core::ranges::at_least_one;
use vit_backbone::davit::weights::expected_tensors;
use vit_backbone::davit::{DavitConfig, DavitModel};

#[derive(Parser, Debug)]
#[command(about = "Forward time of the MI2 DaViT image tower on the CPU")]
struct Args {
    /// Images per forward.
    #[arg(long, default_value_t = 4, value_parser = at_least_one::<usize>)]
    batch: usize,
    /// Timed repeats.
    #[arg(long, default_value_t = 1, value_parser = at_least_one::<usize>)]
    repeats: usize,
    /// Untimed forwards before the timed ones (0: none).
    #[arg(long, default_value_t = 0)]
    warmup: usize,
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let args = Args::parse();
    let cfg = DavitConfig::mi2();
    let tensors = expected_tensors(&cfg)
        .into_iter()
        .map(|(name, shape)| Ok((name, Tensor::randn(0f32, 0.02, shape, &Device::Cpu)?)))
        .collect::<candle_core::Result<std::collections::HashMap<_, _>>>()?;
    let model = DavitModel::new(
        &cfg,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )?;
    let x = Tensor::randn(0f32, 1.0, (args.batch, 3, 480, 480), &Device::Cpu)?;
    for _ in 0..args.warmup {
        model.encode_image(&x)?;
    }
    let mut times = Vec::new();
    for i in 0..args.repeats {
        let t = Instant::now();
        let emb = model.encode_image(&x)?;
        let s = t.elapsed().as_secs_f64();
        println!("run {i}: {s:.2} s, embedding {:?}", emb.dims());
        times.push(s);
    }
    times.sort_by(f64::total_cmp);
    if let Some(med) = times.get(times.len() / 2) {
        println!(
            "candle davit mi2 batch{}: median {med:.2} s ({:.2} s/image, {} runs)",
            args.batch,
            med / args.batch as f64,
            times.len()
        );
    }
    Ok(())
}
