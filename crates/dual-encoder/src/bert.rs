//! BERT-family text towers (CXR-BERT and relatives) through candle-transformers' BERT.
//!
//! **Inference only.** candle-transformers' `BertModel` normalises with candle's fused
//! layer norm, which has no backward pass: gradients would silently stop at the BERT
//! body. The CXR-BERT projection head here is differentiable, so training the head on a
//! frozen BERT is sound; fine-tuning BERT itself is not supported by this wrapper.
//!
//! Pooling takes the `[CLS]` (first) token of the last hidden state; the optional head is
//! CXR-BERT's `cls_projection_head`: Linear(hidden → p) – GELU (erf) – LayerNorm(p, 1e-12) –
//! Linear(p → p). Keys (as `CXRBertModel.state_dict()`): `bert.embeddings.*`,
//! `bert.encoder.layer.{i}.*`, `cls_projection_head.dense_to_hidden.*`,
//! `cls_projection_head.LayerNorm.*`, `cls_projection_head.dense_to_output.*`.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder};
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use cxr_core::ops::layer_norm;

use crate::text_encoder::{TextEmbedding, TextEncoder, TokenBatch};
use crate::{Error, Result};

/// CXR-BERT's projection head on the CLS token.
#[derive(Debug, Clone)]
pub struct ProjectionHead {
    dense_to_hidden: Linear,
    norm_weight: Tensor,
    norm_bias: Tensor,
    dense_to_output: Linear,
}

impl ProjectionHead {
    /// Reads `dense_to_hidden`, `LayerNorm` and `dense_to_output` under `vb`.
    pub fn new(hidden: usize, projection: usize, vb: VarBuilder) -> Result<Self> {
        let lin = |i: usize, o: usize, vb: VarBuilder| -> Result<Linear> {
            let w = vb.get_with_hints(
                (o, i),
                "weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?;
            let b = vb.get_with_hints(o, "bias", Init::Const(0.0))?;
            Ok(Linear::new(w, Some(b)))
        };
        Ok(Self {
            dense_to_hidden: lin(hidden, projection, vb.pp("dense_to_hidden"))?,
            norm_weight: vb.get_with_hints(projection, "LayerNorm.weight", Init::Const(1.0))?,
            norm_bias: vb.get_with_hints(projection, "LayerNorm.bias", Init::Const(0.0))?,
            dense_to_output: lin(projection, projection, vb.pp("dense_to_output"))?,
        })
    }

    /// `[B, hidden]` → `[B, projection]`, differentiable.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.dense_to_hidden.forward(x)?.gelu_erf()?;
        let h = layer_norm(&h, &self.norm_weight, &self.norm_bias, 1e-12)?;
        Ok(self.dense_to_output.forward(&h)?)
    }
}

/// A BERT encoder with CLS pooling and an optional CXR-BERT projection head.
pub struct BertTextEncoder {
    bert: BertModel,
    head: Option<ProjectionHead>,
    hidden: usize,
    embed_dim: usize,
    max_length: usize,
    device: Device,
}

impl std::fmt::Debug for BertTextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertTextEncoder")
            .field("hidden", &self.hidden)
            .field("embed_dim", &self.embed_dim)
            .field("head", &self.head.is_some())
            .finish()
    }
}

impl BertTextEncoder {
    /// Builds the encoder from `vb` at the checkpoint root: BERT under `bert.`, the head
    /// (when `projection` is given) under `cls_projection_head.`.
    pub fn new(cfg: &BertConfig, projection: Option<usize>, vb: VarBuilder) -> Result<Self> {
        let bert = BertModel::load(vb.pp("bert"), cfg)?;
        let head = projection
            .map(|p| ProjectionHead::new(cfg.hidden_size, p, vb.pp("cls_projection_head")))
            .transpose()?;
        Ok(Self {
            bert,
            head,
            hidden: cfg.hidden_size,
            embed_dim: projection.unwrap_or(cfg.hidden_size),
            max_length: cfg.max_position_embeddings,
            device: vb.device().clone(),
        })
    }

    /// Reads a `transformers` BERT `config.json`.
    pub fn config_from_file(path: &std::path::Path) -> Result<BertConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| cxr_core::Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Core(cxr_core::Error::config(path, e.to_string())))
    }
}

impl TextEncoder for BertTextEncoder {
    fn encode(&self, batch: &TokenBatch) -> Result<TextEmbedding> {
        let (b, l) = batch.dims()?;
        if l > self.max_length {
            return Err(Error::bad_input(
                "input_ids",
                format!("at most {} tokens per row", self.max_length),
                &[b, l],
            ));
        }
        let ids = batch.input_ids.to_dtype(DType::U32)?;
        let types = ids.zeros_like()?;
        let hidden = self
            .bert
            .forward(&ids, &types, Some(&batch.attention_mask))?;
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
        self.hidden
    }

    fn max_length(&self) -> usize {
        self.max_length
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
