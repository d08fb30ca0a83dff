//! Configuration of the CLIP / UniCL text transformer.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The MLP non-linearity of the residual blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x · σ(1.702 x)`, what CLIP and UniCL / MedImageInsight use.
    #[default]
    QuickGelu,
    /// Exact (erf) GELU, PyTorch's `nn.GELU()`.
    GeluErf,
}

/// Which token's final state becomes the sentence embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The first position of the largest token id: the end-of-text token for CLIP BPE
    /// vocabularies, where `<|endoftext|>` has the highest id (UniCL's `TOKENIZER: clip`).
    #[default]
    EotArgmax,
    /// The first token (UniCL with any other tokenizer).
    First,
}

/// Shape and behaviour of a [`crate::TextTransformer`].
///
/// Field names follow UniCL's `LANG_ENCODER` section in lower case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// Rows of `token_embedding` (49408 for the CLIP BPE vocabulary).
    pub vocab_size: usize,
    /// Rows of `positional_embedding`: the longest token sequence (77 for CLIP).
    pub context_length: usize,
    /// Model width.
    pub width: usize,
    /// Number of residual attention blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Causal (autoregressive) attention mask. `false` attends bidirectionally and masks the
    /// padding keys given by the attention mask (UniCL's `AUTOGRESSIVE: false`).
    #[serde(default = "default_true")]
    pub causal: bool,
    /// Width of `lang_projection`'s output, the joint embedding space.
    pub projection_dim: usize,
    /// MLP hidden width as a multiple of `width`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: usize,
    /// Layer-norm epsilon (UniCL's TF-style LayerNorm uses 1e-12).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// MLP non-linearity.
    #[serde(default)]
    pub activation: Activation,
    /// Sentence pooling.
    #[serde(default)]
    pub pooling: Pooling,
}

fn default_true() -> bool {
    true
}
fn default_mlp_ratio() -> usize {
    4
}
fn default_eps() -> f64 {
    1e-12
}

impl TextConfig {
    /// MedImageInsight (MI2) text tower: CLIP vocabulary (49408), context 77, width 1024,
    /// 16 layers × 16 heads, bidirectional with padding mask, projected to 1024
    /// (≈0.25 B parameters).
    pub fn mi2() -> Self {
        Self {
            vocab_size: 49408,
            context_length: 77,
            width: 1024,
            layers: 16,
            heads: 16,
            causal: false,
            projection_dim: 1024,
            mlp_ratio: 4,
            layer_norm_eps: 1e-12,
            activation: Activation::QuickGelu,
            pooling: Pooling::EotArgmax,
        }
    }

    /// UniCL's default language encoder (causal, width 512, 12 × 8) projected to 512.
    pub fn unicl_base() -> Self {
        Self {
            width: 512,
            layers: 12,
            heads: 8,
            causal: true,
            projection_dim: 512,
            ..Self::mi2()
        }
    }

    /// A tiny tower for tests and experiments: width 32, 2 layers × 4 heads, context 16,
    /// projected to 24.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            context_length: 16,
            width: 32,
            layers: 2,
            heads: 4,
            causal: true,
            projection_dim: 24,
            ..Self::mi2()
        }
    }

    /// Reads a JSON configuration.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| cxr_core::Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| cxr_core::Error::config(path, e.to_string()))?;
        cfg.validate()
            .map_err(|r| Error::Core(cxr_core::Error::config(path, r)))?;
        Ok(cfg)
    }

    /// Checks that the sizes are usable.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("context_length", self.context_length),
            ("width", self.width),
            ("layers", self.layers),
            ("heads", self.heads),
            ("projection_dim", self.projection_dim),
            ("mlp_ratio", self.mlp_ratio),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        cxr_core::ranges::positive(&[("layer_norm_eps", self.layer_norm_eps)])?;
        if self.width % self.heads != 0 {
            return Err(format!(
                "width {} is not divisible by heads {}",
                self.width, self.heads
            ));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
}
