//! The CLIP / UniCL language transformer (MedImageInsight's text tower).
//!
//! Math, as UniCL's `lang_encoder` defines it:
//! `x = token_embedding[ids] + positional_embedding[:L]`, then per block
//! `x = x + MHA(LN₁(x))`, `x = x + c_proj(QuickGELU(c_fc(LN₂(x))))`, then `ln_final`;
//! attention is causal (UniCL) or bidirectional with the padding keys masked out
//! (MedImageInsight); the sentence embedding is the state at the first end-of-text token
//! (argmax of the ids), projected by `lang_projection` (`x @ P`, no bias).
//!
//! Every op is differentiable. Linear layers are `fused_ops::linear` (one bias-seeded GEMM;
//! the bias gradient is a column sum, where candle's broadcast add reduces over the rows, a
//! fifth of a UniCL training step). With a graph, layer norm and softmax are `fused_ops`'
//! kernels with closed-form backwards; without one, the composed [`cxr_core::ops`] that the
//! PyTorch parity tests pin. The UniCL training step (`cargo bench -p unicl-pretrain`) went
//! from 104–113 to 66–71 ms with these (`docs/performance.md`).

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};
use cxr_core::ops::{layer_norm, softmax_last_dim};

use crate::config::{Activation, Pooling, TextConfig};
use crate::text_encoder::{TextEmbedding, TextEncoder, TokenBatch};
use crate::{Error, Result};

/// Additive mask value: finite so a fully masked row gives a uniform, not NaN, distribution.
pub(crate) const MASKED: f32 = -1e9;
const INIT_STD: f64 = 0.02;

/// The normal(0, 0.02) initialisation both UniCL and BERT give their weights.
pub(crate) fn normal() -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: INIT_STD,
    }
}

/// A differentiable layer norm with its `weight` and `bias` (unit and zero when initialised).
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    pub(crate) fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused_ops::tracks_grad(&[x, &self.weight, &self.bias]) {
            Ok(fused_ops::layer_norm(
                x,
                &self.weight,
                &self.bias,
                self.eps,
            )?)
        } else {
            Ok(layer_norm(x, &self.weight, &self.bias, self.eps)?)
        }
    }
}

/// `x Wᵀ + b` as one bias-seeded GEMM whose bias gradient is a column sum
/// (`fused_ops::linear`), instead of candle's broadcast add and its reduce over the rows.
pub(crate) fn dense(l: &Linear, x: &Tensor) -> Result<Tensor> {
    Ok(fused_ops::linear(x, l.weight(), l.bias())?)
}

/// `weight` `[out, inp]` (normal(0, 0.02) when initialised) and a zero-initialised `bias`.
pub(crate) fn linear(inp: usize, out: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((out, inp), "weight", normal())?;
    let b = vb.get_with_hints(out, "bias", Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

/// `nn.MultiheadAttention` with its packed `in_proj_weight` `[3W, W]` (q, k, v stacked).
#[derive(Debug, Clone)]
struct Attention {
    in_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl Attention {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let w = cfg.width;
        let in_w = vb.get_with_hints((3 * w, w), "in_proj_weight", normal())?;
        let in_b = vb.get_with_hints(3 * w, "in_proj_bias", Init::Const(0.0))?;
        Ok(Self {
            in_proj: Linear::new(in_w, Some(in_b)),
            out_proj: linear(w, w, vb.pp("out_proj"))?,
            heads: cfg.heads,
        })
    }

    /// `x`: `[B, L, W]`; `mask`: additive, broadcastable to `[B, H, L, L]`.
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let w = x.dim(D::Minus1)?;
        let qkv = dense(&self.in_proj, x)?;
        let (q, k, v) = (
            qkv.narrow(2, 0, w)?,
            qkv.narrow(2, w, w)?,
            qkv.narrow(2, 2 * w, w)?,
        );
        let out = scaled_dot_product_attention(&q, &k, &v, self.heads, mask)?;
        dense(&self.out_proj, &out)
    }
}

/// Multi-head attention of projected `q`, `k`, `v` (each `[B, L, W]`, heads side by side in
/// `W`) with an additive `mask` broadcastable to `[B, H, L, L]`; returns `[B, L, W]`.
/// Differentiable (the softmax is [`cxr_core::ops::softmax_last_dim`]).
pub(crate) fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: &Tensor,
) -> Result<Tensor> {
    let (b, l, w) = q.dims3()?;
    let hd = w / heads;
    let split = |t: &Tensor| -> Result<Tensor> {
        Ok(t.reshape((b, l, heads, hd))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    let q = (split(q)? * (hd as f64).powf(-0.5))?;
    let (k, v) = (split(k)?, split(v)?);
    let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
    let probs = if scores.track_op() {
        fused_ops::softmax_last_dim(&scores)?
    } else {
        softmax_last_dim(&scores)?
    };
    Ok(probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, w))?)
}

