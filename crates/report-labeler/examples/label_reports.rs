//! Labels radiology reports with the 14 CheXpert observations.
//!
//! ```text
//! cargo run --release --example label_reports -- \
//!     --in crates/report-labeler/tests/data/sample_reports.txt --out labels.csv
//! ```
//!
//! The input holds one report per blank-line-separated block. The output CSV has a header
//! `report,No Finding,Enlarged Cardiomediastinum,...,Support Devices` and one row per
//! report: its 0-based index, then 1 (positive), 0 (negative), -1 (uncertain) or blank (not
//! mentioned) per observation. A summary of counts per observation is printed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use report_labeler::reports::read_reports;
use report_labeler::{Label, Labeler, LabelerConfig, Observation, ReportLabels};

/// Label chest X-ray reports with the 14 CheXpert observations (1 / 0 / -1 / blank).
///
/// Rule-based: mention phrases, negation ("no", "without", "has resolved", ...) and
/// uncertainty ("may", "cannot exclude", "versus", "likely", ...) cues, and CheXpert's
/// aggregation (positive > uncertain > negative; No Finding = 1 when nothing but support
/// devices is positive or uncertain). See the report-labeler crate docs for every rule.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Text file of reports, one per block; blocks are separated by blank lines.
    #[arg(long = "in", value_name = "REPORTS.txt")]
    input: PathBuf,
    /// Where to write the labels CSV (header of the 14 names; first column = report index).
    #[arg(long, value_name = "LABELS.csv")]
    out: PathBuf,
    /// Also label request sections (INDICATION:, HISTORY:, COMPARISON:, TECHNIQUE:, ...),
    /// which are skipped by default.
    #[arg(long)]
    keep_all_sections: bool,
}

fn write_csv(path: &PathBuf, labels: &[ReportLabels]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    let mut header = vec!["report"];
    header.extend(Observation::ALL.iter().map(|o| o.name()));
    w.write_record(&header)?;
    for (i, l) in labels.iter().enumerate() {
        let mut row = vec![i.to_string()];
        row.extend(Observation::ALL.iter().map(|&o| l.cell(o).to_string()));
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let reports = match read_reports(&args.input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let labeler = Labeler::with_config(LabelerConfig {
        skip_sections: !args.keep_all_sections,
    });
    let start = std::time::Instant::now();
    let labels = labeler.label_all(&reports);
    let elapsed = start.elapsed();
    if let Err(e) = write_csv(&args.out, &labels) {
        eprintln!("error: {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "labelled {} reports from {} in {:.1} ms → {}",
        reports.len(),
        args.input.display(),
        elapsed.as_secs_f64() * 1e3,
        args.out.display()
    );
    println!(
        "{:<28} {:>6} {:>6} {:>6} {:>6}",
        "observation", "1", "0", "-1", "blank"
    );
    for o in Observation::ALL {
        let count = |want: Option<Label>| labels.iter().filter(|l| l.get(o) == want).count();
        println!(
            "{:<28} {:>6} {:>6} {:>6} {:>6}",
            o.name(),
            count(Some(Label::Positive)),
            count(Some(Label::Negative)),
            count(Some(Label::Uncertain)),
            count(None)
        );
    }
    ExitCode::SUCCESS
}
