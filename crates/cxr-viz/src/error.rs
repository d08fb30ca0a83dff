use std::path::PathBuf;

/// Errors of the visualisation toolkit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An encoder or tensor operation failed.
    #[error(transparent)]
    Core(#[from] cxr_core::Error),

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// An input has an unusable shape.
    #[error("{name}: expected {expected}, found shape {found:?}")]
    Shape {
        /// What the input is.
        name: String,
        /// What was expected, in words.
        expected: String,
        /// The shape that came in.
        found: Vec<usize>,
    },

    /// An input holds an unusable value (NaN, a zero vector, an out-of-range option).
    #[error("{name}: {reason}")]
    BadValue {
        /// What the input is.
        name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The symmetric eigen-solver did not converge.
    #[error("Jacobi eigen-solver did not converge on a {dim}x{dim} matrix after {sweeps} sweeps (off-diagonal norm {off:e})")]
    NoConvergence {
        /// The matrix size.
        dim: usize,
        /// Sweeps done.
        sweeps: usize,
        /// Remaining off-diagonal Frobenius norm.
        off: f64,
    },

    /// An image could not be written.
    #[error("{path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Shorthand for `Result<T, cxr_viz::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn bad(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::BadValue {
            name: name.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn shape(
        name: impl Into<String>,
        expected: impl Into<String>,
        found: &[usize],
    ) -> Self {
        Error::Shape {
            name: name.into(),
            expected: expected.into(),
            found: found.to_vec(),
        }
    }
}
