use candle_core::Tensor;

use super::{logits, ContrastiveLoss};
use crate::{BatchTargets, Result};

/// SigLIP (Zhai et al., 2023; open_clip `SigLipLoss` with world size 1):
/// `L = −1/n Σ_ij log σ(z_ij · (t·u_iᵀv_j + b))` with `z_ij = +1` for positives and `−1`
/// otherwise. Positives come from label equality (`z = 2T − 1`), which is the reference's
/// `2·I − 1` when all labels are unique.
#[derive(Debug, Clone, Copy, Default)]
pub struct SigLipLoss;

impl ContrastiveLoss for SigLipLoss {
    fn name(&self) -> &'static str {
        "siglip"
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
        let n = s.dim(0)? as f64;
        let z = ((targets.target_matrix(s.dtype(), s.device())? * 2.0)? - 1.0)?;
        // −log σ(x) = softplus(−x) = relu(−x) + log(1 + exp(−|x|)), stable for any x.
        let x = s.mul(&z)?.neg()?;
        let softplus = (x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
        Ok((softplus.sum_all()? / n)?)
    }
}
