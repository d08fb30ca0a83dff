//! The objectives behind one interface, and the pieces they share.

mod clip;
mod siglip;
mod unicl;

pub use clip::ClipLoss;
pub use siglip::SigLipLoss;
pub use unicl::UniClLoss;

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use crate::{BatchTargets, Error, LogitParams, Result};

/// An image–text contrastive objective on one (global = local) batch.
///
/// `img` and `txt` are `[n, d]` embeddings whose row `i` come from the same sample; they are
/// used as given (callers L2-normalise in the encoders, as UniCL and open_clip do).
/// `scale` is the already exponentiated logit scale `exp(θ)` (a 0-d or one-element tensor);
/// `bias`, when given, is added to every logit. The result is a 0-d tensor differentiable
/// w.r.t. all four inputs.
pub trait ContrastiveLoss: std::fmt::Debug + Send + Sync {
    /// Short name for logs.
    fn name(&self) -> &'static str;

    /// The loss value.
    fn loss(
        &self,
        img: &Tensor,
        txt: &Tensor,
        targets: &BatchTargets,
        scale: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor>;
}

/// Which objective to train with (for configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LossKind {
    /// UniCL's label-aware bidirectional soft-target cross-entropy.
    #[default]
    Unicl,
    /// CLIP's symmetric InfoNCE (labels ignored: only the diagonal is positive).
    Clip,
    /// SigLIP's pairwise sigmoid loss (positives from label equality).
    Siglip,
}

impl LossKind {
    /// The objective.
    pub fn build(self) -> Box<dyn ContrastiveLoss> {
        match self {
            Self::Unicl => Box::new(UniClLoss),
            Self::Clip => Box::new(ClipLoss),
            Self::Siglip => Box::new(SigLipLoss),
        }
    }

    /// The objective's reference initialisation of its logit parameters.
    pub fn init_params(
        self,
        dtype: candle_core::DType,
        device: &candle_core::Device,
    ) -> Result<LogitParams> {
        match self {
            Self::Unicl => LogitParams::unicl(dtype, device),
            Self::Clip => LogitParams::clip(dtype, device),
            Self::Siglip => LogitParams::siglip(dtype, device),
        }
    }
}

/// `scale · img · txtᵀ (+ bias)`, the `[n, n]` image→text logits, after checking the shapes.
pub fn logits(
    img: &Tensor,
    txt: &Tensor,
    targets: &BatchTargets,
    scale: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (n, d) = img
        .dims2()
        .map_err(|_| Error::bad_input("img", "[n, d] embeddings", img.dims()))?;
    if txt.dims() != [n, d] {
        return Err(Error::bad_input(
            "txt",
            format!("[{n}, {d}] like img"),
            txt.dims(),
        ));
    }
    if n == 0 {
        return Err(Error::bad_input("img", "a non-empty batch", img.dims()));
    }
    if targets.len() != n {
        return Err(Error::Targets(format!(
            "{} samples in the targets, {n} in the embeddings",
            targets.len()
        )));
    }
    let as_scalar = |name: &str, t: &Tensor| -> Result<Tensor> {
        if t.elem_count() != 1 {
            return Err(Error::bad_input(name, "a scalar", t.dims()));
        }
        Ok(t.reshape((1, 1))?)
    };
    let sim = img.matmul(&txt.t()?)?;
    let mut out = sim.broadcast_mul(&as_scalar("scale", scale)?)?;
    if let Some(b) = bias {
        out = out.broadcast_add(&as_scalar("bias", b)?)?;
    }
    Ok(out)
}

/// timm's `SoftTargetCrossEntropy`: `mean_i Σ_j −target_ij · log_softmax(logits_i)_j`.
pub(crate) fn soft_cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let n = logits.dim(0)? as f64;
    let logp = cxr_core::ops::log_softmax_last_dim(logits)?;
    Ok((logp.mul(target)?.sum_all()?.neg()? / n)?)
}

/// Symmetric soft cross-entropy over both directions with one row-normalised target matrix
/// (valid because the label-equality targets are symmetric).
pub(crate) fn symmetric_soft_ce(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let i2t = soft_cross_entropy(logits, target)?;
    let t2i = soft_cross_entropy(&logits.t()?.contiguous()?, target)?;
    Ok(((i2t + t2i)? * 0.5)?)
}

/// Differentiable `x / ‖x‖₂` over the last dimension (`F.normalize`, eps 1e-12), for callers
/// whose encoders do not normalise.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}
