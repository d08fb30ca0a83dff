//! A llama decoder (`LlamaForCausalLM`) written twice over the same weights: a
//! differentiable path built from primitive ops (RMSNorm, rotary embedding, softmax), so that
//! gradients flow through the frozen decoder into the projector and LoRA adapters, and an
//! inference path that uses candle's fused kernels (`rms_norm`, `rope`, `softmax_last_dim`),
//! which have no backward pass.

use candle_core::{DType, Device, Tensor, D};

use crate::config::LlamaConfig;
use crate::linear::Linear;
use crate::weights::Weights;
use crate::{Error, Result};

/// Which kernels a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Primitive ops only: every op has a backward pass. Use for training.
    Differentiable,
    /// candle's fused RMSNorm / rotary / softmax kernels: faster, no gradients. Use for
    /// generation.
    Fused,
}

/// Where the decoder's tensors sit in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaKeys {
    /// Prefix of the `LlamaModel` (`model.` in `LlamaForCausalLM`).
    pub model: String,
    /// Prefix of the output head (`lm_head.`).
    pub lm_head: String,
}

impl LlamaKeys {
    /// The plain `LlamaForCausalLM` layout.
    pub fn causal_lm() -> Self {
        Self {
            model: "model.".into(),
            lm_head: "lm_head.".into(),
        }
    }

    /// Finds the layout of `weights`: `LlamaForCausalLM`, or the language model inside a
    /// `LlavaForConditionalGeneration` (older `language_model.model.` or newer
    /// `model.language_model.` naming).
    pub fn detect(weights: &Weights) -> Result<Self> {
        let candidates = [
            ("model.", "lm_head."),
            ("language_model.model.", "language_model.lm_head."),
            ("model.language_model.", "lm_head."),
        ];
        for (model, head) in candidates {
            if weights.contains(&format!("{model}embed_tokens.weight")) {
                return Ok(Self {
                    model: model.into(),
                    lm_head: head.into(),
                });
            }
        }
        Err(Error::MissingTensor {
            file: weights.source.clone(),
            tensor: "model.embed_tokens.weight (or a LLaVA language_model prefix)".into(),
            expected: vec![],
        })
    }
}

/// Cached keys and values of every layer, `[B, kv_heads, S, head_dim]` each.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
        }
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .and_then(|(k, _)| k.dims().get(2).copied())
            .unwrap_or(0)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps batch rows `index` (in that order, repeats allowed): beam-search reordering.
    pub fn select(&mut self, index: &Tensor) -> Result<()> {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(index, 0)?;
            *v = v.index_select(index, 0)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

#[derive(Debug, Clone)]
struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

#[derive(Debug, Clone)]
struct Block {
    attn: Attention,
    mlp: Mlp,
    input_norm: Tensor,
    post_norm: Tensor,
}

/// `LlamaForCausalLM`: token embedding, decoder blocks, final RMSNorm and the output head.
#[derive(Debug, Clone)]
pub struct Llama {
    cfg: LlamaConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Tensor,
    inv_freq: Vec<f32>,
}

/// RMSNorm from primitive ops, as transformers' `LlamaRMSNorm`: normalise in f32 (f64 stays
/// f64), cast back, then scale.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = match dtype {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    };
    let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = xf.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.to_dtype(dtype)?.broadcast_mul(weight)?)
}

/// Rotary embedding from primitive ops on `[B, H, T, D]` with `cos`/`sin` `[T, D/2]`:
/// transformers' `x·cos + rotate_half(x)·sin` on the half-split layout.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let half = d / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?;
    Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
}

fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, kv, s, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, kv, n_rep, s, d))?
        .reshape((b, kv * n_rep, s, d))?)
}

