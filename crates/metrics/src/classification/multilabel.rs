//! Multi-label inputs with missing labels: per-label, macro and micro metrics.
//!
//! Layout: row-major `[n_samples, n_labels]`; `y_true[i * n_labels + l]` is `None` when
//! label `l` of sample `i` is missing, and that entry is skipped for label `l` only.
//! - per label: the binary metric on the label's non-missing samples;
//! - macro: the unweighted mean over labels where the metric is defined (a label with one
//!   class only or no sample is left out, and [`MultiLabelRanking::per_label`] shows it as
//!   `None`); with every label defined this is sklearn's `average="macro"`;
//! - micro: the binary metric on all non-missing (label, sample) entries flattened into one
//!   problem, sklearn's `average="micro"`.

use super::ranking::{best_f1_threshold, ranking_scores, BestThreshold, RankingScores};
use super::threshold::BinaryCounts;
use crate::error::{check_len, MetricsError, Result};

/// A borrowed multi-label problem (see the module docs for the layout).
#[derive(Debug, Clone, Copy)]
pub struct MultiLabelView<'a> {
    n_labels: usize,
    y_true: &'a [Option<bool>],
    y_score: &'a [f64],
}

impl<'a> MultiLabelView<'a> {
    /// Checks shapes: both slices hold `n_samples * n_labels` entries.
    pub fn new(n_labels: usize, y_true: &'a [Option<bool>], y_score: &'a [f64]) -> Result<Self> {
        if n_labels == 0 {
            return Err(MetricsError::InvalidArgument("n_labels must be > 0".into()));
        }
        check_len("y_true vs y_score", y_true.len(), y_score.len())?;
        if y_true.len() % n_labels != 0 {
            return Err(MetricsError::InvalidArgument(format!(
                "{} entries is not a multiple of n_labels = {n_labels}",
                y_true.len()
            )));
        }
        if let Some(index) = y_score.iter().position(|s| s.is_nan()) {
            return Err(MetricsError::NanScore {
                metric: "MultiLabelView",
                index,
            });
        }
        Ok(Self {
            n_labels,
            y_true,
            y_score,
        })
    }

    /// Number of labels.
    pub fn n_labels(&self) -> usize {
        self.n_labels
    }

    /// Number of samples.
    pub fn n_samples(&self) -> usize {
        self.y_true.len() / self.n_labels
    }

    /// The truth, row-major `[n_samples, n_labels]` (`None` = missing).
    pub fn y_true(&self) -> &'a [Option<bool>] {
        self.y_true
    }

    /// The non-missing (truth, score) pairs of `label` over the given sample rows (all rows
    /// when `rows` is `None`; a row may repeat, as in a bootstrap resample).
    pub fn column(&self, label: usize, rows: Option<&[usize]>) -> (Vec<bool>, Vec<f64>) {
        let mut t = Vec::new();
        let mut s = Vec::new();
        let mut push = |i: usize| {
            let k = i * self.n_labels + label;
            if let Some(truth) = self.y_true[k] {
                t.push(truth);
                s.push(self.y_score[k]);
            }
        };
        match rows {
            Some(rows) => rows.iter().for_each(|&i| push(i)),
            None => (0..self.n_samples()).for_each(push),
        }
        (t, s)
    }

    /// AUROC and average precision of `label` over the given rows, or `None` where they are
    /// undefined (one class or no sample).
    pub fn column_ranking(&self, label: usize, rows: Option<&[usize]>) -> Option<RankingScores> {
        let (t, s) = self.column(label, rows);
        defined(ranking_scores(&t, &s))
    }

    /// All non-missing entries of the given rows, flattened (the micro-average problem).
    pub fn flattened(&self, rows: Option<&[usize]>) -> (Vec<bool>, Vec<f64>) {
        let mut t = Vec::new();
        let mut s = Vec::new();
        let mut push = |i: usize| {
            let base = i * self.n_labels;
            for k in base..base + self.n_labels {
                if let Some(truth) = self.y_true[k] {
                    t.push(truth);
                    s.push(self.y_score[k]);
                }
            }
        };
        match rows {
            Some(rows) => rows.iter().for_each(|&i| push(i)),
            None => (0..self.n_samples()).for_each(push),
        }
        (t, s)
    }
}

/// `Some(score)` when defined, `None` for "undefined on this sample" (one class, no sample);
/// other errors cannot occur on a checked view.
fn defined<T>(r: Result<T>) -> Option<T> {
    r.ok()
}

