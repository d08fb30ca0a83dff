//! Thresholded binary metrics from confusion counts.
//!
//! A sample is predicted positive when `score >= threshold` (the convention of sklearn's
//! curves). Ratios with a zero denominator are 0.0, as sklearn's default
//! `zero_division="warn"` returns (without the warning).

use crate::error::{check_len, MetricsError, Result};

/// Confusion counts of one binary problem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BinaryCounts {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    pub fn_: u64,
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl BinaryCounts {
    /// Counts of `y_true` against the predictions `y_score >= threshold`.
    pub fn at_threshold(y_true: &[bool], y_score: &[f64], threshold: f64) -> Result<Self> {
        let mut c = Self::default();
        c.update(y_true, y_score, threshold)?;
        Ok(c)
    }

    /// Adds a batch (the accumulating form; counts simply add).
    pub fn update(&mut self, y_true: &[bool], y_score: &[f64], threshold: f64) -> Result<()> {
        check_len("y_true vs y_score", y_true.len(), y_score.len())?;
        if let Some(index) = y_score.iter().position(|s| s.is_nan()) {
            return Err(MetricsError::NanScore {
                metric: "BinaryCounts",
                index,
            });
        }
        for (&t, &s) in y_true.iter().zip(y_score) {
            self.add(t, s >= threshold);
        }
        Ok(())
    }

    /// Adds one (truth, prediction) pair.
    #[inline]
    pub fn add(&mut self, truth: bool, predicted: bool) {
        match (truth, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
    }

    /// Sum of two count sets (micro averaging adds the counts of all labels).
    pub fn merged(self, other: Self) -> Self {
        Self {
            tp: self.tp + other.tp,
            fp: self.fp + other.fp,
            tn: self.tn + other.tn,
            fn_: self.fn_ + other.fn_,
        }
    }

    /// Number of samples counted.
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// `tp / (tp + fp)`, 0 when nothing is predicted positive.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// `tp / (tp + fn)` (sensitivity), 0 when there is no positive.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// `tn / (tn + fp)`, 0 when there is no negative.
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }

    /// `2tp / (2tp + fp + fn)`, 0 when the denominator is 0 (sklearn's `f1_score`).
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// `(tp + tn) / total`, 0 on no samples.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }

    /// Mean recall over the classes present in `y_true`, as sklearn's
    /// `balanced_accuracy_score`: `(recall + specificity) / 2`, or the recall of the only
    /// class present. 0 on no samples.
    pub fn balanced_accuracy(&self) -> f64 {
        let has_pos = self.tp + self.fn_ > 0;
        let has_neg = self.tn + self.fp > 0;
        match (has_pos, has_neg) {
            (true, true) => 0.5 * (self.recall() + self.specificity()),
            (true, false) => self.recall(),
            (false, true) => self.specificity(),
            (false, false) => 0.0,
        }
    }
}
