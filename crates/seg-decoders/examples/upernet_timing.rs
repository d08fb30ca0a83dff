//! Times UPerNet forward + backward at RAD-DINO size on the CPU, a few iterations, for
//! machines where a 10-sample criterion run (`cargo bench -p seg-decoders`) takes too long.
//!
//! Expected output: one line per iteration and the median, e.g.
//! `UPerNet fwd+bwd (768x37x37 x4 -> 518, c512, batch 1, eval BN): median 5.9 s, min 5.8 s
//! over 2 runs`. `--train --batch 2` times a training step's BatchNorm (batch statistics) and
//! dropout instead; `benches/upernet_torch.py` takes the same choices as `TRAIN=1 BATCH=2`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Parser;
use cxr_core::ranges::at_least_one;
use cxr_core::{Features, Intermediate};
use rand::SeedableRng;
use seg_decoders::heads::{UperNetConfig, UperNetInput};
use seg_decoders::layers::BnConfig;
use seg_decoders::{AlignCorners, Head, HeadConfig, Mode, SegmentationHead};

/// UPerNet forward+backward timing at RAD-DINO size (one class): eval-mode BatchNorm at batch 1
/// by default, as a fine-tuning benchmark; `--train` for batch statistics and dropout.
#[derive(Parser)]
struct Args {
    /// Images per batch (at least 2 with `--train`: the 1×1 pooling branch needs two values
    /// per channel for batch statistics).
    #[arg(long, default_value_t = 1, value_parser = at_least_one::<usize>)]
    batch: usize,
    /// Training mode: BatchNorm normalises with batch statistics, dropout is drawn.
    #[arg(long)]
    train: bool,
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
    if a.train && a.batch < 2 {
        anyhow::bail!("--train needs --batch 2 or more (batch statistics of the 1x1 pooling)");
    }
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
            tokens: Tensor::randn(0f32, 1f32, (a.batch, n, a.dim), &dev)?,
            grid: (a.grid, a.grid),
            cls: None,
        });
    }
    let feats = Features {
        pooled: Tensor::zeros((a.batch, a.dim), DType::F32, &dev)?,
        patch_tokens: Tensor::randn(0f32, 1f32, (a.batch, n, a.dim), &dev)?,
        grid: (a.grid, a.grid),
        intermediates,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut times = Vec::new();
    for i in 0..=a.iters {
        let t0 = Instant::now();
        let mut mode = if a.train {
            Mode::Train(&mut rng)
        } else {
            Mode::Eval
        };
        let out = head.forward(&feats, (a.size, a.size), &mut mode)?;
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
            "UPerNet fwd+bwd ({}x{g}x{g} x4 -> {}, c{}, batch {}, {} BN): median {median:.3} s, min {:.3} s over {} runs",
            a.dim,
            a.size,
            a.channels,
            a.batch,
            if a.train { "train" } else { "eval" },
            times[0],
            times.len(),
            g = a.grid
        );
    }
    Ok(())
}
