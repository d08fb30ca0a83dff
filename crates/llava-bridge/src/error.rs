//! Typed errors of the crate.

use std::path::PathBuf;

/// Everything that can go wrong loading, running or training the report generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// The vision encoder failed. The message is `vision encoder: ` and the inner error's, so
    /// the inner error is not also returned by `source()`.
    #[error("vision encoder: {0}")]
    Encoder(cxr_core::Error),

    /// The optimizer or checkpoint code failed. The message is `training: ` and the inner
    /// error's, so the inner error is not also returned by `source()`.
    #[error("training: {0}")]
    Train(train_utils::Error),

    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },

    /// A configuration file is malformed or describes something unsupported.
    #[error("{path}: invalid configuration: {reason}")]
    Config {
        /// The file (or a description of where the setting came from).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A checkpoint lacks a tensor the model needs.
    #[error("{file}: missing tensor `{tensor}` (expected shape {expected:?})")]
    MissingTensor {
        /// The checkpoint.
        file: String,
        /// The tensor name.
        tensor: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },

    /// A tensor has the wrong shape.
    #[error("{file}: tensor `{tensor}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The checkpoint.
        file: String,
        /// The tensor name.
        tensor: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },

    /// An input to a forward pass or to generation is malformed.
    #[error("bad input `{name}`: {reason}")]
    BadInput {
        /// The argument.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// The tokenizer failed to load, train, encode or decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl From<cxr_core::Error> for Error {
    fn from(e: cxr_core::Error) -> Self {
        Self::Encoder(e)
    }
}

impl From<train_utils::Error> for Error {
    fn from(e: train_utils::Error) -> Self {
        Self::Train(e)
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }

    /// A configuration error for `path`.
    pub fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A malformed input.
    pub fn bad_input(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::BadInput {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// A tokenizer error.
    pub fn tokenizer(e: impl std::fmt::Display) -> Self {
        Self::Tokenizer(e.to_string())
    }
}
