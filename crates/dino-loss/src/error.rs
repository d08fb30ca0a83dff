/// Errors of the DINO objectives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// An input has a shape or value the objective cannot take.
    #[error("bad input `{name}`: expected {expected}, got shape {found:?}")]
    BadInput {
        /// Which input.
        name: String,
        /// What was expected, in words.
        expected: String,
        /// The shape received.
        found: Vec<usize>,
    },

    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A weight file holds a tensor of the wrong shape or lacks one.
    #[error("head weights: tensor `{tensor}`: {reason}")]
    Weights {
        /// The tensor name, in dinov2's key layout.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn bad_input(name: &str, expected: impl Into<String>, found: &[usize]) -> Self {
        Self::BadInput {
            name: name.to_string(),
            expected: expected.into(),
            found: found.to_vec(),
        }
    }
}
