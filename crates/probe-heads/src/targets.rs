//! Probe targets and their evaluation as per-column scores.

use crate::{Error, Result};

/// What a probe predicts.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// `n x labels` binary labels, row-major; `None` = missing (skipped in loss and metrics).
    MultiLabel {
        /// Label names.
        names: Vec<String>,
        /// The labels.
        y: Vec<Option<bool>>,
    },
    /// One class per sample.
    MultiClass {
        /// Class names.
        names: Vec<String>,
        /// Class index of each sample.
        y: Vec<usize>,
    },
}

impl Targets {
    /// Number of output columns (labels or classes).
    pub fn width(&self) -> usize {
        match self {
            Targets::MultiLabel { names, .. } | Targets::MultiClass { names, .. } => names.len(),
        }
    }

    /// Column names.
    pub fn names(&self) -> &[String] {
        match self {
            Targets::MultiLabel { names, .. } | Targets::MultiClass { names, .. } => names,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::MultiLabel { names, y } => y.len() / names.len().max(1),
            Targets::MultiClass { y, .. } => y.len(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks internal consistency and that there are `n` samples.
    pub fn check(&self, n: usize) -> Result<()> {
        let k = self.width();
        if k == 0 {
            return Err(Error::bad("targets", "no labels/classes"));
        }
        match self {
            Targets::MultiLabel { y, .. } if y.len() != n * k => Err(Error::bad(
                "targets",
                format!("{} labels for {n} samples x {k} labels", y.len()),
            )),
            Targets::MultiClass { y, .. } if y.len() != n => Err(Error::bad(
                "targets",
                format!("{} classes for {n} samples", y.len()),
            )),
            Targets::MultiClass { y, .. } if y.iter().any(|&c| c >= k) => {
                Err(Error::bad("targets", format!("a class index is >= {k}")))
            }
            _ => Ok(()),
        }
    }

    /// Binary truth per column, `n x width` row-major (one-vs-rest for classes).
    pub fn one_hot(&self) -> Vec<Option<bool>> {
        match self {
            Targets::MultiLabel { y, .. } => y.clone(),
            Targets::MultiClass { names, y } => y
                .iter()
                .flat_map(|&c| (0..names.len()).map(move |j| Some(j == c)))
                .collect(),
        }
    }

    /// Every label column of a manifest's rows `rows` as binary labels: a value above 0.5 is
    /// positive, a missing one stays missing.
    pub fn from_manifest(manifest: &cxr_data::Manifest, rows: &[usize]) -> Self {
        Targets::MultiLabel {
            names: manifest.label_names.clone(),
            y: rows
                .iter()
                .flat_map(|&i| {
                    manifest.records[i]
                        .labels
                        .iter()
                        .map(|v| v.map(|x| x > 0.5))
                })
                .collect(),
        }
    }

    /// The rows at `idx`.
    pub fn select(&self, idx: &[usize]) -> Self {
        match self {
            Targets::MultiLabel { names, y } => {
                let k = names.len();
                Targets::MultiLabel {
                    names: names.clone(),
                    y: idx
                        .iter()
                        .flat_map(|&i| y[i * k..(i + 1) * k].iter().copied())
                        .collect(),
                }
            }
            Targets::MultiClass { names, y } => Targets::MultiClass {
                names: names.clone(),
                y: idx.iter().map(|&i| y[i]).collect(),
            },
        }
    }

    /// Binary truth of column `j` over all samples (`None` = missing).
    pub fn column(&self, j: usize) -> Vec<Option<bool>> {
        let k = self.width();
        self.one_hot().into_iter().skip(j).step_by(k).collect()
    }
}

/// Macro AUROC over the columns where it is defined (both classes present).
pub fn macro_auroc(targets: &Targets, scores: &[f64]) -> Option<f64> {
    let k = targets.width();
    let hot = targets.one_hot();
    let view = metrics::classification::MultiLabelView::new(k, &hot, scores).ok()?;
    metrics::classification::multilabel_macro_auroc(&view, None)
}
