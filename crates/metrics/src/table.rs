//! Scoring a label CSV against a score CSV, the logic of the `score` example.
//!
//! Inputs: two CSV files with a header row of label names and one row per sample, the
//! same samples in the same order. Labels are `0`/`1` (`0.0`/`1.0`, `true`/`false` also
//! accepted); a blank cell is a missing label, skipped for that label only. Scores are
//! finite-or-infinite real numbers (no blanks, no NaN). The score file may order its
//! columns differently; columns are matched by name and every label needs a score column.
//! An optional groups CSV (header row, first column = group id, e.g. patient id) makes the
//! bootstrap clustered.
//!
//! Output ([`score_tables`]): a JSON object
//! `{"auroc": {"<label>": v, ..., "macro": v, "micro": v}, "auprc": {...}, "f1@0.5": {...}}`
//! where a value is `null` where undefined (one class only, or no labelled sample), plus
//! `"n_samples"` and, with a bootstrap, `"ci95"` of the same shape holding `[lo, hi]`
//! (or `null`) and `"bootstrap"` with settings and per-entry skipped-resample counts.
//!
//! Macro AUROC / AUPRC average the labels defined on the full data; a resample where any of
//! those labels becomes undefined gives no macro value and is counted as skipped (so every
//! macro resample averages the same labels). Macro F1 averages labels with at least one
//! labelled sample, in the same way.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::bootstrap::{bootstrap_many, group_rows, BootstrapConfig, Interval, Resampling};
use crate::classification::{multilabel_counts, multilabel_ranking, MultiLabelView};
use crate::error::{check_len, MetricsError, Result};

/// A parsed CSV table: column names and row-major cells.
#[derive(Debug, Clone)]
struct Table {
    names: Vec<String>,
    rows: Vec<(u64, Vec<String>)>,
}

fn csv_error(path: &Path, e: &csv::Error) -> MetricsError {
    MetricsError::Csv {
        path: path.to_path_buf(),
        line: e.position().map_or(0, |p| p.line()),
        message: e.to_string(),
    }
}

fn read_table(path: &Path) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| match e.kind() {
            csv::ErrorKind::Io(io) => MetricsError::Io {
                path: path.to_path_buf(),
                error: std::io::Error::new(io.kind(), io.to_string()),
            },
            _ => csv_error(path, &e),
        })?;
    let names: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(path, &e))?
        .iter()
        .map(str::to_owned)
        .collect();
    if names.is_empty() || names.iter().any(String::is_empty) {
        return Err(MetricsError::Csv {
            path: path.to_path_buf(),
            line: 1,
            message: "the header row must name every column".into(),
        });
    }
    // columns are matched by name (labels to scores), so a repeated name would silently score
    // two label columns against one score column
    for (i, name) in names.iter().enumerate() {
        if let Some(first) = names[..i].iter().position(|n| n == name) {
            return Err(MetricsError::Csv {
                path: path.to_path_buf(),
                line: 1,
                message: format!(
                    "column {name:?} appears twice (columns {} and {})",
                    first + 1,
                    i + 1
                ),
            });
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, &e))?;
        let line = record.position().map_or(0, |p| p.line());
        rows.push((line, record.iter().map(str::to_owned).collect()));
    }
    if rows.is_empty() {
        return Err(MetricsError::Csv {
            path: path.to_path_buf(),
            line: 1,
            message: "no data rows after the header".into(),
        });
    }
    Ok(Table { names, rows })
}

/// Labels read from a CSV: names and row-major `Option<bool>` cells.
#[derive(Debug, Clone)]
pub struct LabelColumns {
    /// Column names.
    pub names: Vec<String>,
    /// `[n_samples, n_labels]`, `None` = blank.
    pub values: Vec<Option<bool>>,
}

/// Reads a 0/1 label CSV (blank = missing). Errors name the file and line.
pub fn read_labels(path: &Path) -> Result<LabelColumns> {
    let t = read_table(path)?;
    let mut values = Vec::with_capacity(t.rows.len() * t.names.len());
    for (line, row) in &t.rows {
        for (cell, name) in row.iter().zip(&t.names) {
            values.push(match cell.to_ascii_lowercase().as_str() {
                "" => None,
                "0" | "0.0" | "false" => Some(false),
                "1" | "1.0" | "true" => Some(true),
                _ => {
                    return Err(MetricsError::Csv {
                        path: path.to_path_buf(),
                        line: *line,
                        message: format!("label {name:?}: {cell:?} is not 0, 1 or blank"),
                    })
                }
            });
        }
    }
    Ok(LabelColumns {
        names: t.names,
        values,
    })
}

