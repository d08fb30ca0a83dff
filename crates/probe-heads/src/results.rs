//! Results tables: one row per (encoder, task, probe, metric), as markdown and CSV.

use std::fmt::Write as _;
use std::path::Path;

use crate::{Error, Result};

/// One reported number.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// Which features (encoder) were probed.
    pub encoder: String,
    /// Task, e.g. `cxr-findings/effusion`.
    pub task: String,
    /// Probe, e.g. `logreg`, `linear (AdamW)`, `knn k=20`.
    pub probe: String,
    /// Metric name, e.g. `AUROC`.
    pub metric: String,
    /// Point estimate (the mean over seeds where there are several).
    pub value: f64,
    /// 95% bootstrap CI, if computed.
    pub ci: Option<(f64, f64)>,
    /// Standard deviation over seeds, if several.
    pub std: Option<f64>,
    /// Test samples.
    pub n: usize,
    /// Seeds (1 for deterministic probes).
    pub seeds: usize,
}

fn ci_text(ci: Option<(f64, f64)>) -> String {
    ci.map_or(String::new(), |(a, b)| format!("[{a:.3}, {b:.3}]"))
}

/// A markdown table of `rows`.
pub fn to_markdown(rows: &[ResultRow]) -> String {
    let mut s = String::from(
        "| encoder | task | probe | metric | value | 95% CI | n | seeds |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let value = match r.std {
            Some(sd) => format!("{:.3} ± {sd:.3}", r.value),
            None => format!("{:.3}", r.value),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {value} | {} | {} | {} |",
            r.encoder,
            r.task,
            r.probe,
            r.metric,
            ci_text(r.ci),
            r.n,
            r.seeds
        );
    }
    s
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV of `rows` with header `encoder,task,probe,metric,value,std,ci_lo,ci_hi,n,seeds`.
pub fn to_csv(rows: &[ResultRow]) -> String {
    let mut s = String::from("encoder,task,probe,metric,value,std,ci_lo,ci_hi,n,seeds\n");
    for r in rows {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{}",
            csv_cell(&r.encoder),
            csv_cell(&r.task),
            csv_cell(&r.probe),
            csv_cell(&r.metric),
            r.value,
            opt(r.std),
            opt(r.ci.map(|c| c.0)),
            opt(r.ci.map(|c| c.1)),
            r.n,
            r.seeds
        );
    }
    s
}

/// Writes `<stem>.md` and `<stem>.csv`.
pub fn write_tables(rows: &[ResultRow], stem: &Path) -> Result<()> {
    for (ext, text) in [("md", to_markdown(rows)), ("csv", to_csv(rows))] {
        let p = stem.with_extension(ext);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}