/// Mean of the defined values; `None` when none is defined.
pub fn macro_mean(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .flatten()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// AUROC / average precision per label, macro and micro.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLabelRanking {
    /// Per label; `None` where undefined (one class or no non-missing sample).
    pub per_label: Vec<Option<RankingScores>>,
    /// Mean AUROC over defined labels.
    pub macro_auroc: Option<f64>,
    /// Mean average precision over defined labels.
    pub macro_average_precision: Option<f64>,
    /// Both metrics on the flattened problem.
    pub micro: Option<RankingScores>,
}

/// AUROC and AP per label, macro and micro, over `rows` (all when `None`).
pub fn multilabel_ranking(view: &MultiLabelView<'_>, rows: Option<&[usize]>) -> MultiLabelRanking {
    let per_label: Vec<Option<RankingScores>> = (0..view.n_labels)
        .map(|l| view.column_ranking(l, rows))
        .collect();
    let (t, s) = view.flattened(rows);
    MultiLabelRanking {
        macro_auroc: macro_mean(per_label.iter().map(|r| r.map(|r| r.auroc))),
        macro_average_precision: macro_mean(
            per_label.iter().map(|r| r.map(|r| r.average_precision)),
        ),
        micro: defined(ranking_scores(&t, &s)),
        per_label,
    }
}

/// Mean AUROC over the labels defined on `rows` (all when `None`): the `macro_auroc` of
/// [`multilabel_ranking`] without its average precisions and micro average, for statistics a
/// bootstrap recomputes on every resample.
pub fn multilabel_macro_auroc(view: &MultiLabelView<'_>, rows: Option<&[usize]>) -> Option<f64> {
    macro_mean((0..view.n_labels).map(|l| view.column_ranking(l, rows).map(|r| r.auroc)))
}

/// Confusion counts per label at per-label thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLabelCounts {
    /// The threshold used for each label.
    pub thresholds: Vec<f64>,
    /// Counts per label (missing entries skipped).
    pub per_label: Vec<BinaryCounts>,
}

impl MultiLabelCounts {
    /// Macro average of a count metric over labels with at least one non-missing sample;
    /// `None` when no label has one.
    pub fn macro_of(&self, metric: impl Fn(&BinaryCounts) -> f64) -> Option<f64> {
        macro_mean(
            self.per_label
                .iter()
                .map(|c| (c.total() > 0).then(|| metric(c))),
        )
    }

    /// Counts summed over labels (micro averaging: apply any count metric to this).
    pub fn micro(&self) -> BinaryCounts {
        self.per_label
            .iter()
            .fold(BinaryCounts::default(), |a, &b| a.merged(b))
    }
}

/// Counts per label at one shared threshold (`score >= threshold` is positive).
pub fn multilabel_counts(
    view: &MultiLabelView<'_>,
    threshold: f64,
    rows: Option<&[usize]>,
) -> MultiLabelCounts {
    count_labels(view, &vec![threshold; view.n_labels], rows)
}

/// Counts per label at per-label thresholds (`thresholds.len() == n_labels`).
pub fn multilabel_counts_at(
    view: &MultiLabelView<'_>,
    thresholds: &[f64],
    rows: Option<&[usize]>,
) -> Result<MultiLabelCounts> {
    check_len("thresholds vs labels", thresholds.len(), view.n_labels)?;
    Ok(count_labels(view, thresholds, rows))
}

fn count_labels(
    view: &MultiLabelView<'_>,
    thresholds: &[f64],
    rows: Option<&[usize]>,
) -> MultiLabelCounts {
    let per_label = (0..view.n_labels)
        .map(|l| {
            let mut c = BinaryCounts::default();
            let (t, s) = view.column(l, rows);
            for (t, s) in t.into_iter().zip(s) {
                c.add(t, s >= thresholds[l]);
            }
            c
        })
        .collect();
    MultiLabelCounts {
        thresholds: thresholds.to_vec(),
        per_label,
    }
}

/// The F1-maximising threshold of each label ([`best_f1_threshold`]), `None` for a label
/// with no non-missing sample, and the counts at those thresholds. Note that choosing the
/// threshold on the evaluation data itself is optimistic; choose it on a validation split
/// and apply it with [`multilabel_counts_at`] for an unbiased number.
pub fn multilabel_best_f1(
    view: &MultiLabelView<'_>,
    rows: Option<&[usize]>,
) -> (Vec<Option<BestThreshold>>, MultiLabelCounts) {
    let best: Vec<Option<BestThreshold>> = (0..view.n_labels)
        .map(|l| {
            let (t, s) = view.column(l, rows);
            best_f1_threshold(&t, &s).ok()
        })
        .collect();
    let thresholds: Vec<f64> = best
        .iter()
        .map(|b| b.map_or(f64::INFINITY, |b| b.threshold))
        .collect();
    let counts = count_labels(view, &thresholds, rows);
    (best, counts)
}
