//! Errors of the trainer.

use std::path::PathBuf;

/// What can go wrong while setting up or running continual pretraining.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// The backbone could not be built or loaded.
    #[error("backbone: {0}")]
    Backbone(#[from] cxr_core::Error),
    /// A loss or head failed (includes configuration errors of the DINOv2 config).
    #[error("loss: {0}")]
    Loss(#[from] dino_loss::Error),
    /// Optimizer, checkpoint, log or NaN guard.
    #[error("training: {0}")]
    Train(#[from] train_utils::Error),
    /// Decoding, augmentation or manifest reading.
    #[error("data: {0}")]
    Data(#[from] cxr_data::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
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

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
