//! Times UPerNet forward + backward at RAD-DINO size on the CPU, a few iterations, for
//! machines where a 10-sample criterion run (`cargo bench -p seg-decoders`) takes too long.
//!
//! Expected output: one line per iteration and the median, e.g.
//! `UPerNet fwd+bwd (768x37x37 x4 -> 518, c512): median 95.1 s over 3 runs`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Parser;
use cxr_core::ranges::at_least_one;
use cxr_core::{Features, Intermediate};
use seg_decoders::heads::{UperNetConfig, UperNetInput};
use seg_decoders::layers::BnConfig;
use seg_decoders::{AlignCorners, Head, HeadConfig, Mode, SegmentationHead};

/// UPerNet forward+backward timing (eval-mode BatchNorm, batch 1, one class).
#[derive(Parser)]
struct Args {
    /// Timed iterations (after one warm-up iteration).
    #[arg(long, default_value_t = 3, value_parser = at_least_one::<usize>)]
    iters: usize,
    /// Head channels.
    #[arg(long, default_value_t = 512, value_parser = at_least_one::<usize>)]
    channels: usize,
    /// Token grid side (37 for ViT-B/14 at 518).
    #[arg(long, default_value_t = 37, value_parser = at_least_one::<usize>)]
    grid: usize,
    /// Token width.
    #[arg(long, default_value_t = 768, value_parser = at_least_one::<usize>)]
    dim: usize,
    /// Output side in pixels.
    #[arg(long, default_value_t = 518, value_parser = at_least_one::<usize>)]
    size: usize,
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let a = Args::parse();
    let dev = Device::Cpu;
    let cfg = HeadConfig::UperNet(UperNetConfig {
        layers: vec![2, 5, 8, 11],
        input: UperNetInput::VitNeck { channels: a.dim },
        channels: a.channels,
        pool_scales: vec![1, 2, 3, 6],
        num_classes: 1,
        dropout: 0.1,
        bn: BnConfig::default(),
        align_corners: AlignCorners::False,
    });
    let varmap = VarMap::new();
    let head = Head::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let n = a.grid * a.grid;
    let mut intermediates = Vec::new();
    for layer in [2, 5, 8, 11] {
        intermediates.push(Intermediate {
            layer,
            tokens: Tensor::randn(0f32, 1f32, (1, n, a.dim), &dev)?,
            grid: (a.grid, a.grid),
            cls: None,
        });
    }
    let feats = Features {
        pooled: Tensor::zeros((1, a.dim), DType::F32, &dev)?,
        patch_tokens: Tensor::randn(0f32, 1f32, (1, n, a.dim), &dev)?,
        grid: (a.grid, a.grid),
        intermediates,
    };
    let mut times = Vec::new();
    for i in 0..=a.iters {
        let t0 = Instant::now();
        let out = head.forward(&feats, (a.size, a.size), &mut Mode::Eval)?;
        let grads = out.mean_all()?.backward()?;
        std::hint::black_box(grads);
        let dt = t0.elapsed().as_secs_f64();
        println!("{} {i}: {dt:.3} s", if i == 0 { "warm-up" } else { "run" });
        if i > 0 {
            times.push(dt);
        }
    }
    times.sort_by(f64::total_cmp);
    if let Some(median) = times.get(times.len() / 2) {
        println!(
            "UPerNet fwd+bwd ({}x{g}x{g} x4 -> {}, c{}): median {median:.3} s, min {:.3} s over {} runs",
            a.dim,
            a.size,
            a.channels,
            times[0],
            times.len(),
            g = a.grid
        );
    }
    Ok(())
}
