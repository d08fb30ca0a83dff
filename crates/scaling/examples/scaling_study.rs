//! A data-scaling study (and a curation comparison) in one command.
//!
//! ```text
//! cargo run --release -p scaling --example scaling_study -- --out runs/scaling
//! ```
//! Continually pretrains a ViT with DINOv2 on nested subsets of the packs' train splits, every
//! subset for the same number of steps, evaluates each checkpoint with frozen-feature probes
//! (cxr-findings) and linear-head lung segmentation (cxr-mini), fits `metric(n) = a − b·n^(−c)`
//! per task with bootstrap refits, and writes `results.md/.csv`, `results.fits.json`,
//! `scaling.png/.svg` and `curation.md` into `--out`. Rerunning with the same `--out`
//! reuses finished cells and resumes an interrupted one.
use std::path::PathBuf;

use candle_core::Device;
use clap::Parser;
use cxr_core::ranges::at_least_one;
use dino_loss::DinoV2Config;
use dino_pretrain::Init;
use metrics::bootstrap::BootstrapConfig;
use scaling::curation::CurationConfig;
use scaling::study::cell::PretrainSpec;
use scaling::study::compare::{run_comparison, CurationSpec};
use scaling::study::pool::Pool;
use scaling::study::tasks::{EvalTask, LungSegTask, ProbeTask};
use scaling::study::{run_study, StudySpec};

#[derive(Parser, Debug)]
#[command(
    about = "Data-scaling study of DINOv2 continual pretraining on chest X-rays, with power-law fits and prototype-driven curation",
    long_about = "For every --archs model size and every --sizes subset (nested: each subset contains the \
smaller ones), pretrain the shared initial encoder for exactly --steps steps of --batch images (fixed \
compute), export the teacher, and evaluate it: logistic-regression probes of the --labels findings on \
cxr-findings (test AUROC) and a linear lung-segmentation head on cxr-mini (test Dice). Intervals are 95% \
patient-clustered bootstraps; the power law metric(n) = a - b*n^(-c) is fitted per task and refitted on \
every bootstrap resample of the evaluation samples, which gives the exponent's interval and the \
extrapolation band. With --budget-fraction > 0, also trains curated (prototype-weighted), random and full \
arms at the same compute and reports paired differences and the selections' label make-up. \
Everything lives under --out and a rerun resumes."
)]
struct Args {
    /// Output (study) directory; rerun with the same directory to resume.
    #[arg(long)]
    out: PathBuf,
    /// Pack directories whose train splits form the pretraining pool (repeatable).
    /// Default: cxr-mini and cxr-findings from the shared data folder.
    #[arg(long, conflicts_with = "shards")]
    data: Vec<PathBuf>,
    /// Instead of --data: folders of tar shards (cxr-data's write_shards; repeatable) whose
    /// `train` samples form the pool.
    #[arg(long)]
    shards: Vec<PathBuf>,
    /// The cxr-findings pack used by the probe task (default: shared data folder).
    #[arg(long)]
    findings: Option<PathBuf>,
    /// The cxr-mini pack used by the lung-segmentation task (default: shared data folder).
    #[arg(long)]
    mini: Option<PathBuf>,
    /// Nested subset sizes (distinct images), comma-separated, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [48usize, 96, 192, 384],
        value_parser = at_least_one::<usize>
    )]
    sizes: Vec<usize>,
    /// Student archs (model-size axis), comma-separated: vit_tiny, vit_small, vit_base, ...
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("vit_tiny")])]
    archs: Vec<String>,
    /// DINOv2 TOML config the cells start from (crops, heads, optimiser); the options below
    /// override it.
    #[arg(long, default_value = "crates/dino-pretrain/configs/vit_tiny_cxr.toml")]
    config: PathBuf,
    /// Global crop size in pixels (a multiple of the patch size 14); local crops are half.
    #[arg(long, default_value_t = 56, value_parser = at_least_one::<usize>)]
    crop: usize,
    /// Pretraining steps per cell (the fixed compute budget).
    #[arg(long, default_value_t = 24, value_parser = at_least_one::<u64>)]
    steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = 16, value_parser = at_least_one::<usize>)]
    batch: usize,
    /// Where students start: `random` (one seeded draw per arch, shared by its cells) or a
    /// Hugging Face Dinov2 directory.
    #[arg(long, default_value = "random")]
    init: String,
    /// Finding columns of cxr-findings to probe.
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("effusion"), String::from("cardiomegaly")])]
    labels: Vec<String>,
    /// Epochs of the linear segmentation head.
    #[arg(long, default_value_t = 40, value_parser = at_least_one::<usize>)]
    seg_epochs: usize,
    /// Bootstrap resamples (intervals and refits).
    #[arg(long, default_value_t = 500, value_parser = at_least_one::<usize>)]
    bootstrap: usize,
    /// Sizes to extrapolate the fitted curves to, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [3_000.0f64, 30_000.0])]
    extrapolate: Vec<f64>,
    /// Curated/random budget as a fraction of the pool (0 skips the curation comparison).
    #[arg(long, default_value_t = 0.25, value_parser = fraction)]
    budget_fraction: f64,
    /// Prototypes (k-means clusters) of the curation.
    #[arg(long, default_value_t = 8, value_parser = at_least_one::<usize>)]
    prototypes: usize,
    /// Active curation: re-embed, re-cluster and re-draw every this many steps (0: static only).
    #[arg(long, default_value_t = 0)]
    active_every: u64,
    /// Seed of the subsets, the curation draws and the DINOv2 run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Hide the per-cell progress bars.
    #[arg(long)]
    quiet: bool,
}

