//! Timing of the DINOv2 training step on one synthetic multi-crop batch.
//!
//! [`time_train_steps`] builds a randomly initialised [`DinoTrainer`] for a standard
//! architecture, makes one [`MultiCropBatch`] of seeded random pixels with dinov2-style iBOT
//! masks, and times `steps` calls of [`DinoTrainer::train_step`] after `warmup` untimed ones.
//! The device is synchronised before every clock read, so on CUDA a step's time includes
//! all its kernels. `crates/dino-pretrain/benches/dino_step_torch.py` is the PyTorch
//! counterpart of the same step (same shapes, heads, losses, clipping, AdamW and EMA).
//!
//! The default is dinov2's ViT-B/14 recipe at one GPU's batch: two 224-px global crops and
//! eight local crops of 98 px (dinov2 uses 96 with patch 16; local crops must be a multiple
//! of the patch size 14 here, so 98 = 7 × 14), `K = 65536` prototypes on a shared DINO/iBOT
//! head (`ibot.separate_head = false`), the Sinkhorn-Knopp teacher of dinov2's training
//! configs, iBOT and KoLeo on, gradients clipped at 3.0 per sub-model. The schedules are
//! those of a step after the warm-up (no lr warm-up, last layer not frozen), so every
//! parameter really moves.

use std::time::Instant;

use candle_core::{Device, Tensor};
use cxr_data::masking::{ibot_masks, MaskingGenerator};
use dino_loss::DinoV2Config;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{DinoTrainer, Error, Init, MultiCropBatch, Result};

/// What to time: the model, the crops, the batch and how many steps.
#[derive(Debug, Clone, PartialEq)]
pub struct StepBenchOptions {
    /// Backbone: `vit_tiny`, `vit_small`, `vit_base`, `vit_large` (see [`crate::backbone_config`]).
    pub arch: String,
    /// Patch size (14).
    pub patch_size: usize,
    /// Global crop size (224; a multiple of `patch_size`).
    pub global_size: usize,
    /// Local crop size (98; a multiple of `patch_size`).
    pub local_size: usize,
    /// Local crops per image (8).
    pub n_local: usize,
    /// Images per step (each gives 2 global and `n_local` local crops).
    pub batch_size: usize,
    /// Prototypes `K` of the DINO head (shared with iBOT), 65536.
    pub prototypes: usize,
    /// Hidden width of the head's MLP (2048).
    pub head_hidden_dim: usize,
    /// Bottleneck width of the head (256).
    pub head_bottleneck_dim: usize,
    /// `sinkhorn_knopp` (default) or `centering`.
    pub centering: String,
    /// Untimed steps first (kernel selection, allocator warm-up).
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Extra steps after the timed ones, timed phase by phase (0: none).
    pub phase_steps: usize,
    /// Seed of the pixels, masks and stochastic depth (the weights come from candle's own
    /// random initialisers).
    pub seed: u64,
    /// `train.compute_precision` of the student: `f32` or `bf16` (mixed precision).
    pub compute_precision: String,
}

impl Default for StepBenchOptions {
    fn default() -> Self {
        Self {
            arch: "vit_base".into(),
            patch_size: 14,
            global_size: 224,
            local_size: 98,
            n_local: 8,
            batch_size: 32,
            prototypes: 65536,
            head_hidden_dim: 2048,
            head_bottleneck_dim: 256,
            centering: "sinkhorn_knopp".into(),
            warmup: 3,
            steps: 10,
            phase_steps: 0,
            seed: 0,
            compute_precision: "f32".into(),
        }
    }
}

