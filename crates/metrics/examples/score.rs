//! Scores predictions against labels: AUROC, AUPRC and F1@threshold per label, macro and
//! micro, optionally with (patient-clustered) percentile-bootstrap 95% CIs.
//!
//! ```text
//! cargo run --release --example score -- --labels y_true.csv --scores y_score.csv \
//!     --out metrics.json [--bootstrap 500 --seed 0] [--groups groups.csv]
//! ```
//!
//! Both CSVs have a header row of label names and one row per sample (labels 0/1, blank =
//! missing and skipped for that label). The JSON looks like
//! `{"auroc": {"Effusion": 0.81, ..., "macro": 0.77, "micro": 0.79}, "auprc": {...},
//! "f1@0.5": {...}, "n_samples": 536, "ci95": {"auroc": {"Effusion": [0.74, 0.87], ...}}}`;
//! `null` marks a value that is undefined (e.g. a label with one class only).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cxr_core::ranges::at_least_one;
use metrics::bootstrap::BootstrapConfig;
use metrics::table::{score_files, write_json, ScoreOptions};

/// Score a label CSV against a score CSV (AUROC, AUPRC, F1) with optional bootstrap CIs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Labels CSV: header of label names, one row per sample, 0/1, blank = missing.
    #[arg(long)]
    labels: PathBuf,
    /// Scores CSV with a column for every label (matched by name), same rows.
    #[arg(long)]
    scores: PathBuf,
    /// Where to write the JSON report.
    #[arg(long)]
    out: PathBuf,
    /// Number of bootstrap resamples for 95% percentile CIs (none when absent).
    #[arg(long, value_parser = at_least_one::<usize>)]
    bootstrap: Option<usize>,
    /// Bootstrap RNG seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Optional CSV (header row, first column = group id, e.g. patient id, one row per
    /// sample) for a clustered bootstrap that resamples whole groups.
    #[arg(long)]
    groups: Option<PathBuf>,
    /// Threshold for F1 (score >= threshold is positive).
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = ScoreOptions {
        threshold: args.threshold,
        bootstrap: args.bootstrap.map(|n_resamples| BootstrapConfig {
            n_resamples,
            seed: args.seed,
            ..BootstrapConfig::default()
        }),
    };
    let report = match score_files(&args.labels, &args.scores, args.groups.as_deref(), &options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = write_json(&args.out, &report) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let f1_key = format!("f1@{}", args.threshold);
    for key in ["auroc", "auprc", f1_key.as_str()] {
        let macro_ = &report[key]["macro"];
        let ci = report
            .get("ci95")
            .map(|c| format!(" 95% CI {}", c[key]["macro"]))
            .unwrap_or_default();
        println!("{key:>8} macro = {macro_}{ci}");
    }
    println!("wrote {}", args.out.display());
    ExitCode::SUCCESS
}
