/// Errors of the contrastive objectives and their label/prompt plumbing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// An input tensor has a shape or dtype the loss cannot take.
    #[error("bad input `{name}`: expected {expected}, got shape {found:?}")]
    BadInput {
        /// Which input.
        name: String,
        /// What was expected, in words.
        expected: String,
        /// The shape received.
        found: Vec<usize>,
    },

    /// The batch targets do not fit the embeddings.
    #[error("batch targets: {0}")]
    Targets(String),

    /// A prompt-template set is unusable, or a label set names an unknown finding.
    #[error("prompt templates: {0}")]
    Prompt(String),
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
