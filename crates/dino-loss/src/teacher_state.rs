//! What the DINO and iBOT losses share: the student temperature and the teacher's EMA center,
//! and the order in which a step uses and then updates that center.

use candle_core::{Device, Tensor};

use crate::teacher::{teacher_targets, TeacherMode};
use crate::{Center, Error, Result};

/// Student temperature plus the teacher center of one loss (dinov2 keeps one per loss).
#[derive(Debug, Clone)]
pub(crate) struct TeacherState {
    pub(crate) student_temp: f64,
    pub(crate) center: Center,
}

impl TeacherState {
    pub(crate) fn new(
        k: usize,
        student_temp: f64,
        center_momentum: f64,
        device: &Device,
    ) -> Result<Self> {
        if !(student_temp.is_finite() && student_temp > 0.0) {
            return Err(Error::Config(format!(
                "student temperature must be positive, got {student_temp}"
            )));
        }
        Ok(Self {
            student_temp,
            center: Center::zeros(k, center_momentum, device)?,
        })
    }

    /// Targets from the current center, then (centering only) the center takes this batch's
    /// mean: dinov2's order. Sinkhorn-Knopp leaves the center alone and normalises over
    /// `n_samples` rows.
    pub(crate) fn targets(
        &mut self,
        logits: &Tensor,
        temp: f64,
        mode: TeacherMode,
        n_samples: usize,
    ) -> Result<Tensor> {
        let targets = teacher_targets(logits, mode, self.center.value(), temp, n_samples as f64)?;
        if mode == TeacherMode::Centering {
            self.center.update(logits)?;
        }
        Ok(targets)
    }
}
