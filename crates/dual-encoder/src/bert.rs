//! BERT-family text towers (CXR-BERT and relatives), differentiable end to end.
//!
//! Math, as `transformers`' `BertModel` defines it (absolute positions, post-norm blocks):
//! `x = LN(word[ids] + position[:L] + token_type[0])`, then per layer
//! `x = LN₁(x + Wₒ·MHA(x))`, `x = LN₂(x + W₂·GELU(W₁·x))`, with the padding keys masked out.
//! Pooling takes the `[CLS]` (first) token of the last hidden state; the optional head is
//! CXR-BERT's `cls_projection_head`: Linear(hidden → p) – GELU (erf) – LayerNorm(p, 1e-12) –
//! Linear(p → p).
//!
//! Every op has a backward pass (layer norm and softmax from [`cxr_core::ops`], not candle's
//! fused inference kernels, which have none), so the body can be fine-tuned as well as the
//! head. Dropout is
//! not applied: the tower always runs `transformers`' eval-mode graph, as the UniCL tower does.
//!
//! Keys (as `CXRBertModel.state_dict()`), under `bert.`: `embeddings.{word_embeddings,
//! position_embeddings,token_type_embeddings}.weight`, `embeddings.LayerNorm.*`,
//! `encoder.layer.{i}.attention.self.{query,key,value}.*`,
//! `encoder.layer.{i}.attention.output.{dense,LayerNorm}.*`,
//! `encoder.layer.{i}.intermediate.dense.*`, `encoder.layer.{i}.output.{dense,LayerNorm}.*`;
//! and `cls_projection_head.{dense_to_hidden,LayerNorm,dense_to_output}.*`. BERT's pooler is
//! not read.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::Linear;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::text_encoder::{TextEmbedding, TextEncoder, TokenBatch};
use crate::text_transformer::{
    dense, linear, normal, padding_mask, scaled_dot_product_attention, Norm,
};
use crate::{Error, Result};

/// The fields of a `transformers` BERT `config.json` that the encoder reads (others are
/// ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Rows of `word_embeddings`.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// MLP hidden width.
    pub intermediate_size: usize,
    /// MLP non-linearity: `gelu` (erf), `gelu_new` / `gelu_pytorch_tanh` (tanh form) or `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Rows of `position_embeddings`: the longest token sequence.
    pub max_position_embeddings: usize,
    /// Rows of `token_type_embeddings`.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Only `absolute` (the default) is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// The MLP non-linearity named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    GeluErf,
    GeluTanh,
    Relu,
}

impl BertConfig {
    /// CXR-BERT-specialized (`microsoft/BiomedVLP-CXR-BERT-specialized`): BERT-base with a
    /// 30 522-token vocabulary, 768 wide, 12 layers × 12 heads, MLP 3072, 512 positions.
    /// Its projection head is 128 wide.
    pub fn cxr_bert() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: default_act(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            position_embedding_type: None,
        }
    }

    /// Reads a `transformers` BERT `config.json` and checks it.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| cxr_core::Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| Error::Core(cxr_core::Error::config(path, e.to_string())))?;
        cfg.validate()
            .map_err(|r| Error::Core(cxr_core::Error::config(path, r)))?;
        Ok(cfg)
    }

    /// Why this configuration cannot be built, if it cannot.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.hidden_size == 0 || self.num_attention_heads == 0 {
            return Err("hidden_size and num_attention_heads must be positive".into());
        }
        cxr_core::ranges::positive(&[("layer_norm_eps", self.layer_norm_eps)])?;
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.type_vocab_size == 0 || self.max_position_embeddings == 0 {
            return Err("type_vocab_size and max_position_embeddings must be positive".into());
        }
        match self.position_embedding_type.as_deref() {
            None | Some("absolute") => {}
            Some(other) => {
                return Err(format!(
                    "position_embedding_type {other:?} is not supported (only \"absolute\")"
                ))
            }
        }
        self.activation().map(|_| ())
    }

    fn activation(&self) -> std::result::Result<Act, String> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Act::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Act::GeluTanh),
            "relu" => Ok(Act::Relu),
            other => Err(format!("hidden_act {other:?} is not supported")),
        }
    }
}

