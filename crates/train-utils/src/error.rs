use std::path::PathBuf;

/// Errors of the training utilities.
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

    /// A JSON state file could not be parsed or written.
    #[error("{path}: {reason}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },

    /// A loss became NaN or infinite: the run stops before anything is written.
    #[error(
        "step {step}: loss `{name}` is {value}; stopping the run (the last good checkpoint is \
         left intact; lower the learning rate or check the inputs)"
    )]
    NonFinite {
        /// The training step.
        step: u64,
        /// Which loss term.
        name: String,
        /// Its value.
        value: f64,
    },

    /// Two sets of named tensors do not line up (missing name or shape mismatch).
    #[error("tensor `{name}`: {reason}")]
    Mismatch {
        /// The tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The training loop could not go on (its batch thread stopped).
    #[error("training loop: {0}")]
    Loop(String),

    /// Plotting failed.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// The backend's message.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn mismatch(name: &str, reason: impl Into<String>) -> Self {
        Self::Mismatch {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}
