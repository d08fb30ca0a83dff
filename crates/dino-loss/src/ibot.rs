//! The iBOT masked-patch loss.

use candle_core::{DType, Device, Tensor, D};
use fused_ops::log_softmax_last_dim;

use crate::teacher::TeacherMode;
use crate::teacher_state::TeacherState;
use crate::{Center, Error, Result};

/// dinov2's `iBOTPatchLoss` on the masked tokens only (`forward_masked`).
#[derive(Debug, Clone)]
pub struct IbotPatchLoss {
    state: TeacherState,
}

/// The per-token weights dinov2's collate function builds: each masked token of image `b`
/// weighs `1 / max(n_masked(b), 1)`. `masks` is `[n_images, N]` (non-zero = masked); the
/// result lists the masked tokens in row-major order, `[M]` f32.
pub fn masks_weight(masks: &Tensor) -> Result<Tensor> {
    if masks.rank() != 2 {
        return Err(Error::bad_input("masks", "[n_images, N]", masks.dims()));
    }
    let rows: Vec<Vec<f32>> = masks.to_dtype(DType::F32)?.to_vec2()?;
    let mut w = Vec::new();
    for row in rows {
        let count = row.iter().filter(|&&m| m != 0.0).count();
        let weight = 1.0 / (count.max(1) as f32);
        w.extend(row.iter().filter(|&&m| m != 0.0).map(|_| weight));
    }
    Ok(Tensor::from_vec(w.clone(), w.len(), masks.device())?)
}

impl IbotPatchLoss {
    /// A loss over `k` patch prototypes (dinov2: student temperature 0.1, momentum 0.9).
    pub fn new(k: usize, student_temp: f64, center_momentum: f64, device: &Device) -> Result<Self> {
        Ok(Self {
            state: TeacherState::new(k, student_temp, center_momentum, device)?,
        })
    }

    /// The EMA center (for checkpoints).
    pub fn center(&self) -> &Center {
        &self.state.center
    }

    /// Replaces the center (when resuming).
    pub fn set_center(&mut self, center: Center) {
        self.state.center = center;
    }

    /// Teacher targets for the teacher head's outputs on the masked patches `[M, K]`.
    /// Centering uses then updates the center with the mean over the masked tokens;
    /// Sinkhorn-Knopp uses `n_masked_total` samples (the masked count over all processes).
    pub fn teacher_targets(
        &mut self,
        teacher_masked_logits: &Tensor,
        temp: f64,
        mode: TeacherMode,
        n_masked_total: usize,
    ) -> Result<Tensor> {
        self.state
            .targets(teacher_masked_logits, temp, mode, n_masked_total)
    }

    /// `−Σ_m w_m · Σ_k t·log_softmax(s/temp) / n_images` over the `M` masked tokens.
    ///
    /// `student` and `teacher_probs` are `[M, K]` (masked tokens in row-major order of
    /// `masks`, `[n_images, N]`); `weights` defaults to [`masks_weight`]`(masks)`.
    pub fn forward_masked(
        &self,
        student: &Tensor,
        teacher_probs: &Tensor,
        masks: &Tensor,
        weights: Option<&Tensor>,
    ) -> Result<Tensor> {
        if student.dims() != teacher_probs.dims() || student.rank() != 2 {
            return Err(Error::bad_input(
                "student masked-patch logits",
                format!("[M, K] like the teacher targets {:?}", teacher_probs.dims()),
                student.dims(),
            ));
        }
        let computed;
        let weights = match weights {
            Some(w) => w,
            None => {
                computed = masks_weight(masks)?;
                &computed
            }
        };
        if weights.dims() != [student.dim(0)?] {
            return Err(Error::bad_input(
                "masks",
                format!("{} masked tokens, as many as student rows", student.dim(0)?),
                masks.dims(),
            ));
        }
        let n_images = masks.dim(0)? as f64;
        let lsm = log_softmax_last_dim(&(student / self.state.student_temp)?)?;
        let per_token = (teacher_probs.to_dtype(lsm.dtype())? * lsm)?.sum(D::Minus1)?;
        let weighted = (per_token * weights.to_dtype(student.dtype())?)?.sum_all()?;
        Ok((weighted.neg()? / n_images)?)
    }
}
