//! Curated vs random vs full data at matched compute (the same steps and batch size), with
//! paired bootstrap intervals of the differences and the label make-up of the selections.
//!
//! - `full`: every pool image.
//! - `random`: the first `budget` images of the study's nested order.
//! - `curated`: a static, one-shot [`crate::curation::select`] on embeddings of the pool by
//!   the shared initial encoder.
//! - `active` (optional): every `every` steps the pool is re-embedded by the current teacher,
//!   re-clustered and re-drawn (seed + round); the loop only sees a new sampler.
//!
//! Selections are written to the cell directories (`selection.json`,
//! `selection-<round>.json`) and reused on resume.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use dino_pretrain::{export, run, DinoTrainer, MultiCropSource, RunOptions};
use metrics::bootstrap::{paired_bootstrap, BootstrapConfig, PairedInterval, Resampling};
use serde::Serialize;
use vit_backbone::Dinov2Model;

use crate::curation::{select, CurationConfig, SubsetSampler};
use crate::study::cell::{
    evaluate, initial_checkpoint, run_cell, CellData, CellState, PretrainSpec, MEAN, STD,
};
use crate::study::cell_dir;
use crate::study::pool::{embed_images, Pool};
use crate::study::tasks::EvalTask;
use crate::{Error, Result};

/// Settings of the comparison.
#[derive(Debug, Clone)]
pub struct CurationSpec {
    /// Images selected by the curated and random arms.
    pub budget: usize,
    /// Weighting.
    pub curation: CurationConfig,
    /// Re-select every this many steps (active arm); `None`: no active arm.
    pub active_every: Option<u64>,
    /// Seed of the random arm's order (the study's nested order).
    pub subset_seed: u64,
    /// Bootstrap of the paired differences.
    pub bootstrap: BootstrapConfig,
}

/// One difference `A − B` of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Task.
    pub task: String,
    /// Arms compared.
    pub a: String,
    /// Baseline arm.
    pub b: String,
    /// Paired patient-clustered bootstrap.
    pub interval: PairedInterval,
}

/// Positive rate of a label in the pool and in a selection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelShare {
    /// Label.
    pub label: String,
    /// Positives / labelled images in the pool.
    pub pool: f64,
    /// Positive rate per arm (`(arm, rate)`).
    pub selected: Vec<(String, f64)>,
}

fn read_selection(p: &Path) -> Result<Option<Vec<usize>>> {
    if !p.is_file() {
        return Ok(None);
    }
    let t = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    serde_json::from_str(&t)
        .map(Some)
        .map_err(|e| Error::io(p, e))
}

fn write_selection(p: &Path, idx: &[usize]) -> Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let b = serde_json::to_vec(idx).map_err(|e| Error::io(p, e))?;
    Ok(train_utils::write_atomic(p, &b)?)
}

fn embed_teacher(
    trainer: &DinoTrainer,
    spec: &PretrainSpec,
    dir: &Path,
    pool: &Pool,
    device: &Device,
) -> Result<(Vec<f64>, usize)> {
    let pre = export::preprocessor_json(spec.config.crops.global_crops_size, MEAN, STD);
    export::write_hf_dir(
        dir,
        trainer.model_config(),
        &trainer.teacher_backbone_tensors(),
        DType::F32,
        &pre,
    )?;
    let enc = Dinov2Model::from_dir(dir, DType::F32, device)?;
    embed_images(&enc, &pool.images, 32)
}

fn fresh_trainer(root: &Path, spec: &PretrainSpec, device: &Device) -> Result<DinoTrainer> {
    let init = initial_checkpoint(root, spec, device)?;
    let mut t = DinoTrainer::new(spec.config.clone(), &spec.init, device)?;
    let ck = init
        .load_latest(device)?
        .ok_or_else(|| Error::io(init.path(), "initial checkpoint vanished"))?;
    t.restore(&ck)?;
    Ok(t)
}

/// The static curated selection (embedding by the initial encoder), cached in `path`.
pub fn static_selection(
    root: &Path,
    spec: &PretrainSpec,
    pool: &Pool,
    cur: &CurationSpec,
    path: &Path,
    device: &Device,
) -> Result<Vec<usize>> {
    if let Some(s) = read_selection(path)? {
        return Ok(s);
    }
    let t = fresh_trainer(root, spec, device)?;
    let dir = root
        .join("init")
        .join(&spec.config.student.arch)
        .join("encoder");
    let (x, dim) = embed_teacher(&t, spec, &dir, pool, device)?;
    let s = select(&x, dim, cur.budget, &cur.curation, None)?.indices;
    write_selection(path, &s)?;
    Ok(s)
}

