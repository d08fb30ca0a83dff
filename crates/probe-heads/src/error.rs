//! The crate's error type.

use std::path::PathBuf;

/// Errors of feature extraction, probes and result tables.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The encoder failed.
    #[error(transparent)]
    Encoder(#[from] cxr_core::Error),
    /// Loading or preprocessing an image failed.
    #[error(transparent)]
    Data(#[from] cxr_data::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A metric failed.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// A feature cache is unreadable or inconsistent.
    #[error("{path}: bad feature cache: {reason}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Inputs with inconsistent shapes or values.
    #[error("{what}: {reason}")]
    BadInput {
        /// Which input.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }
    pub(crate) fn bad(what: &'static str, reason: impl Into<String>) -> Self {
        Self::BadInput {
            what,
            reason: reason.into(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
