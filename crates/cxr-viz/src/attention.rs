//! CLS self-attention maps per head, and DINO's top-mass thresholding.
//!
//! [`cxr_core::Encoder`] returns features, not attention, so encoders that can expose their
//! attention probabilities implement [`AttentionEncoder`] on top of it. [`Dinov2Model`] does so
//! through [`vit_backbone::ForwardOptions::attention_layers`]; its attention probabilities
//! are checked against `transformers`' `output_attentions=True` to 1e-5 in
//! `crates/vit-backbone/tests/parity.rs` (`check_all`), so they are not re-tested here.

use candle_core::{DType, Tensor};
use cxr_core::Encoder;
use vit_backbone::{Dinov2Model, ForwardOptions};

use crate::{Error, Result};

/// Attention probabilities of one layer.
#[derive(Debug, Clone)]
pub struct LayerAttention {
    /// The block index.
    pub layer: usize,
    /// `[B, heads, T, T]` softmax probabilities (rows = queries), `T = prefix + rows * cols`.
    pub probs: Tensor,
    /// Leading non-patch tokens: the class token first, then any register tokens.
    pub prefix_tokens: usize,
    /// `(rows, cols)` of the patch grid.
    pub grid: (usize, usize),
}

/// An encoder that can return the attention probabilities of a layer.
pub trait AttentionEncoder: Encoder {
    /// The number of attention layers.
    fn num_attention_layers(&self) -> usize;

    /// Runs the encoder on `pixels` (`[B, 3, H, W]`, preprocessed) and returns the attention
    /// probabilities of block `layer`.
    fn layer_attention(&self, pixels: &Tensor, layer: usize) -> Result<LayerAttention>;
}

impl AttentionEncoder for Dinov2Model {
    fn num_attention_layers(&self) -> usize {
        self.config().num_hidden_layers
    }

    fn layer_attention(&self, pixels: &Tensor, layer: usize) -> Result<LayerAttention> {
        let layers = self.num_attention_layers();
        if layer >= layers {
            return Err(Error::bad(
                "attention layer",
                format!("{layer} is out of range: the model has {layers} blocks"),
            ));
        }
        if pixels.rank() != 4 {
            return Err(Error::shape("pixels", "[B, 3, H, W]", pixels.dims()));
        }
        let out = self.forward(
            pixels,
            &ForwardOptions {
                attention_layers: vec![layer],
                ..Default::default()
            },
        )?;
        let probs = out
            .attentions
            .into_iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, p)| p)
            .ok_or_else(|| Error::bad("attention", format!("block {layer} returned none")))?;
        Ok(LayerAttention {
            layer,
            probs,
            prefix_tokens: self.prefix_tokens(),
            grid: out.grid,
        })
    }
}

/// The class token's attention over the patch grid, per head, for one image.
#[derive(Debug, Clone)]
pub struct ClsAttention {
    /// `(rows, cols)` of the grid.
    pub grid: (usize, usize),
    /// `heads` maps of `rows * cols` weights (row-major): the CLS query's attention
    /// probabilities to each patch key. Class and register keys are left out, so a map sums
    /// to less than one.
    pub heads: Vec<Vec<f64>>,
}

impl ClsAttention {
    /// The mean over heads.
    pub fn mean(&self) -> Vec<f64> {
        let n = self.grid.0 * self.grid.1;
        let h = self.heads.len().max(1) as f64;
        (0..n)
            .map(|i| self.heads.iter().map(|m| m[i]).sum::<f64>() / h)
            .collect()
    }
}

/// Extracts the CLS row (query 0) over the patch keys from `attention`, one entry per image.
pub fn cls_attention_from_layer(attention: &LayerAttention) -> Result<Vec<ClsAttention>> {
    let dims = attention.probs.dims().to_vec();
    let (rows, cols) = attention.grid;
    let n = rows * cols;
    let t = attention.prefix_tokens + n;
    if dims.len() != 4 || dims[2] != t || dims[3] != t || attention.prefix_tokens == 0 {
        return Err(Error::shape(
            "attention probabilities",
            format!("[B, heads, {t}, {t}] with a class token first"),
            &dims,
        ));
    }
    let cls = attention
        .probs
        .narrow(2, 0, 1)?
        .narrow(3, attention.prefix_tokens, n)?
        .squeeze(2)?
        .to_dtype(DType::F64)?
        .to_vec3::<f64>()?;
    Ok(cls
        .into_iter()
        .map(|heads| ClsAttention {
            grid: attention.grid,
            heads,
        })
        .collect())
}

