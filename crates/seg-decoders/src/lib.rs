//! Segmentation heads on any [`cxr_core::Encoder`]: a linear head, ViTDet's simple feature
//! pyramid with a semantic-FPN head, and UPerNet; their losses, a training loop with
//! frozen or fine-tuned backbones, Dice evaluation and mask/overlay PNG writers.
//!
//! Heads read [`cxr_core::Features`] (final patch tokens and intermediate layers with their
//! grid) and size themselves from [`cxr_core::FeatureInfo`]; they never name a backbone.
//! Every operation is differentiable through candle's autograd: the bilinear resize and
//! adaptive average pooling are matrix products ([`resize`]), BatchNorm, layer norm and
//! max-pooling are written from primitives ([`layers`]).
//!
//! A whole experiment, given an encoder and in-memory batches:
//!
//! ```no_run
//! # fn run(encoder: &dyn cxr_core::Encoder, train: &[seg_decoders::SegBatch],
//! #        val: &[seg_decoders::SegBatch], test: &[seg_decoders::SegBatch]) -> seg_decoders::Result<()> {
//! use seg_decoders::{evaluate, train_segmentation, HeadConfig, TrainOptions};
//! let cfg = HeadConfig::upernet(&encoder.feature_info(), 1)?;
//! let (trained, history) = train_segmentation(encoder, &cfg, train, val, &TrainOptions::default())?;
//! let dice = evaluate(encoder, &trained.head, test, seg_decoders::loss::Activation::Sigmoid)?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod augment;
mod error;
pub mod eval;
pub mod heads;
pub mod layers;
pub mod loss;
pub mod lung;
pub mod output;
pub mod resize;
pub mod schedule;
pub mod train;

pub use error::{Error, Result};
pub use eval::{evaluate, ImageDice};
pub use heads::{Head, HeadConfig, SegmentationHead};
pub use layers::Mode;
pub use resize::{resize_bilinear, AlignCorners};
pub use train::{train_segmentation, Backbone, History, SegBatch, TrainOptions, TrainedHead};
