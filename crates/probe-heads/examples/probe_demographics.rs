//! The RAD-DINO demographics protocol: frozen features → logistic regression, 5-fold
//! cross-validation with folds grouped by patient (C tuned on the next fold), out-of-fold
//! scores over every image, AUROC with a patient-level bootstrap CI.
//!
//! Tasks: sex on cxr-mini (243 images, 71 patients) and on cxr-findings (536 patients), and
//! age in 5 equal-count bins on cxr-findings (one-vs-rest AUROC per bin, macro over bins).
//! Encoders: an HF-layout DINOv2 dir or a DaViT / MI2 folder (default
//! `models/cxr-dino-vit-tiny`), a seeded random
//! ViT-tiny, and raw 32x32 pixels.
//!
//! `cargo run --release -p probe-heads --example probe_demographics`
//! Expect a few minutes on 2 cores (feature extraction dominates; features are cached).
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use clap::Parser;
use cxr_core::ranges::at_least_one;
use cxr_core::Encoder;
use cxr_data::{Manifest, ManifestSpec};
use metrics::bootstrap::{group_rows, paired_bootstrap, BootstrapConfig, Resampling};
use probe_heads::demographics::{cross_validated_logreg, grouped_kfold, quantile_bins};
use probe_heads::eval::evaluate;
use probe_heads::extract::{extract_cached, ExtractConfig};
use probe_heads::logreg::default_c_grid;
use probe_heads::pixel::PatchMeanEncoder;
use probe_heads::results::{to_markdown, write_tables, ResultRow};
use probe_heads::{macro_auroc, Matrix, Targets};
use vit_backbone::{encoder_kind, open_encoder, Dinov2Config, Dinov2Model};

/// Out-of-fold scores of each encoder: `[data set][task] -> [(encoder, scores)]`.
type OutOfFold = Vec<Vec<Vec<(String, Vec<f64>)>>>;

#[derive(Parser, Debug)]
#[command(
    about = "RAD-DINO's demographics protocol (sex; age in 5 bins) with patient-grouped 5-fold CV",
    long_about = "Frozen features of each encoder are probed with an L2 logistic regression in \
5-fold cross-validation whose folds never split a patient (fold f is scored by a model trained \
on the other folds with C picked on fold f+1). The out-of-fold scores of every image give one \
AUROC per task, with a 95% CI from a bootstrap over patients. Tasks: sex on cxr-mini and \
cxr-findings; age binned into 5 equal-count classes on cxr-findings."
)]
struct Args {
    /// Encoder folder (HF DINOv2, DaViT or MI2); default models/cxr-dino-vit-tiny if present.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The cxr-mini pack.
    #[arg(long, default_value = "../shared/data/cxr-mini")]
    mini: PathBuf,
    /// The cxr-findings pack.
    #[arg(long, default_value = "../shared/data/cxr-findings")]
    findings: PathBuf,
    /// Feature cache dir (shared with probe_findings).
    #[arg(long, default_value = "target/probe-cache")]
    cache: PathBuf,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5, value_parser = at_least_one::<usize>)]
    folds: usize,
    /// Age bins.
    #[arg(long, default_value_t = 5, value_parser = at_least_one::<usize>)]
    age_bins: usize,
    /// Seed of the patient-to-fold assignment.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 500, value_parser = at_least_one::<usize>)]
    bootstrap: usize,
    /// Output stem for <stem>.md / <stem>.csv.
    #[arg(long, default_value = "target/probe_demographics")]
    out: PathBuf,
}

/// One data set's rows, with its tasks.
struct Dataset {
    name: &'static str,
    manifest: Manifest,
    tasks: Vec<(String, Targets)>,
}

fn meta<'a>(m: &'a Manifest, i: usize, key: &str) -> anyhow::Result<&'a str> {
    m.records[i]
        .meta
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{}: no `{key}` column", m.records[i].image.display()))
}

