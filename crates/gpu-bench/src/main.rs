//! The GPU checks and benchmarks of the workspace in one binary, so a short lease on a GPU
//! machine runs everything from one carried file (`torch_suite.py` times PyTorch on the same
//! card in the same session):
//!
//! ```text
//! source .cuda/env.sh   # scripts/cuda-toolchain.sh
//! cargo build --release -p gpu-bench --features cuda
//! gpu_suite parity                 # CUDA kernels vs CPU references (exit code 1 on a failure)
//! gpu_suite ops                    # fused ops vs the composed candle forms, on the GPU
//! gpu_suite forward --batch 32     # RAD-DINO (ViT-B/14, 518) forward, f32 and bf16
//! ```
//!
//! Without the `cuda` feature or a GPU every command says so and exits with code 2.

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarBuilder;
use clap::{Parser, Subcommand};
use serde_json::json;
use vit_backbone::{Dinov2Config, Dinov2Model, ForwardOptions};

mod profile;
mod train_profile;

#[derive(Parser, Debug)]
#[command(
    about = "CUDA kernel checks and GPU benchmarks (RAD-DINO forward, fused ops)",
    long_about = "Runs on the first CUDA device. `parity` compares every fused-ops kernel with \
its CPU reference (outputs and gradients) and exits 1 if one misses its tolerance. `ops` times \
the fused ops against the composed candle forms they replace. `forward` times the RAD-DINO \
ViT-B/14 forward at 518x518. Each prints a table and, with --json, writes the numbers."
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
    /// Write the results as JSON here.
    #[arg(long, global = true)]
    json: Option<std::path::PathBuf>,
    /// Leave CUDA's default memory-pool release threshold (freed memory goes back to the
    /// driver at every synchronisation) instead of keeping it pooled as PyTorch does.
    #[arg(long, global = true)]
    cuda_default_pool: bool,
    /// Run on the CPU instead: a dry run that checks a command end to end on a machine without
    /// a GPU (its numbers say nothing about the GPU).
    #[arg(long, global = true)]
    cpu_dry_run: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// CUDA kernels against their CPU references.
    Parity,
    /// Fused ops against the composed forms (median ms over --repeats after warm-up).
    Ops {
        #[arg(long, default_value_t = 20)]
        repeats: usize,
    },
    /// RAD-DINO forward (random weights; the weights do not change the work).
    Forward {
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        repeats: usize,
        /// Comma-separated: f32, bf16.
        #[arg(long, default_value = "f32,bf16", value_delimiter = ',')]
        dtypes: Vec<String>,
        /// Comma-separated block paths: `fused` (flash-style attention + fused epilogues) and
        /// `composed` (the ops training runs: materialised scores, separate elementwise kernels).
        #[arg(long, default_value = "fused,composed", value_delimiter = ',')]
        paths: Vec<String>,
        /// Comma-separated bf16 attention kernels the fused path is timed with (the first is
        /// kept afterwards): mma128 (mma.sync + ldmatrix, 128 query rows a block; the
        /// default), mma (64 rows a block), wmma (the first kernel).
        #[arg(long, default_value = "mma128", value_delimiter = ',')]
        bf16_attention: Vec<String>,
    },
    /// Per-op times of one ViT-B block at the forward benchmark's shapes (batch x 1370
    /// tokens), both paths, to show where a forward spends its time.
    Profile {
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        repeats: usize,
    },
    /// Forward and forward+backward times of the ViT-B backbone at the step's crop shapes
    /// (training mode) and of one block, f32 and bf16 mixed precision.
    TrainProfile {
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// One DINOv2 training step (dino_pretrain::step_bench: multi-crop student + EMA teacher,
    /// DINO + iBOT + KoLeo, AdamW), f32.
    Step {
        #[arg(long, default_value = "vit_base")]
        arch: String,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 8)]
        n_local: usize,
        #[arg(long, default_value_t = 65536)]
        prototypes: usize,
        #[arg(long, default_value_t = 224)]
        global_size: usize,
        #[arg(long, default_value_t = 98)]
        local_size: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Write the batch's iBOT masks (for dino_step_torch.py --masks).
        #[arg(long)]
        save_masks: Option<std::path::PathBuf>,
        /// Student arithmetic: f32, or bf16 (mixed precision, f32 master weights).
        #[arg(long, default_value = "f32")]
        precision: String,
    },
}