/// CXR-BERT's projection head on the CLS token.
#[derive(Debug, Clone)]
pub struct ProjectionHead {
    dense_to_hidden: Linear,
    norm: Norm,
    dense_to_output: Linear,
}

impl ProjectionHead {
    /// Reads `dense_to_hidden`, `LayerNorm` and `dense_to_output` under `vb`.
    pub fn new(hidden: usize, projection: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            dense_to_hidden: linear(hidden, projection, vb.pp("dense_to_hidden"))?,
            norm: Norm::new(projection, 1e-12, vb.pp("LayerNorm"))?,
            dense_to_output: linear(projection, projection, vb.pp("dense_to_output"))?,
        })
    }

    /// `[B, hidden]` → `[B, projection]`, differentiable.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = fused_ops::gelu_erf(&dense(&self.dense_to_hidden, x)?)?;
        dense(&self.dense_to_output, &self.norm.forward(&h)?)
    }
}

#[derive(Debug, Clone)]
struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: Norm,
}

impl Embeddings {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            word: vb.get_with_hints((cfg.vocab_size, h), "word_embeddings.weight", normal())?,
            position: vb.get_with_hints(
                (cfg.max_position_embeddings, h),
                "position_embeddings.weight",
                normal(),
            )?,
            token_type: vb.get_with_hints(
                (cfg.type_vocab_size, h),
                "token_type_embeddings.weight",
                normal(),
            )?,
            norm: Norm::new(h, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// Every token has type 0, as a single-segment `BertModel` call without
    /// `token_type_ids` gives it.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let h = self.word.dim(1)?;
        let x = self
            .word
            .embedding(&ids.flatten_all()?)?
            .reshape((b, l, h))?;
        let x = x
            .broadcast_add(&self.position.narrow(0, 0, l)?)?
            .broadcast_add(&self.token_type.narrow(0, 0, 1)?)?;
        self.norm.forward(&x)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
    heads: usize,
    act: Act,
}

impl Layer {
    fn new(cfg: &BertConfig, act: Act, vb: VarBuilder) -> Result<Self> {
        let (h, m, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let att = vb.pp("attention");
        Ok(Self {
            query: linear(h, h, att.pp("self").pp("query"))?,
            key: linear(h, h, att.pp("self").pp("key"))?,
            value: linear(h, h, att.pp("self").pp("value"))?,
            attention_out: linear(h, h, att.pp("output").pp("dense"))?,
            attention_norm: Norm::new(h, eps, att.pp("output").pp("LayerNorm"))?,
            intermediate: linear(h, m, vb.pp("intermediate").pp("dense"))?,
            output: linear(m, h, vb.pp("output").pp("dense"))?,
            output_norm: Norm::new(h, eps, vb.pp("output").pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
            act,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (q, k, v) = (
            dense(&self.query, x)?,
            dense(&self.key, x)?,
            dense(&self.value, x)?,
        );
        let att = scaled_dot_product_attention(&q, &k, &v, self.heads, mask)?;
        let x = self
            .attention_norm
            .forward(&(x + dense(&self.attention_out, &att)?)?)?;
        let h = dense(&self.intermediate, &x)?;
        let h = match self.act {
            Act::GeluErf => fused_ops::gelu_erf(&h)?,
            Act::GeluTanh => h.gelu()?,
            Act::Relu => h.relu()?,
        };
        self.output_norm.forward(&(x + dense(&self.output, &h)?)?)
    }
}

/// A BERT encoder with CLS pooling and an optional CXR-BERT projection head.
///
/// With a `VarMap`-backed builder, missing tensors are initialised as `transformers` does
/// (normal(0, 0.02) weights and embeddings, zero biases, unit norms).
#[derive(Debug, Clone)]
pub struct BertTextEncoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    head: Option<ProjectionHead>,
    cfg: BertConfig,
    embed_dim: usize,
    device: Device,
}

impl BertTextEncoder {
    /// Builds the encoder from `vb` at the checkpoint root: BERT under `bert.`, the head
    /// (when `projection` is given) under `cls_projection_head.`.
    pub fn new(cfg: &BertConfig, projection: Option<usize>, vb: VarBuilder) -> Result<Self> {
        let act = cfg
            .activation()
            .and_then(|a| cfg.validate().map(|()| a))
            .map_err(|r| Error::Core(cxr_core::Error::config("BertConfig", r)))?;
        let bert = vb.pp("bert");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, act, bert.pp("encoder").pp("layer").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let head = projection
            .map(|p| ProjectionHead::new(cfg.hidden_size, p, vb.pp("cls_projection_head")))
            .transpose()?;
        Ok(Self {
            embeddings: Embeddings::new(cfg, bert.pp("embeddings"))?,
            layers,
            head,
            cfg: cfg.clone(),
            embed_dim: projection.unwrap_or(cfg.hidden_size),
            device: vb.device().clone(),
        })
    }

    /// Reads a `transformers` BERT `config.json` (same as [`BertConfig::from_file`]).
    pub fn config_from_file(path: &Path) -> Result<BertConfig> {
        BertConfig::from_file(path)
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// `[B, L, hidden]` last hidden state, `BertModel`'s `last_hidden_state`.
    pub fn forward_hidden(&self, batch: &TokenBatch) -> Result<Tensor> {
        let (b, l) = batch.dims()?;
        if l > self.cfg.max_position_embeddings {
            return Err(Error::bad_input(
                "input_ids",
                format!(
                    "at most {} tokens per row",
                    self.cfg.max_position_embeddings
                ),
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
        let mut x = self.embeddings.forward(&ids)?;
        let mask = padding_mask(batch)?.to_dtype(x.dtype())?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask)?;
        }
        Ok(x)
    }
}

impl TextEncoder for BertTextEncoder {
    fn encode(&self, batch: &TokenBatch) -> Result<TextEmbedding> {
        let hidden = self.forward_hidden(batch)?;
        let pooled = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let projected = match &self.head {
            Some(h) => h.forward(&pooled)?,
            None => pooled.clone(),
        };
        Ok(TextEmbedding { pooled, projected })
    }

    fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    fn hidden_dim(&self) -> usize {
        self.cfg.hidden_size
    }

    fn max_length(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_configs_are_refused_with_the_reason() {
        let mut cfg = BertConfig::cxr_bert();
        assert!(cfg.validate().is_ok());
        cfg.position_embedding_type = Some("relative_key".into());
        assert!(cfg.validate().unwrap_err().contains("relative_key"));
        let mut cfg = BertConfig::cxr_bert();
        cfg.hidden_act = "swish".into();
        assert!(cfg.validate().unwrap_err().contains("swish"));
        let mut cfg = BertConfig::cxr_bert();
        cfg.num_attention_heads = 5;
        assert!(cfg.validate().unwrap_err().contains("multiple"));
        let mut cfg = BertConfig::cxr_bert();
        cfg.layer_norm_eps = -1e-12;
        assert_eq!(
            cfg.validate().unwrap_err(),
            "layer_norm_eps -0.000000000001 is not a positive number"
        );
    }

    #[test]
    fn cxr_bert_wants_bert_base_key_names_and_shapes() {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mut cfg = BertConfig::cxr_bert();
        cfg.num_hidden_layers = 1; // one layer shows the per-layer names; keeps the test small
        BertTextEncoder::new(&cfg, Some(128), vb).unwrap();
        let data = varmap.data().lock().unwrap();
        let shape = |k: &str| data.get(k).map(|v| v.as_tensor().dims().to_vec());
        assert_eq!(
            shape("bert.embeddings.word_embeddings.weight"),
            Some(vec![30522, 768])
        );
        assert_eq!(
            shape("bert.encoder.layer.0.attention.self.query.weight"),
            Some(vec![768, 768])
        );
        assert_eq!(
            shape("bert.encoder.layer.0.intermediate.dense.weight"),
            Some(vec![3072, 768])
        );
        assert_eq!(
            shape("cls_projection_head.dense_to_output.weight"),
            Some(vec![128, 128])
        );
        // 5 embedding tensors + 16 per layer + 6 head tensors
        assert_eq!(data.len(), 5 + 16 + 6);
    }
}