/// `[T, S]` additive mask: query `i` (absolute position `offset + i`) sees keys `0..=offset+i`.
fn causal_mask(t: usize, offset: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let s = offset + t;
    let v: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..s).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(v, (t, s), device)?.to_dtype(dtype)?)
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        kernels: Kernels,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let q = self.q.forward(x)?.reshape((b, t, h, hd))?.transpose(1, 2)?;
        let k = self
            .k
            .forward(x)?
            .reshape((b, t, kvh, hd))?
            .transpose(1, 2)?;
        let v = self
            .v
            .forward(x)?
            .reshape((b, t, kvh, hd))?
            .transpose(1, 2)?;
        let (q, k) = match kernels {
            Kernels::Differentiable => (rope(&q, cos, sin)?, rope(&k, cos, sin)?),
            Kernels::Fused => (
                candle_nn::rotary_emb::rope(&q.contiguous()?, cos, sin)?,
                candle_nn::rotary_emb::rope(&k.contiguous()?, cos, sin)?,
            ),
        };
        let v = v.contiguous()?;
        let (k, v) = match cache {
            Some(slot) => {
                let kv = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                    None => (k, v),
                };
                *slot = Some(kv.clone());
                kv
            }
            None => (k, v),
        };
        let k = repeat_kv(k, h / kvh)?;
        let v = repeat_kv(v, h / kvh)?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = match kernels {
            Kernels::Differentiable => cxr_core::ops::softmax_last_dim(&scores)?,
            Kernels::Fused => candle_nn::ops::softmax_last_dim(&scores)?,
        };
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h * hd))?;
        self.o.forward(&y)
    }
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = self.gate.forward(x)?.silu()?;
        let u = self.up.forward(x)?;
        self.down.forward(&(g * u)?)
    }
}