/// Median and minimum seconds of `repeats` calls after `warmup`, synchronising the device
/// around each call so asynchronous launches are counted.
fn time(
    dev: &Device,
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<(f64, f64)> {
    for _ in 0..warmup {
        f()?;
    }
    dev.synchronize()?;
    let mut v = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        f()?;
        dev.synchronize()?;
        v.push(t.elapsed().as_secs_f64());
    }
    v.sort_by(f64::total_cmp);
    Ok((v[v.len() / 2], v[0]))
}

fn parity(dev: &Device) -> Result<(serde_json::Value, bool)> {
    let checks = fused_ops::parity::device_vs_cpu(dev, 11)?;
    let mut ok = true;
    let mut rows = Vec::new();
    println!("{:<42} {:>10} {:>8}  result", "check", "rel err", "tol");
    for c in &checks {
        ok &= c.passed();
        println!(
            "{:<42} {:>10.2e} {:>8.0e}  {}",
            c.name,
            c.rel_err,
            c.tolerance,
            if c.passed() { "ok" } else { "FAIL" }
        );
        rows.push(json!({"check": c.name, "rel_err": c.rel_err, "tolerance": c.tolerance, "passed": c.passed()}));
    }
    // the whole block path: fused GPU inference against the composed GPU ops and the CPU
    for (name, rel_err, tol) in vit_backbone::gpu_parity::fused_blocks_vs_composed(dev)? {
        let passed = rel_err <= tol;
        ok &= passed;
        println!(
            "{name:<42} {rel_err:>10.2e} {tol:>8.0e}  {}",
            if passed { "ok" } else { "FAIL" }
        );
        rows.push(json!({"check": name, "rel_err": rel_err, "tolerance": tol, "passed": passed}));
    }
    Ok((json!({"checks": rows, "all_passed": ok}), ok))
}

/// Gradient of `sum(f(x...) · r)` with respect to the inputs, as one timed unit.
fn fwd_bwd(inputs: &[Var], r: &Tensor, f: &dyn Fn(&[Tensor]) -> Result<Tensor>) -> Result<()> {
    let ts: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts)?;
    let grads = (y.to_dtype(DType::F32)? * r)?.sum_all()?.backward()?;
    for v in inputs {
        if grads.get(v.as_tensor()).is_none() {
            candle_core::bail!("no gradient reached an input");
        }
    }
    Ok(())
}

