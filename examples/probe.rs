//! Probe an encoder on your own labelled chest X-rays: a CSV manifest in, test AUROC, AUPRC
//! and F1 per label with patient-level 95% bootstrap intervals out.
//!
//! ```text
//! cargo run --release --example probe                       # cxr-findings, the demo encoder
//! cargo run --release --example probe -- --manifest my/labels.csv --image-column file \
//!     --image-template '{}' --patient-column patient --labels ett,ngt,cvc \
//!     --random-split 0 --model path/to/rad-dino
//! cargo run --release --example probe -- --class-column view   # a categorical column
//! cargo run --release --example probe -- --baseline DIR         # paired against a 2nd encoder
//! ```
//!
//! The encoder is frozen: its CLS (pooled) and mean patch features are extracted once per
//! split and cached, then three probes are fitted on train (`C`, early stopping and the F1
//! thresholds are chosen on val) and scored on test. With the defaults (cxr-findings and the
//! ViT-tiny demo encoder) expect macro AUROCs around 0.55–0.6 and wide intervals: 107 test
//! patients and a small encoder trained on 465 images.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use clap::Parser;
use cxr::data::split::{column_split, patient_split, Splits};
use cxr::data::{Manifest, ManifestSpec, NIH_FINDINGS};
use cxr::metrics::bootstrap::BootstrapConfig;
use cxr::pipeline::{repo_root, shared_dir};
use cxr::vit::{cached_snapshot, encoder_kind, open_encoder};
use cxr_core::Encoder;
use probe_heads::eval::paired_macro_auroc;
use probe_heads::extract::{extract_cached, ExtractConfig};
use probe_heads::linear::LinearProbeConfig;
use probe_heads::protocol::{
    result_rows, run_probes, Probe, ProbeData, ProbeOutcome, ProtocolConfig,
};
use probe_heads::results::write_tables;
use probe_heads::{Matrix, Targets};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    about = "Probe a frozen encoder on your own labelled chest X-rays: test AUROC, AUPRC and F1 \
             per label with patient-level 95% bootstrap intervals",
    long_about = "Probe a frozen encoder on your own labelled chest X-rays.\n\n\
        The manifest is a CSV with one row per image: a column naming the image (a path relative \
        to the CSV's folder, through --image-template), a patient id, and one column per label \
        (1 = positive, 0 = negative, -1 or blank = unknown, skipped for that label), or one \
        column of categories (--class-column, e.g. view or sex: one-vs-rest per class). Patients, \
        not images, are split and resampled: no patient is in two splits, and every interval \
        resamples whole patients.\n\n\
        Features (the encoder's pooled/CLS output and its mean patch token) are extracted once \
        per split and cached in --cache. Probes: an L2 logistic regression per label with C \
        chosen on val (logreg), a linear layer trained with AdamW over seeds with early stopping \
        on val (linear, RAD-DINO's protocol), and DINO's weighted kNN with k = 20, T = 0.07 \
        (knn). F1 uses, per probe and label, the threshold that maximises F1 on val.\n\n\
        Without --manifest this runs on the cxr-findings pack (536 NIH images, 14 findings + \
        no_finding) with the demo encoder in models/."
)]
struct Args {
    /// Manifest CSV [default: shared/data/cxr-findings/labels.csv].
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Column naming each image.
    #[arg(long, default_value = "id")]
    image_column: String,
    /// Image path relative to the manifest's folder; `{}` is replaced by the image column's
    /// cell (use '{}' when the cell already is the path).
    #[arg(long, default_value = "images/{}.png")]
    image_template: String,
    /// Column holding the patient id.
    #[arg(long, default_value = "patient_id")]
    patient_column: String,
    /// Label columns, comma-separated. Required with --manifest; without it, the 14 NIH
    /// findings and no_finding of cxr-findings.
    #[arg(long, value_delimiter = ',', conflicts_with = "class_column")]
    labels: Vec<String>,
    /// Instead of --labels: one column of categories (e.g. sex, view, a device type), probed
    /// as a multi-class task (one-vs-rest AUROC, AUPRC and F1 per class). Rows where it is
    /// blank are left out.
    #[arg(long)]
    class_column: Option<String>,
    /// Column with each image's split (train/val/test), used unless --random-split is given.
    #[arg(long, default_value = "split")]
    split_column: String,
    /// Ignore any split column and split the patients at random with this seed, into the
    /// --fractions of train and val (test gets the rest).
    #[arg(long)]
    random_split: Option<u64>,
    /// Train and val fractions of the patients for --random-split.
    #[arg(long, value_delimiter = ',', default_value = "0.7,0.1")]
    fractions: Vec<f64>,
    /// Encoder folder: a Hugging Face DINOv2/RAD-DINO folder, a DaViT folder or an MI2 folder
    /// (its image tower), told apart by config.json [default: models/cxr-dino-vit-tiny].
    #[arg(long, conflicts_with = "hub")]
    model: Option<PathBuf>,
    /// A repository in the local Hugging Face cache (HF_HOME), e.g. microsoft/rad-dino or
    /// lion-ai/MedImageInsights (its image tower); nothing is downloaded.
    #[arg(long)]
    hub: Option<String>,
    /// A second encoder folder to compare with: its features get the same probes, and a
    /// paired patient-level bootstrap gives the macro-AUROC difference per probe (e.g. a
    /// continually pretrained encoder against the one it started from).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Probes to fit, comma-separated: logreg, linear, knn.
    #[arg(long, value_delimiter = ',', default_value = "logreg,linear,knn")]
    probes: Vec<String>,
    /// Seeds of the linear probe (its scores are the mean over seeds).
    #[arg(long, default_value_t = 5, value_parser = cxr_core::ranges::at_least_one::<usize>)]
    seeds: usize,
    /// AdamW learning rate of the linear probe.
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    /// Bootstrap resamples of every interval.
    #[arg(long, default_value_t = 1000, value_parser = cxr_core::ranges::at_least_one::<usize>)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per encoder call.
    #[arg(long, default_value_t = 16, value_parser = cxr_core::ranges::at_least_one::<usize>)]
    batch: usize,
    /// Feature cache folder (reused while the encoder and the images are the same).
    #[arg(long, default_value = "out/probe/cache")]
    cache: PathBuf,
    /// Output folder: results.md, results.csv, summary.json.
    #[arg(long, default_value = "out/probe")]
    out: PathBuf,
}

