use std::path::PathBuf;

/// Errors of the data pipeline. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// A file is corrupt, truncated or otherwise not decodable.
    #[error("{path}: cannot decode: {reason}")]
    Decode {
        /// The file (or the shard member name).
        path: PathBuf,
        /// Why decoding failed.
        reason: String,
    },

    /// A file is well-formed but uses a feature this build cannot handle
    /// (a transfer syntax without a codec, a colour model, several frames, …).
    #[error("{path}: unsupported: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },

    /// A configuration file (e.g. `preprocessor_config.json`) is unusable.
    #[error("{path}: invalid configuration: {reason}")]
    Config {
        /// The file, or a description of the source.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },

    /// A manifest row could not be parsed.
    #[error("{path}:{line}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line number in the file (the header is line 1).
        line: u64,
        /// What is wrong with that line.
        reason: String,
    },

    /// A tar shard is malformed.
    #[error("{path}: bad shard: {reason}")]
    Shard {
        /// The shard file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An argument is out of its valid range.
    #[error("invalid argument: {0}")]
    Invalid(String),

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }

    /// A decoding error for `path`.
    pub fn decode(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Decode {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// An unsupported-feature error for `path`.
    pub fn unsupported(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Unsupported {
            path: path.into(),
            reason: reason.into(),
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
