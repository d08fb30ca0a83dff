use std::path::PathBuf;

/// Errors shared by encoders and the code that loads them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// A configuration file could not be parsed or holds an unusable value.
    #[error("{path}: invalid configuration: {reason}")]
    Config {
        /// The file (or a description of the source when not a file).
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },

    /// A weight file lacks a tensor the model needs.
    #[error("{file}: missing tensor `{tensor}` (expected shape {expected:?})")]
    MissingTensor {
        /// The weight file or directory.
        file: PathBuf,
        /// The tensor name, in the file's key layout.
        tensor: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },

    /// A weight file holds a tensor of the wrong shape.
    #[error("{file}: tensor `{tensor}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The weight file or directory.
        file: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },

    /// A weight file holds tensors the model does not use.
    #[error("{file}: unexpected tensors the model does not use: {tensors:?}")]
    UnexpectedTensors {
        /// The weight file or directory.
        file: PathBuf,
        /// Their names.
        tensors: Vec<String>,
    },

    /// An input has a shape the encoder cannot take.
    #[error("bad input `{name}`: expected {expected}, got shape {found:?}")]
    BadInput {
        /// Which input.
        name: String,
        /// What was expected, in words.
        expected: String,
        /// The shape received.
        found: Vec<usize>,
    },

    /// A model could not be located (hub cache, directory).
    #[error("model not found: {0}")]
    NotFound(String),
}

/// Result with the shared [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the file it concerns.
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
}
