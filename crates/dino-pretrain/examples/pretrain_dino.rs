//! DINOv2 continual pretraining on the train splits of chest X-ray packs.
//!
//! ```text
//! cargo run --release -p dino-pretrain --example pretrain_dino -- \
//!     --data ../shared/data/cxr-mini --data ../shared/data/cxr-findings \
//!     --config crates/dino-pretrain/configs/vit_tiny_cxr.toml --init random \
//!     --out runs/dino-tiny --steps 300 --export models/cxr-dino-vit-tiny
//! ```
use std::path::PathBuf;

use anyhow::bail;
use candle_core::{DType, Device};
use clap::Parser;
use cxr_core::ranges::at_least_one;
use cxr_data::shards::shard_files;
use cxr_data::{ImageSource, ShardIndex, Split, Subset};
use dino_loss::DinoV2Config;
use dino_pretrain::{export, packs, run, DinoTrainer, Init, MultiCropSource, RunOptions};
use train_utils::{fingerprint, record_run_input};

/// RAD-DINO's pixel statistics, used for crops and the exported preprocessing.
const MEAN: [f32; 3] = [0.5307; 3];
const STD: [f32; 3] = [0.2583; 3];

#[derive(Parser, Debug)]
#[command(
    about = "DINOv2 continual pretraining (DINO + iBOT + KoLeo, EMA teacher) on chest X-rays",
    long_about = "Trains a ViT with dinov2's objectives on the `train` split of each --data \
pack (cxr-mini and/or cxr-findings layout: labels.csv with a split column), or on every image \
of the WebDataset-style tar shards in each --shards folder that is not marked val or test (as \
cxr-data's write_shards example writes them; read by random access, so shuffling and exact \
resume work as for files). Writes \
config.resolved.toml, steps.csv/steps.jsonl, loss_curve.png/svg and checkpoints/ into --out; \
--resume continues bit-exactly from the newest checkpoint there. With --export, the teacher \
backbone is written as a Hugging Face Dinov2Model directory (config.json, model.safetensors, \
preprocessor_config.json)."
)]
struct Args {
    /// A data pack directory (repeatable); only its train split is used.
    #[arg(long, required_unless_present = "shards", conflicts_with = "shards")]
    data: Vec<PathBuf>,
    /// Instead of --data: a folder of `*.tar` shards (repeatable). Samples whose metadata
    /// names a split other than `train` are left out; those naming none (unlabelled images)
    /// are used.
    #[arg(long)]
    shards: Vec<PathBuf>,
    /// TOML config with dinov2's sections (student, teacher, dino, ibot, crops, optim, train);
    /// missing keys take dinov2's defaults. `crops` also sets the augmentations dinov2
    /// hard-codes: color_jitter_prob, brightness, contrast, blur_prob (global 1, global 2,
    /// local), solarize_prob and horizontal_flip_prob (0 by default for chest X-rays).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Preset when no --config is given: `dinov2` or `rad-dino`.
    #[arg(long, default_value = "dinov2")]
    preset: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Train until this many steps are done (default: optim.epochs × OFFICIAL_EPOCH_LENGTH).
    /// A count the run has already reached, 0 included, trains nothing: with --resume and
    /// --export that exports the newest checkpoint as it is.
    #[arg(long)]
    steps: Option<u64>,
    /// `random`, or a Hugging Face model directory (e.g. a local copy of microsoft/rad-dino).
    #[arg(long, default_value = "random")]
    init: String,
    /// Checkpoint every this many steps.
    #[arg(long, default_value_t = 50, value_parser = at_least_one::<u64>)]
    checkpoint_every: u64,
    /// Keep this many of the newest checkpoints, deleting older ones (at least 1). Keep more
    /// to probe the run at several steps later: `--resume --steps N --export DIR` on a folder
    /// holding step N's checkpoint exports that encoder.
    #[arg(long, default_value_t = 2, value_parser = at_least_one::<usize>)]
    keep: usize,
    /// Write the teacher backbone here as a Hugging Face model directory at the end.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Before the first step, write the teacher backbone (equal to the student's
    /// initialisation) here, as --export would: the baseline for "does the pretrained
    /// encoder beat its own initialisation". Not with --resume (the initialisation is gone).
    #[arg(long)]
    export_init: Option<PathBuf>,
    /// Weight dtype of the exports (`f16` or `f32`).
    #[arg(long, default_value = "f16")]
    export_dtype: String,
    /// Run this many steps, print the time per step and exit (no files written).
    #[arg(long, value_parser = at_least_one::<u64>)]
    measure: Option<u64>,
    /// `cpu` or `cuda` (GPU 0; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // every step frees and reallocates the same large tensors: keep them in the heap
    train_utils::retain_freed_heap_memory();
    let cfg = match &args.config {
        Some(p) => DinoV2Config::from_toml_file(p)?,
        None => DinoV2Config::preset(&args.preset)?,
    };
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0)?,
        other => bail!("--device {other} (cpu or cuda)"),
    };
    // keep freed GPU memory pooled across synchronised steps, as PyTorch's allocator does
    if let Err(e) = fused_ops::retain_freed_gpu_memory(&device) {
        eprintln!("warning: freed GPU memory goes back to the driver at each sync: {e}");
    }
    let mut files = Vec::new();
    for d in &args.data {
        let f = packs::split_files(d, Split::Train)?;
        println!("{}: {} train images", d.display(), f.len());
        files.extend(f);
    }
    let shards = if args.shards.is_empty() {
        None
    } else {
        let mut tars = Vec::new();
        for d in &args.shards {
            tars.extend(shard_files(d)?);
        }
        let index = std::sync::Arc::new(ShardIndex::build(tars)?);
        let train = index.samples_in(&index.metas()?, Split::Train, true)?;
        println!(
            "{} shards in {} folder(s): {} images, {} of them train or unsplit",
            index.shards().len(),
            args.shards.len(),
            index.len(),
            train.len()
        );
        Some(Subset::new(index, train)?)
    };
    let init = Init::parse(&args.init);
    let mut trainer = DinoTrainer::new(cfg.clone(), &init, &device)?;
    let m = trainer.model_config().clone();
    println!(
        "student {} ({} wide, {} blocks, patch {}), global {} px, {} local crops of {} px, \
         batch {}, K = {}, init {:?}",
        cfg.student.arch,
        m.hidden_size,
        m.num_hidden_layers,
        m.patch_size,
        cfg.crops.global_crops_size,
        cfg.crops.local_crops_number,
        cfg.crops.local_crops_size,
        cfg.train.batch_size_per_gpu,
        cfg.dino.head_n_prototypes,
        init
    );
    let c = &cfg.crops;
    println!(
        "augmentations: jitter p {} (brightness {}, contrast {}), blur p {:?}, solarize p {}, \
         flip p {}",
        c.color_jitter_prob,
        c.brightness,
        c.contrast,
        c.blur_prob,
        c.solarize_prob,
        c.horizontal_flip_prob
    );
    // the images, in order, belong to the run: a resume on other data is refused
    let resuming = args.resume && args.out.join("checkpoints/latest.json").is_file();
    let record = |kind: &str, images: &dyn ImageSource| {
        let names: Vec<String> = (0..images.len()).map(|i| images.id(i)).collect();
        let data = serde_json::json!({
            "source": kind,
            "images": images.len(),
            "fingerprint": fingerprint(names.iter().map(String::as_str)).to_string(),
        });
        record_run_input(&args.out, "data", &data, resuming)
    };
    let source = match shards {
        Some(index) => {
            record("shards", &index)?;
            MultiCropSource::new(index, &cfg, m.patch_size, MEAN, STD)?
        }
        None => {
            record("files", &files)?;
            MultiCropSource::new(files, &cfg, m.patch_size, MEAN, STD)?
        }
    };
    let dtype = match args.export_dtype.as_str() {
        "f16" => DType::F16,
        "f32" => DType::F32,
        other => bail!("--export-dtype {other} (f16 or f32)"),
    };
    let pre = export::preprocessor_json(cfg.crops.global_crops_size, MEAN, STD);
    if let Some(dir) = &args.export_init {
        if args.resume {
            bail!(
                "--export-init with --resume: the run's initialisation is not \
                 recoverable from a checkpoint; export it on the first run"
            );
        }
        export::write_hf_dir(dir, &m, &trainer.teacher_backbone_tensors(), dtype, &pre)?;
        println!("initial teacher backbone written to {}", dir.display());
    }
    if let Some(n) = args.measure {
        for step in 0..n {
            let t = std::time::Instant::now();
            let batch = source.batch(step, &device)?;
            let tb = t.elapsed().as_secs_f64();
            let out = trainer.train_step(&batch)?;
            println!(
                "step {step}: batch {tb:.2} s, total {:.2} s, loss {:.4}",
                t.elapsed().as_secs_f64(),
                out.total()
            );
        }
        return Ok(());
    }
    let steps = args
        .steps
        .unwrap_or((cfg.optim.epochs * cfg.train.official_epoch_length) as u64);
    let summary = run(
        &mut trainer,
        &source,
        &device,
        &RunOptions {
            out: args.out.clone(),
            steps,
            checkpoint_every: args.checkpoint_every,
            keep: args.keep,
            resume: args.resume,
            progress: true,
        },
    )?;
    match (summary.losses.first(), summary.losses.last()) {
        (Some(first), Some(last)) => println!(
            "steps {}..{}: total loss {first:.4} -> {last:.4}, {:.2} images/s; log {}, curve {}",
            summary.start_step,
            summary.end_step,
            summary.images_per_second,
            args.out.join("steps.csv").display(),
            args.out.join("loss_curve.png").display()
        ),
        // a resume at (or past) --steps: nothing to train, but --export still writes
        _ => println!(
            "nothing to train: the run is already at step {} of {steps}",
            summary.end_step
        ),
    }
    if let Some(dir) = &args.export {
        export::write_hf_dir(dir, &m, &trainer.teacher_backbone_tensors(), dtype, &pre)?;
        println!("teacher backbone written to {}", dir.display());
    }
    Ok(())
}