/// The active arm: pretraining in rounds of `every` steps, each on a fresh selection by the
/// current teacher; then evaluation. Resumable (selections and checkpoints are on disk).
fn run_active(
    dir: &Path,
    root: &Path,
    spec: &PretrainSpec,
    pool: &Pool,
    cur: &CurationSpec,
    tasks: &[Box<dyn EvalTask>],
    device: &Device,
) -> Result<CellState> {
    if let Some(s) = CellState::load(dir)? {
        return Ok(s);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let t0 = Instant::now();
    let mut trainer = fresh_trainer(root, spec, device)?;
    let m = trainer.model_config().clone();
    let base = MultiCropSource::new(pool.images.clone(), &spec.config, m.patch_size, MEAN, STD)?;
    let every = cur.active_every.unwrap_or(spec.steps).max(1);
    let rounds = spec.steps.div_ceil(every);
    let mut union: Vec<usize> = Vec::new();
    for r in 0..rounds {
        let path = dir.join(format!("selection-{r}.json"));
        let sel = match read_selection(&path)? {
            Some(s) => s,
            None => {
                // the teacher at the round's start: resume brings the trainer there
                let opts = RunOptions {
                    out: dir.join("pretrain"),
                    steps: r * every,
                    checkpoint_every: every,
                    keep: 1,
                    resume: true,
                    progress: false,
                };
                if r > 0 {
                    run(&mut trainer, &base, device, &opts)?;
                }
                let (x, dim) =
                    embed_teacher(&trainer, spec, &dir.join("round-encoder"), pool, device)?;
                let cfg = CurationConfig {
                    seed: cur.curation.seed.wrapping_add(r),
                    ..cur.curation.clone()
                };
                let s = select(&x, dim, cur.budget, &cfg, None)?.indices;
                write_selection(&path, &s)?;
                s
            }
        };
        union.extend(&sel);
        let source = base
            .clone()
            .with_sampler(SubsetSampler::new(sel, spec.config.train.seed)?.shared());
        run(
            &mut trainer,
            &source,
            device,
            &RunOptions {
                out: dir.join("pretrain"),
                steps: ((r + 1) * every).min(spec.steps),
                checkpoint_every: every,
                keep: 1,
                resume: true,
                progress: spec.progress,
            },
        )?;
    }
    union.sort_unstable();
    union.dedup();
    let enc = dir.join("encoder");
    let pre = export::preprocessor_json(spec.config.crops.global_crops_size, MEAN, STD);
    let tensors = trainer.teacher_backbone_tensors();
    let params = tensors.values().map(|t| t.elem_count()).sum();
    export::write_hf_dir(&enc, &m, &tensors, DType::F32, &pre)?;
    let secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let results = evaluate(&enc, tasks, device)?;
    let state = CellState {
        arch: spec.config.student.arch.clone(),
        params,
        arm: "active".into(),
        n_images: union.len(),
        steps: spec.steps,
        batch_size: spec.config.train.batch_size_per_gpu,
        seconds: (secs, t1.elapsed().as_secs_f64()),
        results,
    };
    state.save(dir)?;
    Ok(state)
}

/// What the comparison produced.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The arms' cells.
    pub cells: Vec<CellState>,
    /// Differences with paired intervals.
    pub differences: Vec<Difference>,
    /// Label make-up of the selections.
    pub labels: Vec<LabelShare>,
    /// `curation.md` path.
    pub table: PathBuf,
}

