//! Image–text contrastive objectives for MI2-style (MedImageInsight) training: UniCL, CLIP
//! InfoNCE and SigLIP behind one trait, [`ContrastiveLoss`], plus the label plumbing UniCL
//! needs. There is no distributed gather: the global batch is the local batch.
//!
//! # The objectives
//! With image embeddings `U` and text embeddings `V` (`[n, d]`, row `i` of both from sample
//! `i`) and logits `s = τ · U Vᵀ (+ b)`:
//! - [`UniClLoss`] (Yang et al. 2022): `T_ij = [y_i == y_j]`,
//!   `L = ½ (SoftCE(s, T̂) + SoftCE(sᵀ, T̂))` where `T̂_ij = T_ij / |P(i)|` is `T` row-normalised
//!   and `SoftCE(x, t) = mean_i Σ_j −t_ij log softmax(x_i)_j` (timm's
//!   `SoftTargetCrossEntropy`, which UniCL's training script applies to `τ · U Vᵀ`). `T` is
//!   symmetric, so one `T̂` serves both directions. With all-unique labels this is exactly
//!   [`ClipLoss`].
//! - [`ClipLoss`]: open_clip's `ClipLoss` (world size 1), labels ignored.
//! - [`SigLipLoss`]: open_clip's `SigLipLoss` (world size 1):
//!   `−1/n Σ_ij log σ(z_ij s_ij)`, `z = 2T − 1` (the reference's `2I − 1` for unique labels).
//!
//! # Conventions
//! - **No normalisation inside the losses.** UniCL (`encode_image/encode_text(norm=True)`) and
//!   open_clip normalise in the encoders and the losses use the embeddings as given; so do we.
//!   [`l2_normalize`] is there for encoders that do not normalise.
//! - **Logit scale.** The trainable parameter is `θ` and the losses take `scale = exp(θ)`
//!   ([`LogitParams::scale`]). Inits: UniCL `θ = 1` (`nn.Parameter(torch.ones([]))`, scale
//!   `e ≈ 2.72`, checked against `microsoft/UniCL` `model/model.py`); CLIP `θ = ln(1/0.07)`;
//!   SigLIP `θ = ln 10`, bias `b = −10` (SigLIP paper / open_clip). Clamping follows open_clip's
//!   training loop: after each optimizer step `θ ← clamp(θ, 0, ln 100)`
//!   ([`LogitParams::clamp_`]), so the scale stays in `[1, 100]`; the forward pass itself is
//!   unclamped and always passes a gradient to `θ`. (UniCL's public code shows no clamp.)
//!   Exclude `θ` from weight decay.
//! - **Labels.** [`BatchTargets`] groups the samples of a batch: label ids, multi-label
//!   [`LabelSet`]s (equal sets = one combined label; [`CombinedLabelIds`] gives stable ids)
//!   and reports (always unique) can be mixed. [`PromptTemplates`] turns a label set into
//!   text (templates × finding synonyms; the empty set gets a "no acute findings"-style
//!   text); [`PromptSampler`] draws one text per sample and step from `(seed, step, index)`,
//!   and [`PromptSampler::assemble`] builds the texts and targets of a mixed batch.
//! - **Gradients.** Everything is built from differentiable candle primitives
//!   (`cxr_core::ops::log_softmax_last_dim`, never the fused softmax); the parity tests check
//!   values and gradients w.r.t. `U`, `V`, `θ` and `b` against PyTorch (`tests/gen.py`).
//!
//! # Example
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use unicl_loss::{l2_normalize, BatchItem, LabelSet, LossKind, PromptSampler, PromptTemplates};
//!
//! # fn main() -> unicl_loss::Result<()> {
//! let dev = Device::Cpu;
//! let sampler = PromptSampler::new(PromptTemplates::nih_chestxray14(), 42)?;
//! let cardio_effusion = LabelSet::new([1, 4]);
//! let normal = LabelSet::default();
//! let items = [
//!     BatchItem::Labels(&cardio_effusion),
//!     BatchItem::Report("Small left pleural effusion."),
//!     BatchItem::Labels(&normal),
//!     BatchItem::Labels(&cardio_effusion),
//! ];
//! let batch = sampler.assemble(&items, /* step */ 0)?;
//! assert_eq!(batch.texts.len(), 4); // encode these with the text tower
//! assert_eq!(batch.targets.n_positives(0), Some(2)); // samples 0 and 3 share labels
//!
//! let kind = LossKind::Unicl;
//! let params = kind.init_params(DType::F32, &dev)?; // θ = 1
//! let img = l2_normalize(&Tensor::randn(0f32, 1.0, (4, 32), &dev)?)?;
//! let txt = l2_normalize(&Tensor::randn(0f32, 1.0, (4, 32), &dev)?)?;
//! let loss = kind.build().loss(&img, &txt, &batch.targets, &params.scale()?, params.bias())?;
//! let grads = loss.backward()?;
//! assert!(grads.get(params.log_scale().as_tensor()).is_some());
//! // after the optimizer step:
//! params.clamp_()?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod batch;
mod error;
mod logit;
mod losses;
mod prompts;
mod targets;

pub use batch::{BatchItem, TextBatch};
pub use error::{Error, Result};
pub use logit::{
    clip_init_log_scale, siglip_init_log_scale, LogitParams, MAX_LOGIT_SCALE, SIGLIP_INIT_BIAS,
    UNICL_INIT_LOG_SCALE,
};
pub use losses::{
    l2_normalize, logits, ClipLoss, ContrastiveLoss, LossKind, SigLipLoss, UniClLoss,
};
pub use prompts::{
    Finding, PromptSampler, PromptTemplates, TextLabel, TextUnit, FINDINGS_PLACEHOLDER,
    FINDING_PLACEHOLDER,
};
pub use targets::{BatchTargets, BatchTargetsBuilder, CombinedLabelIds, LabelSet};
