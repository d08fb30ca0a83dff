//! Threshold-free binary metrics: AUROC, average precision, ROC and PR curves.
//!
//! Definitions follow scikit-learn (`_binary_clf_curve` / `confusion_matrix_at_thresholds`):
//! the distinct scores, in decreasing order, are the thresholds; a sample is predicted
//! positive at threshold `t` when `score >= t`, so tied scores enter the curve together as
//! one point. Then
//! - AUROC is the trapezoidal area under (FPR, TPR) starting at (0, 0), as
//!   `roc_auc_score`; with integer counts it is `Σ (fp_i - fp_{i-1}) (tp_i + tp_{i-1}) / (2PN)`,
//!   which this module evaluates exactly in integers and divides once;
//! - average precision is `Σ_n (R_n - R_{n-1}) P_n` over the same thresholds, the
//!   un-interpolated step integral of `average_precision_score`.
//!
//! Both come from one pass over the sorted scores ([`ranking_scores`]).

use super::sort::{score_of, sorted_keys_by_class};
use crate::error::{MetricsError, Result};

/// AUROC and average precision of one binary problem, from the same sorted pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankingScores {
    /// Area under the ROC curve (`sklearn.metrics.roc_auc_score`).
    pub auroc: f64,
    /// Average precision (`sklearn.metrics.average_precision_score`).
    pub average_precision: f64,
    /// Number of positive samples.
    pub positives: usize,
    /// Number of negative samples.
    pub negatives: usize,
}

/// The F1-maximising threshold of one binary problem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BestThreshold {
    /// The threshold: predict positive when `score >= threshold`. It is one of the
    /// observed scores; among thresholds with equal best F1 the highest is chosen.
    pub threshold: f64,
    /// F1 at that threshold.
    pub f1: f64,
}

/// One point of the cumulative confusion counts: at `threshold`, `tp` positives and `fp`
/// negatives have `score >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// The threshold (an observed score).
    pub threshold: f64,
    /// True positives at this threshold.
    pub tp: usize,
    /// False positives at this threshold.
    pub fp: usize,
}

/// Visits the distinct scores in decreasing order with cumulative (tp, fp) counts.
/// Returns (positives, negatives).
fn walk(
    metric: &'static str,
    y_true: &[bool],
    y_score: &[f64],
    mut visit: impl FnMut(u64, usize, usize),
) -> Result<(usize, usize)> {
    let (pos, neg) = sorted_keys_by_class(metric, y_true, y_score)?;
    let (mut i, mut j) = (pos.len(), neg.len());
    let (mut tp, mut fp) = (0usize, 0usize);
    while i > 0 || j > 0 {
        let current = match (i > 0, j > 0) {
            (true, true) => pos[i - 1].max(neg[j - 1]),
            (true, false) => pos[i - 1],
            _ => neg[j - 1],
        };
        while i > 0 && pos[i - 1] == current {
            i -= 1;
            tp += 1;
        }
        while j > 0 && neg[j - 1] == current {
            j -= 1;
            fp += 1;
        }
        visit(current, tp, fp);
    }
    Ok((pos.len(), neg.len()))
}

fn require_two_classes(metric: &'static str, positives: usize, negatives: usize) -> Result<()> {
    if positives + negatives == 0 {
        return Err(MetricsError::Empty { metric });
    }
    if positives == 0 || negatives == 0 {
        return Err(MetricsError::SingleClass {
            metric,
            positives,
            negatives,
        });
    }
    Ok(())
}

/// AUROC and average precision in one O(n log n) pass (radix sort + one sweep).
///
/// Errors: length mismatch, NaN score, no samples, or one class only
/// ([`MetricsError::SingleClass`]).
pub fn ranking_scores(y_true: &[bool], y_score: &[f64]) -> Result<RankingScores> {
    let mut area2: u128 = 0; // twice the area, in count units
    let mut ap_sum = 0.0f64; // Σ (tp_i - tp_{i-1}) * precision_i; divided by P at the end
    let (mut tp_prev, mut fp_prev) = (0usize, 0usize);
    let (p, n) = walk("ranking_scores", y_true, y_score, |_, tp, fp| {
        area2 += (fp - fp_prev) as u128 * (tp + tp_prev) as u128;
        if tp > tp_prev {
            ap_sum += (tp - tp_prev) as f64 * (tp as f64 / (tp + fp) as f64);
        }
        tp_prev = tp;
        fp_prev = fp;
    })?;
    require_two_classes("ranking_scores", p, n)?;
    Ok(RankingScores {
        auroc: area2 as f64 / (2.0 * p as f64 * n as f64),
        average_precision: ap_sum / p as f64,
        positives: p,
        negatives: n,
    })
}

/// Area under the ROC curve, as `sklearn.metrics.roc_auc_score` for binary `y_true`.
pub fn auroc(y_true: &[bool], y_score: &[f64]) -> Result<f64> {
    ranking_scores(y_true, y_score).map(|s| s.auroc)
}

/// Average precision, as `sklearn.metrics.average_precision_score` for binary `y_true`.
pub fn average_precision(y_true: &[bool], y_score: &[f64]) -> Result<f64> {
    ranking_scores(y_true, y_score).map(|s| s.average_precision)
}

