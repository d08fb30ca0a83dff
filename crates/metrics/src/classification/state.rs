//! Accumulating states: `update` per batch, `compute` at the end.
//!
//! Ranking metrics need every score, so the states keep them (8 bytes per score plus the
//! label); `compute` then runs the same pure functions as the one-shot API, so a batched
//! run equals a one-shot run exactly.

use super::multilabel::{
    multilabel_counts, multilabel_ranking, MultiLabelCounts, MultiLabelRanking, MultiLabelView,
};
use super::ranking::{ranking_scores, RankingScores};
use super::threshold::BinaryCounts;
use crate::error::{check_len, MetricsError, Result};

/// Accumulates a binary problem for AUROC / average precision.
#[derive(Debug, Clone, Default)]
pub struct BinaryRankingState {
    y_true: Vec<bool>,
    y_score: Vec<f64>,
}

impl BinaryRankingState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a batch.
    pub fn update(&mut self, y_true: &[bool], y_score: &[f64]) -> Result<()> {
        check_len("y_true vs y_score", y_true.len(), y_score.len())?;
        if let Some(i) = y_score.iter().position(|s| s.is_nan()) {
            return Err(MetricsError::NanScore {
                metric: "BinaryRankingState",
                index: self.y_score.len() + i,
            });
        }
        self.y_true.extend_from_slice(y_true);
        self.y_score.extend_from_slice(y_score);
        Ok(())
    }

    /// AUROC and average precision of everything seen.
    pub fn compute(&self) -> Result<RankingScores> {
        ranking_scores(&self.y_true, &self.y_score)
    }
}

/// Accumulates confusion counts at a fixed threshold.
#[derive(Debug, Clone, Copy)]
pub struct BinaryCountsState {
    threshold: f64,
    counts: BinaryCounts,
}

impl BinaryCountsState {
    /// An empty state predicting positive when `score >= threshold`.
    pub fn new(threshold: f64) -> Self {
        Self {
            threshold,
            counts: BinaryCounts::default(),
        }
    }

    /// Adds a batch.
    pub fn update(&mut self, y_true: &[bool], y_score: &[f64]) -> Result<()> {
        self.counts.update(y_true, y_score, self.threshold)
    }

    /// The counts so far (F1, precision, recall, accuracy, balanced accuracy are methods).
    pub fn compute(&self) -> BinaryCounts {
        self.counts
    }
}

/// Accumulates a multi-label problem with missing labels.
#[derive(Debug, Clone)]
pub struct MultiLabelState {
    n_labels: usize,
    y_true: Vec<Option<bool>>,
    y_score: Vec<f64>,
}

impl MultiLabelState {
    /// An empty state for `n_labels` labels.
    pub fn new(n_labels: usize) -> Result<Self> {
        if n_labels == 0 {
            return Err(MetricsError::InvalidArgument("n_labels must be > 0".into()));
        }
        Ok(Self {
            n_labels,
            y_true: Vec::new(),
            y_score: Vec::new(),
        })
    }

    /// Appends a batch laid out row-major `[batch, n_labels]`.
    pub fn update(&mut self, y_true: &[Option<bool>], y_score: &[f64]) -> Result<()> {
        // validates shape and NaNs before anything is appended
        MultiLabelView::new(self.n_labels, y_true, y_score)?;
        self.y_true.extend_from_slice(y_true);
        self.y_score.extend_from_slice(y_score);
        Ok(())
    }

    /// A view of everything seen.
    pub fn view(&self) -> Result<MultiLabelView<'_>> {
        MultiLabelView::new(self.n_labels, &self.y_true, &self.y_score)
    }

    /// AUROC / AP per label, macro, micro.
    pub fn compute_ranking(&self) -> Result<MultiLabelRanking> {
        Ok(multilabel_ranking(&self.view()?, None))
    }

    /// Counts per label at one threshold.
    pub fn compute_counts(&self, threshold: f64) -> Result<MultiLabelCounts> {
        Ok(multilabel_counts(&self.view()?, threshold, None))
    }
}
