//! Segmentation losses: pixel-wise BCE-with-logits (multi-label masks) and cross-entropy
//! (multi-class label maps), soft Dice, class weights. All differentiable in the logits.
//!
//! Definitions (checked against PyTorch in `tests/loss_parity.rs`):
//! - BCE: `F.binary_cross_entropy_with_logits(x, y, weight=w[None, :, None, None])`, mean
//!   over every element;
//! - CE: `F.cross_entropy(x, t, weight=w, ignore_index=i)`: `Σ w_t · nll / Σ w_t` over the
//!   pixels that are not ignored;
//! - soft Dice (MONAI's `DiceLoss(batch=False)` with `smooth_nr = smooth_dr = s`): per image
//!   and class `1 − (2 Σ p·y + s) / (Σ p + Σ y + s)` with `p` the sigmoid or softmax
//!   probabilities, averaged over images, then over classes (weighted by `w` when given).

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How logits become probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Independent per-class sigmoids: multi-label masks, overlapping structures.
    Sigmoid,
    /// Softmax over classes: exactly one class per pixel.
    Softmax,
}

/// A combined pixel + Dice loss over masks `[B, K, H, W]` in {0, 1}.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    /// `Sigmoid`: BCE + sigmoid Dice. `Softmax`: CE (label = the mask's argmax; pixels
    /// whose masks are all zero are ignored) + softmax Dice.
    pub activation: Activation,
    /// Weight of the pixel-wise term.
    pub pixel_weight: f64,
    /// Weight of the soft-Dice term.
    pub dice_weight: f64,
    /// Dice smoothing `s`.
    pub dice_smooth: f64,
    /// Per-class weights (length `K`), for both terms.
    pub class_weights: Option<Vec<f32>>,
}

impl Default for LossConfig {
    /// BCE + Dice with equal weights, the multi-label setting of the lung/tube tasks.
    fn default() -> Self {
        Self {
            activation: Activation::Sigmoid,
            pixel_weight: 1.0,
            dice_weight: 1.0,
            dice_smooth: 1e-5,
            class_weights: None,
        }
    }
}

impl LossConfig {
    /// The combined loss of `logits` against `masks` (both `[B, K, H, W]`).
    pub fn loss(&self, logits: &Tensor, masks: &Tensor) -> Result<Tensor> {
        let w = self.class_weights.as_deref();
        let pixel = match self.activation {
            Activation::Sigmoid => bce_with_logits(logits, masks, w)?,
            Activation::Softmax => {
                let (labels, valid) = labels_from_masks(masks)?;
                cross_entropy_masked(logits, &labels, &valid, w)?
            }
        };
        let dice = soft_dice_loss(logits, masks, self.activation, self.dice_smooth, w)?;
        Ok(((pixel * self.pixel_weight)? + (dice * self.dice_weight)?)?)
    }
}

fn check_same(logits: &Tensor, target: &Tensor) -> Result<(usize, usize, usize, usize)> {
    let dims = logits
        .dims4()
        .map_err(|_| Error::bad_input("logits", "[B, K, H, W]", logits.dims()))?;
    if target.dims() != logits.dims() {
        return Err(Error::bad_input(
            "masks",
            format!("the logits' shape {:?}", logits.dims()),
            target.dims(),
        ));
    }
    Ok(dims)
}

fn class_weight_tensor(w: &[f32], k: usize, like: &Tensor) -> Result<Tensor> {
    if w.len() != k {
        return Err(Error::bad_input(
            "class weights",
            format!("{k} weights, one per class"),
            &[w.len()],
        ));
    }
    Ok(Tensor::from_slice(w, (1, k, 1, 1), like.device())?.to_dtype(like.dtype())?)
}

/// Mean binary cross-entropy with logits (numerically stable form
/// `max(x, 0) − x·y + log(1 + e^{−|x|})`), optionally weighted per class.
pub fn bce_with_logits(
    logits: &Tensor,
    target: &Tensor,
    class_weights: Option<&[f32]>,
) -> Result<Tensor> {
    let (_, k, _, _) = check_same(logits, target)?;
    let target = target.to_dtype(logits.dtype())?;
    let softplus = logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    let per = ((logits.relu()? - (logits * &target)?)? + softplus)?;
    let per = match class_weights {
        Some(w) => per.broadcast_mul(&class_weight_tensor(w, k, logits)?)?,
        None => per,
    };
    Ok(per.mean_all()?)
}

/// Log-probabilities over the class axis of `[B, K, H, W]` logits.
fn log_softmax_classes(logits: &Tensor) -> Result<Tensor> {
    let last = logits.permute((0, 2, 3, 1))?;
    Ok(cxr_core::ops::log_softmax_last_dim(&last)?.permute((0, 3, 1, 2))?)
}

