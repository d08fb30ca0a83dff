//! End-to-end check of report generation on cxr-mini (issue 10): target texts from the real
//! metadata, then ROUGE-L, BLEU-4 and CheXpert-label F1 of generated reports with
//! patient-clustered bootstrap CIs, beside a most-common-text baseline.
//!
//! ```text
//! # 1. one report-like text per image, from labels.csv (template below)
//! cargo run --release -p llava-bridge --example cxr_mini_eval -- reports \
//!     --manifest ../shared/data/cxr-mini/labels.csv --out target/cxr-mini/reports.csv
//! # 2. train + generate with the report_gen example (see its docs), then
//! cargo run --release -p llava-bridge --example cxr_mini_eval -- score \
//!     --manifest ../shared/data/cxr-mini/labels.csv --reports target/cxr-mini/reports.csv \
//!     --run "stage 1=target/cxr-mini/s1/generated-test.csv" --split test
//! ```
//!
//! # Template
//!
//! cxr-mini ships no reports, so each target text is a fixed sentence pattern filled from the
//! image's `labels.csv` row, and says nothing the metadata does not say:
//!
//! ```text
//! Frontal {AP|PA} chest radiograph of a {male|female} patient, {computed|digital}
//! radiography. The patient {was|was not} admitted to the intensive care unit during this
//! hospital stay.
//! ```
//!
//! `view` gives AP/PA, `sex` the patient's sex, `modality` CR (computed) / DX (digital)
//! radiography, `icu` the ICU sentence (patient-level in the source: "admitted during the
//! stay", not "imaged in the ICU"). `death` (an outcome, not an image property), `has_mask`
//! and `mask_complete` (annotation bookkeeping) and the image sizes are left out. No finding
//! is stated: the metadata holds none, and an ICU stay does not justify e.g. "support
//! devices". None of the template's words is a CheXpert mention, so the labeler marks every
//! reference "No Finding" positive (CheXpert's rule: no other observation positive or
//! uncertain) and nothing else. Label F1 then measures one thing: whether a generated report
//! stays free of finding mentions. Micro-F1-14 is the No-Finding F1, and macro-F1-14 can reach
//! only 1/14 = 0.071, because the other 13 observations have no positives on either side and
//! count as F1 0 (scikit-learn's `zero_division=0`). `score` also counts the generated reports
//! with a positive or uncertain finding (invented findings).
//!
//! `score` prints a markdown table: one row per `--run` plus the baseline that emits the most
//! common training text for every image.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use cxr_core::ranges::at_least_one;
use metrics::bootstrap::{group_rows, BootstrapConfig, Interval};
use report_labeler::score::report_scores_with_ci;
use report_labeler::{Label, Labeler, Observation, ReportLabels};

#[derive(Parser, Debug)]
#[command(about = "cxr-mini report generation: metadata-template targets and scoring")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write `id,report` for every image of the manifest, from the metadata template.
    Reports(ReportsArgs),
    /// Score generated CSVs (id, generated, reference) and the most-common-text baseline.
    Score(ScoreArgs),
}