fn manifest_of(a: &Args) -> anyhow::Result<Manifest> {
    let (path, labels) = match (&a.manifest, a.labels.is_empty()) {
        (Some(p), true) if a.class_column.is_some() => (p.clone(), Vec::new()),
        (None, true) if a.class_column.is_some() => (
            shared_dir().join("data/cxr-findings/labels.csv"),
            Vec::new(),
        ),
        (Some(_), true) => bail!(
            "--labels (comma-separated 0/1 columns) or --class-column is required with --manifest"
        ),
        (Some(p), false) => (p.clone(), a.labels.clone()),
        (None, _) => (
            shared_dir().join("data/cxr-findings/labels.csv"),
            if a.labels.is_empty() {
                NIH_FINDINGS
                    .iter()
                    .chain(&["no_finding"])
                    .map(|s| s.to_string())
                    .collect()
            } else {
                a.labels.clone()
            },
        ),
    };
    let spec = ManifestSpec {
        path_column: a.image_column.clone(),
        path_template: a.image_template.clone(),
        patient_column: a.patient_column.clone(),
        label_columns: labels,
        split_column: a.random_split.is_none().then(|| a.split_column.clone()),
    };
    Ok(Manifest::from_csv(&path, &spec)?)
}

/// The encoder, its name in tables and its feature-cache tag.
struct Opened {
    name: String,
    tag: String,
    encoder: Box<dyn Encoder>,
}