impl StepBenchOptions {
    /// The DINOv2 configuration of the timed step: dinov2's defaults with these sizes.
    pub fn config(&self) -> Result<DinoV2Config> {
        for (what, size) in [("global", self.global_size), ("local", self.local_size)] {
            if self.patch_size == 0 || size == 0 || size % self.patch_size != 0 {
                return Err(Error::Invalid(format!(
                    "{what} crop size {size} is not a positive multiple of the patch size {}",
                    self.patch_size
                )));
            }
        }
        if self.batch_size == 0 {
            return Err(Error::Invalid("batch size must be positive".into()));
        }
        let mut cfg = DinoV2Config::dinov2_default();
        cfg.student.arch = self.arch.clone();
        cfg.student.patch_size = self.patch_size;
        cfg.crops.global_crops_size = self.global_size;
        cfg.crops.local_crops_size = self.local_size;
        cfg.crops.local_crops_number = self.n_local;
        cfg.dino.head_n_prototypes = self.prototypes;
        cfg.dino.head_hidden_dim = self.head_hidden_dim;
        cfg.dino.head_bottleneck_dim = self.head_bottleneck_dim;
        cfg.ibot.separate_head = false;
        cfg.ibot.head_n_prototypes = self.prototypes;
        cfg.train.centering = self.centering.clone();
        cfg.train.batch_size_per_gpu = self.batch_size;
        cfg.train.seed = self.seed;
        cfg.train.compute_precision = self.compute_precision.clone();
        // a step past the warm-up: full lr, the prototypes train
        cfg.optim.warmup_epochs = 0;
        cfg.optim.freeze_last_layer_epochs = 0;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A randomly initialised trainer for [`Self::config`].
    pub fn trainer(&self, device: &Device) -> Result<DinoTrainer> {
        DinoTrainer::new(self.config()?, &Init::Random, device)
    }

    /// The batch every step uses: pixels uniform in `[-2, 2]` (the range of normalised
    /// crops), crop-major, and the masks dinov2's collate draws (half the global crops
    /// masked, ratios spread over `[0.1, 0.5]`, block masks). Seeds are tried in turn until
    /// at least one patch is masked (tiny grids can come out empty).
    pub fn batch(&self, device: &Device) -> Result<MultiCropBatch> {
        let cfg = self.config()?;
        let b = self.batch_size;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut pixels = |n: usize, size: usize| -> Result<Tensor> {
            let data: Vec<f32> = (0..n * 3 * size * size)
                .map(|_| rng.random_range(-2f32..2f32))
                .collect();
            Ok(Tensor::from_vec(data, (n, 3, size, size), device)?)
        };
        let global = pixels(2 * b, self.global_size)?;
        let local = if self.n_local > 0 {
            Some(pixels(self.n_local * b, self.local_size)?)
        } else {
            None
        };
        let grid = self.global_size / self.patch_size;
        let generator = MaskingGenerator::dinov2(grid);
        let ratio = (
            cfg.ibot.mask_ratio_min_max[0],
            cfg.ibot.mask_ratio_min_max[1],
        );
        let mut masks = None;
        for attempt in 0..100u64 {
            let mut mrng = ChaCha8Rng::seed_from_u64(self.seed.wrapping_add(attempt) ^ 0x6d61_736b);
            let (m, _) = ibot_masks(
                &generator,
                2 * b,
                cfg.ibot.mask_sample_probability,
                ratio,
                &mut mrng,
            )?;
            if m.iter().flatten().any(|&x| x) {
                masks = Some(m);
                break;
            }
        }
        let masks = masks.ok_or_else(|| {
            Error::Invalid(format!(
                "no iBOT mask with a masked patch on a {grid}×{grid} grid for {} global crops: \
                 use larger global crops or a larger batch",
                2 * b
            ))
        })?;
        let flat: Vec<u8> = masks.iter().flatten().map(|&m| u8::from(m)).collect();
        let masks = Tensor::from_vec(flat, (2 * b, grid * grid), device)?;
        Ok(MultiCropBatch {
            global,
            local,
            masks,
            indices: (0..b).collect(),
        })
    }
}

/// Seconds per step and what the steps computed.
#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    /// Seconds of every timed step, in order.
    pub step_seconds: Vec<f64>,
    /// Median of `step_seconds`.
    pub median_s: f64,
    /// Fastest timed step.
    pub min_s: f64,
    /// Images per second at the median step (crops not counted).
    pub images_per_second: f64,
    /// Images per step.
    pub batch_size: usize,
    /// Masked patches of the batch (rows of the iBOT head).
    pub masked_patches: usize,
    /// Trainable student parameters (backbone and heads).
    pub student_parameters: usize,
    /// Loss terms of the first step run (warm-up included), dinov2's names.
    pub first_step_losses: Vec<(String, f64)>,
    /// Total loss of the last step run.
    pub last_total_loss: f64,
    /// Median seconds of each phase (forward, backward, optimizer) over
    /// `StepBenchOptions::phase_steps` extra steps run after the timed ones with a device
    /// synchronisation at every phase end (kept apart so the synchronisations do not touch
    /// `median_s`); empty when none were asked for.
    pub phase_seconds: Vec<(String, f64)>,
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Runs `warmup` then `steps` timed training steps of `trainer` on `batch`, synchronising
/// `device` before each clock read.
pub fn time_steps(
    trainer: &mut DinoTrainer,
    batch: &MultiCropBatch,
    warmup: usize,
    steps: usize,
    device: &Device,
) -> Result<StepTiming> {
    if steps == 0 {
        return Err(Error::Invalid("at least one timed step is needed".into()));
    }
    let masked: u32 = batch
        .masks
        .to_dtype(candle_core::DType::U32)?
        .sum_all()?
        .to_scalar()?;
    let student_parameters = trainer
        .student_vars()
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    let mut first = None;
    let mut last = f64::NAN;
    let mut run = |trainer: &mut DinoTrainer| -> Result<()> {
        let out = trainer.train_step(batch)?;
        if first.is_none() {
            first = Some(
                out.losses
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), *v))
                    .collect(),
            );
        }
        last = out.total();
        Ok(())
    };
    for _ in 0..warmup {
        run(trainer)?;
    }
    device.synchronize()?;
    let mut step_seconds = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        run(trainer)?;
        device.synchronize()?;
        step_seconds.push(t.elapsed().as_secs_f64());
    }
    let median_s = median(&step_seconds);
    let batch_size = batch.global.dim(0)? / 2;
    Ok(StepTiming {
        min_s: step_seconds.iter().copied().fold(f64::INFINITY, f64::min),
        images_per_second: batch_size as f64 / median_s,
        median_s,
        step_seconds,
        batch_size,
        masked_patches: masked as usize,
        student_parameters,
        first_step_losses: first.unwrap_or_default(),
        last_total_loss: last,
        phase_seconds: Vec::new(),
    })
}

