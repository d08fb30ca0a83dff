//! The resumable scaling study.
//!
//! A study directory holds one sub-directory per cell, `cells/<arch>/<arm>-<n>/`, with the
//! cell's pretraining checkpoints, exported encoder and, once finished, its atomic
//! `cell.json` (every task's per-sample predictions). A rerun with the same settings skips
//! finished cells and resumes an unfinished one from its newest checkpoint. All cells of an
//! arch start from one shared initial checkpoint (`init/<arch>/`) and run the same number of
//! steps at the same batch size, so they see the same number of images (fixed compute) and
//! differ only in which images those are.

pub mod cell;
pub mod compare;
pub mod plot;
pub mod pool;
pub mod report;
pub mod tasks;

use std::path::{Path, PathBuf};

use candle_core::Device;
use metrics::bootstrap::BootstrapConfig;

use crate::curation::SubsetSampler;
use crate::joint::{fit_joint, JointFit};
use crate::study::cell::{run_cell, CellData, CellState, PretrainSpec};
use crate::study::pool::Pool;
use crate::study::report::{fits, rows, write_tables, CurveFit, Row};
use crate::study::tasks::EvalTask;
use crate::{Error, Result};

/// A data-scaling study (optionally across model sizes).
#[derive(Debug, Clone)]
pub struct StudySpec {
    /// Study directory.
    pub out: PathBuf,
    /// Nested subset sizes (ascending; each `≤` the pool).
    pub sizes: Vec<usize>,
    /// One pretraining spec per model size.
    pub archs: Vec<PretrainSpec>,
    /// Seed of the nested subset order.
    pub subset_seed: u64,
    /// Bootstrap of the intervals and refits.
    pub bootstrap: BootstrapConfig,
    /// Sizes the fitted curves are extrapolated to.
    pub extrapolate_to: Vec<f64>,
}

/// What a study produced.
#[derive(Debug, Clone)]
pub struct StudyOutput {
    /// Every cell, in run order.
    pub cells: Vec<CellState>,
    /// Table rows.
    pub rows: Vec<Row>,
    /// Power-law fits per (arch, task).
    pub fits: Vec<CurveFit>,
    /// Joint fits per task (with two or more archs and six or more cells).
    pub joint: Vec<(String, JointFit)>,
    /// `results.md`, `results.csv`, `results.fits.json` stem.
    pub tables: PathBuf,
    /// `scaling.png` / `scaling.svg` stem.
    pub figure: PathBuf,
    /// Cells reused from an earlier run.
    pub reused: usize,
}

/// The cell directory of `arch`, `arm` and `n` images.
pub fn cell_dir(out: &Path, arch: &str, arm: &str, n: usize) -> PathBuf {
    out.join("cells").join(arch).join(format!("{arm}-{n}"))
}

/// Runs (or resumes) the study and writes its tables and figure. `log` receives one line
/// per cell.
pub fn run_study(
    spec: &StudySpec,
    pool: &Pool,
    tasks: &[Box<dyn EvalTask>],
    device: &Device,
    log: &mut dyn FnMut(&str),
) -> Result<StudyOutput> {
    if spec.sizes.is_empty() || spec.archs.is_empty() {
        return Err(Error::invalid("study", "no subset sizes or no archs"));
    }
    if let Some(&n) = spec.sizes.iter().find(|&&n| n == 0 || n > pool.len()) {
        return Err(Error::invalid(
            "study",
            format!("subset size {n} outside 1..={} (the pool)", pool.len()),
        ));
    }
    let all: Vec<usize> = (0..pool.len()).collect();
    let order = cxr_data::split::nested_order(&all, spec.subset_seed, None)?;
    let images = pool.images.clone();
    let mut cells = Vec::new();
    let mut reused = 0;
    for arch in &spec.archs {
        for &n in &spec.sizes {
            let name = &arch.config.student.arch;
            let dir = cell_dir(&spec.out, name, "nested", n);
            let data = CellData {
                arm: "nested".into(),
                images: images.clone(),
                sampler: SubsetSampler::new(order[..n].to_vec(), arch.config.train.seed)?.shared(),
                n_images: n,
            };
            let (state, was_reused) = run_cell(&dir, &spec.out, arch, &data, tasks, device)?;
            reused += usize::from(was_reused);
            let summary: Vec<String> = state
                .results
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {:.3}",
                        r.task,
                        r.metric,
                        r.metric().unwrap_or(f64::NAN)
                    )
                })
                .collect();
            log(&format!(
                "{name} n={n}: {} ({}; pretrain {:.0} s, eval {:.0} s)",
                summary.join(", "),
                if was_reused { "reused" } else { "ran" },
                state.seconds.0,
                state.seconds.1
            ));
            cells.push(state);
        }
    }
    let rows = rows(&cells, &spec.bootstrap)?;
    let fits = fits(&cells, "nested", &spec.bootstrap, &spec.extrapolate_to)?;
    let joint = joint_fits(&cells)?;
    let tables = spec.out.join("results");
    write_tables(&tables, &rows, &fits)?;
    if !joint.is_empty() {
        let mut md = std::fs::read_to_string(tables.with_extension("md"))
            .map_err(|e| Error::io(&tables, e))?;
        md.push_str("\n| task | joint law on 1 − metric: E + A·N^(−α) + B·D^(−β) |\n|---|---|\n");
        for (t, f) in &joint {
            let l = &f.law;
            md.push_str(&format!(
                "| {t} | E {:.3}, A {:.3}, α {:.3}, B {:.3}, β {:.3} (RSS {:.2e}) |\n",
                l.e, l.a, l.alpha, l.b, l.beta, f.rss
            ));
        }
        train_utils::write_atomic(&tables.with_extension("md"), md.as_bytes())?;
    }
    let figure = spec.out.join("scaling");
    let x_max = spec
        .extrapolate_to
        .iter()
        .copied()
        .fold(pool.len() as f64, f64::max);
    plot::plot_study(&figure, &rows, &fits, "nested", x_max)?;
    Ok(StudyOutput {
        cells,
        rows,
        fits,
        joint,
        tables,
        figure,
        reused,
    })
}

/// Chinchilla-form fits of `1 − metric` per task over (params, images), where the cells span
/// at least two archs and six points.
pub fn joint_fits(cells: &[CellState]) -> Result<Vec<(String, JointFit)>> {
    let mut tasks: Vec<String> = cells
        .iter()
        .flat_map(|c| c.results.iter().map(|r| r.task.clone()))
        .collect();
    tasks.sort();
    tasks.dedup();
    let mut out = Vec::new();
    for t in tasks {
        let (mut n, mut d, mut l) = (vec![], vec![], vec![]);
        for c in cells.iter().filter(|c| c.arm == "nested") {
            for r in c.results.iter().filter(|r| r.task == t) {
                n.push(c.params as f64);
                d.push(c.n_images as f64);
                l.push(1.0 - r.metric()?);
            }
        }
        let mut archs = n.clone();
        archs.sort_unstable_by(f64::total_cmp);
        archs.dedup();
        if archs.len() >= 2 && n.len() >= 6 {
            if let Ok(f) = fit_joint(&n, &d, &l, (0.01, 2.0), 40) {
                out.push((t, f));
            }
        }
    }
    Ok(out)
}