/// Letters, digits, `-` and `.` kept, anything else `_`: a file-name-safe tag.
fn tag_of(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn open(hub: Option<&str>, model: Option<&Path>) -> anyhow::Result<Opened> {
    // the folder, and the name tables give it: the repository, or the folder's own name (a
    // cache of another model with the same name is caught by extract_cached, which re-encodes
    // the first image before reusing a cache)
    let (dir, shown) = match (hub, model) {
        (Some(repo), _) => (cached_snapshot(repo, None)?, repo.to_string()),
        (None, model) => {
            let dir = model.map_or_else(
                || repo_root().join("models/cxr-dino-vit-tiny"),
                Path::to_path_buf,
            );
            let shown = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "model".into());
            (dir, shown)
        }
    };
    let kind = encoder_kind(&dir)?;
    let encoder = open_encoder(&dir, DType::F32, &Device::Cpu)
        .with_context(|| format!("loading the encoder in {}", dir.display()))?;
    Ok(Opened {
        name: format!("{shown} ({kind})"),
        tag: tag_of(&format!("{shown}_{kind}").to_lowercase()),
        encoder,
    })
}

/// Features (CLS and mean patch token) of the train, val and test rows, cached under `cache`.
fn features(
    opened: &Opened,
    manifest: &Manifest,
    splits: &Splits,
    cache: &Path,
    batch: usize,
) -> anyhow::Result<Vec<Matrix>> {
    let ecfg = ExtractConfig {
        batch_size: batch,
        ..Default::default()
    };
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let mut out = Vec::new();
    for (name, rows) in [
        ("train", &splits.train),
        ("val", &splits.val),
        ("test", &splits.test),
    ] {
        let file = cache.join(format!("{}_{name}.safetensors", opened.tag));
        let (f, hit) = extract_cached(
            opened.encoder.as_ref(),
            &opened.tag,
            manifest,
            rows,
            &file,
            &ecfg,
        )?;
        if hit {
            println!(
                "  {}, {name}: features from {}",
                opened.name,
                file.display()
            );
        }
        out.push(f.cls_and_patch_mean()?);
    }
    Ok(out)
}

/// Prints every probe's per-label table and returns them as JSON for `summary.json`.
fn report(outcomes: &[ProbeOutcome], n_patients: usize) -> serde_json::Value {
    let mut summary = serde_json::Map::new();
    for o in outcomes {
        println!(
            "\n{} — test, 95% CI over {n_patients} patients:\n  {:<20} {:>9} {:<22} {:<22} \
             F1 @ val threshold",
            o.label, "label", "n (+)", "AUROC", "AUPRC",
        );
        let mut per_label = serde_json::Map::new();
        for (c, f) in o.columns.iter().zip(&o.f1) {
            let threshold = if f.threshold.is_nan() {
                String::new()
            } else {
                format!(
                    " @ {:.3}{}",
                    f.threshold,
                    if f.from_val { "" } else { " (no val positive)" }
                )
            };
            println!(
                "  {:<20} {:>9} {:<22} {:<22} {}{threshold}",
                c.name,
                if c.name == "macro" {
                    c.n.to_string()
                } else {
                    format!("{} ({})", c.n, c.positives)
                },
                show(&c.auroc),
                show(&c.auprc),
                show(&f.f1)
            );
            per_label.insert(
                c.name.clone(),
                json!({
                    "n": c.n, "positives": c.positives,
                    "auroc": c.auroc.estimate, "auroc_ci": c.auroc.ci,
                    "auprc": c.auprc.estimate, "auprc_ci": c.auprc.ci,
                    "f1": f.f1.estimate, "f1_ci": f.f1.ci,
                    "threshold": (!f.threshold.is_nan()).then_some(f.threshold),
                    "threshold_from_val": f.from_val,
                }),
            );
        }
        summary.insert(
            o.probe.name().to_string(),
            json!({"label": o.label, "seeds": o.seeds, "labels": per_label}),
        );
    }
    serde_json::Value::Object(summary)
}

/// The targets of manifest rows.
type TargetsOf<'m> = Box<dyn Fn(&[usize]) -> Targets + 'm>;

