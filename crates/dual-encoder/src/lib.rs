//! Image–text dual encoders in candle: the UniCL / MedImageInsight (MI2) text tower, a CLIP
//! BPE tokenizer, BERT-family text towers, and zero-shot classification and retrieval.
//!
//! - [`TextTransformer`]: UniCL's language encoder (pre-LN blocks, QuickGELU, causal or
//!   padding-masked attention, `ln_final`, pooling at the end-of-text token,
//!   `lang_projection`), differentiable end to end; [`TextConfig::mi2`] is MI2's
//!   ≈0.25 B-parameter tower.
//! - [`BertTextEncoder`]: BERT with CLS pooling and CXR-BERT's projection head
//!   (inference only for the BERT body, see [`bert`]).
//! - [`TextTokenizer`]: `tokenizer.json` or CLIP `vocab.json` + `merges.txt`, padded and
//!   truncated to the context length.
//! - [`DualEncoder`]: any [`cxr_core::Encoder`] image tower + `image_projection` + a
//!   [`TextEncoder`] + `logit_scale`; [`ZeroShotClassifier`] and [`retrieval_recall`] on top.
//!
//! Checkpoint key names are UniCLModel's (`lang_encoder.*`, `lang_projection`,
//! `image_projection`, `logit_scale`); see [`checkpoint`] for the map.
//!
//! ```no_run
//! use candle_core::{DType, Device};
//! use dual_encoder::{unicl_var_builder, DualEncoder, TextConfig, TextTokenizer, TextTransformer};
//!
//! # fn image_tower(vb: candle_nn::VarBuilder) -> dual_encoder::Result<Box<dyn cxr_core::Encoder>> { unimplemented!() }
//! let dev = Device::Cpu;
//! let vb = unicl_var_builder("mi2.safetensors".as_ref(), DType::F32, &dev)?;
//! let text = TextTransformer::new(&TextConfig::mi2(), vb.clone())?;
//! let model = DualEncoder::new(image_tower(vb.pp("image_encoder"))?, Box::new(text), vb)?;
//! let tok = TextTokenizer::from_file("tokenizer.json".as_ref(), 77)?;
//! let batch = tok.encode_batch(&["chest x-ray showing pneumonia"], &dev)?;
//! let text_embedding = model.encode_text(&batch)?;
//! # Ok::<(), dual_encoder::Error>(())
//! ```
#![deny(missing_docs)]

pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod dual;
mod error;
pub mod retrieval;
pub mod text_encoder;
pub mod text_transformer;
pub mod tokenizer;
pub mod zero_shot;

pub use bert::{BertTextEncoder, ProjectionHead};
pub use checkpoint::{convert_old_key, load_unicl_tensors, unicl_var_builder};
pub use config::{Activation, Pooling, TextConfig};
pub use dual::{DualEncoder, DualOutput};
pub use error::{Error, Result};
pub use retrieval::{recall_at_k, retrieval_recall, RetrievalRecall};
pub use text_encoder::{TextEmbedding, TextEncoder, TokenBatch};
pub use text_transformer::{l2_normalize, TextTransformer};
pub use tokenizer::TextTokenizer;
pub use zero_shot::{class_embeddings, per_finding_auroc, Templates, ZeroShotClassifier};