/// CLS attention maps of block `layer` (`None`: the last block) for a batch of preprocessed
/// pixels.
pub fn cls_attention_maps(
    encoder: &dyn AttentionEncoder,
    pixels: &Tensor,
    layer: Option<usize>,
) -> Result<Vec<ClsAttention>> {
    let layers = encoder.num_attention_layers();
    let layer = match layer {
        Some(l) => l,
        None => layers
            .checked_sub(1)
            .ok_or_else(|| Error::bad("attention layer", "the encoder has no blocks"))?,
    };
    cls_attention_from_layer(&encoder.layer_attention(pixels, layer)?)
}

/// DINO's attention thresholding: the smallest set of patches whose attention, normalised to
/// sum to one, reaches `mass` (e.g. 0.6). Patches are taken by decreasing weight (ties in index
/// order); returns the kept flags.
pub fn top_mass_mask(weights: &[f64], mass: f64) -> Result<Vec<bool>> {
    if !(0.0..=1.0).contains(&mass) {
        return Err(Error::bad(
            "attention mass",
            format!("{mass} is not in [0, 1]"),
        ));
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(Error::bad(
            "attention weights",
            "must be finite and non-negative",
        ));
    }
    let total: f64 = weights.iter().sum();
    let mut keep = vec![false; weights.len()];
    if total <= 0.0 || mass == 0.0 {
        return Ok(keep);
    }
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let mut cum = 0.0;
    for i in order {
        keep[i] = true;
        cum += weights[i] / total;
        // a relative slack so that 0.1 + 0.2 + 0.3 reaches 0.6
        if cum >= mass * (1.0 - 1e-12) {
            break;
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;

    #[test]
    fn top_mass_keeps_the_smallest_sufficient_set() {
        // weights sum to 1: sorted 0.4, 0.3, 0.15, 0.1, 0.05
        let w = [0.1, 0.4, 0.05, 0.3, 0.15];
        assert_eq!(
            top_mass_mask(&w, 0.6).unwrap(),
            vec![false, true, false, true, false]
        );
        // exactly reaching the mass stops there (0.4 + 0.3 = 0.7)
        assert_eq!(
            top_mass_mask(&w, 0.7).unwrap(),
            vec![false, true, false, true, false]
        );
        assert_eq!(
            top_mass_mask(&w, 0.71).unwrap(),
            vec![false, true, false, true, true]
        );
        // unnormalised weights give the same answer
        let scaled: Vec<f64> = w.iter().map(|v| v * 7.0).collect();
        assert_eq!(
            top_mass_mask(&scaled, 0.6).unwrap(),
            top_mass_mask(&w, 0.6).unwrap()
        );
        assert!(top_mass_mask(&w, 1.0).unwrap().iter().all(|&k| k));
        assert!(top_mass_mask(&w, 0.0).unwrap().iter().all(|&k| !k));
        assert!(top_mass_mask(&w, 1.5).is_err());
        assert!(top_mass_mask(&[0.5, -0.1], 0.5).is_err());
    }

    #[test]
    fn cls_row_over_patch_keys_skips_prefix_tokens() {
        // B=1, heads=2, prefix 2 (class + 1 register), grid 1x3: T = 5
        let t = 5;
        let mut v = vec![0f32; 2 * t * t];
        for h in 0..2 {
            for k in 0..t {
                v[h * t * t + k] = (10 * h + k) as f32; // query 0 row
            }
        }
        let probs = Tensor::from_vec(v, (1, 2, t, t), &Device::Cpu).unwrap();
        let la = LayerAttention {
            layer: 0,
            probs,
            prefix_tokens: 2,
            grid: (1, 3),
        };
        let maps = cls_attention_from_layer(&la).unwrap();
        assert_eq!(maps.len(), 1);
        assert_eq!(
            maps[0].heads,
            vec![vec![2.0, 3.0, 4.0], vec![12.0, 13.0, 14.0]]
        );
        assert_eq!(maps[0].mean(), vec![7.0, 8.0, 9.0]);
        let bad = LayerAttention { grid: (2, 2), ..la };
        assert!(cls_attention_from_layer(&bad).is_err());
    }
}
