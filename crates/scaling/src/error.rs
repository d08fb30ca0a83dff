//! Errors of the fits, the clustering, the curation and the study runner.

use std::path::PathBuf;

/// Everything that can go wrong here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input data the operation cannot take (lengths, non-finite values, too few points).
    #[error("{what}: {reason}")]
    Invalid {
        /// Which input or operation.
        what: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// A fit did not converge or its system is singular.
    #[error("fit `{what}`: {reason}")]
    Fit {
        /// Which fit.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An encoder failed.
    #[error(transparent)]
    Core(#[from] cxr_core::Error),
    /// The data layer failed.
    #[error(transparent)]
    Data(#[from] cxr_data::Error),
    /// A metric failed.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// A linear probe failed.
    #[error(transparent)]
    Probe(#[from] probe_heads::Error),
    /// Segmentation training or evaluation failed.
    #[error(transparent)]
    Seg(#[from] seg_decoders::Error),
    /// DINOv2 pretraining failed.
    #[error(transparent)]
    Dino(#[from] dino_pretrain::Error),
    /// Checkpoint or atomic-write helpers failed.
    #[error(transparent)]
    Train(#[from] train_utils::Error),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.into(),
            reason: e.to_string(),
        }
    }
}
