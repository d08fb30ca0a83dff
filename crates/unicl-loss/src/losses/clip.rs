use candle_core::Tensor;

use super::{logits, symmetric_soft_ce, ContrastiveLoss};
use crate::{BatchTargets, Result};

/// CLIP's symmetric InfoNCE (open_clip `ClipLoss` with world size 1): cross-entropy of each
/// image over the texts and each text over the images, the matching index as the class.
/// The targets' labels are ignored (only their length is checked): a repeated label is a
/// negative here, as in CLIP.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClipLoss;

impl ContrastiveLoss for ClipLoss {
    fn name(&self) -> &'static str {
        "clip"
    }

    fn loss(
        &self,
        img: &Tensor,
        txt: &Tensor,
        targets: &BatchTargets,
        scale: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let s = logits(img, txt, targets, scale, bias)?;
        let eye = Tensor::eye(s.dim(0)?, s.dtype(), s.device())?;
        symmetric_soft_ce(&s, &eye)
    }
}