fn ops(dev: &Device, repeats: usize) -> Result<serde_json::Value> {
    let mut rows = Vec::new();
    let mut report = |name: &str, fused: (f64, f64), other: (f64, f64), other_name: &str| {
        println!(
            "{name:<46} fused {:>8.3} ms   {other_name} {:>8.3} ms   speed-up {:>5.2}x",
            fused.0 * 1e3,
            other.0 * 1e3,
            other.0 / fused.0
        );
        rows.push(
            json!({"op": name, "fused_ms": fused.0 * 1e3, "baseline": other_name,
            "baseline_ms": other.0 * 1e3, "speedup": other.0 / fused.0}),
        );
    };

    // layer norm at RAD-DINO batch-32 activation size: 32 · 1370 rows of 768
    for dtype in [DType::F32, DType::BF16] {
        let x =
            Var::from_tensor(&Tensor::randn(0f32, 1., (32 * 1370, 768), dev)?.to_dtype(dtype)?)?;
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.1, 768, dev)?.to_dtype(dtype)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.1, 768, dev)?.to_dtype(dtype)?)?;
        let r = Tensor::randn(0f32, 1., (32 * 1370, 768), dev)?;
        let vars = [x.clone(), w.clone(), b.clone()];
        let fused = |t: &[Tensor]| fused_ops::layer_norm(&t[0], &t[1], &t[2], 1e-6);
        let composed = |t: &[Tensor]| cxr_core::ops::layer_norm(&t[0], &t[1], &t[2], 1e-6);
        let a = time(dev, 3, repeats, || fwd_bwd(&vars, &r, &fused))?;
        let c = time(dev, 3, repeats, || fwd_bwd(&vars, &r, &composed))?;
        report(
            &format!("layer_norm fwd+bwd {dtype:?} [43840, 768]"),
            a,
            c,
            "composed",
        );
        let xt = x.as_tensor().detach();
        let (wt, bt) = (w.as_tensor().detach(), b.as_tensor().detach());
        let a = time(dev, 3, repeats, || {
            fused_ops::layer_norm(&xt, &wt, &bt, 1e-6).map(|_| ())
        })?;
        let c = time(dev, 3, repeats, || {
            candle_nn::ops::layer_norm(&xt, &wt, &bt, 1e-6).map(|_| ())
        })?;
        report(
            &format!("layer_norm fwd {dtype:?} [43840, 768]"),
            a,
            c,
            "candle_nn (no bwd)",
        );
    }

    // bilinear upsampling of decoder features: [8, 256, 37, 37] -> 148 x 148
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (8, 256, 37, 37), dev)?)?;
    let r = Tensor::randn(0f32, 1., (8, 256, 148, 148), dev)?;
    let vars = [x.clone()];
    let fused = |t: &[Tensor]| fused_ops::resize_bilinear(&t[0], (148, 148), false);
    let matmul = |t: &[Tensor]| {
        seg_decoders::resize_bilinear(&t[0], (148, 148), seg_decoders::AlignCorners::False)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    };
    let a = time(dev, 3, repeats, || fwd_bwd(&vars, &r, &fused))?;
    let c = time(dev, 3, repeats, || fwd_bwd(&vars, &r, &matmul))?;
    report(
        "resize fwd+bwd [8,256,37,37]->148",
        a,
        c,
        "separable matmul",
    );
    let xt = x.as_tensor().detach();
    let a = time(dev, 3, repeats, || {
        fused_ops::resize_bilinear(&xt, (148, 148), false).map(|_| ())
    })?;
    let c = time(dev, 3, repeats, || {
        xt.upsample_bilinear2d(148, 148, false).map(|_| ())
    })?;
    report(
        "resize fwd [8,256,37,37]->148",
        a,
        c,
        "candle upsample (no bwd)",
    );

    // UPerNet's convolutions at RAD-DINO size: a 3x3 fpn conv (512 -> 512 at 148 x 148) and
    // the neck's 2x2 stride-2 up-sampling (768 -> 768, 37 -> 74), GEMM forms vs candle's
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 512, 148, 148), dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.02, (512, 512, 3, 3), dev)?)?;
    let r = Tensor::randn(0f32, 1., (1, 512, 148, 148), dev)?;
    let vars = [x.clone(), w.clone()];
    let fused = |t: &[Tensor]| fused_ops::conv2d(&t[0], &t[1], 1, 1, 1, 1);
    let candle = |t: &[Tensor]| t[0].conv2d(&t[1], 1, 1, 1, 1);
    let a = time(dev, 2, repeats, || fwd_bwd(&vars, &r, &fused))?;
    let c = time(dev, 2, repeats, || fwd_bwd(&vars, &r, &candle))?;
    report("conv2d 3x3 fwd+bwd [1,512,148,148]", a, c, "candle conv2d");
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (1, 768, 37, 37), dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.02, (768, 768, 2, 2), dev)?)?;
    let r = Tensor::randn(0f32, 1., (1, 768, 74, 74), dev)?;
    let vars = [x.clone(), w.clone()];
    let fused = |t: &[Tensor]| fused_ops::conv_transpose2d(&t[0], &t[1], 2);
    let candle = |t: &[Tensor]| t[0].conv_transpose2d(&t[1], 0, 0, 2, 1);
    let a = time(dev, 2, repeats, || fwd_bwd(&vars, &r, &fused))?;
    let c = time(dev, 2, repeats, || fwd_bwd(&vars, &r, &candle))?;
    report(
        "conv_transpose2d 2x2 s2 fwd+bwd [1,768,37,37]",
        a,
        c,
        "candle",
    );

    // DINO teacher at dinov2's head size: 2 x 32 global CLS rows and K = 65536 prototypes
    let t = Tensor::randn(0f32, 1., (64, 65536), dev)?;
    let center = (Tensor::randn(0f32, 1., (1, 65536), dev)? * 0.1)?;
    let a = time(dev, 3, repeats, || {
        fused_ops::center_softmax(&t, &center, 0.07).map(|_| ())
    })?;
    let c = time(dev, 3, repeats, || {
        dino_loss::teacher::softmax_center_teacher(&t, &center, 0.07)
            .map(|_| ())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    })?;
    report("center_softmax [64, 65536]", a, c, "composed");
    let a = time(dev, 3, repeats, || {
        fused_ops::sinkhorn_knopp(&t, 0.07, 64.0, 3).map(|_| ())
    })?;
    let c = time(dev, 3, repeats, || {
        dino_loss::teacher::sinkhorn_knopp_teacher(&t, 0.07, 64.0, 3)
            .map(|_| ())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    })?;
    report("sinkhorn_knopp 3 it [64, 65536]", a, c, "composed");
    Ok(json!({ "ops": rows }))
}

