//! Evaluation metrics for the workspace, with reference parity.
//!
//! - [`classification`]: AUROC and average precision exactly as scikit-learn
//!   (`roc_auc_score`, `average_precision_score`, ties included), ROC / PR curves,
//!   thresholded F1 / precision / recall / accuracy / balanced accuracy, per label, macro
//!   and micro, with missing labels skipped per label; multi-class confusion metrics.
//! - [`segmentation`]: Dice and IoU per class on binary masks, per image and pooled
//!   (empty/empty = 1.0); [`hausdorff`]: HD95 (MONAI's definition) for 2-D masks.
//! - [`text`]: corpus BLEU-1..4 (pycocoevalcap's `Bleu(4)` arithmetic on this crate's
//!   tokenisation), ROUGE-L as Google's `rouge-score` (with or without its Porter
//!   stemmer) and pycocoevalcap's ROUGE-L.
//! - [`bootstrap`]: percentile CIs (plain, clustered by patient, paired) for any metric;
//!   [`classification::paired_mean_macro_auroc`] pairs macro AUROCs, one pair or the mean of
//!   several (seeds of one recipe) on shared resamples.
//! - [`table`]: the CSV → JSON scoring used by the `score` example.
//!
//! Every metric is a pure function plus an accumulating state with `update` per batch and
//! `compute` at the end.
//!
//! Undefined cases are errors, not NaN: AUROC and AP on one class only return
//! [`MetricsError::SingleClass`] (sklearn warns and returns NaN for AUROC, 0/1 for AP);
//! macro averages use the labels where the metric is defined; bootstraps skip and count
//! resamples where a metric is undefined.
//!
//! ```
//! use metrics::classification::ranking_scores;
//! let y_true = [false, false, true, true];
//! let y_score = [0.1, 0.4, 0.35, 0.8];
//! let s = ranking_scores(&y_true, &y_score).unwrap();
//! assert_eq!(s.auroc, 0.75);
//! assert!((s.average_precision - 0.8333333333333333).abs() < 1e-15);
//! ```
#![deny(missing_docs)]

pub mod bootstrap;
pub mod classification;
mod error;
pub mod hausdorff;
pub mod segmentation;
pub mod table;
pub mod text;

pub use error::{MetricsError, Result};
