//! Errors of the pipeline: which stage failed and why.
use std::path::{Path, PathBuf};

/// A pipeline error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stage failed; `message` carries the library crate's error.
    #[error("{stage}: {message}")]
    Stage {
        /// Stage or step name.
        stage: String,
        /// What went wrong.
        message: String,
    },
    /// Settings that cannot work.
    #[error("invalid pipeline settings: {0}")]
    Invalid(String),
    /// File-system error.
    #[error("{path}: {message}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn stage(stage: &str, message: impl std::fmt::Display) -> Self {
        Self::Stage {
            stage: stage.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Maps any library error into a stage error.
pub(crate) trait Context<T> {
    fn ctx(self, stage: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, stage: &str) -> Result<T> {
        self.map_err(|e| Error::stage(stage, e))
    }
}
