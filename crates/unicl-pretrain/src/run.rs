//! The training loop around [`UniclTrainer`]: prefetch, progress bar, step logs,
//! checkpoints, zero-shot validation every N steps, loss plot.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use dual_encoder::TextTokenizer;
use indicatif::{ProgressBar, ProgressStyle};
use train_utils::{
    plot_curves_or_warn, read_jsonl, write_atomic, CheckpointDir, Prefetch, StepLog, StepRecord,
};

use crate::eval::{quick_auroc, zero_shot_scores};
use crate::{Error, PairDataset, PairSource, Result, UniclTrainer};

/// Zero-shot validation during training.
#[derive(Debug, Clone)]
pub struct Validation {
    /// The validation split.
    pub data: PairDataset,
    /// The run's tokenizer.
    pub tokenizer: TextTokenizer,
    /// Evaluate every this many steps (and after the last one).
    pub every: u64,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output directory: `config.json`, `steps.csv`/`steps.jsonl`, `val/steps.*`,
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
    /// Zero-shot validation, if any.
    pub validation: Option<Validation>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Step the run started at (non-zero after a resume).
    pub start_step: u64,
    /// Steps complete at the end.
    pub end_step: u64,
    /// Loss of every step run now, in order.
    pub losses: Vec<f64>,
    /// `(step, macro AUROC)` of every validation.
    pub val_macro_auroc: Vec<(u64, f64)>,
    /// Image–text pairs per second over the steps run now.
    pub pairs_per_second: f64,
}

fn validate(trainer: &UniclTrainer, v: &Validation, device: &Device) -> Result<f64> {
    let s = zero_shot_scores(trainer.model(), &v.tokenizer, &v.data, 64, device)?;
    Ok(quick_auroc(&s)?.1)
}

/// Trains `trainer` on `source` as `opts` say. A NaN/Inf loss ends the run with an error
/// and leaves the last checkpoint as it was.
pub fn run(
    trainer: &mut UniclTrainer,
    source: &PairSource,
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
    let cfg_json = serde_json::to_vec_pretty(trainer.config())
        .map_err(|e| Error::Invalid(format!("config: {e}")))?;
    write_atomic(&opts.out.join("config.json"), &cfg_json)?;
    let mut log = StepLog::open(&opts.out, resume_step)?;
    let mut val_log = match &opts.validation {
        Some(_) => Some(StepLog::open(&opts.out.join("val"), resume_step)?),
        None => None,
    };
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
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .map_err(|e| Error::Invalid(e.to_string()))?,
    );
    let t0 = Instant::now();
    let mut losses = Vec::new();
    let mut val_auroc = Vec::new();
    let batch_size = source.batch_size() as f64;
    let every = opts.checkpoint_every.max(1);
    let mut result = Ok(());
    for step in start..end {
        let out = match batches
            .next_item()
            .ok_or_else(|| Error::Invalid("the batch producer stopped".into()))
            .and_then(|b| b)
            .and_then(|b| trainer.train_step(&b))
        {
            Ok(o) => o,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let pps = (step + 1 - start) as f64 * batch_size / t0.elapsed().as_secs_f64().max(1e-9);
        let mut values = out.values();
        values.insert("pairs_per_second".into(), pps);
        log.append(&StepRecord { step, values })?;
        losses.push(out.loss);
        pb.set_message(format!(
            "step {} loss {:.4} scale {:.2} |g| {:.3} {:.1} pairs/s",
            step + 1,
            out.loss,
            out.logit_scale,
            out.grad_norm,
            pps
        ));
        pb.inc(1);
        if let (Some(v), Some(vl)) = (&opts.validation, val_log.as_mut()) {
            if (step + 1) % v.every.max(1) == 0 || step + 1 == end {
                let m = validate(trainer, v, device)?;
                val_auroc.push((step + 1, m));
                // keyed by the 0-based step just run, like the step log, so a resume at
                // `step + 1` keeps it
                vl.append(&StepRecord {
                    step,
                    values: [("val_macro_auroc".to_string(), m)].into_iter().collect(),
                })?;
                pb.println(format!(
                    "step {}: zero-shot val macro AUROC {m:.3}",
                    step + 1
                ));
            }
        }
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
        let title = format!("{:?} image-text pretraining", trainer.config().objective);
        plot_curves_or_warn(&records, &["loss"], &opts.out.join("loss_curve"), &title);
    }
    Ok(RunSummary {
        start_step: start,
        end_step: trainer.step_index(),
        pairs_per_second: losses.len() as f64 * batch_size / t0.elapsed().as_secs_f64().max(1e-9),
        losses,
        val_macro_auroc: val_auroc,
    })
}
