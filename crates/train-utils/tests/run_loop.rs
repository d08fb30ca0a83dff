//! The shared training loop drives the toy run of `resume.rs`: stopped and resumed, it gives
//! the losses of an uninterrupted run to the bit; the hooks see every step; a NaN step ends the
//! run with its error and the last checkpoint as it was.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use indicatif::ProgressBar;
use train_utils::{
    read_jsonl, run_loop, write_atomic, Checkpoint, CheckpointDir, Error, LoopHooks, LoopOptions,
    LoopReport, LoopTrainer, StepReport, TrainState,
};

use crate::resume::Run;

pub(crate) struct Loss(f32);

impl StepReport for Loss {
    fn values(&self) -> BTreeMap<String, f64> {
        [("loss".to_string(), f64::from(self.0))].into()
    }

    fn loss(&self) -> f64 {
        f64::from(self.0)
    }

    fn progress(&self) -> String {
        format!("loss {:.4}", self.0)
    }
}

/// The batch is whether to poison the step (a NaN loss); the toy run draws its own data.
impl LoopTrainer for Run {
    type Batch = bool;
    type Output = Loss;
    type Error = Error;

    fn step_index(&self) -> u64 {
        self.step
    }

    fn train_step(&mut self, poison: &bool) -> Result<Loss, Error> {
        self.step(*poison).map(Loss)
    }

    fn checkpoint(&self) -> Result<(HashMap<String, Tensor>, TrainState), Error> {
        Ok(self.state())
    }

    fn restore(&mut self, checkpoint: &Checkpoint) -> Result<(), Error> {
        *self = Run::from_checkpoint(checkpoint);
        Ok(())
    }

    fn write_config(&self, out: &Path) -> Result<(), Error> {
        write_atomic(&out.join("config.json"), b"{\"toy\": true}\n")
    }
}

/// What the loop told its hooks.
#[derive(Default)]
struct Seen {
    resumed_at: Option<Option<u64>>,
    steps: Vec<(u64, bool)>,
}

impl LoopHooks<Run> for Seen {
    fn start(&mut self, _out: &Path, resumed_at: Option<u64>) -> Result<(), Error> {
        self.resumed_at = Some(resumed_at);
        Ok(())
    }

    fn after_step(
        &mut self,
        run: &Run,
        done: u64,
        last: bool,
        _: &ProgressBar,
    ) -> Result<(), Error> {
        assert_eq!(run.step, done, "hooks run after the step");
        self.steps.push((done, last));
        Ok(())
    }
}

const REPORT: LoopReport<'static> = LoopReport {
    samples_per_step: 6,
    rate_key: "samples_per_second",
    rate_unit: "samples/s",
    curves: &["loss"],
    title: "toy run",
};

fn options(out: &Path, steps: u64, resume: bool) -> LoopOptions {
    LoopOptions {
        out: out.to_path_buf(),
        steps,
        checkpoint_every: 2,
        keep: 2,
        resume,
        progress: false,
    }
}

fn clean() -> impl FnMut(u64) -> Result<bool, Error> + Send + 'static {
    |_| Ok(false)
}

fn bits(losses: &[f64]) -> Vec<u64> {
    losses.iter().map(|l| l.to_bits()).collect()
}

#[test]
fn a_stopped_and_resumed_run_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let straight_dir = tmp.path().join("straight");
    let mut seen = Seen::default();
    let straight = run_loop(
        &mut Run::fresh(7),
        clean(),
        &dev,
        &options(&straight_dir, 6, false),
        &REPORT,
        &mut seen,
    )
    .unwrap();
    assert_eq!((straight.start_step, straight.end_step), (0, 6));
    assert_eq!(seen.resumed_at, Some(None));
    let want: Vec<(u64, bool)> = (1..=6).map(|d| (d, d == 6)).collect();
    assert_eq!(seen.steps, want);
    assert!(straight.samples_per_second > 0.0);

    // 3 steps (checkpoints after 2 and after the last), then a run from another seed that
    // resumes from the newest checkpoint
    let out = tmp.path().join("resumed");
    let mut first = Run::fresh(7);
    let a = run_loop(
        &mut first,
        clean(),
        &dev,
        &options(&out, 3, false),
        &REPORT,
        &mut (),
    )
    .unwrap();
    let mut seen = Seen::default();
    let mut second = Run::fresh(99);
    let b = run_loop(
        &mut second,
        clean(),
        &dev,
        &options(&out, 6, true),
        &REPORT,
        &mut seen,
    )
    .unwrap();
    assert_eq!((b.start_step, b.end_step), (3, 6));
    assert_eq!(seen.resumed_at, Some(Some(3)));
    assert_eq!(seen.steps, [(4, false), (5, false), (6, true)]);
    let resumed: Vec<f64> = a.losses.iter().chain(&b.losses).copied().collect();
    assert_eq!(bits(&resumed), bits(&straight.losses));
    assert!(straight.losses.windows(2).any(|w| w[0] != w[1]));

    // one log record per step, across the resume, with the loss and the throughput
    let records = read_jsonl(&out.join("steps.jsonl")).unwrap();
    let steps: Vec<u64> = records.iter().map(|r| r.step).collect();
    assert_eq!(steps, [0, 1, 2, 3, 4, 5]);
    assert!(records
        .iter()
        .all(|r| r.values.contains_key("samples_per_second")));
    for f in [
        "config.json",
        "steps.csv",
        "loss_curve.png",
        "loss_curve.svg",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let ckdir = CheckpointDir::new(out.join("checkpoints"), 2).unwrap();
    assert_eq!(
        ckdir.steps().unwrap(),
        [4, 6],
        "every 2 steps and the last, 2 kept"
    );
}

#[test]
fn a_nan_step_ends_the_run_with_the_last_checkpoint_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let out: PathBuf = tmp.path().join("run");
    let mut seen = Seen::default();
    let err = run_loop(
        &mut Run::fresh(3),
        |step| Ok(step == 3),
        &Device::Cpu,
        &options(&out, 6, false),
        &REPORT,
        &mut seen,
    )
    .unwrap_err();
    assert!(matches!(err, Error::NonFinite { step: 3, .. }), "{err}");
    assert_eq!(seen.steps, [(1, false), (2, false), (3, false)]);
    let ckdir = CheckpointDir::new(out.join("checkpoints"), 2).unwrap();
    assert_eq!(ckdir.latest_step().unwrap(), Some(2));
    let resumed = ckdir.load_latest(&Device::Cpu).unwrap().unwrap();
    assert_eq!(resumed.state.step, 2);
}

#[test]
fn a_zero_checkpoint_interval_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let opts = LoopOptions {
        checkpoint_every: 0,
        ..options(&out, 4, false)
    };
    let mut seen = Seen::default();
    let err = run_loop(
        &mut Run::fresh(3),
        clean(),
        &Device::Cpu,
        &opts,
        &REPORT,
        &mut seen,
    )
    .unwrap_err();
    assert!(err.to_string().contains("checkpoint_every is 0"), "{err}");
    assert!(seen.steps.is_empty() && !out.exists());
}
