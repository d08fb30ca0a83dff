use std::path::PathBuf;

/// Errors of the dual-encoder crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error shared with the encoders of the workspace (I/O, configuration, weights, input).
    #[error(transparent)]
    Core(#[from] cxr_core::Error),

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A tokenizer could not be built or failed on an input.
    #[error("tokenizer {source_name}: {reason}")]
    Tokenizer {
        /// The tokenizer file, or a description of where the tokenizer came from.
        source_name: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// An argument is unusable (empty class list, template without `{}`, bad `k`, …).
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// Which argument.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn arg(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            name: name.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_input(name: &str, expected: impl Into<String>, found: &[usize]) -> Self {
        Self::Core(cxr_core::Error::BadInput {
            name: name.into(),
            expected: expected.into(),
            found: found.to_vec(),
        })
    }
}
