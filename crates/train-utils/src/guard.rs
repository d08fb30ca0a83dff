//! Stop on NaN/Inf losses.

use crate::{Error, Result};

/// Returns [`Error::NonFinite`] for the first loss term that is NaN or infinite. Call it
/// before the optimizer step and before any checkpoint write, so the last good checkpoint
/// stays the latest one.
pub fn check_finite<S: AsRef<str>>(step: u64, losses: &[(S, f64)]) -> Result<()> {
    for (name, value) in losses {
        if !value.is_finite() {
            return Err(Error::NonFinite {
                step,
                name: name.as_ref().to_string(),
                value: *value,
            });
        }
    }
    Ok(())
}
