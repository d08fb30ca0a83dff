//! Multi-head self-attention with the `transformers` key layout
//! (`attention.attention.{query,key,value}`, `attention.output.dense`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::Linear;

/// Self-attention of one block.
#[derive(Debug, Clone)]
pub struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Loads the projections under `vb` (the block's `attention` prefix).
    pub fn new(dim: usize, heads: usize, qkv_bias: bool, vb: VarBuilder) -> Result<Self> {
        let inner = vb.pp("attention");
        Ok(Self {
            query: Linear::new(dim, dim, qkv_bias, inner.pp("query"))?,
            key: Linear::new(dim, dim, qkv_bias, inner.pp("key"))?,
            value: Linear::new(dim, dim, qkv_bias, inner.pp("value"))?,
            output: Linear::new(dim, dim, true, vb.pp("output").pp("dense"))?,
            heads,
            head_dim: dim / heads,
        })
    }

    /// The fused q/k/v projection: weight `[3D, D]` and, with `qkv_bias`, bias `[3D]`.
    pub(crate) fn qkv_params(&self) -> Result<(Tensor, Option<Tensor>)> {
        let weight = Tensor::cat(
            &[self.query.weight(), self.key.weight(), self.value.weight()],
            0,
        )?;
        let bias = match (self.query.bias(), self.key.bias(), self.value.bias()) {
            (Some(q), Some(k), Some(v)) => Some(Tensor::cat(&[q, k, v], 0)?),
            _ => None,
        };
        Ok((weight, bias))
    }

    /// The output projection.
    pub(crate) fn output(&self) -> &Linear {
        &self.output
    }

    /// `(heads, head_dim)`.
    pub(crate) fn heads(&self) -> (usize, usize) {
        (self.heads, self.head_dim)
    }

    /// Attention of `x` `[B, N, D]`; with `keep_probs`, also the `[B, heads, N, N]` attention
    /// probabilities (what `transformers` returns with `output_attentions=True`).
    pub fn forward(&self, x: &Tensor, keep_probs: bool) -> Result<(Tensor, Option<Tensor>)> {
        // one GEMM for q, k and v: the three projections read the same input
        let (weight, bias) = self.qkv_params()?;
        let qkv = Linear::apply(x, &weight, bias.as_ref())?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let (ctx, probs) = if keep_probs {
            let (ctx, probs) = fused_ops::self_attention_with_probs(&qkv, self.heads, scale)?;
            (ctx, Some(probs))
        } else {
            (fused_ops::self_attention(&qkv, self.heads, scale)?, None)
        };
        Ok((self.output.forward(&ctx)?, probs))
    }

    /// Attention of images of different lengths in one token matrix `x` `[T, D]`, the tokens
    /// of `groups` `(images, tokens each)` one image after another; each image attends to its
    /// own tokens only ([`fused_ops::self_attention_varlen`]).
    pub fn forward_varlen(&self, x: &Tensor, groups: &[(usize, usize)]) -> Result<Tensor> {
        let (weight, bias) = self.qkv_params()?;
        let qkv = Linear::apply(x, &weight, bias.as_ref())?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let ctx = fused_ops::self_attention_varlen(&qkv, groups, self.heads, scale)?;
        self.output.forward(&ctx)
    }
}