/// Reads a score CSV and returns the columns named `names`, in that order, row-major.
pub fn read_scores(path: &Path, names: &[String]) -> Result<Vec<f64>> {
    let t = read_table(path)?;
    let index: Vec<usize> = names
        .iter()
        .map(|n| {
            t.names
                .iter()
                .position(|m| m == n)
                .ok_or_else(|| MetricsError::Csv {
                    path: path.to_path_buf(),
                    line: 1,
                    message: format!("no score column for label {n:?} (columns: {:?})", t.names),
                })
        })
        .collect::<Result<_>>()?;
    let mut values = Vec::with_capacity(t.rows.len() * names.len());
    for (line, row) in &t.rows {
        for (&i, name) in index.iter().zip(names) {
            let cell = &row[i];
            match cell.parse::<f64>() {
                Ok(v) if !v.is_nan() => values.push(v),
                _ => {
                    return Err(MetricsError::Csv {
                        path: path.to_path_buf(),
                        line: *line,
                        message: format!("score {name:?}: {cell:?} is not a number"),
                    })
                }
            }
        }
    }
    Ok(values)
}

/// Reads the first column of a groups CSV (one group id per sample, e.g. patient id).
pub fn read_groups(path: &Path) -> Result<Vec<String>> {
    let t = read_table(path)?;
    t.rows
        .into_iter()
        .map(|(line, row)| match row.into_iter().next() {
            Some(g) if !g.is_empty() => Ok(g),
            _ => Err(MetricsError::Csv {
                path: path.to_path_buf(),
                line,
                message: "blank group id".into(),
            }),
        })
        .collect()
}

/// Options of [`score_tables`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreOptions {
    /// Threshold for the F1 entry (`score >= threshold` is positive); default 0.5.
    pub threshold: f64,
    /// Bootstrap settings; `None` for no CIs.
    pub bootstrap: Option<BootstrapConfig>,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            bootstrap: None,
        }
    }
}

const METRICS: usize = 3;