/// A number in [0, 1] (NaN used to fail the `> 0` test and silently skip the comparison).
fn fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not a fraction in [0, 1]"))
    }
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let a = Args::parse();
    let data = cxr_testkit::shared_dir().join("data");
    let findings = a
        .findings
        .clone()
        .unwrap_or_else(|| data.join("cxr-findings"));
    let mini = a.mini.clone().unwrap_or_else(|| data.join("cxr-mini"));
    let packs = if a.data.is_empty() {
        vec![mini.clone(), findings.clone()]
    } else {
        a.data.clone()
    };
    let pool = if a.shards.is_empty() {
        Pool::from_packs(&packs)?
    } else {
        Pool::from_shards(&a.shards)?
    };
    println!(
        "pool: {} train images from {} {}",
        pool.len(),
        pool.packs.len(),
        if a.shards.is_empty() {
            "pack(s)"
        } else {
            "shard folder(s)"
        }
    );
    let base = DinoV2Config::from_toml_file(&a.config)?;
    let archs: Vec<PretrainSpec> = a
        .archs
        .iter()
        .map(|arch| {
            let mut c = base.clone();
            c.student.arch = arch.clone();
            c.crops.global_crops_size = a.crop;
            c.crops.local_crops_size = a.crop / 2;
            c.train.batch_size_per_gpu = a.batch;
            c.train.seed = a.seed;
            // schedules (warm-up, teacher momentum, last-layer freeze) span the cell's steps
            c.train.official_epoch_length = a.steps.div_ceil(c.optim.epochs.max(1) as u64) as usize;
            PretrainSpec {
                config: c,
                init: Init::parse(&a.init),
                steps: a.steps,
                checkpoint_every: (a.steps / 4).max(1),
                progress: !a.quiet,
            }
        })
        .collect();
    let tasks: Vec<Box<dyn EvalTask>> = vec![
        Box::new(ProbeTask {
            data: findings.clone(),
            labels: a.labels.clone(),
        }),
        Box::new(LungSegTask::new(&mini, a.seg_epochs)),
    ];
    let boot = BootstrapConfig {
        n_resamples: a.bootstrap,
        seed: a.seed,
        confidence: 0.95,
    };
    let spec = StudySpec {
        out: a.out.clone(),
        sizes: a.sizes.clone(),
        archs: archs.clone(),
        subset_seed: a.seed,
        bootstrap: boot,
        extrapolate_to: a.extrapolate.clone(),
    };
    let device = Device::Cpu;
    let t0 = std::time::Instant::now();
    let out = run_study(&spec, &pool, &tasks, &device, &mut |l| println!("{l}"))?;
    println!(
        "{} cells ({} reused) in {:.0} s\ntables: {} / .csv / .fits.json\nfigure: {} / .svg",
        out.cells.len(),
        out.reused,
        t0.elapsed().as_secs_f64(),
        out.tables.with_extension("md").display(),
        out.figure.with_extension("png").display()
    );
    for f in &out.fits {
        println!(
            "{} {}: a {:.3}, b {:.3}, c {:.3} (95% CI {})",
            f.arch,
            f.task,
            f.fit.law.a,
            f.fit.law.b,
            f.fit.law.c,
            f.c_ci
                .map_or("-".into(), |(l, h)| format!("[{l:.2}, {h:.2}]"))
        );
    }
    if a.budget_fraction > 0.0 {
        let budget =
            ((pool.len() as f64 * a.budget_fraction).round() as usize).clamp(1, pool.len());
        let cur = CurationSpec {
            budget,
            curation: CurationConfig {
                prototypes: a.prototypes,
                seed: a.seed,
                ..Default::default()
            },
            active_every: (a.active_every > 0).then_some(a.active_every),
            subset_seed: a.seed,
            bootstrap: boot,
        };
        let c = run_comparison(&a.out, &archs[0], &pool, &cur, &tasks, &device, &mut |l| {
            println!("{l}")
        })?;
        for d in &c.differences {
            println!(
                "{} {} − {}: {:+.3} {}",
                d.task,
                d.a,
                if d.b == "nested" { "random" } else { &d.b },
                d.interval.difference.estimate.unwrap_or(f64::NAN),
                d.interval
                    .difference
                    .ci
                    .map_or("-".into(), |(l, h)| format!("[{l:+.3}, {h:+.3}]"))
            );
        }
        println!("curation table: {}", c.table.display());
    }
    Ok(())
}
