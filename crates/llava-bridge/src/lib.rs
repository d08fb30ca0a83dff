//! LLaVA-1.5-style radiology report generation on a frozen vision encoder.
//!
//! Patch tokens of any [`cxr_core::Encoder`] go through the `mlp2x_gelu` [`Projector`]
//! (`Linear – GELU(erf) – Linear`, transformers' `multi_modal_projector.linear_{1,2}` keys) and
//! are spliced into a Vicuna v1 prompt (`USER: <image>\nProvide a description of the findings
//! in the radiology image. ASSISTANT:`) in front of a llama decoder ([`Llama`], loading
//! `LlamaForCausalLM` `config.json` + sharded safetensors + `tokenizer.json`).
//!
//! - [`Llama`] has two forward paths over one set of weights: [`Kernels::Differentiable`]
//!   (RMSNorm, rotary embedding and softmax from primitive ops, so gradients pass through the
//!   frozen decoder into the projector and LoRA adapters) and [`Kernels::Fused`] (candle's
//!   fused kernels, for generation). Grouped-query attention, causal mask, SiLU MLP, tied or
//!   untied head, KV cache.
//! - [`generate()`](generate::generate): greedy, seeded temperature/top-p sampling and
//!   transformers' beam search (length penalty, early stopping), EOS ids, stop strings.
//! - [`template`]: the conversation template, image position and label mask (`-100` except
//!   the report tokens and EOS); [`ReportGenerator::loss`]: next-token loss on those tokens.
//! - [`train`]: stage 1 (projector only) and stage 2 (projector + optional [`lora`] on q/v),
//!   reusing train-utils' AdamW, schedule and checkpoints.
//! - [`TextTokenizer`]: HF `tokenizer.json`, and byte-level BPE training on a report corpus.
//!
//! Parity with transformers (projector, llama logits, spliced forward, greedy and beam
//! generation, projector gradients) is checked by `tests/` against fixtures that
//! `tests/gen.py` writes.
#![deny(missing_docs)]

pub mod config;
mod error;
pub mod generate;
pub mod init;
pub mod linear;
pub mod llama;
pub mod lora;
pub mod model;
pub mod projector;
pub mod template;
pub mod tokenizer;
pub mod train;
pub mod weights;

pub use config::LlamaConfig;
pub use error::{Error, Result};
pub use generate::{Decoding, GenerationConfig};
pub use llama::{Kernels, KvCache, Llama, LlamaKeys};
pub use lora::LoraConfig;
pub use model::{LlavaModel, ReportGenerator, VisionFeatures};
pub use projector::Projector;
pub use template::{Conversation, Example, PromptEncoder};
pub use tokenizer::TextTokenizer;
pub use weights::Weights;
