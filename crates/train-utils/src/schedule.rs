//! dinov2's schedules (`CosineScheduler` in `dinov2/utils/utils.py`, `build_schedulers` in
//! `dinov2/train/train.py`).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A precomputed schedule: `freeze_iters` zeros, a linear warm-up from `start_warmup_value`
/// to `base_value` over `warmup_iters` (both ends included, as `np.linspace`), then a cosine
/// from `base_value` to `final_value`; `final_value` from `total_iters` on.
#[derive(Debug, Clone, PartialEq)]
pub struct CosineSchedule {
    values: Vec<f64>,
    final_value: f64,
}

fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (n - 1) as f64;
            let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
            v[n - 1] = stop;
            v
        }
    }
}

impl CosineSchedule {
    /// dinov2's `CosineScheduler(base_value, final_value, total_iters, warmup_iters,
    /// start_warmup_value, freeze_iters)`.
    pub fn new(
        base_value: f64,
        final_value: f64,
        total_iters: usize,
        warmup_iters: usize,
        start_warmup_value: f64,
        freeze_iters: usize,
    ) -> Result<Self> {
        if warmup_iters + freeze_iters > total_iters {
            return Err(Error::Config(format!(
                "schedule: warm-up ({warmup_iters}) + freeze ({freeze_iters}) iterations exceed \
                 the total ({total_iters})"
            )));
        }
        let mut values = vec![0.0; freeze_iters];
        values.extend(linspace(start_warmup_value, base_value, warmup_iters));
        let n = total_iters - warmup_iters - freeze_iters;
        values.extend((0..n).map(|i| {
            final_value
                + 0.5
                    * (base_value - final_value)
                    * (1.0 + (std::f64::consts::PI * i as f64 / n as f64).cos())
        }));
        Ok(Self {
            values,
            final_value,
        })
    }

    /// A constant schedule.
    pub fn constant(value: f64) -> Self {
        Self {
            values: Vec::new(),
            final_value: value,
        }
    }

    /// The same schedule with its first `n` values set to zero (dinov2's last-layer lr while
    /// the last layer is frozen).
    pub fn with_zero_prefix(mut self, n: usize) -> Self {
        let n = n.min(self.values.len());
        self.values[..n].iter_mut().for_each(|v| *v = 0.0);
        self
    }

    /// The value at iteration `it`.
    pub fn at(&self, it: usize) -> f64 {
        self.values.get(it).copied().unwrap_or(self.final_value)
    }

    /// Number of scheduled iterations (after them, the final value).
    pub fn total_iters(&self) -> usize {
        self.values.len()
    }
}

/// The schedule settings of dinov2's config (`optim`, `teacher` sections), in epochs of
/// `epoch_len` iterations (`train.OFFICIAL_EPOCH_LENGTH`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DinoScheduleConfig {
    /// Iterations per epoch.
    pub epoch_len: usize,
    /// Training epochs.
    pub epochs: usize,
    /// Peak learning rate (after warm-up; dinov2 scales `base_lr` by `sqrt(batch / 1024)`).
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Learning-rate warm-up epochs.
    pub warmup_epochs: usize,
    /// Initial weight decay.
    pub weight_decay: f64,
    /// Final weight decay.
    pub weight_decay_end: f64,
    /// Initial teacher EMA momentum.
    pub momentum_teacher: f64,
    /// Final teacher EMA momentum.
    pub final_momentum_teacher: f64,
    /// Teacher temperature after warm-up.
    pub teacher_temp: f64,
    /// Teacher temperature at the start of the warm-up.
    pub warmup_teacher_temp: f64,
    /// Teacher-temperature warm-up epochs.
    pub warmup_teacher_temp_epochs: usize,
    /// Epochs during which the last layer's lr is 0.
    pub freeze_last_layer_epochs: usize,
}

impl Default for DinoScheduleConfig {
    /// dinov2's `ssl_default_config.yaml` values (lr after scaling for a batch of 1024).
    fn default() -> Self {
        Self {
            epoch_len: 1250,
            epochs: 100,
            lr: 0.004,
            min_lr: 1e-6,
            warmup_epochs: 10,
            weight_decay: 0.04,
            weight_decay_end: 0.4,
            momentum_teacher: 0.992,
            final_momentum_teacher: 1.0,
            teacher_temp: 0.07,
            warmup_teacher_temp: 0.04,
            warmup_teacher_temp_epochs: 30,
            freeze_last_layer_epochs: 1,
        }
    }
}

/// The values of every schedule at one iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleValues {
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub wd: f64,
    /// Teacher EMA momentum.
    pub momentum: f64,
    /// Teacher temperature.
    pub teacher_temp: f64,
    /// Last-layer learning rate.
    pub last_layer_lr: f64,
}

/// dinov2's five schedules. They are pure functions of the iteration, so the schedule
/// position in a checkpoint is the step number.
#[derive(Debug, Clone)]
pub struct DinoSchedules {
    /// Learning rate: warm-up + cosine.
    pub lr: CosineSchedule,
    /// Weight decay: cosine.
    pub wd: CosineSchedule,
    /// Teacher momentum: cosine.
    pub momentum: CosineSchedule,
    /// Teacher temperature: linear warm-up then constant.
    pub teacher_temp: CosineSchedule,
    /// Last-layer lr: the lr schedule, zero while frozen.
    pub last_layer_lr: CosineSchedule,
}

impl DinoSchedules {
    /// Builds the schedules as `build_schedulers` does.
    pub fn new(c: &DinoScheduleConfig) -> Result<Self> {
        let total = c.epochs * c.epoch_len;
        let lr = CosineSchedule::new(c.lr, c.min_lr, total, c.warmup_epochs * c.epoch_len, 0.0, 0)?;
        let tt_iters = c.warmup_teacher_temp_epochs * c.epoch_len;
        Ok(Self {
            last_layer_lr: lr
                .clone()
                .with_zero_prefix(c.freeze_last_layer_epochs * c.epoch_len),
            lr,
            wd: CosineSchedule::new(c.weight_decay, c.weight_decay_end, total, 0, 0.0, 0)?,
            momentum: CosineSchedule::new(
                c.momentum_teacher,
                c.final_momentum_teacher,
                total,
                0,
                0.0,
                0,
            )?,
            teacher_temp: CosineSchedule::new(
                c.teacher_temp,
                c.teacher_temp,
                tt_iters,
                tt_iters,
                c.warmup_teacher_temp,
                0,
            )?,
        })
    }

    /// Every schedule at iteration `it`.
    pub fn at(&self, it: usize) -> ScheduleValues {
        ScheduleValues {
            lr: self.lr.at(it),
            wd: self.wd.at(it),
            momentum: self.momentum.at(it),
            teacher_temp: self.teacher_temp.at(it),
            last_layer_lr: self.last_layer_lr.at(it),
        }
    }
}
