//! Channel ("group") attention (`channel_attn.fn`): within each of `groups` channel groups,
//! every channel attends to every other, with the spatial tokens as the feature axis.
//!
//! For `q, k, v` `[B, g, N, d]` it computes `softmax(qᵀk · s) vᵀ` (`[B, g, d, N]`), transposed
//! back to tokens. The scale is `s = N^-1/2` with the dynamic scale MI2 uses (the token count
//! of the current input, so it changes with resolution) and `C^-1/2` otherwise. This is the
//! MedImageInsight form; timm's DaViT uses `kᵀv` with the head-width scale instead.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{softmax_last_dim, Linear};

/// Channel-group self-attention with a fused `qkv` projection and `proj`.
#[derive(Debug, Clone)]
pub struct ChannelAttention {
    qkv: Linear,
    proj: Linear,
    groups: usize,
    dynamic_scale: bool,
}

impl ChannelAttention {
    /// Loads `qkv` and `proj` under `vb` (`channel_attn.fn`).
    pub fn new(
        dim: usize,
        groups: usize,
        qkv_bias: bool,
        dynamic_scale: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            qkv: Linear::new(dim, 3 * dim, qkv_bias, vb.pp("qkv"))?,
            proj: Linear::new(dim, dim, true, vb.pp("proj"))?,
            groups,
            dynamic_scale,
        })
    }

    /// Attention of normed tokens `x` `[B, N, C]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let g = self.groups;
        let d = c / g;
        let scale = if self.dynamic_scale { n } else { c } as f64;
        let qkv = self.qkv.forward(x)?.reshape((b, n, 3, g, d))?;
        let part = |i: usize| qkv.narrow(2, i, 1)?.squeeze(2); // [B, N, g, d]
                                                               // scaling q before the product, as the reference does, keeps the rounding alike
        let q_t = (part(0)?.permute((0, 2, 3, 1))? * scale.powf(-0.5))?.contiguous()?; // [B, g, d, N]
        let k = part(1)?.permute((0, 2, 1, 3))?.contiguous()?; // [B, g, N, d]
        let v_t = part(2)?.permute((0, 2, 3, 1))?.contiguous()?; // [B, g, d, N]
        let probs = softmax_last_dim(&q_t.matmul(&k)?)?; // [B, g, d, d]
        let out_t = probs.matmul(&v_t)?; // [B, g, d, N]
        let out = out_t.permute((0, 3, 1, 2))?.reshape((b, n, c))?;
        self.proj.forward(&out)
    }
}