/// Median seconds of each phase of a training step (see
/// [`DinoTrainer::train_step_marked`]) over `steps` steps, synchronising `device` at every
/// phase end.
pub fn time_phases(
    trainer: &mut DinoTrainer,
    batch: &MultiCropBatch,
    steps: usize,
    device: &Device,
) -> Result<Vec<(String, f64)>> {
    let mut phases: Vec<(&'static str, Vec<f64>)> = Vec::new();
    for _ in 0..steps {
        device.synchronize()?;
        let mut t = Instant::now();
        trainer.train_step_marked(batch, |phase| {
            device.synchronize()?;
            let dt = t.elapsed().as_secs_f64();
            match phases.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, v)) => v.push(dt),
                None => phases.push((phase, vec![dt])),
            }
            t = Instant::now();
            Ok(())
        })?;
    }
    Ok(phases
        .iter()
        .map(|(p, v)| ((*p).to_string(), median(v)))
        .collect())
}

/// Builds the trainer and batch of `opts` on `device` and times its training steps (and,
/// with `opts.phase_steps`, their phases).
pub fn time_train_steps(opts: &StepBenchOptions, device: &Device) -> Result<StepTiming> {
    let mut trainer = opts.trainer(device)?;
    let batch = opts.batch(device)?;
    let mut timing = time_steps(&mut trainer, &batch, opts.warmup, opts.steps, device)?;
    if opts.phase_steps > 0 {
        timing.phase_seconds = time_phases(&mut trainer, &batch, opts.phase_steps, device)?;
    }
    Ok(timing)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
