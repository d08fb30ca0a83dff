//! The training loop around [`DinoTrainer`]: prefetch, progress bar, step log, checkpoints,
//! loss plot, resolved config.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use train_utils::{plot_curves_or_warn, read_jsonl, CheckpointDir, Prefetch, StepLog, StepRecord};

use crate::{DinoTrainer, Error, MultiCropSource, Result};

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output directory: `config.resolved.toml`, `steps.csv`/`steps.jsonl`,
    /// `loss_curve.png`/`.svg`, `checkpoints/`.
    pub out: PathBuf,
    /// Train until this many steps are complete.
    pub steps: u64,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Checkpoints to keep.
    pub keep: usize,
    /// Continue from the newest checkpoint in `out/checkpoints` if there is one.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Step the run started at (non-zero after a resume).
    pub start_step: u64,
    /// Steps complete at the end.
    pub end_step: u64,
    /// Total loss of every step run now, in order.
    pub losses: Vec<f64>,
    /// Images per second over the steps run now (crops not counted).
    pub images_per_second: f64,
}

/// Curves drawn in `loss_curve.png`.
const CURVES: [&str; 5] = [
    "total_loss",
    "dino_local_crops_loss",
    "dino_global_crops_loss",
    "ibot_loss",
    "koleo_loss",
];

/// Trains `trainer` on `source` as `opts` say. A NaN/Inf loss ends the run with an error
/// and leaves the last checkpoint as it was.
pub fn run(
    trainer: &mut DinoTrainer,
    source: &MultiCropSource,
    device: &Device,
    opts: &RunOptions,
) -> Result<RunSummary> {
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let ckdir = CheckpointDir::new(opts.out.join("checkpoints"), opts.keep)?;
    let mut resume_step = None;
    if opts.resume {
        if let Some(ck) = ckdir.load_latest(device)? {
            trainer.restore(&ck)?;
            resume_step = Some(ck.step);
        }
    }
    trainer.config().write_resolved(&opts.out, 1)?;
    let mut log = StepLog::open(&opts.out, resume_step)?;
    let start = trainer.step_index();
    let end = opts.steps.max(start);

    // batches are prepared one step ahead on their own thread
    let batches = {
        let source = source.clone();
        let device = device.clone();
        Prefetch::spawn(start..end, move |step| source.batch(step, &device))
    };

    let pb = if opts.progress {
        ProgressBar::new(end - start)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} step {msg}",
        )
        .map_err(|e| Error::Invalid(e.to_string()))?,
    );
    let t0 = Instant::now();
    let mut losses = Vec::new();
    let batch_size = source.batch_size() as f64;
    let every = opts.checkpoint_every.max(1);
    let mut result = Ok(());
    for step in start..end {
        let batch = match batches.next_item() {
            Some(b) => b,
            None => {
                result = Err(Error::Invalid("the batch producer stopped".into()));
                break;
            }
        };
        let out = match batch.and_then(|b| trainer.train_step(&b)) {
            Ok(o) => o,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let done = (step + 1 - start) as f64;
        let ips = done * batch_size / t0.elapsed().as_secs_f64().max(1e-9);
        let mut values = out.values();
        values.insert("images_per_second".into(), ips);
        log.append(&StepRecord {
            step,
            values: values.clone(),
        })?;
        losses.push(out.total());
        let get = |k: &str| values.get(k).copied().unwrap_or(f64::NAN);
        pb.set_message(format!(
            "{} loss {:.4} (dino_l {:.3} dino_g {:.3} ibot {:.3} koleo {:.3}) {:.2} img/s",
            step + 1,
            get("total_loss"),
            get("dino_local_crops_loss"),
            get("dino_global_crops_loss"),
            get("ibot_loss"),
            get("koleo_loss"),
            ips
        ));
        pb.inc(1);
        if (step + 1) % every == 0 || step + 1 == end {
            let (tensors, state) = trainer.checkpoint()?;
            ckdir.save(&tensors, &state)?;
        }
    }
    drop(batches);
    pb.finish();
    result?;
    let records = read_jsonl(log.jsonl_path())?;
    if !records.is_empty() {
        plot_curves_or_warn(
            &records,
            &CURVES,
            &opts.out.join("loss_curve"),
            "DINOv2 continual pretraining",
        );
    }
    Ok(RunSummary {
        start_step: start,
        end_step: trainer.step_index(),
        images_per_second: losses.len() as f64 * batch_size / t0.elapsed().as_secs_f64().max(1e-9),
        losses,
    })
}
