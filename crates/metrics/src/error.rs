//! The crate's error type.

use std::path::PathBuf;

/// Errors of every metric, bootstrap and table function.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Two inputs that must be paired element-wise have different lengths.
    #[error("length mismatch: {what}: {left} vs {right}")]
    LengthMismatch {
        /// Which inputs disagree.
        what: &'static str,
        /// Length of the first input.
        left: usize,
        /// Length of the second input.
        right: usize,
    },
    /// A metric was asked for on no samples.
    #[error("{metric}: no samples")]
    Empty {
        /// The metric.
        metric: &'static str,
    },
    /// A score is NaN; ranking metrics need a total order on real scores.
    #[error("{metric}: score at index {index} is NaN")]
    NanScore {
        /// The metric.
        metric: &'static str,
        /// Index of the first NaN score.
        index: usize,
    },
    /// The metric is undefined because `y_true` holds one class only.
    ///
    /// scikit-learn warns and returns NaN for `roc_auc_score` here, and 0.0 / 1.0 for
    /// `average_precision_score`; this crate reports the case as an error for both, so a
    /// one-class AP can never enter a mean silently. Bootstraps skip and count it.
    #[error(
        "{metric}: undefined with one class only ({positives} positives, {negatives} negatives)"
    )]
    SingleClass {
        /// The metric.
        metric: &'static str,
        /// Number of positive samples.
        positives: usize,
        /// Number of negative samples.
        negatives: usize,
    },
    /// An argument is outside its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A CSV file is malformed; names the file and the 1-based line.
    #[error("{path}:{line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: u64,
        /// What is wrong.
        message: String,
    },
}

impl MetricsError {
    /// True for errors meaning "this metric is undefined on this sample" (one class only,
    /// no samples), which bootstraps skip and count instead of failing.
    pub fn is_undefined(&self) -> bool {
        matches!(self, Self::SingleClass { .. } | Self::Empty { .. })
    }
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, MetricsError>;

pub(crate) fn check_len(what: &'static str, left: usize, right: usize) -> Result<()> {
    if left == right {
        Ok(())
    } else {
        Err(MetricsError::LengthMismatch { what, left, right })
    }
}
