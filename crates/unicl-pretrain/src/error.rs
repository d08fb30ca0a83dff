//! Errors of the UniCL trainer.

use std::path::PathBuf;

/// Everything that can go wrong while building, training or evaluating a dual encoder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A model contract error (shapes, configs, files).
    #[error(transparent)]
    Core(#[from] cxr_core::Error),
    /// Decoding, preprocessing or manifest parsing failed.
    #[error(transparent)]
    Data(#[from] cxr_data::Error),
    /// The contrastive loss or the prompt templates failed.
    #[error(transparent)]
    Loss(#[from] unicl_loss::Error),
    /// The dual encoder, its text tower or its tokenizer failed.
    #[error(transparent)]
    Dual(#[from] dual_encoder::Error),
    /// Optimizer, checkpoint, log or NaN-guard failure.
    #[error(transparent)]
    Train(#[from] train_utils::Error),
    /// A metric could not be computed.
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
    /// Building or training the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A checkpoint does not fit the model.
    #[error("checkpoint tensor `{name}`: {reason}")]
    Checkpoint {
        /// The tensor or state field.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A setting or an input is unusable.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
