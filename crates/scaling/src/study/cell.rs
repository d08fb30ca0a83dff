//! One cell of a study: continual DINOv2 pretraining of one encoder on one selection of
//! the pool for a fixed number of steps, its export, and its evaluation. A cell's JSON
//! state is written atomically once it is complete; an interrupted cell resumes from its
//! newest pretraining checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device};
use cxr_data::{ImageSource, IndexSampler};
use dino_loss::DinoV2Config;
use dino_pretrain::{export, run, DinoTrainer, Init, MultiCropSource, RunOptions};
use serde::{Deserialize, Serialize};
use train_utils::{write_atomic, CheckpointDir};
use vit_backbone::Dinov2Model;

use crate::study::tasks::{EvalTask, TaskResult};
use crate::{Error, Result};

/// RAD-DINO's pixel statistics (crops and the exported preprocessing).
pub const MEAN: [f32; 3] = [0.5307; 3];
/// RAD-DINO's pixel standard deviation.
pub const STD: [f32; 3] = [0.2583; 3];

/// The finished state of a cell, `cell.json` in its directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellState {
    /// Model-size label (the student arch, e.g. `vit_tiny`).
    pub arch: String,
    /// Backbone parameter count.
    pub params: usize,
    /// Arm of the study, e.g. `nested`, `random`, `curated`, `full`.
    pub arm: String,
    /// Distinct pool images the cell trained on.
    pub n_images: usize,
    /// Pretraining steps (the fixed budget).
    pub steps: u64,
    /// Images per step.
    pub batch_size: usize,
    /// Seconds of pretraining (this process's share after a resume) and of evaluation.
    pub seconds: (f64, f64),
    /// Every task's results.
    pub results: Vec<TaskResult>,
}

impl CellState {
    /// Reads `dir/cell.json` if it exists.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let p = dir.join("cell.json");
        if !p.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::io(&p, e))
    }

    /// Writes `dir/cell.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let p = dir.join("cell.json");
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::io(&p, e))?;
        Ok(write_atomic(&p, &text)?)
    }
}

/// Everything that defines how cells are trained.
#[derive(Debug, Clone)]
pub struct PretrainSpec {
    /// The DINOv2 configuration (arch, crops, optimiser, batch size, seed).
    pub config: DinoV2Config,
    /// Where the student starts (`Random` is drawn once per arch and shared by all cells).
    pub init: Init,
    /// Steps per cell (fixed compute: every cell sees `steps × batch` images).
    pub steps: u64,
    /// Pretraining checkpoint interval.
    pub checkpoint_every: u64,
    /// Show progress bars.
    pub progress: bool,
}

/// The shared starting checkpoint of every cell of `spec`'s arch, under `root/init/<arch>`;
/// created on first use so that every cell (and every resume) starts from the same weights,
/// heads and optimizer state.
pub fn initial_checkpoint(
    root: &Path,
    spec: &PretrainSpec,
    device: &Device,
) -> Result<CheckpointDir> {
    let dir = CheckpointDir::new(root.join("init").join(&spec.config.student.arch), 1)?;
    if dir.latest_step()?.is_none() {
        let t = DinoTrainer::new(spec.config.clone(), &spec.init, device)?;
        let (tensors, state) = t.checkpoint()?;
        dir.save(&tensors, &state)?;
    }
    Ok(dir)
}

/// What a cell is trained on.
#[derive(Debug, Clone)]
pub struct CellData {
    /// Arm label.
    pub arm: String,
    /// Pool images.
    pub images: Arc<dyn ImageSource>,
    /// Which of them, epoch by epoch.
    pub sampler: Arc<dyn IndexSampler>,
    /// Distinct images the sampler draws from.
    pub n_images: usize,
}

/// Pretrains (resuming if `dir/pretrain` has checkpoints), exports the teacher to
/// `dir/encoder` and returns it with the trainer's backbone size.
pub fn pretrain(
    dir: &Path,
    root: &Path,
    spec: &PretrainSpec,
    data: &CellData,
    device: &Device,
) -> Result<(PathBuf, usize, f64)> {
    let t0 = Instant::now();
    let init = initial_checkpoint(root, spec, device)?;
    let mut trainer = DinoTrainer::new(spec.config.clone(), &spec.init, device)?;
    let ck = init
        .load_latest(device)?
        .ok_or_else(|| Error::io(init.path(), "initial checkpoint vanished"))?;
    trainer.restore(&ck)?;
    let m = trainer.model_config().clone();
    let source = MultiCropSource::new(data.images.clone(), &spec.config, m.patch_size, MEAN, STD)?
        .with_sampler(data.sampler.clone());
    run(
        &mut trainer,
        &source,
        device,
        &RunOptions {
            out: dir.join("pretrain"),
            steps: spec.steps,
            checkpoint_every: spec.checkpoint_every,
            keep: 1,
            resume: true,
            progress: spec.progress,
        },
    )?;
    let enc = dir.join("encoder");
    let pre = export::preprocessor_json(spec.config.crops.global_crops_size, MEAN, STD);
    let tensors = trainer.teacher_backbone_tensors();
    let params = tensors.values().map(|t| t.elem_count()).sum();
    export::write_hf_dir(&enc, &m, &tensors, DType::F32, &pre)?;
    Ok((enc, params, t0.elapsed().as_secs_f64()))
}

/// Runs every task on the encoder in `encoder_dir`.
pub fn evaluate(
    encoder_dir: &Path,
    tasks: &[Box<dyn EvalTask>],
    device: &Device,
) -> Result<Vec<TaskResult>> {
    let enc = Dinov2Model::from_dir(encoder_dir, DType::F32, device)?;
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.evaluate(&enc)?);
    }
    Ok(out)
}

/// A whole cell: reuse `dir/cell.json` when present, else pretrain (resumably), evaluate and
/// write it.
pub fn run_cell(
    dir: &Path,
    root: &Path,
    spec: &PretrainSpec,
    data: &CellData,
    tasks: &[Box<dyn EvalTask>],
    device: &Device,
) -> Result<(CellState, bool)> {
    if let Some(s) = CellState::load(dir)? {
        if s.steps == spec.steps
            && s.arch == spec.config.student.arch
            && s.n_images == data.n_images
        {
            return Ok((s, true));
        }
        return Err(Error::invalid(
            "study resume",
            format!(
                "{} holds a cell of {} images, {} steps, {}; this study asks for {} images, {} steps, {}: use another --out",
                dir.display(), s.n_images, s.steps, s.arch, data.n_images, spec.steps, spec.config.student.arch
            ),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (enc, params, secs) = pretrain(dir, root, spec, data, device)?;
    let t1 = Instant::now();
    let results = evaluate(&enc, tasks, device)?;
    let state = CellState {
        arch: spec.config.student.arch.clone(),
        params,
        arm: data.arm.clone(),
        n_images: data.n_images,
        steps: spec.steps,
        batch_size: spec.config.train.batch_size_per_gpu,
        seconds: (secs, t1.elapsed().as_secs_f64()),
        results,
    };
    state.save(dir)?;
    Ok((state, false))
}
