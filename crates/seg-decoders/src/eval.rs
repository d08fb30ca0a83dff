//! Prediction and Dice evaluation of a trained head.

use candle_core::{DType, Tensor};
use cxr_core::{Encoder, Features};

use crate::heads::SegmentationHead;
use crate::layers::Mode;
use crate::loss::Activation;
use crate::train::SegBatch;
use crate::{Error, Result};

/// Dice of one image, per class and averaged.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageDice {
    /// Index of the batch in the evaluated slice.
    pub batch: usize,
    /// Index of the image within its batch.
    pub index: usize,
    /// Dice per class: `2|P∩T| / (|P| + |T|)`, 1 when both are empty.
    pub per_class: Vec<f64>,
    /// Mean over classes.
    pub mean: f64,
}

/// Binary masks `[B, K, H, W]` (f32 0/1) from logits: sigmoid > 0.5 (logit > 0) for
/// multi-label heads, a one-hot argmax for softmax heads.
pub fn binarize(logits: &Tensor, activation: Activation) -> Result<Tensor> {
    Ok(match activation {
        Activation::Sigmoid => logits.gt(0.0)?.to_dtype(DType::F32)?,
        Activation::Softmax => {
            let k = logits.dim(1)?;
            let arg = logits.argmax_keepdim(1)?;
            let classes = Tensor::arange(0u32, k as u32, logits.device())?.reshape((1, k, 1, 1))?;
            arg.broadcast_eq(&classes)?.to_dtype(DType::F32)?
        }
    })
}

/// Per-image, per-class Dice of binary predictions against binary targets (both
/// `[B, K, H, W]`).
pub fn dice_per_image(pred: &Tensor, target: &Tensor) -> Result<Vec<Vec<f64>>> {
    if pred.dims() != target.dims() || pred.rank() != 4 {
        return Err(Error::bad_input(
            "target masks",
            format!("[B, K, H, W] equal to the predictions' {:?}", pred.dims()),
            target.dims(),
        ));
    }
    let p = pred.to_dtype(DType::F32)?.gt(0.5)?.to_dtype(DType::F32)?;
    let t = target.to_dtype(DType::F32)?.gt(0.5)?.to_dtype(DType::F32)?;
    let inter: Vec<Vec<f32>> = (&p * &t)?.sum(3)?.sum(2)?.to_vec2()?;
    let ps: Vec<Vec<f32>> = p.sum(3)?.sum(2)?.to_vec2()?;
    let ts: Vec<Vec<f32>> = t.sum(3)?.sum(2)?.to_vec2()?;
    Ok(inter
        .iter()
        .zip(&ps)
        .zip(&ts)
        .map(|((i, p), t)| {
            i.iter()
                .zip(p)
                .zip(t)
                .map(|((&i, &p), &t)| {
                    if p + t == 0.0 {
                        1.0
                    } else {
                        2.0 * i as f64 / (p + t) as f64
                    }
                })
                .collect()
        })
        .collect())
}

/// Runs the encoder (inference mode, no gradients kept) and the head on `images`.
pub fn predict_logits<E: Encoder + ?Sized, H: SegmentationHead + ?Sized>(
    encoder: &E,
    head: &H,
    images: &Tensor,
) -> Result<Tensor> {
    let feats = detached(&encoder.forward_features(images, &head.feature_request(false))?)?;
    let (h, w) = (images.dim(2)?, images.dim(3)?);
    Ok(head.forward(&feats, (h, w), &mut Mode::Eval)?.detach())
}

/// Per-image Dice of the head's binarised predictions over `batches`.
pub fn evaluate<E: Encoder + ?Sized, H: SegmentationHead + ?Sized>(
    encoder: &E,
    head: &H,
    batches: &[SegBatch],
    activation: Activation,
) -> Result<Vec<ImageDice>> {
    let mut out = Vec::new();
    for (bi, batch) in batches.iter().enumerate() {
        let logits = predict_logits(encoder, head, &batch.images)?;
        let pred = binarize(&logits, activation)?;
        for (index, per_class) in dice_per_image(&pred, &batch.masks)?.into_iter().enumerate() {
            let mean = per_class.iter().sum::<f64>() / per_class.len().max(1) as f64;
            out.push(ImageDice {
                batch: bi,
                index,
                per_class,
                mean,
            });
        }
    }
    Ok(out)
}

/// The features with every tensor cut from the autograd graph (frozen backbone).
pub fn detached(f: &Features) -> Result<Features> {
    Ok(Features {
        pooled: f.pooled.detach(),
        patch_tokens: f.patch_tokens.detach(),
        grid: f.grid,
        intermediates: f
            .intermediates
            .iter()
            .map(|i| cxr_core::Intermediate {
                layer: i.layer,
                tokens: i.tokens.detach(),
                grid: i.grid,
                cls: i.cls.as_ref().map(|c| c.detach()),
            })
            .collect(),
    })
}
