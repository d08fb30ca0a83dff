//! Multi-class (single-label) metrics from a confusion matrix, as sklearn's
//! `precision_recall_fscore_support` / `accuracy_score` / `balanced_accuracy_score`.
//!
//! Per class `c` the one-vs-rest counts give precision, recall and F1 (0 on a zero
//! denominator); macro is their unweighted mean over all `n_classes` (sklearn's default
//! `labels`); micro pools the counts, which for single-label data makes micro precision =
//! micro recall = micro F1 = accuracy. Balanced accuracy is the mean recall over classes
//! present in `y_true`.

use crate::error::{check_len, MetricsError, Result};

/// A confusion matrix, `counts[truth][predicted]`; accumulates batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    n_classes: usize,
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// An empty matrix for classes `0..n_classes`.
    pub fn new(n_classes: usize) -> Result<Self> {
        if n_classes == 0 {
            return Err(MetricsError::InvalidArgument(
                "n_classes must be > 0".into(),
            ));
        }
        Ok(Self {
            n_classes,
            counts: vec![0; n_classes * n_classes],
        })
    }

    /// One-shot construction from class indices.
    pub fn from_predictions(n_classes: usize, y_true: &[usize], y_pred: &[usize]) -> Result<Self> {
        let mut m = Self::new(n_classes)?;
        m.update(y_true, y_pred)?;
        Ok(m)
    }

    /// Adds a batch of (truth, prediction) class indices.
    pub fn update(&mut self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        check_len("y_true vs y_pred", y_true.len(), y_pred.len())?;
        if let Some((i, c)) = y_true
            .iter()
            .chain(y_pred)
            .enumerate()
            .find(|(_, &c)| c >= self.n_classes)
        {
            return Err(MetricsError::InvalidArgument(format!(
                "class {c} at position {} is >= n_classes = {}",
                i % y_true.len().max(1),
                self.n_classes
            )));
        }
        for (&t, &p) in y_true.iter().zip(y_pred) {
            self.counts[t * self.n_classes + p] += 1;
        }
        Ok(())
    }

    /// `counts[truth][predicted]`.
    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.n_classes + predicted]
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn support(&self, c: usize) -> u64 {
        (0..self.n_classes).map(|p| self.get(c, p)).sum()
    }

    fn predicted(&self, c: usize) -> u64 {
        (0..self.n_classes).map(|t| self.get(t, c)).sum()
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Precision of class `c`.
    pub fn precision(&self, c: usize) -> f64 {
        ratio(self.get(c, c), self.predicted(c))
    }

    /// Recall of class `c`.
    pub fn recall(&self, c: usize) -> f64 {
        ratio(self.get(c, c), self.support(c))
    }

    /// F1 of class `c`: `2tp / (2tp + fp + fn)`.
    pub fn f1(&self, c: usize) -> f64 {
        let tp = self.get(c, c);
        ratio(2 * tp, self.predicted(c) + self.support(c))
    }

    /// Unweighted mean of a per-class metric over all classes.
    pub fn macro_of(&self, metric: impl Fn(&Self, usize) -> f64) -> f64 {
        (0..self.n_classes).map(|c| metric(self, c)).sum::<f64>() / self.n_classes as f64
    }

    /// Fraction of correct predictions (= micro precision, recall and F1).
    pub fn accuracy(&self) -> f64 {
        ratio(
            (0..self.n_classes).map(|c| self.get(c, c)).sum(),
            self.total(),
        )
    }

    /// Mean recall over classes present in `y_true`; 0 on no samples.
    pub fn balanced_accuracy(&self) -> f64 {
        let present: Vec<usize> = (0..self.n_classes)
            .filter(|&c| self.support(c) > 0)
            .collect();
        if present.is_empty() {
            return 0.0;
        }
        present.iter().map(|&c| self.recall(c)).sum::<f64>() / present.len() as f64
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}
