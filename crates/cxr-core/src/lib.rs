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

    /// `(seed, forward calls)` of the encoder's stochastic depth, for checkpoints: its masks
    /// are a pure function of them, so a run restored with
    /// [`Encoder::set_stochastic_depth_state`] draws the same masks again. `None` for an
    /// encoder without stochastic depth.
    fn stochastic_depth_state(&self) -> Option<(u64, u64)> {
        None
    }

    /// Restores what [`Encoder::stochastic_depth_state`] returned; nothing for an encoder
    /// without stochastic depth.
    fn set_stochastic_depth_state(&self, seed: u64, calls: u64) {
        let _ = (seed, calls);
    }
}

/// A boxed encoder is an encoder, so what loaders return as
/// `Box<dyn Encoder>` plugs into heads that take `E: Encoder` by value.
impl<E: Encoder + ?Sized> Encoder for Box<E> {
    fn forward_features(&self, pixels: &Tensor, request: &FeatureRequest) -> Result<Features> {
        (**self).forward_features(pixels, request)
    }

    fn feature_info(&self) -> FeatureInfo {
        (**self).feature_info()
    }

    fn preprocessing(&self) -> Preprocessing {
        (**self).preprocessing()
    }

    fn device(&self) -> &Device {
        (**self).device()
    }

    fn stochastic_depth_state(&self) -> Option<(u64, u64)> {
        (**self).stochastic_depth_state()
    }

    fn set_stochastic_depth_state(&self, seed: u64, calls: u64) {
        (**self).set_stochastic_depth_state(seed, calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pooled output = the per-image mean pixel; no layers.
    struct MeanPixel(Device);

    impl Encoder for MeanPixel {
        fn forward_features(&self, pixels: &Tensor, _: &FeatureRequest) -> Result<Features> {
            let b = pixels.dim(0)?;
            let pooled = pixels.flatten_from(1)?.mean_keepdim(1)?;
            Ok(Features {
                patch_tokens: pooled.reshape((b, 1, 1))?,
                pooled,
                grid: (1, 1),
                intermediates: Vec::new(),
            })
        }

        fn feature_info(&self) -> FeatureInfo {
            FeatureInfo {
                embed_dim: 1,
                patch_stride: 8,
                layers: Vec::new(),
            }
        }

        fn preprocessing(&self) -> Preprocessing {
            Preprocessing::imagenet(8)
        }

        fn device(&self) -> &Device {
            &self.0
        }
    }

    fn pooled_of<E: Encoder>(e: &E, x: &Tensor) -> Vec<f32> {
        e.forward_features(x, &FeatureRequest::default())
            .and_then(|f| Ok(f.pooled.flatten_all()?.to_vec1()?))
            .unwrap_or_default()
    }

    #[test]
    fn a_boxed_encoder_is_the_encoder_it_holds() {
        let plain = MeanPixel(Device::Cpu);
        let boxed: Box<dyn Encoder> = Box::new(MeanPixel(Device::Cpu));
        let x = Tensor::arange(0f32, 2.0 * 3.0 * 8.0 * 8.0, &Device::Cpu)
            .and_then(|t| t.reshape((2, 3, 8, 8)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pooled_of(&boxed, &x), pooled_of(&plain, &x));
        assert_eq!(pooled_of(&boxed, &x).len(), 2);
        assert_eq!(boxed.feature_info(), plain.feature_info());
        assert_eq!(boxed.preprocessing(), plain.preprocessing());
    }
}
