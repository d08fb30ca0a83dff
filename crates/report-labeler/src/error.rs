//! The crate's error type.

use std::path::PathBuf;

/// Errors of scoring and file reading (labelling itself cannot fail).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelerError {
    /// Generated and reference batches hold different numbers of reports.
    #[error("{generated} generated reports vs {reference} reference reports")]
    LengthMismatch {
        /// Number of generated reports.
        generated: usize,
        /// Number of reference reports.
        reference: usize,
    },
    /// A score was asked for before any report was added.
    #[error("no reports to score")]
    NoReports,
    /// A file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// An error of the `metrics` crate (F1 or bootstrap).
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, LabelerError>;
