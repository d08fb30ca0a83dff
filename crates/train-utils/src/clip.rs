//! Gradient clipping by global norm (`torch.nn.utils.clip_grad_norm_`).

use crate::{NamedGrads, Result};

/// Scales the gradients of `names` (all gradients when `None`) so that their global L2 norm
/// is at most `max_norm`; returns the norm before clipping. As PyTorch: coefficient
/// `max_norm / (norm + 1e-6)`, applied only when below 1. dinov2 clips each student
/// sub-model (backbone, heads) separately at 3.0: call this once per sub-model.
pub fn clip_grad_norm(
    grads: &mut NamedGrads,
    names: Option<&[String]>,
    max_norm: f64,
) -> Result<f64> {
    let selected: Vec<String> = match names {
        Some(n) => n
            .iter()
            .filter(|k| grads.get(k).is_some())
            .cloned()
            .collect(),
        None => grads.iter().map(|(k, _)| k.clone()).collect(),
    };
    // per-tensor sums of squares stay on the device; one read-back for the whole norm
    // (a read per tensor would synchronise the GPU ~200 times per step)
    let mut partial = Vec::with_capacity(selected.len());
    for name in &selected {
        if let Some(g) = grads.get(name) {
            partial.push(fused_ops::optim::sum_of_squares(g)?);
        }
    }
    let sq: f64 = if partial.is_empty() {
        0.0
    } else {
        candle_core::Tensor::stack(&partial, 0)?
            .to_device(&candle_core::Device::Cpu)?
            .to_vec1::<f64>()?
            .iter()
            .sum()
    };
    let norm = sq.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for name in &selected {
            if let Some(g) = grads.get(name) {
                let scaled = (g * coef)?;
                grads.insert(name.clone(), scaled);
            }
        }
    }
    Ok(norm)
}
