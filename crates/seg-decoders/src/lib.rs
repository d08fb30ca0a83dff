//! Segmentation heads on any [`cxr_core::Encoder`]: a linear head, ViTDet's simple feature
//! pyramid with a semantic-FPN head, and UPerNet; their losses, a training loop with
//! frozen or fine-tuned backbones, Dice evaluation and mask/overlay PNG writers.
//!
//! Heads read [`cxr_core::Features`] (final patch tokens and intermediate layers with their
//! grid) and size themselves from [`cxr_core::FeatureInfo`]; they never name a backbone.
//! Every operation is differentiable through candle's autograd: the bilinear resize and
//! adaptive average pooling are matrix products ([`resize`]), BatchNorm and layer norm are
//! written from primitives ([`layers`]).
#![deny(missing_docs)]

mod error;
pub mod heads;
pub mod layers;
pub mod loss;
pub mod resize;

pub use error::{Error, Result};
pub use heads::{Head, HeadConfig, SegmentationHead};
pub use layers::Mode;
pub use resize::{resize_bilinear, AlignCorners};
