//! DINOv2 and RAD-DINO vision transformers in candle.
//!
//! [`Dinov2Model`] reproduces `transformers`' `Dinov2Model` (and the register-token variant):
//! same parameter names, same position-embedding interpolation, same outputs
//! (`last_hidden_state`, `pooler_output`, every hidden state, attention probabilities). It
//! implements [`cxr_core::Encoder`], so every head of the workspace runs on it.
//!
//! [`davit::DavitModel`] is the DaViT image tower of MI2 (MedImageInsight), with the released
//! checkpoint's parameter names; it implements [`cxr_core::Encoder`] as well.
//! [`open_encoder`] loads either from a folder, as its `config.json` says.
//!
//! ```no_run
//! use candle_core::{DType, Device};
//! use vit_backbone::Dinov2Model;
//!
//! // from the local Hugging Face cache (no network access is attempted)
//! let model = Dinov2Model::from_pretrained("microsoft/rad-dino", None, DType::F32, &Device::Cpu)?;
//! # Ok::<(), cxr_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod attention;
pub mod block;
pub mod config;
pub mod davit;
pub mod embeddings;
pub mod fast_ops;
pub mod gpu_parity;
pub mod interpolate;
pub mod layers;
pub mod loading;
pub mod model;
pub mod open;
pub mod weights;

pub use block::set_fused_gpu_inference;
pub use config::{Dinov2Config, PosInterpolation};
pub use davit::{DavitConfig, DavitModel};
pub use loading::{cached_model_files, cached_snapshot, Checkpoint, ModelFiles};
pub use model::{Dinov2Model, Dinov2Output, ForwardOptions};
pub use open::{encoder_kind, model_folder, open_cached_encoder, open_encoder, EncoderKind};