/// The bf16 attention kernels named in `names` (at least one).
fn bf16_kernels(names: &[String]) -> Result<Vec<fused_ops::attention::Bf16Kernel>> {
    use fused_ops::attention::Bf16Kernel;
    let kernels = names
        .iter()
        .map(|n| {
            Bf16Kernel::from_name(n).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "unknown bf16 attention kernel {n} (one of {})",
                    Bf16Kernel::ALL.map(|k| k.name()).join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if kernels.is_empty() {
        candle_core::bail!("--bf16-attention names no kernel");
    }
    Ok(kernels)
}

/// A model of `cfg` with N(0, 0.02) weights in `dtype` (the weights do not change the work).
fn random_model(cfg: &Dinov2Config, dtype: DType, dev: &Device) -> Result<Dinov2Model> {
    let mut tensors = std::collections::HashMap::new();
    for (key, shape) in vit_backbone::weights::expected_tensors(cfg) {
        tensors.insert(key, Tensor::randn(0f32, 0.02, shape, dev)?.to_dtype(dtype)?);
    }
    Dinov2Model::new(cfg, VarBuilder::from_tensors(tensors, dtype, dev))
}

fn forward(
    dev: &Device,
    batch: usize,
    repeats: usize,
    dtypes: &[String],
    paths: &[String],
    bf16_kernels: &[fused_ops::attention::Bf16Kernel],
) -> Result<serde_json::Value> {
    let cfg = Dinov2Config::rad_dino();
    let mut rows = Vec::new();
    // 2 FLOPs per multiply-add over the GEMMs of one image at 518 (1370 tokens)
    let (n, d) = (1370.0f64, 768.0f64);
    let gflop = 2.0
        * (1369.0 * 588.0 * d + 12.0 * (4.0 * n * d * d + 2.0 * n * n * d + 8.0 * n * d * d))
        / 1e9;
    for name in dtypes {
        let dtype = match name.as_str() {
            "f32" => DType::F32,
            "bf16" => DType::BF16,
            other => candle_core::bail!("unknown dtype {other} (f32 or bf16)"),
        };
        let model = random_model(&cfg, dtype, dev)?;
        let x = Tensor::randn(0f32, 1.0, (batch, 3, 518, 518), dev)?.to_dtype(dtype)?;
        let opts = ForwardOptions::default();
        // (path label, block path, bf16 attention kernel): the fused path once per kernel asked
        // for in bf16
        let mut variants = Vec::new();
        for path in paths {
            match (path.as_str(), dtype) {
                ("fused", DType::BF16) => {
                    for k in bf16_kernels {
                        variants.push((format!("fused/{}", k.name()), true, *k));
                    }
                }
                (p, _) => variants.push((p.to_string(), p == "fused", bf16_kernels[0])),
            }
        }
        let mut outputs = Vec::new();
        for (label, fused, kernel) in &variants {
            vit_backbone::set_fused_gpu_inference(*fused);
            fused_ops::attention::set_bf16_kernel(*kernel);
            let (med, min) = time(dev, 3, repeats, || model.forward(&x, &opts).map(|_| ()))?;
            let out = model
                .forward(&x, &opts)?
                .last_hidden_state
                .to_dtype(DType::F32)?;
            let finite = out.sum_all()?.to_scalar::<f32>()?.is_finite();
            println!(
                "RAD-DINO forward {name:>4} {label:>12} batch {batch}: median {:.1} ms ({:.0} img/s, {:.0} TFLOP/s), min {:.1} ms, finite output: {finite}",
                med * 1e3,
                batch as f64 / med,
                gflop * batch as f64 / med / 1e3,
                min * 1e3
            );
            rows.push(
                json!({"dtype": name, "path": label, "batch": batch, "median_ms": med * 1e3,
                "min_ms": min * 1e3, "images_per_s": batch as f64 / med, "finite": finite}),
            );
            outputs.push((label.clone(), out));
        }
        // the stem alone (patch embedding, CLS, position embeddings, final layer norm): the
        // same model with no blocks, to split a forward into stem and blocks
        let stem_cfg = Dinov2Config {
            num_hidden_layers: 0,
            ..cfg.clone()
        };
        let stem = random_model(&stem_cfg, dtype, dev)?;
        let (med, min) = time(dev, 3, repeats, || stem.forward(&x, &opts).map(|_| ()))?;
        println!(
            "RAD-DINO forward {name:>4} {:>12} batch {batch}: median {:.2} ms, min {:.2} ms",
            "stem",
            med * 1e3,
            min * 1e3
        );
        rows.push(
            json!({"dtype": name, "path": "stem (0 blocks)", "batch": batch,
            "median_ms": med * 1e3, "min_ms": min * 1e3}),
        );
        if let Some((_, composed)) = outputs.iter().find(|(l, _)| l == "composed") {
            let scale = composed.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            for (label, out) in outputs.iter().filter(|(l, _)| l != "composed") {
                let diff = (out - composed)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                println!(
                    "  {name}: max |{label} - composed| = {diff:.3e} (max |composed| = {scale:.3e})"
                );
                rows.push(json!({"dtype": name, "path": label,
                    "max_abs_diff_vs_composed": diff, "max_abs": scale}));
            }
        }
    }
    fused_ops::attention::set_bf16_kernel(bf16_kernels[0]);
    vit_backbone::set_fused_gpu_inference(true);
    Ok(json!({"forward": rows}))
}

fn step(
    dev: &Device,
    opts: &dino_pretrain::step_bench::StepBenchOptions,
    save_masks: Option<&std::path::Path>,
) -> Result<serde_json::Value> {
    let err = |e: dino_pretrain::Error| candle_core::Error::Msg(e.to_string());
    if let Some(path) = save_masks {
        let batch = opts.batch(&Device::Cpu).map_err(err)?;
        candle_core::safetensors::save(
            &std::collections::HashMap::from([("masks".to_string(), batch.masks)]),
            path,
        )?;
    }
    let t = dino_pretrain::step_bench::time_train_steps(opts, dev).map_err(err)?;
    println!(
        "DINOv2 step {} {} batch {} ({} global {} + {} local {}): median {:.1} ms, min {:.1} ms, {:.0} img/s, first-step losses {:?}",
        opts.arch, opts.compute_precision, opts.batch_size, 2, opts.global_size, opts.n_local, opts.local_size,
        t.median_s * 1e3, t.min_s * 1e3, t.images_per_second, t.first_step_losses
    );
    for (phase, sec) in &t.phase_seconds {
        println!(
            "  phase {phase:<10} {:>8.1} ms (median, synchronised)",
            sec * 1e3
        );
    }
    Ok(
        json!({"step": {"arch": opts.arch, "precision": opts.compute_precision, "batch": opts.batch_size, "median_ms": t.median_s * 1e3,
        "min_ms": t.min_s * 1e3, "images_per_s": t.images_per_second, "steps_s": t.step_seconds,
        "masked_patches": t.masked_patches, "student_parameters": t.student_parameters,
        "last_total_loss": t.last_total_loss, "phase_ms": t.phase_seconds.iter()
            .map(|(p, s)| (p.clone(), json!(s * 1e3))).collect::<serde_json::Map<_, _>>()}}),
    )
}

fn main() {
    // the CPU references free and reallocate the same large tensors: keep them in the heap
    cxr_core::retain_freed_heap_memory();
    let args = Args::parse();
    let dev = match fused_ops::cuda_device() {
        _ if args.cpu_dry_run => Device::Cpu,
        Ok(d) => d,
        Err(why) => {
            eprintln!(
                "gpu_suite needs a CUDA device: {why} (--cpu-dry-run checks a command on the CPU)"
            );
            std::process::exit(2);
        }
    };
    if !args.cuda_default_pool {
        if let Err(e) = fused_ops::retain_freed_gpu_memory(&dev) {
            eprintln!("could not keep freed memory pooled: {e}");
        }
    }
    let result = match &args.cmd {
        Cmd::Parity => parity(&dev),
        Cmd::Ops { repeats } => ops(&dev, *repeats).map(|v| (v, true)),
        Cmd::Forward {
            batch,
            repeats,
            dtypes,
            paths,
            bf16_attention,
        } => bf16_kernels(bf16_attention)
            .and_then(|k| forward(&dev, *batch, *repeats, dtypes, paths, &k))
            .map(|v| (v, true)),
        Cmd::Profile { batch, repeats } => {
            profile::block_ops(&dev, *batch, *repeats).map(|v| (v, true))
        }
        Cmd::TrainProfile { batch, repeats } => {
            train_profile::backbone_passes(&dev, *batch, *repeats).map(|v| (v, true))
        }
        Cmd::Step {
            arch,
            batch,
            n_local,
            prototypes,
            global_size,
            local_size,
            warmup,
            steps,
            save_masks,
            precision,
        } => {
            let opts = dino_pretrain::step_bench::StepBenchOptions {
                arch: arch.clone(),
                batch_size: *batch,
                n_local: *n_local,
                prototypes: *prototypes,
                global_size: *global_size,
                local_size: *local_size,
                warmup: *warmup,
                steps: *steps,
                compute_precision: precision.clone(),
                phase_steps: 3,
                ..Default::default()
            };
            step(&dev, &opts, save_masks.as_deref()).map(|v| (v, true))
        }
    };
    match result {
        Ok((value, ok)) => {
            if let Some(path) = &args.json {
                if let Err(e) = std::fs::write(path, value.to_string()) {
                    eprintln!("could not write {}: {e}", path.display());
                }
            }
            if !ok {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("gpu_suite failed: {e}");
            std::process::exit(1);
        }
    }
}
