//! Image–text dual encoders in candle: the UniCL / MedImageInsight (MI2) text tower, a CLIP
//! BPE tokenizer, BERT-family text towers, and zero-shot classification and retrieval.
//!
//! - [`TextTransformer`]: UniCL's language encoder (pre-LN blocks, QuickGELU, causal or
//!   padding-masked attention, `ln_final`, pooling at the end-of-text token,
//!   `lang_projection`), differentiable end to end; [`TextConfig::mi2`] is MI2's
//!   ≈0.25 B-parameter tower.
//! - [`BertTextEncoder`]: BERT with CLS pooling and CXR-BERT's projection head
//!   ([`BertConfig::cxr_bert`]), differentiable end to end, see [`bert`].
//! - [`TextTokenizer`]: `tokenizer.json` or CLIP `vocab.json` + `merges.txt`, padded and
//!   truncated to the context length.
//! - [`DualEncoder`]: any [`cxr_core::Encoder`] image tower + `image_projection` + a
//!   [`TextEncoder`] + `logit_scale`; [`ZeroShotClassifier`] and [`retrieval_recall`] on top.
//!
//! - [`Mi2`]: the whole MedImageInsight (MI2) model in one call: DaViT image tower
//!   ([`vit_backbone::davit`]), text tower, projections, `logit_scale` and CLIP tokenizer,
//!   from the release folder (`vision_model/medimageinsigt-v1.0.0.pt`,
//!   `language_model/clip_tokenizer_4.16.2/`), one safetensors with every UniCL key, or the
//!   local Hugging Face cache ([`Mi2::from_pretrained`], never downloads). Every tensor is
//!   checked against [`Mi2Config::expected_tensors`] first; see [`mi2`].
//!
//! Checkpoint key names are UniCLModel's (`lang_encoder.*`, `lang_projection`,
//! `image_projection`, `logit_scale`); see [`checkpoint`] for the map.
//!
//! ```no_run
//! use candle_core::{DType, Device};
//! use dual_encoder::Mi2;
//!
//! let mi2 = Mi2::from_dir("MedImageInsights/2024.09.27".as_ref(), DType::F32, &Device::Cpu)?;
//! let batch = mi2.tokenizer().encode_batch(&["chest x-ray showing pneumonia"], &Device::Cpu)?;
//! let text_embedding = mi2.model().encode_text(&batch)?; // [1, 1024], unit norm
//! # Ok::<(), dual_encoder::Error>(())
//! ```
//!
//! Any image tower joins a text tower the same way by hand:
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
pub mod mi2;
pub mod retrieval;
pub mod text_encoder;
pub mod text_transformer;
pub mod tokenizer;
pub mod zero_shot;

pub use bert::{BertConfig, BertTextEncoder, ProjectionHead};
pub use checkpoint::{convert_old_key, load_unicl_tensors, unicl_var_builder};
pub use config::{Activation, Pooling, TextConfig};
pub use dual::{DualEncoder, DualOutput};
pub use error::{Error, Result};
pub use mi2::{Mi2, Mi2Checkpoint, Mi2Config, Mi2Files, TokenizerFiles};
pub use retrieval::{recall_at_k, retrieval_recall, RetrievalRecall};
pub use text_encoder::{TextEmbedding, TextEncoder, TokenBatch};
pub use text_transformer::{l2_normalize, TextTransformer};
pub use tokenizer::TextTokenizer;
pub use zero_shot::{class_embeddings, per_finding_auroc, Templates, ZeroShotClassifier};
