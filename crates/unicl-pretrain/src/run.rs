//! The training loop around [`UniclTrainer`]: [`train_utils::run_loop`] (prefetch, progress
//! bar, step log, checkpoints, loss plot) with zero-shot validation every N steps.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use dual_encoder::TextTokenizer;
use indicatif::ProgressBar;
use train_utils::{
    run_loop, write_atomic, Checkpoint, LoopHooks, LoopOptions, LoopReport, LoopTrainer, StepLog,
    StepRecord, StepReport, TrainState,
};

use crate::eval::{quick_auroc, zero_shot_scores};
use crate::trainer::StepOutput;
use crate::{Error, PairBatch, PairDataset, PairSource, Result, UniclTrainer};

/// Zero-shot validation during training.
#[derive(Debug, Clone)]
pub struct Validation {
    /// The validation split.
    pub data: PairDataset,
    /// The run's tokenizer.
    pub tokenizer: TextTokenizer,
    /// Evaluate every this many steps (and after the last one); at least 1.
    pub every: u64,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output directory (`config.json`, `steps.csv`/`steps.jsonl`, `val/steps.*`,
    /// `loss_curve.png`/`.svg`, `checkpoints/`), steps, checkpoint interval, resume, progress.
    pub run: LoopOptions,
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

impl StepReport for StepOutput {
    fn values(&self) -> BTreeMap<String, f64> {
        StepOutput::values(self)
    }

    fn loss(&self) -> f64 {
        self.loss
    }

    fn progress(&self) -> String {
        format!(
            "loss {:.4} scale {:.2} |g| {:.3}",
            self.loss, self.logit_scale, self.grad_norm
        )
    }
}

impl LoopTrainer for UniclTrainer {
    type Batch = PairBatch;
    type Output = StepOutput;
    type Error = Error;

    fn step_index(&self) -> u64 {
        UniclTrainer::step_index(self)
    }

    fn train_step(&mut self, batch: &PairBatch) -> Result<StepOutput> {
        UniclTrainer::train_step(self, batch)
    }

    fn checkpoint(&self) -> Result<(HashMap<String, Tensor>, TrainState)> {
        UniclTrainer::checkpoint(self)
    }

    fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        UniclTrainer::restore(self, checkpoint)
    }

    fn write_config(&self, out: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self.config())
            .map_err(|e| Error::Invalid(format!("config: {e}")))?;
        write_atomic(&out.join("config.json"), &json)?;
        Ok(())
    }
}

/// Zero-shot macro AUROC on the validation split every `every` steps and after the last,
/// logged to `val/steps.*`.
struct ValidationHook<'a> {
    validation: &'a Validation,
    device: &'a Device,
    log: Option<StepLog>,
    macro_auroc: Vec<(u64, f64)>,
}

impl LoopHooks<UniclTrainer> for ValidationHook<'_> {
    fn start(&mut self, out: &Path, resumed_at: Option<u64>) -> Result<()> {
        self.log = Some(StepLog::open(&out.join("val"), resumed_at)?);
        Ok(())
    }

    fn after_step(
        &mut self,
        trainer: &UniclTrainer,
        done: u64,
        last: bool,
        progress: &ProgressBar,
    ) -> Result<()> {
        let v = self.validation;
        if done % v.every != 0 && !last {
            return Ok(());
        }
        let scores = zero_shot_scores(trainer.model(), &v.tokenizer, &v.data, 64, self.device)?;
        let m = quick_auroc(&scores)?.1;
        self.macro_auroc.push((done, m));
        if let Some(log) = self.log.as_mut() {
            // keyed by the 0-based step just run, like the step log, so a resume at `done`
            // keeps it
            log.append(&StepRecord {
                step: done - 1,
                values: [("val_macro_auroc".to_string(), m)].into_iter().collect(),
            })?;
        }
        progress.println(format!("step {done}: zero-shot val macro AUROC {m:.3}"));
        Ok(())
    }
}

/// Trains `trainer` on `source` as `opts` say. A NaN/Inf loss ends the run with an error
/// and leaves the last checkpoint as it was.
pub fn run(
    trainer: &mut UniclTrainer,
    source: &PairSource,
    device: &Device,
    opts: &RunOptions,
) -> Result<RunSummary> {
    if opts.validation.as_ref().is_some_and(|v| v.every == 0) {
        return Err(Error::Invalid(
            "validation every 0 steps: give at least 1".into(),
        ));
    }
    let batches = {
        let (source, device) = (source.clone(), device.clone());
        move |step| source.batch(step, &device)
    };
    let title = format!("{:?} image-text pretraining", trainer.config().objective);
    let report = LoopReport {
        samples_per_step: source.batch_size(),
        rate_key: "pairs_per_second",
        rate_unit: "pairs/s",
        curves: &["loss"],
        title: &title,
    };
    let (summary, val_macro_auroc) = match &opts.validation {
        Some(validation) => {
            let mut hook = ValidationHook {
                validation,
                device,
                log: None,
                macro_auroc: Vec::new(),
            };
            let s = run_loop(trainer, batches, device, &opts.run, &report, &mut hook)?;
            (s, hook.macro_auroc)
        }
        None => (
            run_loop(trainer, batches, device, &opts.run, &report, &mut ())?,
            Vec::new(),
        ),
    };
    Ok(RunSummary {
        start_step: summary.start_step,
        end_step: summary.end_step,
        losses: summary.losses,
        val_macro_auroc,
        pairs_per_second: summary.samples_per_second,
    })
}
