//! The two DaViT blocks (`blocks.{stage}.{j}.spatial_block` and `.channel_block`).
//!
//! Each is, in order: `x += dwconv(x)` (`conv1`), `x += drop_path(attn(norm(x)))`
//! (`window_attn` / `channel_attn`), `x += dwconv(x)` (`conv2`),
//! `x += drop_path(mlp(norm(x)))` (`ffn`). The conv position encodings have no stochastic
//! depth; attention and MLP share the block's rate but draw their own masks.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::channel_attention::ChannelAttention;
use super::config::DavitConfig;
use super::dwconv::ConvPosEnc;
use super::window_attention::WindowAttention;
use crate::layers::{FeedForward, LayerNorm};

/// The attention of a block.
#[derive(Debug, Clone)]
pub enum Mixer {
    /// Spatial window attention (`window_attn`).
    Window(WindowAttention),
    /// Channel-group attention (`channel_attn`).
    Channel(ChannelAttention),
}

/// One spatial or channel block.
#[derive(Debug, Clone)]
pub struct DualBlock {
    conv1: Option<ConvPosEnc>,
    attn_norm: LayerNorm,
    mixer: Mixer,
    conv2: Option<ConvPosEnc>,
    ffn_norm: LayerNorm,
    ffn: FeedForward,
}

/// The per-sample `[B, 1, 1]` stochastic-depth masks of a block's two residual branches.
#[derive(Debug, Clone)]
pub struct BranchMasks {
    /// Mask of the attention branch.
    pub attn: Tensor,
    /// Mask of the MLP branch.
    pub ffn: Tensor,
}

impl DualBlock {
    /// The spatial block of stage `stage` under `vb` (`…spatial_block`).
    pub fn spatial(cfg: &DavitConfig, stage: usize, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dims[stage];
        let mixer = Mixer::Window(WindowAttention::new(
            dim,
            cfg.num_heads[stage],
            cfg.window_size,
            cfg.qkv_bias,
            vb.pp("window_attn").pp("fn"),
        )?);
        Self::with_mixer(cfg, stage, mixer, "window_attn", vb)
    }

    /// The channel block of stage `stage` under `vb` (`…channel_block`).
    pub fn channel(cfg: &DavitConfig, stage: usize, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dims[stage];
        let mixer = Mixer::Channel(ChannelAttention::new(
            dim,
            cfg.num_groups[stage],
            cfg.qkv_bias,
            cfg.dynamic_scale,
            vb.pp("channel_attn").pp("fn"),
        )?);
        Self::with_mixer(cfg, stage, mixer, "channel_attn", vb)
    }

    fn with_mixer(
        cfg: &DavitConfig,
        stage: usize,
        mixer: Mixer,
        attn_name: &str,
        vb: VarBuilder,
    ) -> Result<Self> {
        let dim = cfg.embed_dims[stage];
        let eps = cfg.layer_norm_eps;
        let hidden = (dim as f64 * cfg.mlp_ratio) as usize;
        Ok(Self {
            conv1: cfg
                .conv_at_attn
                .then(|| ConvPosEnc::new(dim, vb.pp("conv1").pp("fn")))
                .transpose()?,
            attn_norm: LayerNorm::new(dim, eps, vb.pp(attn_name).pp("norm"))?,
            mixer,
            conv2: cfg
                .conv_at_ffn
                .then(|| ConvPosEnc::new(dim, vb.pp("conv2").pp("fn")))
                .transpose()?,
            ffn_norm: LayerNorm::new(dim, eps, vb.pp("ffn").pp("norm"))?,
            ffn: FeedForward::new(dim, hidden, false, vb.pp("ffn").pp("fn").pp("net"))?,
        })
    }

    /// Runs the block on tokens `[B, H·W, C]` of a `(H, W)` grid.
    pub fn forward(
        &self,
        x: &Tensor,
        grid: (usize, usize),
        masks: Option<&BranchMasks>,
    ) -> Result<Tensor> {
        let mut x = match &self.conv1 {
            Some(conv) => conv.forward(x, grid)?,
            None => x.clone(),
        };
        let normed = self.attn_norm.forward(&x)?;
        let mut branch = match &self.mixer {
            Mixer::Window(attn) => attn.forward(&normed, grid)?,
            Mixer::Channel(attn) => attn.forward(&normed)?,
        };
        if let Some(m) = masks {
            branch = branch.broadcast_mul(&m.attn)?;
        }
        x = (x + branch)?;
        if let Some(conv) = &self.conv2 {
            x = conv.forward(&x, grid)?;
        }
        let mut branch = self.ffn.forward(&self.ffn_norm.forward(&x)?)?;
        if let Some(m) = masks {
            branch = branch.broadcast_mul(&m.ffn)?;
        }
        x + branch
    }
}
