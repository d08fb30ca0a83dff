//! The loop every pretraining crate runs around its trainer: resume from the newest
//! checkpoint, batches prepared one step ahead on their own thread, a progress bar, a step
//! log (CSV + JSONL), checkpoints every N steps and after the last, and the loss plot.
//!
//! The DINOv2 and UniCL trainers implement [`LoopTrainer`]; what differs between them (the
//! values they log, zero-shot validation) comes in through [`StepReport`] and [`LoopHooks`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    plot_curves_or_warn, read_jsonl, Checkpoint, CheckpointDir, Error, Prefetch, StepLog,
    StepRecord, TrainState,
};

/// A trainer the loop can drive.
pub trait LoopTrainer {
    /// One step's input.
    type Batch: Send + 'static;
    /// What a step reports.
    type Output: StepReport;
    /// The trainer's error; the loop's own (checkpoints, logs) convert into it.
    type Error: From<Error> + Send + 'static;

    /// Steps completed (the next step to run).
    fn step_index(&self) -> u64;
    /// Runs one step.
    fn train_step(&mut self, batch: &Self::Batch) -> Result<Self::Output, Self::Error>;
    /// Everything a resume needs, for [`CheckpointDir::save`].
    fn checkpoint(&self) -> Result<(HashMap<String, Tensor>, TrainState), Self::Error>;
    /// Takes the state of a checkpoint back.
    fn restore(&mut self, checkpoint: &Checkpoint) -> Result<(), Self::Error>;
    /// Writes the run's resolved configuration into `out`.
    fn write_config(&self, out: &Path) -> Result<(), Self::Error>;
}

/// What one step reports to the loop.
pub trait StepReport {
    /// The values logged for the step (the loop adds the throughput).
    fn values(&self) -> BTreeMap<String, f64>;
    /// The loss a [`LoopSummary`] keeps.
    fn loss(&self) -> f64;
    /// The progress bar's message, between the step number and the throughput.
    fn progress(&self) -> String;
}

/// Extra work at fixed points of a run, such as validation every N steps.
pub trait LoopHooks<T: LoopTrainer> {
    /// Before the first step; `resumed_at` is the step of the checkpoint the run resumed
    /// from, if it did.
    fn start(&mut self, out: &Path, resumed_at: Option<u64>) -> Result<(), T::Error> {
        let _ = (out, resumed_at);
        Ok(())
    }

    /// After each step, before its checkpoint: `done` steps are complete, `last` says that
    /// this was the run's last one. Messages go through `progress.println`.
    fn after_step(
        &mut self,
        trainer: &T,
        done: u64,
        last: bool,
        progress: &ProgressBar,
    ) -> Result<(), T::Error> {
        let _ = (trainer, done, last, progress);
        Ok(())
    }
}

/// No extra work.
impl<T: LoopTrainer> LoopHooks<T> for () {}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Output directory: the resolved config, `steps.csv`/`steps.jsonl`,
    /// `loss_curve.png`/`.svg`, `checkpoints/`.
    pub out: PathBuf,
    /// Train until this many steps are complete.
    pub steps: u64,
    /// Write a checkpoint every this many steps (and at the end); at least 1.
    pub checkpoint_every: u64,
    /// Checkpoints to keep.
    pub keep: usize,
    /// Continue from the newest checkpoint in `out/checkpoints` if there is one.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// How a run reports itself.
#[derive(Debug, Clone, Copy)]
pub struct LoopReport<'a> {
    /// Samples per step, for the throughput.
    pub samples_per_step: usize,
    /// The throughput's key in the step log, e.g. `images_per_second`.
    pub rate_key: &'a str,
    /// Its unit on the progress bar, e.g. `img/s`.
    pub rate_unit: &'a str,
    /// Step-log columns drawn in `loss_curve.png`.
    pub curves: &'a [&'a str],
    /// The plot's title.
    pub title: &'a str,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct LoopSummary {
    /// Step the run started at (non-zero after a resume).
    pub start_step: u64,
    /// Steps complete at the end.
    pub end_step: u64,
    /// [`StepReport::loss`] of every step run now, in order.
    pub losses: Vec<f64>,
    /// Samples per second over the steps run now.
    pub samples_per_second: f64,
}

/// Trains `trainer` until `opts.steps` steps are complete, on the batches `make_batch`
/// prepares for each step index. A failing step (a NaN/Inf loss, a bad batch) ends the run
/// with its error and leaves the last checkpoint as it was.
pub fn run_loop<T: LoopTrainer>(
    trainer: &mut T,
    make_batch: impl FnMut(u64) -> Result<T::Batch, T::Error> + Send + 'static,
    device: &Device,
    opts: &LoopOptions,
    report: &LoopReport<'_>,
    hooks: &mut impl LoopHooks<T>,
) -> Result<LoopSummary, T::Error> {
    if opts.checkpoint_every == 0 {
        return Err(Error::Config("checkpoint_every is 0: give at least 1".into()).into());
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let ckdir = CheckpointDir::new(opts.out.join("checkpoints"), opts.keep)?;
    let mut resumed_at = None;
    if opts.resume {
        if let Some(ck) = ckdir.load_latest(device)? {
            trainer.restore(&ck)?;
            resumed_at = Some(ck.step);
        }
    }
    trainer.write_config(&opts.out)?;
    let mut log = StepLog::open(&opts.out, resumed_at)?;
    hooks.start(&opts.out, resumed_at)?;
    let start = trainer.step_index();
    let end = opts.steps.max(start);

    let batches = Prefetch::spawn(start..end, make_batch);
    let pb = if opts.progress {
        ProgressBar::new(end - start)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .map_err(|e| Error::Loop(e.to_string()))?,
    );
    let t0 = Instant::now();
    let per_second = |steps: usize| {
        (steps * report.samples_per_step) as f64 / t0.elapsed().as_secs_f64().max(1e-9)
    };
    let every = opts.checkpoint_every;
    let mut losses = Vec::new();
    let mut result = Ok(());
    for step in start..end {
        let out = match batches
            .next_item()
            .ok_or_else(|| Error::Loop("the batch producer stopped".into()).into())
            .and_then(|b| b)
            .and_then(|b| trainer.train_step(&b))
        {
            Ok(o) => o,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        losses.push(out.loss());
        let rate = per_second(losses.len());
        let mut values = out.values();
        values.insert(report.rate_key.to_string(), rate);
        log.append(&StepRecord { step, values })?;
        pb.set_message(format!(
            "step {} {} {rate:.2} {}",
            step + 1,
            out.progress(),
            report.rate_unit
        ));
        pb.inc(1);
        let last = step + 1 == end;
        hooks.after_step(trainer, step + 1, last, &pb)?;
        if (step + 1) % every == 0 || last {
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
            report.curves,
            &opts.out.join("loss_curve"),
            report.title,
        );
    }
    Ok(LoopSummary {
        start_step: start,
        end_step: trainer.step_index(),
        samples_per_second: per_second(losses.len()),
        losses,
    })
}