fn sex_targets(m: &Manifest) -> anyhow::Result<Targets> {
    let y = (0..m.records.len())
        .map(|i| match meta(m, i, "sex")? {
            "f" => Ok(Some(true)),
            "m" => Ok(Some(false)),
            _ => Ok(None),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Targets::MultiLabel {
        names: vec!["female".into()],
        y,
    })
}

fn age_targets(m: &Manifest, bins: usize) -> anyhow::Result<Targets> {
    let ages = (0..m.records.len())
        .map(|i| {
            let age = meta(m, i, "age")?;
            age.parse::<f64>().with_context(|| {
                format!(
                    "{}: age {age:?} is not a number",
                    m.records[i].image.display()
                )
            })
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let (edges, y) = quantile_bins(&ages, bins)?;
    let mut lo = "min".to_string();
    let mut names = Vec::new();
    for e in edges
        .iter()
        .map(|e| format!("{e:.0}"))
        .chain(["max".into()])
    {
        names.push(format!("age {lo}-{e}"));
        lo = e;
    }
    Ok(Targets::MultiClass { names, y })
}

fn encoders(model: Option<&Path>) -> anyhow::Result<Vec<(String, Box<dyn Encoder>)>> {
    let mut out: Vec<(String, Box<dyn Encoder>)> = Vec::new();
    let default = PathBuf::from("models/cxr-dino-vit-tiny");
    if let Some(dir) = model
        .map(Path::to_path_buf)
        .or(default.exists().then_some(default))
    {
        out.push((
            format!("{} {}", encoder_kind(&dir)?, dir.display()),
            open_encoder(&dir, DType::F32, &Device::Cpu)?,
        ));
    }
    let cfg = Dinov2Config::vit_tiny(224);
    let vm = candle_nn::VarMap::new();
    Dinov2Model::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    let random = train_utils::init::hf_vit_reinit(&vm, 0, &Device::Cpu)?;
    out.push((
        "ViT-tiny/14 random init (seed 0)".into(),
        Box::new(Dinov2Model::new(
            &cfg,
            VarBuilder::from_tensors(random, DType::F32, &Device::Cpu),
        )?),
    ));
    out.push((
        "raw pixels 32x32".into(),
        Box::new(PatchMeanEncoder::new(224, 7)?),
    ));
    Ok(out)
}

/// Paired patient-level bootstrap of the AUROC difference of every encoder against the
/// random-init ViT on the same out-of-fold predictions: does the protocol tell them apart?
fn paired_differences(
    datasets: &[Dataset],
    oof: &OutOfFold,
    boot: &BootstrapConfig,
) -> anyhow::Result<String> {
    let mut md = String::from(
        "| task | encoder A | encoder B (random init) | AUROC A − B | 95% CI | P(A ≤ B) |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for (ds, per_task) in datasets.iter().zip(oof) {
        let groups: Vec<&str> = ds
            .manifest
            .records
            .iter()
            .map(|r| r.patient.as_str())
            .collect();
        let clusters = group_rows(&groups);
        for ((task, y), runs) in ds.tasks.iter().zip(per_task) {
            let Some((b_name, b)) = runs.iter().find(|(n, _)| n.contains("random init")) else {
                continue;
            };
            let k = y.width();
            let auc = |s: &[f64], rows: &[usize]| -> metrics::Result<f64> {
                let sel: Vec<f64> = rows
                    .iter()
                    .flat_map(|&i| s[i * k..(i + 1) * k].iter().copied())
                    .collect();
                // NaN marks a resample with one class only; the bootstrap skips it
                Ok(macro_auroc(&y.select(rows), &sel).unwrap_or(f64::NAN))
            };
            for (a_name, a) in runs.iter().filter(|(n, _)| n != b_name) {
                let p = paired_bootstrap(
                    Resampling::Groups(&clusters),
                    boot,
                    |r| auc(a, r),
                    |r| auc(b, r),
                )?;
                let (lo, hi) = p.difference.ci.unwrap_or((f64::NAN, f64::NAN));
                md.push_str(&format!(
                    "| {}/{task} | {a_name} | {b_name} | {:+.3} | [{lo:+.3}, {hi:+.3}] | {:.3} |\n",
                    ds.name,
                    p.difference.estimate.unwrap_or(f64::NAN),
                    p.fraction_a_not_better.unwrap_or(f64::NAN),
                ));
            }
        }
    }
    Ok(md)
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let args = Args::parse();
    let t0 = std::time::Instant::now();
    let mini = Manifest::from_csv(args.mini.join("labels.csv"), &ManifestSpec::cxr_mini())?;
    let findings = Manifest::from_csv(
        args.findings.join("labels.csv"),
        &ManifestSpec::cxr_findings(),
    )?;
    let datasets = vec![
        Dataset {
            name: "cxr-mini",
            tasks: vec![("sex".into(), sex_targets(&mini)?)],
            manifest: mini,
        },
        Dataset {
            name: "cxr-findings",
            tasks: vec![
                ("sex".into(), sex_targets(&findings)?),
                (
                    format!("age ({} bins)", args.age_bins),
                    age_targets(&findings, args.age_bins)?,
                ),
            ],
            manifest: findings,
        },
    ];
    let boot = BootstrapConfig {
        n_resamples: args.bootstrap,
        ..Default::default()
    };
    let ecfg = ExtractConfig::default();
    let mut rows = Vec::new();
    // out-of-fold scores per (data set, task): (encoder, scores)
    let mut oof: OutOfFold = datasets
        .iter()
        .map(|d| vec![Vec::new(); d.tasks.len()])
        .collect();
    for (name, enc) in encoders(args.model.as_deref())? {
        let tag: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        for (d, ds) in datasets.iter().enumerate() {
            let m = &ds.manifest;
            let all: Vec<usize> = (0..m.records.len()).collect();
            let groups: Vec<String> = m.records.iter().map(|r| r.patient.clone()).collect();
            let folds = grouped_kfold(&groups, args.folds, args.seed)?;
            let cache = args
                .cache
                .join(format!("{tag}_{}_all.safetensors", ds.name));
            let (f, hit) = extract_cached(enc.as_ref(), &tag, m, &all, &cache, &ecfg)?;
            let x: Matrix = if name.starts_with("raw") {
                f.cls
            } else {
                f.cls_and_patch_mean()?
            };
            eprintln!(
                "{name} on {}: {} x {} features{} ({:.0?})",
                ds.name,
                x.rows,
                x.cols,
                if hit { " (cached)" } else { "" },
                t0.elapsed()
            );
            for (t, (task, y)) in ds.tasks.iter().enumerate() {
                let scores = cross_validated_logreg(&x, y, &folds, &default_c_grid())?;
                oof[d][t].push((name.clone(), scores.clone()));
                let res = evaluate(y, &scores, &groups, &boot)?;
                // one binary column: its AUROC; several classes: the macro row
                let r = if y.width() == 1 {
                    &res[0]
                } else {
                    &res[res.len() - 1]
                };
                let Some(v) = r.auroc.estimate else { continue };
                rows.push(ResultRow {
                    encoder: name.clone(),
                    task: format!("{}/{task}", ds.name),
                    probe: format!("logreg, {}-fold grouped CV", args.folds),
                    metric: if y.width() == 1 {
                        "AUROC".into()
                    } else {
                        "macro AUROC (one-vs-rest)".into()
                    },
                    value: v,
                    ci: r.auroc.ci,
                    std: None,
                    n: r.n,
                    seeds: 1,
                });
            }
        }
    }
    write_tables(&rows, &args.out)?;
    println!("{}", to_markdown(&rows));
    println!("{}", paired_differences(&datasets, &oof, &boot)?);
    eprintln!(
        "wrote {}.md/.csv in {:.0?}",
        args.out.display(),
        t0.elapsed()
    );
    Ok(())
}