/// `[B, 1, 1, L]` additive mask that hides the padding keys (`attention_mask` 0).
pub(crate) fn padding_mask(batch: &TokenBatch) -> Result<Tensor> {
    let (b, l) = batch.dims()?;
    let keep = batch.attention_mask.to_dtype(DType::F32)?;
    let m = ((keep - 1.0)? * (-(MASKED as f64)))?;
    Ok(m.reshape((b, 1, 1, l))?)
}

#[derive(Debug, Clone)]
struct ResidualBlock {
    ln_1: Norm,
    attn: Attention,
    ln_2: Norm,
    c_fc: Linear,
    c_proj: Linear,
    activation: Activation,
}

impl ResidualBlock {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let hidden = cfg.width * cfg.mlp_ratio;
        Ok(Self {
            ln_1: Norm::new(cfg.width, cfg.layer_norm_eps, vb.pp("ln_1"))?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            ln_2: Norm::new(cfg.width, cfg.layer_norm_eps, vb.pp("ln_2"))?,
            c_fc: linear(cfg.width, hidden, vb.pp("mlp").pp("c_fc"))?,
            c_proj: linear(hidden, cfg.width, vb.pp("mlp").pp("c_proj"))?,
            activation: cfg.activation,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, mask)?)?;
        let h = dense(&self.c_fc, &self.ln_2.forward(&x)?)?;
        let h = match self.activation {
            Activation::QuickGelu => (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?,
            Activation::GeluErf => fused_ops::gelu_erf(&h)?,
        };
        Ok((x + dense(&self.c_proj, &h)?)?)
    }
}

/// The UniCL / MedImageInsight language encoder plus its `lang_projection`.
///
/// [`TextTransformer::new`] reads, from a builder at the checkpoint root (key names of
/// `UniCLModel.state_dict()`):
///
/// | tensor | shape |
/// |---|---|
/// | `lang_encoder.token_embedding.weight` | `[vocab, W]` |
/// | `lang_encoder.positional_embedding` | `[context, W]` |
/// | `lang_encoder.resblocks.{i}.ln_1.{weight,bias}` | `[W]` |
/// | `lang_encoder.resblocks.{i}.attn.in_proj_weight` / `in_proj_bias` | `[3W, W]` / `[3W]` |
/// | `lang_encoder.resblocks.{i}.attn.out_proj.{weight,bias}` | `[W, W]` / `[W]` |
/// | `lang_encoder.resblocks.{i}.ln_2.{weight,bias}` | `[W]` |
/// | `lang_encoder.resblocks.{i}.mlp.c_fc.{weight,bias}` | `[4W, W]` / `[4W]` |
/// | `lang_encoder.resblocks.{i}.mlp.c_proj.{weight,bias}` | `[W, 4W]` / `[W]` |
/// | `lang_encoder.ln_final.{weight,bias}` | `[W]` |
/// | `lang_projection` | `[W, P]` |
///
/// With a `VarMap`-backed builder, missing tensors are initialised as UniCL does
/// (normal(0, 0.02) weights, zero biases, unit norms).
#[derive(Debug, Clone)]
pub struct TextTransformer {
    token_embedding: Tensor,
    positional_embedding: Tensor,
    blocks: Vec<ResidualBlock>,
    ln_final: Norm,
    projection: Tensor,
    cfg: TextConfig,
    device: Device,
}