impl Llama {
    /// Builds the decoder from `weights` laid out as `keys` says.
    pub fn new(cfg: &LlamaConfig, weights: &Weights, keys: &LlamaKeys) -> Result<Self> {
        cfg.validate(std::path::Path::new(&weights.source))?;
        let (hs, v) = (cfg.hidden_size, cfg.vocab_size);
        let (h, kvh, hd, inter) = (
            cfg.num_attention_heads,
            cfg.num_kv_heads(),
            cfg.head_dim(),
            cfg.intermediate_size,
        );
        let m = &keys.model;
        let lin = |name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            let w = weights.get(&format!("{name}.weight"), &[out, inp])?;
            let b = if bias {
                Some(weights.get(&format!("{name}.bias"), &[out])?)
            } else {
                None
            };
            Ok(Linear::new(w, b))
        };
        let embed = weights.get(&format!("{m}embed_tokens.weight"), &[v, hs])?;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("{m}layers.{i}.");
            let ab = cfg.attention_bias;
            let mb = cfg.mlp_bias;
            blocks.push(Block {
                attn: Attention {
                    q: lin(&format!("{p}self_attn.q_proj"), h * hd, hs, ab)?,
                    k: lin(&format!("{p}self_attn.k_proj"), kvh * hd, hs, ab)?,
                    v: lin(&format!("{p}self_attn.v_proj"), kvh * hd, hs, ab)?,
                    o: lin(&format!("{p}self_attn.o_proj"), hs, h * hd, ab)?,
                    heads: h,
                    kv_heads: kvh,
                    head_dim: hd,
                },
                mlp: Mlp {
                    gate: lin(&format!("{p}mlp.gate_proj"), inter, hs, mb)?,
                    up: lin(&format!("{p}mlp.up_proj"), inter, hs, mb)?,
                    down: lin(&format!("{p}mlp.down_proj"), hs, inter, mb)?,
                },
                input_norm: weights.get(&format!("{p}input_layernorm.weight"), &[hs])?,
                post_norm: weights.get(&format!("{p}post_attention_layernorm.weight"), &[hs])?,
            });
        }
        let norm = weights.get(&format!("{m}norm.weight"), &[hs])?;
        let head_name = format!("{}weight", keys.lm_head);
        let lm_head = if cfg.tie_word_embeddings && !weights.contains(&head_name) {
            embed.clone()
        } else {
            weights.get(&head_name, &[v, hs])?
        };
        // transformers' default rotary init, in f32 as it computes it
        let theta = cfg.rope_theta() as f32;
        let inv_freq = (0..hd / 2)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / hd as f32))
            .collect();
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            inv_freq,
        })
    }

    /// Loads `config.json` and the (sharded) safetensors of an HF `LlamaForCausalLM` directory.
    pub fn from_dir(dir: &std::path::Path, dtype: DType, device: &Device) -> Result<Self> {
        let cfg = LlamaConfig::from_file(dir.join("config.json"))?;
        let weights = Weights::from_dir(dir, dtype, device)?;
        let keys = LlamaKeys::detect(&weights)?;
        Self::new(&cfg, &weights, &keys)
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Model width.
    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// The weights' device.
    pub fn device(&self) -> &Device {
        self.embed.device()
    }

    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    /// A fresh cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.blocks.len())
    }

    /// Token embeddings `[B, T, hidden]` of `ids` (`[B, T]`, u32).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let flat = ids.flatten_all()?;
        let max = if flat.elem_count() > 0 {
            flat.max(0)?.to_dtype(DType::U32)?.to_scalar::<u32>()? as usize
        } else {
            0
        };
        if max >= self.cfg.vocab_size {
            return Err(Error::bad_input(
                "ids",
                format!("token id {max} >= vocab_size {}", self.cfg.vocab_size),
            ));
        }
        Ok(self
            .embed
            .index_select(&flat, 0)?
            .reshape((b, t, self.cfg.hidden_size))?)
    }

    fn cos_sin(&self, offset: usize, t: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for p in offset..offset + t {
            for &f in &self.inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let dev = self.device();
        Ok((
            Tensor::from_vec(cos, (t, half), dev)?.to_dtype(dtype)?,
            Tensor::from_vec(sin, (t, half), dev)?.to_dtype(dtype)?,
        ))
    }

    /// Runs the decoder on input embeddings `[B, T, hidden]` and returns the final-normed
    /// hidden states `[B, T, hidden]`. With a cache, the new positions follow the cached ones
    /// and their keys/values are appended.
    pub fn forward_hidden(
        &self,
        embeds: &Tensor,
        mut cache: Option<&mut KvCache>,
        kernels: Kernels,
    ) -> Result<Tensor> {
        let (_, t, hs) = embeds.dims3()?;
        if hs != self.cfg.hidden_size {
            return Err(Error::bad_input(
                "embeds",
                format!("width {hs}, the decoder expects {}", self.cfg.hidden_size),
            ));
        }
        let offset = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        if let Some(c) = cache.as_ref() {
            if c.layers.len() != self.blocks.len() {
                return Err(Error::bad_input("cache", "built for another model"));
            }
        }
        let dtype = embeds.dtype();
        let (cos, sin) = self.cos_sin(offset, t, dtype)?;
        let mask = if t > 1 {
            Some(causal_mask(t, offset, dtype, self.device())?)
        } else {
            None
        };
        let eps = self.cfg.rms_norm_eps;
        let norm = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
            match kernels {
                Kernels::Differentiable => rms_norm(x, w, eps),
                Kernels::Fused => Ok(candle_nn::ops::rms_norm(&x.contiguous()?, w, eps as f32)?),
            }
        };
        let mut x = embeds.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            let slot = cache.as_mut().and_then(|c| c.layers.get_mut(i));
            let a = block.attn.forward(
                &norm(&x, &block.input_norm)?,
                &cos,
                &sin,
                mask.as_ref(),
                slot,
                kernels,
            )?;
            x = (x + a)?;
            let m = block.mlp.forward(&norm(&x, &block.post_norm)?)?;
            x = (x + m)?;
        }
        norm(&x, &self.norm)
    }

    /// Output logits `[.., vocab]` of hidden states `[.., hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let dims = hidden.dims().to_vec();
        let rows = hidden.elem_count() / self.cfg.hidden_size;
        let y = hidden
            .reshape((rows, self.cfg.hidden_size))?
            .matmul(&self.lm_head.t()?)?;
        let mut out = dims;
        if let Some(l) = out.last_mut() {
            *l = self.cfg.vocab_size;
        }
        Ok(y.reshape(out)?)
    }

    /// Logits `[B, T, vocab]` of input embeddings.
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        cache: Option<&mut KvCache>,
        kernels: Kernels,
    ) -> Result<Tensor> {
        self.logits(&self.forward_hidden(embeds, cache, kernels)?)
    }

    /// Logits `[B, T, vocab]` of token ids `[B, T]`.
    pub fn forward_ids(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        kernels: Kernels,
    ) -> Result<Tensor> {
        self.forward_embeds(&self.embed(ids)?, cache, kernels)
    }

    /// The q and v projections of every layer, for LoRA.
    pub(crate) fn qv_projections_mut(&mut self) -> Vec<(usize, &str, &mut Linear)> {
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter_mut().enumerate() {
            out.push((i, "q_proj", &mut b.attn.q));
            out.push((i, "v_proj", &mut b.attn.v));
        }
        out
    }
}
