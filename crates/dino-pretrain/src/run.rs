//! The training loop around [`DinoTrainer`]: [`train_utils::run_loop`] (prefetch, progress
//! bar, step log, checkpoints, loss plot) with the resolved config and dinov2's loss terms.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use train_utils::{run_loop, Checkpoint, LoopReport, LoopTrainer, StepReport, TrainState};

use crate::trainer::StepOutput;
use crate::{DinoTrainer, Error, MultiCropBatch, MultiCropSource, Result};

/// Settings of one run: output directory (`config.resolved.toml`, `steps.csv`/`steps.jsonl`,
/// `loss_curve.png`/`.svg`, `checkpoints/`), steps, checkpoint interval, resume, progress.
pub type RunOptions = train_utils::LoopOptions;

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

impl StepReport for StepOutput {
    fn values(&self) -> BTreeMap<String, f64> {
        StepOutput::values(self)
    }

    fn loss(&self) -> f64 {
        self.total()
    }

    fn progress(&self) -> String {
        let get = |k: &str| {
            self.losses
                .iter()
                .find(|(n, _)| *n == k)
                .map_or(f64::NAN, |(_, v)| *v)
        };
        format!(
            "loss {:.4} (dino_l {:.3} dino_g {:.3} ibot {:.3} koleo {:.3})",
            self.total(),
            get("dino_local_crops_loss"),
            get("dino_global_crops_loss"),
            get("ibot_loss"),
            get("koleo_loss"),
        )
    }
}

impl LoopTrainer for DinoTrainer {
    type Batch = MultiCropBatch;
    type Output = StepOutput;
    type Error = Error;

    fn step_index(&self) -> u64 {
        DinoTrainer::step_index(self)
    }

    fn train_step(&mut self, batch: &MultiCropBatch) -> Result<StepOutput> {
        DinoTrainer::train_step(self, batch)
    }

    fn checkpoint(&self) -> Result<(HashMap<String, Tensor>, TrainState)> {
        DinoTrainer::checkpoint(self)
    }

    fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        DinoTrainer::restore(self, checkpoint)
    }

    fn write_config(&self, out: &Path) -> Result<()> {
        self.config().write_resolved(out, 1)?;
        Ok(())
    }
}

/// Trains `trainer` on `source` as `opts` say. A NaN/Inf loss ends the run with an error
/// and leaves the last checkpoint as it was.
pub fn run(
    trainer: &mut DinoTrainer,
    source: &MultiCropSource,
    device: &Device,
    opts: &RunOptions,
) -> Result<RunSummary> {
    let batches = {
        let (source, device) = (source.clone(), device.clone());
        move |step| source.batch(step, &device)
    };
    let report = LoopReport {
        samples_per_step: source.batch_size(),
        rate_key: "images_per_second",
        rate_unit: "img/s",
        curves: &CURVES,
        title: "DINOv2 continual pretraining",
    };
    let s = run_loop(trainer, batches, device, opts, &report, &mut ())?;
    Ok(RunSummary {
        start_step: s.start_step,
        end_step: s.end_step,
        losses: s.losses,
        images_per_second: s.samples_per_second,
    })
}
