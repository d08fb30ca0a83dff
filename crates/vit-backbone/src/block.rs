//! One pre-norm transformer block (`encoder.layer.{i}`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::attention::Attention;
use crate::config::Dinov2Config;
use crate::layers::{FeedForward, LayerNorm, LayerScale};

/// `h += drop_path(ls1(attn(norm1(h))))`, `h += drop_path(ls2(mlp(norm2(h))))`.
#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    attention: Attention,
    layer_scale1: LayerScale,
    norm2: LayerNorm,
    mlp: FeedForward,
    layer_scale2: LayerScale,
}

/// Per-sample keep masks of stochastic depth for the two residual branches of a block.
#[derive(Debug, Clone)]
pub struct DropPathMasks {
    /// `[B, 1, 1]` mask already divided by the keep probability, for the attention branch.
    pub attention: Tensor,
    /// The same for the feed-forward branch.
    pub mlp: Tensor,
}

impl Block {
    /// Loads block weights under `vb` (`encoder.layer.{i}`).
    pub fn new(cfg: &Dinov2Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            norm1: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("norm1"))?,
            attention: Attention::new(
                d,
                cfg.num_attention_heads,
                cfg.qkv_bias,
                vb.pp("attention"),
            )?,
            layer_scale1: LayerScale::new(d, cfg.layerscale_value, vb.pp("layer_scale1"))?,
            norm2: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("norm2"))?,
            mlp: FeedForward::new(d, cfg.mlp_hidden(), cfg.use_swiglu_ffn, vb.pp("mlp"))?,
            layer_scale2: LayerScale::new(d, cfg.layerscale_value, vb.pp("layer_scale2"))?,
        })
    }

    /// Runs the block; returns the new hidden state and, if asked, the attention probabilities.
    pub fn forward(
        &self,
        x: &Tensor,
        keep_attention: bool,
        drop_path: Option<&DropPathMasks>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (attn, probs) = self
            .attention
            .forward(&self.norm1.forward(x)?, keep_attention)?;
        let mut branch = self.layer_scale1.forward(&attn)?;
        if let Some(m) = drop_path {
            branch = branch.broadcast_mul(&m.attention)?;
        }
        let x = (x + branch)?;
        let mut branch = self
            .layer_scale2
            .forward(&self.mlp.forward(&self.norm2.forward(&x)?)?)?;
        if let Some(m) = drop_path {
            branch = branch.broadcast_mul(&m.mlp)?;
        }
        Ok(((x + branch)?, probs))
    }
}