#[derive(Args, Debug)]
struct ReportsArgs {
    /// cxr-mini labels.csv.
    #[arg(long)]
    manifest: PathBuf,
    /// Output CSV with columns id,report.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct ScoreArgs {
    /// cxr-mini labels.csv (patient ids and splits).
    #[arg(long)]
    manifest: PathBuf,
    /// The reports CSV written by `reports` (for the baseline's training texts).
    #[arg(long)]
    reports: PathBuf,
    /// `NAME=PATH` of a generated CSV (id, generated, reference); repeatable.
    #[arg(long)]
    run: Vec<String>,
    /// Split the generated CSVs cover.
    #[arg(long, default_value = "test")]
    split: String,
    /// Bootstrap resamples (clustered by patient).
    #[arg(long, default_value_t = 500, value_parser = at_least_one::<usize>)]
    bootstrap: usize,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// One manifest row, the fields the template and the scoring use.
struct Row {
    id: String,
    patient: String,
    split: String,
    fields: HashMap<String, String>,
}

fn read_manifest(path: &PathBuf) -> anyhow::Result<Vec<Row>> {
    let reading = || format!("reading {}", path.display());
    let mut rdr = csv::Reader::from_path(path).with_context(reading)?;
    let headers = rdr.headers().with_context(reading)?.clone();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.with_context(reading)?;
        let fields: HashMap<String, String> = headers
            .iter()
            .zip(rec.iter())
            .map(|(h, v)| (h.to_owned(), v.to_owned()))
            .collect();
        let get = |k: &str| {
            fields
                .get(k)
                .cloned()
                .ok_or_else(|| anyhow!("{}: no `{k}` column", path.display()))
        };
        rows.push(Row {
            id: get("id")?,
            patient: get("patient_id")?,
            split: get("split")?,
            fields: fields.clone(),
        });
    }
    Ok(rows)
}

/// The report-like text of one cxr-mini row (see the module docs for what each part means).
fn template(row: &Row) -> anyhow::Result<String> {
    let f = |k: &str| -> anyhow::Result<&str> {
        row.fields
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("row {}: no `{k}`", row.id))
    };
    let view = match f("view")? {
        v @ ("AP" | "PA") => v,
        v => bail!("row {}: view {v:?} is not AP/PA", row.id),
    };
    let sex = match f("sex")? {
        "m" => "male",
        "f" => "female",
        v => bail!("row {}: sex {v:?} is not m/f", row.id),
    };
    let modality = match f("modality")? {
        "CR" => "computed",
        "DX" => "digital",
        v => bail!("row {}: modality {v:?} is not CR/DX", row.id),
    };
    let icu = match f("icu")? {
        "1" => "was",
        "0" => "was not",
        v => bail!("row {}: icu {v:?} is not 0/1", row.id),
    };
    Ok(format!(
        "Frontal {view} chest radiograph of a {sex} patient, {modality} radiography. \
         The patient {icu} admitted to the intensive care unit during this hospital stay."
    ))
}

fn reports(a: &ReportsArgs) -> anyhow::Result<()> {
    let rows = read_manifest(&a.manifest)?;
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let writing = || format!("writing {}", a.out.display());
    let mut w = csv::Writer::from_path(&a.out).with_context(writing)?;
    w.write_record(["id", "report"]).with_context(writing)?;
    let mut distinct = BTreeMap::new();
    for r in &rows {
        let t = template(r)?;
        *distinct.entry(t.clone()).or_insert(0usize) += 1;
        w.write_record([&r.id, &t]).with_context(writing)?;
    }
    w.flush().with_context(writing)?;
    println!(
        "{} reports ({} distinct texts) written to {}",
        rows.len(),
        distinct.len(),
        a.out.display()
    );
    Ok(())
}

fn read_generated(path: &str) -> anyhow::Result<HashMap<String, String>> {
    let reading = || format!("reading {path}");
    let mut rdr = csv::Reader::from_path(path).with_context(reading)?;
    let headers = rdr.headers().with_context(reading)?.clone();
    let col = |n: &str| {
        headers
            .iter()
            .position(|h| h == n)
            .ok_or_else(|| anyhow!("{path}: no `{n}` column"))
    };
    let (ic, gc) = (col("id")?, col("generated")?);
    let mut out = HashMap::new();
    for rec in rdr.records() {
        let rec = rec.with_context(reading)?;
        out.insert(rec[ic].to_owned(), rec[gc].to_owned());
    }
    Ok(out)
}

fn show(i: &Interval) -> String {
    let e = i.estimate.map_or("-".into(), |e| format!("{e:.3}"));
    match i.ci {
        Some((lo, hi)) => format!("{e} [{lo:.3}, {hi:.3}]"),
        None => e,
    }
}

