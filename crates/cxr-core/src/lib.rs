//! The encoder contract of the workspace.
//!
//! Every vision backbone (DINOv2/RAD-DINO ViTs, DaViT, …) implements [`Encoder`]; every
//! evaluation head (linear and kNN probes, segmentation decoders, the report-generation
//! projector) takes `&dyn Encoder` or `E: Encoder` and sizes itself from
//! [`Encoder::feature_info`]. Heads never name a concrete backbone.
//!
//! Conventions:
//! - pixels are `[B, 3, H, W]` `f32` (or the model dtype), already preprocessed as
//!   [`Encoder::preprocessing`] describes, on the encoder's device;
//! - every tensor in [`Features`] lives on the input's device and has the model's dtype;
//! - token tensors are `[B, N, C]` in row-major grid order: token `i` sits at row
//!   `i / grid.1`, column `i % grid.1`.
//!
//! ```
//! use candle_core::Tensor;
//! use cxr_core::{Encoder, FeatureRequest};
//!
//! fn embed(encoder: &dyn Encoder, pixels: &Tensor) -> cxr_core::Result<Tensor> {
//!     let features = encoder.forward_features(pixels, &FeatureRequest::default())?;
//!     Ok(features.pooled)
//! }
//! ```
#![deny(missing_docs)]

mod error;
mod features;
mod memory;
pub mod ops;
mod preprocessing;
pub mod ranges;
mod tensor_set;

pub use error::{Error, Result};
pub use features::{FeatureInfo, FeatureRequest, Features, Intermediate, LayerInfo};
pub use memory::retain_freed_heap_memory;
pub use preprocessing::{Preprocessing, Resample};
pub use tensor_set::check_tensors;

use candle_core::{Device, Tensor};

/// A vision encoder that turns preprocessed pixels into named features.
///
/// Implementations are expected to be cheap to call repeatedly and to hold no mutable state
/// across calls (training state such as dropout randomness is driven by
/// [`FeatureRequest::train`]).
pub trait Encoder: Send + Sync {
    /// Runs the encoder on `pixels` (`[B, 3, H, W]`) and returns the pooled embedding, the
    /// final patch tokens with their grid, and the intermediate layers that `request` asks for.
    fn forward_features(&self, pixels: &Tensor, request: &FeatureRequest) -> Result<Features>;

    /// Static description of the outputs: widths, strides and the number of layers.
    fn feature_info(&self) -> FeatureInfo;

    /// The preprocessing the encoder was trained with.
    fn preprocessing(&self) -> Preprocessing;

    /// The device the weights live on.
    fn device(&self) -> &Device;
}
