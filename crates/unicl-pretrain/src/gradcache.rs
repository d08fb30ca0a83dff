//! The contrastive gradient of a batch, whole or in GradCache chunks.
//!
//! A contrastive loss couples every sample of the batch through the softmax denominators,
//! so averaging the gradients of independent micro-batches is a different objective (each
//! image then only sees the negatives of its own micro-batch). GradCache (Gao et al. 2021)
//! keeps the full-batch objective with micro-batch activation memory:
//!
//! 1. encode every chunk and keep only the (detached) embeddings `U`, `V`;
//! 2. compute the loss on the full `[B, P]` embeddings and back-propagate it to `∂L/∂U`,
//!    `∂L/∂V` (and the logit scale, which only the loss touches);
//! 3. re-encode each chunk with its graph and back-propagate the surrogate
//!    `Σ u·∂L/∂u + Σ v·∂L/∂v`, whose parameter gradient is the chunk's share of `∂L/∂θ`;
//!    the shares add up to the full-batch gradient.
//!
//! Cost: one extra forward pass of both towers (about +1/3 compute); memory: one chunk's
//! activations plus the `B × P` embeddings and the `B × B` logits.

use candle_core::{Tensor, Var};
use dual_encoder::{DualEncoder, TokenBatch};
use train_utils::{NamedGrads, NamedVars};
use unicl_loss::{BatchTargets, ContrastiveLoss};

use crate::Result;

/// The loss value and the gradient of every variable in `vars` for one batch.
#[derive(Debug, Clone)]
pub struct BatchGradients {
    /// The batch loss.
    pub loss: f64,
    /// Gradients by variable name.
    pub grads: NamedGrads,
}

fn narrow_tokens(t: &TokenBatch, start: usize, len: usize) -> Result<TokenBatch> {
    Ok(TokenBatch {
        input_ids: t.input_ids.narrow(0, start, len)?,
        attention_mask: t.attention_mask.narrow(0, start, len)?,
    })
}

/// How the image tower takes part in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageTower {
    /// Trained: training mode, gradients through every layer.
    Trained,
    /// Locked (LiT): inference mode, detached features; only the projection trains.
    Locked,
}

fn encode_image(model: &DualEncoder, pixels: &Tensor, tower: ImageTower) -> Result<Tensor> {
    Ok(match tower {
        ImageTower::Trained => model.encode_image(pixels, true)?,
        ImageTower::Locked => model.encode_image_locked(pixels)?,
    })
}

/// One contrastive batch: images, their texts and the targets that pair them.
#[derive(Debug, Clone, Copy)]
pub struct BatchInputs<'a> {
    /// `[B, 3, H, W]` preprocessed images.
    pub pixels: &'a Tensor,
    /// The `B` tokenised texts.
    pub tokens: &'a TokenBatch,
    /// Which texts are positives for which image.
    pub targets: &'a BatchTargets,
}

/// Back-propagates the whole batch at once (activation memory grows with the batch).
pub fn full_batch_gradients(
    model: &DualEncoder,
    tower: ImageTower,
    loss: &dyn ContrastiveLoss,
    vars: &NamedVars,
    inputs: BatchInputs<'_>,
) -> Result<BatchGradients> {
    let BatchInputs {
        pixels,
        tokens,
        targets,
    } = inputs;
    let img = encode_image(model, pixels, tower)?;
    let txt = model.encode_text(tokens)?;
    let l = loss.loss(&img, &txt, targets, &model.scale()?, None)?;
    let value = f64::from(l.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?);
    let store = l.backward()?;
    Ok(BatchGradients {
        loss: value,
        grads: NamedGrads::from_store(&store, vars),
    })
}

/// The same gradient as [`full_batch_gradients`], with at most `chunk` samples' activations
/// alive at a time (see the module docs).
pub fn grad_cache_gradients(
    model: &DualEncoder,
    tower: ImageTower,
    loss: &dyn ContrastiveLoss,
    vars: &NamedVars,
    inputs: BatchInputs<'_>,
    chunk: usize,
) -> Result<BatchGradients> {
    let BatchInputs {
        pixels,
        tokens,
        targets,
    } = inputs;
    let n = pixels.dim(0)?;
    let chunk = chunk.max(1);
    let ranges: Vec<(usize, usize)> = (0..n)
        .step_by(chunk)
        .map(|s| (s, chunk.min(n - s)))
        .collect();
    // a locked tower gives the same features in both passes: run it once per chunk
    let locked_features = match tower {
        ImageTower::Locked => Some(
            ranges
                .iter()
                .map(|&(s, len)| {
                    Ok(model
                        .image_features(&pixels.narrow(0, s, len)?, false)?
                        .detach())
                })
                .collect::<Result<Vec<Tensor>>>()?,
        ),
        ImageTower::Trained => None,
    };
    let embed_image = |k: usize| -> Result<Tensor> {
        let (s, len) = ranges[k];
        Ok(match &locked_features {
            Some(f) => model.project_image(&f[k])?,
            None => model.encode_image(&pixels.narrow(0, s, len)?, true)?,
        })
    };
    // 1. embeddings only: each chunk's graph is dropped as soon as it is detached
    let mut imgs = Vec::with_capacity(ranges.len());
    let mut txts = Vec::with_capacity(ranges.len());
    for (k, &(s, len)) in ranges.iter().enumerate() {
        imgs.push(embed_image(k)?.detach());
        txts.push(model.encode_text(&narrow_tokens(tokens, s, len)?)?.detach());
    }
    let u = Var::from_tensor(&Tensor::cat(&imgs, 0)?)?;
    let v = Var::from_tensor(&Tensor::cat(&txts, 0)?)?;
    drop((imgs, txts));
    // 2. the full-batch loss and its gradient w.r.t. the embeddings (and the logit scale)
    let l = loss.loss(u.as_tensor(), v.as_tensor(), targets, &model.scale()?, None)?;
    let value = f64::from(l.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?);
    let store = l.backward()?;
    let gu = store
        .get(u.as_tensor())
        .cloned()
        .unwrap_or(u.as_tensor().zeros_like()?);
    let gv = store
        .get(v.as_tensor())
        .cloned()
        .unwrap_or(v.as_tensor().zeros_like()?);
    let mut grads = NamedGrads::from_store(&store, vars);
    drop(store);
    // 3. per chunk: re-encode with the graph and back-propagate the cached embedding grads
    for (k, &(s, len)) in ranges.iter().enumerate() {
        let ui = embed_image(k)?;
        let vi = model.encode_text(&narrow_tokens(tokens, s, len)?)?;
        let surrogate = ((ui * gu.narrow(0, s, len)?)?.sum_all()?
            + (vi * gv.narrow(0, s, len)?)?.sum_all()?)?;
        let part = NamedGrads::from_store(&surrogate.backward()?, vars);
        for (name, g) in part.iter() {
            let total = match grads.get(name) {
                Some(acc) => (acc + g)?,
                None => g.clone(),
            };
            grads.insert(name.clone(), total);
        }
    }
    Ok(BatchGradients { loss: value, grads })
}