/// One-hot `[B, K, H, W]` of a label map `[B, H, W]`; labels `>= K` give all-zero rows.
fn one_hot(labels: &Tensor, k: usize, like: &Tensor) -> Result<Tensor> {
    let classes = Tensor::arange(0u32, k as u32, labels.device())?.reshape((1, k, 1, 1))?;
    let labels = labels.to_dtype(DType::U32)?.unsqueeze(1)?;
    Ok(labels.broadcast_eq(&classes)?.to_dtype(like.dtype())?)
}

/// Weighted cross-entropy over a label map `[B, H, W]` (integer dtype), as
/// `F.cross_entropy(logits, labels, weight, ignore_index)`.
pub fn cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    class_weights: Option<&[f32]>,
    ignore_index: Option<u32>,
) -> Result<Tensor> {
    let (b, k, h, w) = logits
        .dims4()
        .map_err(|_| Error::bad_input("logits", "[B, K, H, W]", logits.dims()))?;
    if labels.dims() != [b, h, w] {
        return Err(Error::bad_input(
            "labels",
            format!("[{b}, {h}, {w}]"),
            labels.dims(),
        ));
    }
    let labels = labels.to_dtype(DType::U32)?;
    let valid = match ignore_index {
        Some(i) => labels.ne(i)?,
        None => labels.ones_like()?.to_dtype(DType::U8)?,
    };
    let max = labels.flatten_all()?.max(0)?.to_scalar::<u32>()?;
    let valid_max = (labels.to_dtype(DType::F32)? * valid.to_dtype(DType::F32)?)?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    if valid_max as usize >= k || (ignore_index.is_none() && max as usize >= k) {
        return Err(Error::bad_input(
            "labels",
            format!("class indices below {k} (or the ignore index)"),
            labels.dims(),
        ));
    }
    cross_entropy_masked(
        logits,
        &labels,
        &valid.to_dtype(logits.dtype())?,
        class_weights,
    )
}

/// Cross-entropy with a validity mask `[B, H, W]` (1 = counted).
fn cross_entropy_masked(
    logits: &Tensor,
    labels: &Tensor,
    valid: &Tensor,
    class_weights: Option<&[f32]>,
) -> Result<Tensor> {
    let k = logits.dim(1)?;
    let onehot = one_hot(labels, k, logits)?;
    let onehot = onehot.broadcast_mul(&valid.to_dtype(logits.dtype())?.unsqueeze(1)?)?;
    let weighted = match class_weights {
        Some(w) => onehot.broadcast_mul(&class_weight_tensor(w, k, logits)?)?,
        None => onehot,
    };
    let nll = (log_softmax_classes(logits)? * &weighted)?
        .sum_all()?
        .neg()?;
    let total = weighted.sum_all()?;
    Ok((nll / total)?)
}

/// Labels (argmax over classes) and validity (some class set) of `[B, K, H, W]` masks.
fn labels_from_masks(masks: &Tensor) -> Result<(Tensor, Tensor)> {
    let labels = masks.argmax(1)?;
    let valid = masks.sum(1)?.gt(0.0)?;
    Ok((labels, valid))
}

/// Soft Dice loss of `[B, K, H, W]` logits against masks of the same shape.
pub fn soft_dice_loss(
    logits: &Tensor,
    target: &Tensor,
    activation: Activation,
    smooth: f64,
    class_weights: Option<&[f32]>,
) -> Result<Tensor> {
    let (_, k, _, _) = check_same(logits, target)?;
    let target = target.to_dtype(logits.dtype())?;
    let p = match activation {
        Activation::Sigmoid => candle_nn::ops::sigmoid(logits)?,
        Activation::Softmax => log_softmax_classes(logits)?.exp()?,
    };
    let inter = (&p * &target)?.sum(D::Minus1)?.sum(D::Minus1)?;
    let denom = (p.sum(D::Minus1)?.sum(D::Minus1)? + target.sum(D::Minus1)?.sum(D::Minus1)?)?;
    let dice = ((inter * 2.0)? + smooth)?.div(&(denom + smooth)?)?;
    // [B, K] -> per-class mean loss over images
    let per_class = dice.affine(-1.0, 1.0)?.mean(0)?;
    Ok(match class_weights {
        Some(w) => {
            let w = class_weight_tensor(w, k, logits)?.flatten_all()?;
            (per_class * &w)?.sum_all()?.div(&w.sum_all()?)?
        }
        None => per_class.mean_all()?,
    })
}