/// The categories of `column` (sorted) as multi-class targets, and the splits without the rows
/// where it is blank.
fn class_targets<'m>(
    manifest: &'m Manifest,
    splits: Splits,
    column: &'m str,
) -> anyhow::Result<(Splits, TargetsOf<'m>)> {
    let value = |i: usize| -> Option<&'m str> {
        manifest.records[i]
            .meta
            .get(column)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    if manifest
        .records
        .first()
        .is_some_and(|r| !r.meta.contains_key(column))
    {
        bail!(
            "{}: no column `{column}` among the non-label columns ({})",
            manifest.path.display(),
            manifest.records[0]
                .meta
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let classes: Vec<String> = (0..manifest.records.len())
        .filter_map(value)
        .map(str::to_string)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.len() < 2 {
        bail!(
            "--class-column {column} has {} distinct values; a probe needs at least 2",
            classes.len()
        );
    }
    let keep = |rows: Vec<usize>| -> Vec<usize> {
        rows.into_iter().filter(|&i| value(i).is_some()).collect()
    };
    let before = splits.train.len() + splits.val.len() + splits.test.len();
    let splits = Splits {
        train: keep(splits.train),
        val: keep(splits.val),
        test: keep(splits.test),
    };
    let dropped = before - splits.train.len() - splits.val.len() - splits.test.len();
    if dropped > 0 {
        println!("  note: {dropped} images with a blank {column} are left out");
    }
    println!("  classes of {column}: {}", classes.join(", "));
    let targets = move |rows: &[usize]| Targets::MultiClass {
        y: rows
            .iter()
            .map(|&i| {
                value(i)
                    .and_then(|v| classes.iter().position(|c| c == v))
                    .unwrap_or(0)
            })
            .collect(),
        names: classes.clone(),
    };
    Ok((splits, Box::new(targets)))
}

/// `value [lo, hi]` to three decimals, `-` where undefined.
fn show(iv: &cxr::metrics::bootstrap::Interval) -> String {
    match (iv.estimate, iv.ci) {
        (Some(v), Some((lo, hi))) => format!("{v:.3} [{lo:.3}, {hi:.3}]"),
        (Some(v), None) => format!("{v:.3}"),
        _ => "-".into(),
    }
}

fn main() -> anyhow::Result<()> {
    cxr_core::retain_freed_heap_memory();
    let a = Args::parse();
    let t0 = Instant::now();
    if a.fractions.len() != 2 {
        bail!("--fractions takes two numbers, train and val (test gets the rest)");
    }
    let probes = a
        .probes
        .iter()
        .map(|p| Probe::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = manifest_of(&a)?;
    let splits = match a.random_split {
        Some(seed) => patient_split(&manifest, seed, a.fractions[0], a.fractions[1])?,
        None => column_split(&manifest)?,
    };
    let opened = open(a.hub.as_deref(), a.model.as_deref())?;
    let baseline = a
        .baseline
        .as_deref()
        .map(|dir| open(None, Some(dir)))
        .transpose()?;
    println!(
        "{}: {} images; {} / {} / {} train / val / test; encoder {}{}",
        manifest
            .path
            .canonicalize()
            .unwrap_or_else(|_| manifest.path.clone())
            .display(),
        manifest.records.len(),
        splits.train.len(),
        splits.val.len(),
        splits.test.len(),
        opened.name,
        baseline
            .as_ref()
            .map_or(String::new(), |b| format!(", baseline {}", b.name)),
    );
    let (splits, targets) = match &a.class_column {
        Some(column) => class_targets(&manifest, splits, column)?,
        None => {
            let targets: TargetsOf = Box::new(|r: &[usize]| Targets::from_manifest(&manifest, r));
            (splits, targets)
        }
    };
    let rows = [&splits.train, &splits.val, &splits.test];
    for (name, r) in ["train", "val", "test"].iter().zip(rows) {
        if r.is_empty() {
            bail!("the {name} split of {} is empty", manifest.path.display());
        }
    }
    let (ytr, yva, yte) = (
        targets(&splits.train),
        targets(&splits.val),
        targets(&splits.test),
    );
    for (j, name) in ytr.names().iter().enumerate() {
        let pos = |y: &Targets| y.column(j).into_iter().flatten().filter(|&t| t).count();
        let (ptr, pva, pte) = (pos(&ytr), pos(&yva), pos(&yte));
        if ptr == 0 || pte == 0 || pva == 0 {
            println!(
                "  note: {name} has {ptr} / {pva} / {pte} train / val / test positives; \
                 {}",
                if pte == 0 {
                    "its test metrics are undefined"
                } else {
                    "its probes are fitted or tuned without positives"
                }
            );
        }
    }
    let patients: Vec<String> = splits
        .test
        .iter()
        .map(|&i| manifest.records[i].patient.clone())
        .collect();
    let n_patients = patients
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let cfg = ProtocolConfig {
        probes,
        seeds: a.seeds,
        linear: LinearProbeConfig {
            lr: a.lr,
            ..Default::default()
        },
        bootstrap: BootstrapConfig {
            n_resamples: a.bootstrap,
            seed: a.seed,
            ..Default::default()
        },
        ..Default::default()
    };
    // every encoder's features get the same probes on the same rows
    let probe_encoder = |opened: &Opened| -> anyhow::Result<(usize, Vec<ProbeOutcome>)> {
        let feats = features(opened, &manifest, &splits, &a.cache, a.batch)?;
        println!(
            "{}: {} features per image; fitting {} probe(s)",
            opened.name,
            feats[0].cols,
            cfg.probes.len()
        );
        let data = ProbeData::new(
            [&feats[0], &feats[1], &feats[2]],
            [&ytr, &yva, &yte],
            &patients,
        );
        Ok((feats[0].cols, run_probes(&data, &cfg)?))
    };
    let (width, outcomes) = probe_encoder(&opened)?;
    let summary = report(&outcomes, n_patients);
    let task = manifest
        .path
        .parent()
        .and_then(Path::file_name)
        .map_or("data".into(), |n| n.to_string_lossy().into_owned());
    let mut table = result_rows(&opened.name, &task, &outcomes);
    let mut comparison = serde_json::Value::Null;
    if let Some(base) = &baseline {
        println!("\nbaseline {}:", base.name);
        let (_, base_outcomes) = probe_encoder(base)?;
        let base_summary = report(&base_outcomes, n_patients);
        table.extend(result_rows(&base.name, &task, &base_outcomes));
        println!(
            "\npaired patient-level bootstrap ({} resamples), test macro AUROC, A = {}, B = {}:\n  \
             {:<28} {:>7} {:>7} {:<26} resamples with A - B <= 0",
            a.bootstrap, opened.name, base.name, "probe", "A", "B", "A - B (95% CI)"
        );
        let mut paired = serde_json::Map::new();
        for (o, b) in outcomes.iter().zip(&base_outcomes) {
            let p = paired_macro_auroc(
                &yte,
                &o.test_scores,
                &b.test_scores,
                &patients,
                &cfg.bootstrap,
            )?;
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
            let d = &p.difference;
            println!(
                "  {:<28} {:>7} {:>7} {:<26} {}",
                o.label,
                f(p.a.estimate),
                f(p.b.estimate),
                format!(
                    "{} {}",
                    d.estimate.map_or("-".into(), |v| format!("{v:+.3}")),
                    d.ci.map_or(String::new(), |(lo, hi)| format!("[{lo:+.3}, {hi:+.3}]"))
                ),
                p.fraction_a_not_better
                    .map_or("-".into(), |v| format!("{:.1}%", 100.0 * v)),
            );
            paired.insert(
                o.probe.name().to_string(),
                json!({
                    "a": p.a.estimate, "b": p.b.estimate,
                    "difference": d.estimate, "difference_ci": d.ci,
                    "fraction_a_not_better": p.fraction_a_not_better,
                }),
            );
        }
        comparison =
            json!({"baseline": base.name, "probes": base_summary, "paired_macro_auroc": paired});
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    write_tables(&table, &a.out.join("results"))?;
    let file = a.out.join("summary.json");
    let doc = json!({
        "manifest": manifest.path, "encoder": opened.name,
        "splits": {"train": splits.train.len(), "val": splits.val.len(), "test": splits.test.len()},
        "split": a.random_split.map_or(json!({"column": a.split_column}), |s| json!({"seed": s, "fractions": a.fractions})),
        "features": width, "bootstrap": a.bootstrap, "seed": a.seed,
        "probes": summary,
        "baseline": comparison,
    });
    std::fs::write(&file, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", file.display()))?;
    println!(
        "\nwritten: {}, {} and {} ({:.0} s)",
        a.out.join("results.md").display(),
        a.out.join("results.csv").display(),
        file.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