impl TextTransformer {
    /// Builds the tower from `vb` at the checkpoint root (see the table above).
    pub fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()
            .map_err(|r| Error::Core(cxr_core::Error::config("TextConfig", r)))?;
        let enc = vb.pp("lang_encoder");
        let token_embedding = enc.get_with_hints(
            (cfg.vocab_size, cfg.width),
            "token_embedding.weight",
            normal(),
        )?;
        let positional_embedding = enc.get_with_hints(
            (cfg.context_length, cfg.width),
            "positional_embedding",
            normal(),
        )?;
        let blocks = (0..cfg.layers)
            .map(|i| ResidualBlock::new(cfg, enc.pp("resblocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let ln_final = Norm::new(cfg.width, cfg.layer_norm_eps, enc.pp("ln_final"))?;
        let projection =
            vb.get_with_hints((cfg.width, cfg.projection_dim), "lang_projection", normal())?;
        Ok(Self {
            token_embedding,
            positional_embedding,
            blocks,
            ln_final,
            projection,
            cfg: cfg.clone(),
            device: vb.device().clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// `[B, L, W]` final hidden states (after `ln_final`), UniCL's `last_hidden_state`.
    pub fn forward_hidden(&self, batch: &TokenBatch) -> Result<Tensor> {
        let (b, l) = batch.dims()?;
        if l > self.cfg.context_length {
            return Err(Error::bad_input(
                "input_ids",
                format!("at most {} tokens per row", self.cfg.context_length),
                &[b, l],
            ));
        }
        let ids = batch.input_ids.to_dtype(DType::U32)?;
        let max_id = ids.flatten_all()?.max(0)?.to_scalar::<u32>()? as usize;
        if max_id >= self.cfg.vocab_size {
            return Err(Error::bad_input(
                "input_ids",
                format!("ids below the vocabulary size {}", self.cfg.vocab_size),
                &[max_id],
            ));
        }
        let x = self
            .token_embedding
            .embedding(&ids.flatten_all()?)?
            .reshape((b, l, self.cfg.width))?;
        let x = x.broadcast_add(&self.positional_embedding.narrow(0, 0, l)?)?;
        let dtype = x.dtype();
        let mask = self.attention_mask(batch, l)?.to_dtype(dtype)?;
        let mut x = x;
        for block in &self.blocks {
            x = block.forward(&x, &mask)?;
        }
        self.ln_final.forward(&x)
    }

    /// Additive mask: `[L, L]` causal, or `[B, 1, 1, L]` over padding keys.
    fn attention_mask(&self, batch: &TokenBatch, l: usize) -> Result<Tensor> {
        if self.cfg.causal {
            let m: Vec<f32> = (0..l)
                .flat_map(|i| (0..l).map(move |j| if j > i { MASKED } else { 0.0 }))
                .collect();
            Ok(Tensor::from_vec(m, (l, l), &self.device)?)
        } else {
            padding_mask(batch)
        }
    }

    /// Index of the pooled token of every row.
    fn pool_positions(&self, batch: &TokenBatch) -> Result<Vec<u32>> {
        match self.cfg.pooling {
            Pooling::First => Ok(vec![0; batch.dims()?.0]),
            Pooling::EotArgmax => {
                // torch.argmax returns the first maximum; candle's argmax does not promise which
                let rows = batch.input_ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let mut best = 0;
                        for (i, &t) in r.iter().enumerate() {
                            if t > r[best] {
                                best = i;
                            }
                        }
                        best as u32
                    })
                    .collect())
            }
        }
    }

    /// `[B, W]` pooled states (before projection).
    pub fn pool(&self, hidden: &Tensor, batch: &TokenBatch) -> Result<Tensor> {
        let (b, l, w) = hidden.dims3()?;
        let idx: Vec<u32> = self
            .pool_positions(batch)?
            .into_iter()
            .enumerate()
            .map(|(row, p)| row as u32 * l as u32 + p)
            .collect();
        let idx = Tensor::from_vec(idx, b, &self.device)?;
        Ok(hidden.reshape((b * l, w))?.index_select(&idx, 0)?)
    }

    /// The `lang_projection` matrix `[W, P]`.
    pub fn projection(&self) -> &Tensor {
        &self.projection
    }
}

impl TextEncoder for TextTransformer {
    fn encode(&self, batch: &TokenBatch) -> Result<TextEmbedding> {
        let hidden = self.forward_hidden(batch)?;
        let pooled = self.pool(&hidden, batch)?;
        let projected = pooled.matmul(&self.projection)?;
        Ok(TextEmbedding { pooled, projected })
    }

    fn embed_dim(&self) -> usize {
        self.cfg.projection_dim
    }

    fn hidden_dim(&self) -> usize {
        self.cfg.width
    }

    fn max_length(&self) -> usize {
        self.cfg.context_length
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

/// L2-normalises the rows of `x` (`x / ‖x‖`), differentiably.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}