/// Reports with a positive or uncertain observation other than No Finding.
fn n_with_finding(labels: &[ReportLabels]) -> usize {
    labels
        .iter()
        .filter(|l| {
            Observation::ALL.iter().any(|&o| {
                o != Observation::NoFinding
                    && matches!(l.get(o), Some(Label::Positive | Label::Uncertain))
            })
        })
        .count()
}

fn score(a: &ScoreArgs) -> anyhow::Result<()> {
    let rows = read_manifest(&a.manifest)?;
    let mut texts = HashMap::new();
    {
        let reading = || format!("reading {}", a.reports.display());
        let mut rdr = csv::Reader::from_path(&a.reports).with_context(reading)?;
        for rec in rdr.records() {
            let rec = rec.with_context(reading)?;
            texts.insert(rec[0].to_owned(), rec[1].to_owned());
        }
    }
    // baseline: the most common training text (ties broken by the text, for determinism)
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.split == "train") {
        if let Some(t) = texts.get(&r.id) {
            *counts.entry(t.as_str()).or_insert(0) += 1;
        }
    }
    let (baseline, n_base) = counts
        .iter()
        .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
        .map(|(t, n)| (t.to_string(), *n))
        .context("no training report")?;
    let test: Vec<&Row> = rows.iter().filter(|r| r.split == a.split).collect();
    let reference: Vec<String> = test
        .iter()
        .map(|r| {
            texts
                .get(&r.id)
                .cloned()
                .ok_or_else(|| anyhow!("no report for {}", r.id))
        })
        .collect::<anyhow::Result<_>>()?;
    let patients: Vec<&str> = test.iter().map(|r| r.patient.as_str()).collect();
    let groups = group_rows(&patients);
    let labeler = Labeler::new();
    let ref_labels = labeler.label_all(&reference);
    let cfg = BootstrapConfig {
        n_resamples: a.bootstrap,
        seed: a.seed,
        ..BootstrapConfig::default()
    };
    let mut systems = vec![(
        "most common training text".to_owned(),
        vec![baseline.clone(); test.len()],
    )];
    for spec in &a.run {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--run {spec:?} is not NAME=PATH"))?;
        let gen = read_generated(path)?;
        let g: Vec<String> = test
            .iter()
            .map(|r| {
                gen.get(&r.id)
                    .cloned()
                    .ok_or_else(|| anyhow!("{path}: no generated report for {}", r.id))
            })
            .collect::<anyhow::Result<_>>()?;
        systems.push((name.to_owned(), g));
    }
    println!(
        "{} {} reports, {} patients; baseline text ({n_base} training images): {baseline:?}",
        test.len(),
        a.split,
        groups.len()
    );
    println!(
        "references labelled No Finding: {}; with a finding: {}",
        ref_labels
            .iter()
            .filter(|l| l.is_positive(Observation::NoFinding))
            .count(),
        n_with_finding(&ref_labels)
    );
    println!(
        "\n95% CIs: percentile bootstrap, {} resamples of patients (seed {}).\n",
        a.bootstrap, a.seed
    );
    println!("| system | ROUGE-L F | BLEU-4 | label macro-F1-14 | label micro-F1-14 | exact match | reports with a finding |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, g) in &systems {
        let s = report_scores_with_ci(g, &reference, &ref_labels, &groups, &cfg)?;
        let exact = g.iter().zip(&reference).filter(|(x, y)| x == y).count();
        let pos = n_with_finding(&labeler.label_all(g));
        println!(
            "| {name} | {} | {} | {} | {} | {exact}/{} | {pos}/{} |",
            show(&s[0]),
            show(&s[1]),
            show(&s[2]),
            show(&s[3]),
            g.len(),
            g.len()
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    match Cli::parse().cmd {
        Cmd::Reports(a) => reports(&a),
        Cmd::Score(a) => score(&a),
    }
}