/// The cumulative confusion counts at every distinct score, highest threshold first
/// (sklearn's `confusion_matrix_at_thresholds` without its `tn`/`fn`).
pub fn confusion_at_thresholds(y_true: &[bool], y_score: &[f64]) -> Result<Vec<CurvePoint>> {
    let mut out = Vec::new();
    walk("confusion_at_thresholds", y_true, y_score, |k, tp, fp| {
        out.push(CurvePoint {
            threshold: score_of(k),
            tp,
            fp,
        })
    })?;
    Ok(out)
}

/// A ROC curve as `sklearn.metrics.roc_curve` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct RocCurve {
    /// False positive rates, increasing, starting at 0.
    pub fpr: Vec<f64>,
    /// True positive rates, starting at 0.
    pub tpr: Vec<f64>,
    /// Thresholds, decreasing; the first is `+inf` (the (0, 0) point).
    pub thresholds: Vec<f64>,
}

/// The ROC curve, as `sklearn.metrics.roc_curve(y_true, y_score, drop_intermediate=..)`.
/// With `drop_intermediate` (sklearn's default) collinear interior points are dropped by
/// the same second-difference rule. Errors on one class only (sklearn returns NaN rates).
pub fn roc_curve(y_true: &[bool], y_score: &[f64], drop_intermediate: bool) -> Result<RocCurve> {
    let points = confusion_at_thresholds(y_true, y_score)?;
    let (p, n) = points.last().map_or((0, 0), |c| (c.tp, c.fp));
    require_two_classes("roc_curve", p, n)?;
    let keep: Vec<&CurvePoint> = if drop_intermediate && points.len() > 2 {
        let m = points.len();
        points
            .iter()
            .enumerate()
            .filter(|&(i, _)| {
                if i == 0 || i == m - 1 {
                    return true;
                }
                let d2 = |f: fn(&CurvePoint) -> usize| {
                    f(&points[i + 1]) as i64 - 2 * f(&points[i]) as i64 + f(&points[i - 1]) as i64
                };
                d2(|c| c.fp) != 0 || d2(|c| c.tp) != 0
            })
            .map(|(_, c)| c)
            .collect()
    } else {
        points.iter().collect()
    };
    let mut curve = RocCurve {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f64::INFINITY],
    };
    for c in keep {
        curve.fpr.push(c.fp as f64 / n as f64);
        curve.tpr.push(c.tp as f64 / p as f64);
        curve.thresholds.push(c.threshold);
    }
    Ok(curve)
}

/// A precision-recall curve as `sklearn.metrics.precision_recall_curve` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct PrCurve {
    /// Precision at increasing thresholds, then a final 1.0.
    pub precision: Vec<f64>,
    /// Recall at increasing thresholds (non-increasing), then a final 0.0.
    pub recall: Vec<f64>,
    /// The distinct scores, increasing (one fewer than `precision`).
    pub thresholds: Vec<f64>,
}

/// The precision-recall curve, as `sklearn.metrics.precision_recall_curve` with its default
/// `drop_intermediate=False`. Errors when there is no positive (sklearn then sets recall
/// to 1 with a warning).
pub fn precision_recall_curve(y_true: &[bool], y_score: &[f64]) -> Result<PrCurve> {
    let points = confusion_at_thresholds(y_true, y_score)?;
    let (p, n) = points.last().map_or((0, 0), |c| (c.tp, c.fp));
    if p + n == 0 {
        return Err(MetricsError::Empty {
            metric: "precision_recall_curve",
        });
    }
    if p == 0 {
        return Err(MetricsError::SingleClass {
            metric: "precision_recall_curve",
            positives: p,
            negatives: n,
        });
    }
    let mut curve = PrCurve {
        precision: Vec::with_capacity(points.len() + 1),
        recall: Vec::with_capacity(points.len() + 1),
        thresholds: Vec::with_capacity(points.len()),
    };
    for c in points.iter().rev() {
        let predicted = c.tp + c.fp;
        curve.precision.push(if predicted == 0 {
            0.0
        } else {
            c.tp as f64 / predicted as f64
        });
        curve.recall.push(c.tp as f64 / p as f64);
        curve.thresholds.push(c.threshold);
    }
    curve.precision.push(1.0);
    curve.recall.push(0.0);
    Ok(curve)
}

/// The threshold maximising F1 over the observed scores (predict positive when
/// `score >= threshold`); ties go to the highest threshold. Needs at least one sample;
/// with no positive every F1 is 0 and the highest score is returned.
pub fn best_f1_threshold(y_true: &[bool], y_score: &[f64]) -> Result<BestThreshold> {
    let positives = y_true.iter().filter(|&&t| t).count();
    let mut best: Option<BestThreshold> = None;
    walk("best_f1_threshold", y_true, y_score, |k, tp, fp| {
        // F1 = 2tp / (2tp + fp + fn) with fn = P - tp
        let denom = tp + fp + positives;
        let f1 = if denom == 0 {
            0.0
        } else {
            2.0 * tp as f64 / denom as f64
        };
        if best.is_none_or(|b| f1 > b.f1) {
            best = Some(BestThreshold {
                threshold: score_of(k),
                f1,
            });
        }
    })?;
    best.ok_or(MetricsError::Empty {
        metric: "best_f1_threshold",
    })
}
