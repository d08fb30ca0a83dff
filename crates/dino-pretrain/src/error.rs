//! Errors of the trainer.

use std::path::PathBuf;

/// What can go wrong while setting up or running continual pretraining.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The backbone could not be built or loaded.
    #[error(transparent)]
    Backbone(#[from] cxr_core::Error),
    /// A loss or head failed (includes configuration errors of the DINOv2 config).
    #[error(transparent)]
    Loss(#[from] dino_loss::Error),
    /// Optimizer, checkpoint, log or NaN guard. The message is `training: ` and the inner
    /// error's, so the inner error is not also returned by `source()`.
    #[error("training: {0}")]
    Train(train_utils::Error),
    /// Decoding, augmentation or manifest reading.
    #[error(transparent)]
    Data(#[from] cxr_data::Error),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// Invalid settings or inputs, with the reason.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A checkpoint does not match the trainer (missing tensor, wrong shape).
    #[error("checkpoint {name}: {reason}")]
    Checkpoint {
        /// The tensor or field.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<train_utils::Error> for Error {
    fn from(e: train_utils::Error) -> Self {
        Self::Train(e)
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