/// Computes the JSON report (see the module docs). `labels` and `scores` are row-major
/// `[n_samples, names.len()]`; `groups`, if given, holds one id per sample.
pub fn score_tables(
    names: &[String],
    labels: &[Option<bool>],
    scores: &[f64],
    groups: Option<&[String]>,
    options: &ScoreOptions,
) -> Result<Value> {
    let view = MultiLabelView::new(names.len(), labels, scores)?;
    let n = view.n_samples();
    let k = names.len();
    let full = multilabel_ranking(&view, None);
    let full_counts = multilabel_counts(&view, options.threshold, None);
    let auroc_set: Vec<usize> = (0..k).filter(|&l| full.per_label[l].is_some()).collect();
    let f1_set: Vec<usize> = (0..k)
        .filter(|&l| full_counts.per_label[l].total() > 0)
        .collect();

    // one vector per evaluation: [metric][label..., macro, micro]
    let stat = |rows: Option<&[usize]>| -> Vec<Option<f64>> {
        let r = multilabel_ranking(&view, rows);
        let c = multilabel_counts(&view, options.threshold, rows);
        let mean_over = |set: &[usize], get: &dyn Fn(usize) -> Option<f64>| -> Option<f64> {
            let v: Option<Vec<f64>> = set.iter().map(|&l| get(l)).collect();
            v.filter(|v| !v.is_empty())
                .map(|v| v.iter().sum::<f64>() / v.len() as f64)
        };
        let f1_of = |l: usize| (c.per_label[l].total() > 0).then(|| c.per_label[l].f1());
        let mut out = Vec::with_capacity(METRICS * (k + 2));
        out.extend((0..k).map(|l| r.per_label[l].map(|s| s.auroc)));
        out.push(mean_over(&auroc_set, &|l| r.per_label[l].map(|s| s.auroc)));
        out.push(r.micro.map(|s| s.auroc));
        out.extend((0..k).map(|l| r.per_label[l].map(|s| s.average_precision)));
        out.push(mean_over(&auroc_set, &|l| {
            r.per_label[l].map(|s| s.average_precision)
        }));
        out.push(r.micro.map(|s| s.average_precision));
        out.extend((0..k).map(f1_of));
        out.push(mean_over(&f1_set, &f1_of));
        let micro = c.micro();
        out.push((micro.total() > 0).then(|| micro.f1()));
        out
    };

    let keys: Vec<String> = names
        .iter()
        .cloned()
        .chain(["macro".to_owned(), "micro".to_owned()])
        .collect();
    let metric_names = [
        "auroc".to_owned(),
        "auprc".to_owned(),
        format!("f1@{}", options.threshold),
    ];
    let shape = |values: &[Value]| -> Value {
        let mut out = Map::new();
        for (m, name) in metric_names.iter().enumerate() {
            let obj: Map<String, Value> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| (key.clone(), values[m * (k + 2) + i].clone()))
                .collect();
            out.insert(name.clone(), Value::Object(obj));
        }
        Value::Object(out)
    };
    let num = |v: Option<f64>| v.map_or(Value::Null, |v| json!(v));
    let point: Vec<Value> = stat(None).into_iter().map(num).collect();
    let mut report = shape(&point);
    let obj = match report.as_object_mut() {
        Some(o) => o,
        None => {
            return Err(MetricsError::InvalidArgument(
                "internal: report is not an object".into(),
            ))
        }
    };
    obj.insert("n_samples".into(), json!(n));

    if let Some(cfg) = options.bootstrap {
        let grouped = match groups {
            Some(g) => {
                check_len("groups vs samples", g.len(), n)?;
                Some(group_rows(g))
            }
            None => None,
        };
        let resampling = match &grouped {
            Some(g) => Resampling::Groups(g),
            None => Resampling::Rows(n),
        };
        let intervals: Vec<Interval> =
            bootstrap_many(resampling, &cfg, METRICS * (k + 2), |rows| {
                Ok(stat(Some(rows)))
            })?;
        let ci: Vec<Value> = intervals
            .iter()
            .map(|i| i.ci.map_or(Value::Null, |(lo, hi)| json!([lo, hi])))
            .collect();
        let skipped: Vec<Value> = intervals.iter().map(|i| json!(i.n_skipped)).collect();
        obj.insert("ci95".into(), shape(&ci));
        obj.insert(
            "bootstrap".into(),
            json!({
                "n_resamples": cfg.n_resamples,
                "seed": cfg.seed,
                "confidence": cfg.confidence,
                "method": "percentile",
                "clustered": grouped.is_some(),
                "n_groups": grouped.as_ref().map_or(n, Vec::len),
                "skipped": shape(&skipped),
            }),
        );
    }
    Ok(report)
}

/// Reads the files and runs [`score_tables`]; errors name the offending file and line.
pub fn score_files(
    labels_path: &Path,
    scores_path: &Path,
    groups_path: Option<&Path>,
    options: &ScoreOptions,
) -> Result<Value> {
    let labels = read_labels(labels_path)?;
    let scores = read_scores(scores_path, &labels.names)?;
    let n = labels.values.len() / labels.names.len();
    let n_scores = scores.len() / labels.names.len();
    if n != n_scores {
        return Err(MetricsError::InvalidArgument(format!(
            "{} has {n} samples but {} has {n_scores}",
            labels_path.display(),
            scores_path.display()
        )));
    }
    let groups = groups_path.map(read_groups).transpose()?;
    if let (Some(g), Some(p)) = (&groups, groups_path) {
        if g.len() != n {
            return Err(MetricsError::InvalidArgument(format!(
                "{} has {} rows but {} has {n} samples",
                p.display(),
                g.len(),
                labels_path.display()
            )));
        }
    }
    score_tables(
        &labels.names,
        &labels.values,
        &scores,
        groups.as_deref(),
        options,
    )
}

/// Writes a JSON value, pretty-printed, to `path`.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| MetricsError::InvalidArgument(format!("JSON encoding: {e}")))?;
    std::fs::write(path, text + "\n").map_err(|error| MetricsError::Io {
        path: PathBuf::from(path),
        error,
    })
}
