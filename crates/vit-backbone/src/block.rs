//! One pre-norm transformer block (`encoder.layer.{i}`).

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::attention::Attention;
use crate::config::Dinov2Config;
use crate::layers::{tracks_grad, FeedForward, LayerNorm, LayerScale, Linear};

static FUSED_GPU_INFERENCE: AtomicBool = AtomicBool::new(true);

/// Turns the fused GPU inference path of the blocks on (the default) or off. Off, a CUDA
/// forward runs the same composed ops as training (materialised attention scores, separate
/// bias, GELU, layer-scale and residual kernels); benchmarks switch it to compare the two.
pub fn set_fused_gpu_inference(on: bool) {
    FUSED_GPU_INFERENCE.store(on, Ordering::Relaxed);
}

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

/// Per-sample keep masks of stochastic depth for the two residual branches of a block
/// (per token, `[T, 1]`, in [`Block::forward_varlen`]).
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
        if !keep_attention && drop_path.is_none() && self.fused_gpu_applies(x) {
            return Ok((self.forward_fused_gpu(x)?, None));
        }
        let (attn, probs) = self
            .attention
            .forward(&self.norm1.forward(x)?, keep_attention)?;
        Ok((self.after_attention(x, &attn, drop_path)?, probs))
    }

    /// The block over images of different lengths in one token matrix `x` `[T, D]` (the
    /// tokens of `groups` `(images, tokens each)` one image after another), with per-token
    /// stochastic-depth factors (`[T, 1]`) if any: every op but the attention runs once over
    /// all the tokens, as dinov2 runs its global and local crops together.
    pub fn forward_varlen(
        &self,
        x: &Tensor,
        groups: &[(usize, usize)],
        drop_path: Option<&DropPathMasks>,
    ) -> Result<Tensor> {
        let attn = self
            .attention
            .forward_varlen(&self.norm1.forward(x)?, groups)?;
        self.after_attention(x, &attn, drop_path)
    }

    /// Both residual updates around the feed-forward branch, given the attention's output.
    fn after_attention(
        &self,
        x: &Tensor,
        attn: &Tensor,
        drop_path: Option<&DropPathMasks>,
    ) -> Result<Tensor> {
        // layer scale, stochastic depth and residual add as one op (one graph node in training)
        let lambda1 = self.layer_scale1.lambda();
        let x = fused_ops::scaled_residual(x, attn, lambda1, drop_path.map(|m| &m.attention))?;
        let h = self.mlp.forward(&self.norm2.forward(&x)?)?;
        let lambda2 = self.layer_scale2.lambda();
        fused_ops::scaled_residual(&x, &h, lambda2, drop_path.map(|m| &m.mlp))
    }

    /// Whether the fused CUDA inference path can run `x`: on a CUDA device, a dtype the
    /// build's attention kernel takes (f32; bf16 on sm_80+), head dim 64, GELU MLP, and nothing
    /// tracking gradients.
    fn fused_gpu_applies(&self, x: &Tensor) -> bool {
        let FeedForward::Mlp { fc1, .. } = &self.mlp else {
            return false;
        };
        FUSED_GPU_INFERENCE.load(Ordering::Relaxed)
            && x.device().is_cuda()
            && fused_ops::attention::cuda_supports(x.dtype())
            && self.attention.heads().1 == fused_ops::attention::CUDA_HEAD_DIM
            && !tracks_grad(&[x, fc1.weight(), self.attention.output().weight()])
    }

    /// The inference block on the GPU: bias-free GEMMs whose epilogues (qkv bias, bias +
    /// GELU, bias + layer scale + residual) are fused into the next kernel, and flash-style
    /// attention read straight from the qkv projection.
    fn forward_fused_gpu(&self, x: &Tensor) -> Result<Tensor> {
        let FeedForward::Mlp { fc1, fc2 } = &self.mlp else {
            candle_core::bail!("the fused GPU block needs the GELU MLP");
        };
        let (heads, head_dim) = self.attention.heads();
        let (w_qkv, b_qkv) = self.attention.qkv_params()?;
        let qkv = Linear::apply(&self.norm1.forward(x)?, &w_qkv, None)?;
        let ctx = fused_ops::attention(&qkv, b_qkv.as_ref(), heads, (head_dim as f64).powf(-0.5))?;
        let out = self.attention.output();
        let x = residual(&ctx, out, self.layer_scale1.lambda(), x)?;
        let h = Linear::apply(&self.norm2.forward(&x)?, fc1.weight(), None)?;
        let h = match fc1.bias() {
            Some(b) => fused_ops::bias_gelu(&h, b)?,
            None => h.gelu_erf()?,
        };
        residual(&h, fc2, self.layer_scale2.lambda(), &x)
    }
}

/// `x + λ ⊙ (h Wᵀ + b)` with the bias, scale and residual in one pass after the GEMM.
fn residual(h: &Tensor, proj: &Linear, lambda: &Tensor, x: &Tensor) -> Result<Tensor> {
    let a = Linear::apply(h, proj.weight(), None)?;
    match proj.bias() {
        Some(b) => fused_ops::bias_scale_residual(&a, b, lambda, x),
        None => (x + a.broadcast_mul(lambda)?)?.contiguous(),
    }
}