/// Runs (or resumes) the arms and writes `out/curation.md`.
pub fn run_comparison(
    out: &Path,
    spec: &PretrainSpec,
    pool: &Pool,
    cur: &CurationSpec,
    tasks: &[Box<dyn EvalTask>],
    device: &Device,
    log: &mut dyn FnMut(&str),
) -> Result<Comparison> {
    if cur.budget == 0 || cur.budget > pool.len() {
        return Err(Error::invalid(
            "curation",
            format!("budget {} for a pool of {}", cur.budget, pool.len()),
        ));
    }
    let arch = spec.config.student.arch.clone();
    let images = pool.images.clone();
    let all: Vec<usize> = (0..pool.len()).collect();
    let order = cxr_data::split::nested_order(&all, cur.subset_seed, None)?;
    let random: Vec<usize> = order[..cur.budget].to_vec();
    let cdir = cell_dir(out, &arch, "curated", cur.budget);
    let curated = static_selection(out, spec, pool, cur, &cdir.join("selection.json"), device)?;
    let mut arms: Vec<(String, Vec<usize>)> = vec![
        ("full".into(), all.clone()),
        ("nested".into(), random),
        ("curated".into(), curated),
    ];
    let mut cells = Vec::new();
    for (arm, idx) in &arms {
        let dir = cell_dir(out, &arch, arm, idx.len());
        let data = CellData {
            arm: arm.clone(),
            images: images.clone(),
            sampler: SubsetSampler::new(idx.clone(), spec.config.train.seed)?.shared(),
            n_images: idx.len(),
        };
        let (s, reused) = run_cell(&dir, out, spec, &data, tasks, device)?;
        log(&format!(
            "{arm} ({} images): {}",
            idx.len(),
            if reused { "reused" } else { "ran" }
        ));
        cells.push(s);
    }
    if cur.active_every.is_some() {
        let dir = cell_dir(out, &arch, "active", cur.budget);
        let s = run_active(&dir, out, spec, pool, cur, tasks, device)?;
        log(&format!(
            "active ({} distinct images over the rounds): done",
            s.n_images
        ));
        let mut u = Vec::new();
        for r in 0.. {
            match read_selection(&dir.join(format!("selection-{r}.json")))? {
                Some(s) => u.extend(s),
                None => break,
            }
        }
        arms.push(("active".into(), u));
        cells.push(s);
    }
    // paired differences against random and full
    let mut differences = Vec::new();
    let find = |arm: &str| cells.iter().find(|c| c.arm == arm);
    for a in ["curated", "active"] {
        let Some(ca) = find(a) else { continue };
        for b in ["nested", "full"] {
            let Some(cb) = find(b) else { continue };
            for ra in &ca.results {
                let Some(rb) = cb
                    .results
                    .iter()
                    .find(|r| r.task == ra.task && r.ids == ra.ids)
                else {
                    continue;
                };
                let clusters = ra.clusters();
                let interval = paired_bootstrap(
                    Resampling::Groups(&clusters),
                    &cur.bootstrap,
                    |rows| ra.metric_on(rows),
                    |rows| rb.metric_on(rows),
                )?;
                differences.push(Difference {
                    task: ra.task.clone(),
                    a: a.into(),
                    b: b.into(),
                    interval,
                });
            }
        }
    }
    // label make-up (images whose pack has finding labels)
    let mut names: Vec<String> = pool
        .labels
        .iter()
        .flat_map(|l| l.iter().map(|(n, _)| n.clone()))
        .collect();
    names.sort();
    names.dedup();
    let rate = |idx: &[usize], name: &str| {
        let (mut pos, mut tot) = (0usize, 0usize);
        for &i in idx {
            if let Some((_, v)) = pool.labels[i].iter().find(|(n, _)| n == name) {
                tot += 1;
                pos += usize::from(*v);
            }
        }
        if tot == 0 {
            f64::NAN
        } else {
            pos as f64 / tot as f64
        }
    };
    let labels: Vec<LabelShare> = names
        .iter()
        .map(|n| LabelShare {
            label: n.clone(),
            pool: rate(&all, n),
            selected: arms
                .iter()
                .filter(|(a, _)| a != "full")
                .map(|(a, idx)| (a.clone(), rate(idx, n)))
                .collect(),
        })
        .collect();
    let table = out.join("curation.md");
    train_utils::write_atomic(
        &table,
        markdown(&cells, &differences, &labels, &arms, pool).as_bytes(),
    )?;
    Ok(Comparison {
        cells,
        differences,
        labels,
        table,
    })
}

fn ci(c: Option<(f64, f64)>) -> String {
    c.map_or("-".into(), |(a, b)| format!("[{a:+.3}, {b:+.3}]"))
}

fn markdown(
    cells: &[CellState],
    diffs: &[Difference],
    labels: &[LabelShare],
    arms: &[(String, Vec<usize>)],
    pool: &Pool,
) -> String {
    let mut s = String::from("| arm | distinct images | steps × batch | task | metric | value |\n|---|---|---|---|---|---|\n");
    for c in cells {
        for r in &c.results {
            let _ = writeln!(
                s,
                "| {} | {} | {} × {} | {} | {} | {:.3} |",
                if c.arm == "nested" { "random" } else { &c.arm },
                c.n_images,
                c.steps,
                c.batch_size,
                r.task,
                r.metric,
                r.metric().unwrap_or(f64::NAN)
            );
        }
    }
    s.push_str("\n| task | A − B | difference | 95% CI (paired, patient-clustered) | P(A ≤ B) |\n|---|---|---|---|---|\n");
    for d in diffs {
        let b = if d.b == "nested" { "random" } else { &d.b };
        let _ = writeln!(
            s,
            "| {} | {} − {} | {:+.3} | {} | {} |",
            d.task,
            d.a,
            b,
            d.interval.difference.estimate.unwrap_or(f64::NAN),
            ci(d.interval.difference.ci),
            d.interval
                .fraction_a_not_better
                .map_or("-".into(), |p| format!("{p:.2}"))
        );
    }
    let cols: Vec<&str> = arms
        .iter()
        .filter(|(a, _)| a != "full")
        .map(|(a, _)| if a == "nested" { "random" } else { a.as_str() })
        .collect();
    let _ = writeln!(s, "\nPositive rate per finding among selected images that carry finding labels (pool: {} images):\n", pool.len());
    let _ = writeln!(s, "| finding | pool | {} |", cols.join(" | "));
    let _ = writeln!(s, "|---|---|{}", "---|".repeat(cols.len()));
    for l in labels {
        let v: Vec<String> = l.selected.iter().map(|(_, r)| format!("{r:.3}")).collect();
        let _ = writeln!(s, "| {} | {:.3} | {} |", l.label, l.pool, v.join(" | "));
    }
    s
}
