use candle_core::Tensor;

use super::{logits, symmetric_soft_ce, ContrastiveLoss};
use crate::{BatchTargets, Result};

/// UniCL (Yang et al., 2022): `L = (L_i2t + L_t2i) / 2` with
/// `L_i2t = −mean_i 1/|P(i)| Σ_{k∈P(i)} log softmax(s_i)_k`, `s = τ·U Vᵀ` and `P(i)` every text
/// of the batch sharing image `i`'s label; `L_t2i` the same on `sᵀ`. Equals [`super::ClipLoss`]
/// when all labels are unique.
#[derive(Debug, Clone, Copy, Default)]
pub struct UniClLoss;

impl ContrastiveLoss for UniClLoss {
    fn name(&self) -> &'static str {
        "unicl"
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
        let t = targets.normalized_target_matrix(s.dtype(), s.device())?;
        symmetric_soft_ce(&s, &t)
    }
}
