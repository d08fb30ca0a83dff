//! Times the DINOv2 training step (student + EMA teacher, DINO + iBOT + KoLeo, AdamW) on one
//! synthetic multi-crop batch. `crates/dino-pretrain/benches/dino_step_torch.py` takes the
//! same flags and times the same step in PyTorch.
//!
//! ```text
//! cargo run --release -p dino-pretrain --example time_dino_step -- \
//!     --arch vit_tiny --batch 2 --n-local 2 --prototypes 1024 \
//!     --global-size 56 --local-size 28 --warmup 1 --steps 2
//! # on a GPU (build with --features cuda):
//! time_dino_step --device cuda --arch vit_base --batch 32 --steps 10 --json rust.json
//! ```
//!
//! Prints one line per timed step, then the median, the fastest step and images/s. The
//! first step's loss is about `2·ln K` for a random model (DINO global + local terms near
//! `ln K` each, iBOT near `ln K`, KoLeo small).
use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::Device;
use clap::Parser;
use cxr_core::ranges::at_least_one;
use dino_pretrain::step_bench::{time_train_steps, StepBenchOptions};

#[derive(Parser, Debug)]
#[command(
    about = "Time the DINOv2 training step on a synthetic multi-crop batch",
    long_about = "Builds a randomly initialised DINOv2 trainer (student, EMA teacher, shared \
DINO/iBOT head with K prototypes, Sinkhorn-Knopp teacher, KoLeo, AdamW, clipping at 3.0), one \
batch of seeded random pixels with dinov2-style iBOT block masks, and times --steps training \
steps after --warmup untimed ones. The device is synchronised before every clock read. \
--save-masks writes the masks so that benches/dino_step_torch.py --masks uses the very same."
)]
struct Args {
    /// Backbone: vit_tiny, vit_small, vit_base, vit_large.
    #[arg(long, default_value = "vit_base")]
    arch: String,
    /// Images per step (2 global + --n-local local crops each).
    #[arg(long, default_value_t = 32, value_parser = at_least_one::<usize>)]
    batch: usize,
    /// Local crops per image (0: the two global crops only).
    #[arg(long, default_value_t = 8)]
    n_local: usize,
    /// Prototypes K of the (shared DINO/iBOT) head.
    #[arg(long, default_value_t = 65536, value_parser = at_least_one::<usize>)]
    prototypes: usize,
    /// Hidden width of the head's MLP.
    #[arg(long, default_value_t = 2048, value_parser = at_least_one::<usize>)]
    head_hidden_dim: usize,
    /// Bottleneck width of the head.
    #[arg(long, default_value_t = 256, value_parser = at_least_one::<usize>)]
    head_bottleneck_dim: usize,
    /// Global crop size (multiple of the patch size 14).
    #[arg(long, default_value_t = 224, value_parser = at_least_one::<usize>)]
    global_size: usize,
    /// Local crop size (multiple of 14: 98 stands in for dinov2's 96).
    #[arg(long, default_value_t = 98, value_parser = at_least_one::<usize>)]
    local_size: usize,
    /// Untimed steps first (0: none).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10, value_parser = at_least_one::<usize>)]
    steps: usize,
    /// Extra steps after the timed ones, timed phase by phase (forward, backward,
    /// optimizer) with a device synchronisation at each phase end; 0: none.
    #[arg(long, default_value_t = 0)]
    phase_steps: usize,
    /// Teacher targets: sinkhorn_knopp or centering.
    #[arg(long, default_value = "sinkhorn_knopp")]
    centering: String,
    /// Seed of pixels, masks and stochastic depth.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu or cuda (GPU 0; needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the batch's iBOT masks (`masks`, u8 [2B, N]) as safetensors here.
    #[arg(long)]
    save_masks: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    train_utils::retain_freed_heap_memory();
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0)?,
        other => bail!("--device {other} (cpu or cuda)"),
    };
    if let Err(e) = fused_ops::retain_freed_gpu_memory(&device) {
        eprintln!("warning: freed GPU memory goes back to the driver at each sync: {e}");
    }
    let opts = StepBenchOptions {
        arch: args.arch.clone(),
        global_size: args.global_size,
        local_size: args.local_size,
        n_local: args.n_local,
        batch_size: args.batch,
        prototypes: args.prototypes,
        head_hidden_dim: args.head_hidden_dim,
        head_bottleneck_dim: args.head_bottleneck_dim,
        centering: args.centering.clone(),
        warmup: args.warmup,
        steps: args.steps,
        phase_steps: args.phase_steps,
        seed: args.seed,
        ..StepBenchOptions::default()
    };
    if let Some(path) = &args.save_masks {
        let batch = opts.batch(&Device::Cpu)?;
        candle_core::safetensors::save(
            &std::collections::HashMap::from([("masks".to_string(), batch.masks)]),
            path,
        )
        .with_context(|| format!("writing {}", path.display()))?;
        println!("masks written to {}", path.display());
    }
    println!(
        "candle DINOv2 step: {} patch {}, batch {} (2 × {} px global + {} × {} px local), \
         K = {}, {}, device {}",
        opts.arch,
        opts.patch_size,
        opts.batch_size,
        opts.global_size,
        opts.n_local,
        opts.local_size,
        opts.prototypes,
        opts.centering,
        args.device
    );
    let t = time_train_steps(&opts, &device)?;
    for (i, s) in t.step_seconds.iter().enumerate() {
        println!("step {i:>3}: {s:>9.4} s");
    }
    println!(
        "student parameters {}, masked patches {}",
        t.student_parameters, t.masked_patches
    );
    let losses: Vec<String> = t
        .first_step_losses
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect();
    println!("first step: {}", losses.join(", "));
    println!("last step total_loss {:.4}", t.last_total_loss);
    println!("| side | median s/step | min s/step | images/s |");
    println!("|---|---|---|---|");
    println!(
        "| candle ({}) | {:.4} | {:.4} | {:.2} |",
        args.device, t.median_s, t.min_s, t.images_per_second
    );
    for (phase, s) in &t.phase_seconds {
        println!("phase {phase:<9} median {s:.4} s");
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "side": "candle",
            "device": args.device,
            "arch": opts.arch,
            "batch": opts.batch_size,
            "n_local": opts.n_local,
            "prototypes": opts.prototypes,
            "head_hidden_dim": opts.head_hidden_dim,
            "head_bottleneck_dim": opts.head_bottleneck_dim,
            "global_size": opts.global_size,
            "local_size": opts.local_size,
            "centering": opts.centering,
            "warmup": opts.warmup,
            "steps": opts.steps,
            "dtype": "f32",
            "timing": t,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(())
}
