use std::path::PathBuf;

/// Errors of the segmentation heads, losses, training loop and mask writers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// The encoder failed.
    #[error(transparent)]
    Encoder(#[from] cxr_core::Error),

    /// Decoding or preprocessing an image failed.
    #[error(transparent)]
    Data(#[from] cxr_data::Error),

    /// An input tensor has a shape or value the operation cannot take.
    #[error("bad input `{name}`: expected {expected}, got shape {found:?}")]
    BadInput {
        /// Which input.
        name: String,
        /// What was expected, in words.
        expected: String,
        /// The shape received.
        found: Vec<usize>,
    },

    /// A configuration holds an unusable value.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A file could not be written or read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// An image could not be encoded or decoded.
    #[error("{path}: {error}")]
    Image {
        /// The file.
        path: PathBuf,
        /// What the image codec said.
        error: image::ImageError,
    },
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A shape error for input `name`.
    pub fn bad_input(
        name: impl Into<String>,
        expected: impl Into<String>,
        found: &[usize],
    ) -> Self {
        Self::BadInput {
            name: name.into(),
            expected: expected.into(),
            found: found.to_vec(),
        }
    }
}
