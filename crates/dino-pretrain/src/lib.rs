//! DINOv2 continual pretraining of ViT encoders on chest X-rays.
//!
//! [`DinoTrainer`] runs `facebookresearch/dinov2`'s training step on candle: a trainable
//! student [`vit_backbone::Dinov2Model`] with its DINO (and optionally separate iBOT) head, an
//! EMA teacher that never tracks gradients, multi-crop batches with iBOT block masks
//! ([`MultiCropSource`]), the DINO + iBOT + KoLeo objective of `dino-loss`, and AdamW with
//! dinov2's parameter groups and schedules from `train-utils`. Checkpoints hold everything an
//! exact resume needs. [`run`] adds the progress bar, step logs, loss plot and checkpoints;
//! [`knn`] evaluates frozen encoders; [`export`] writes a Hugging Face model directory;
//! [`step_bench`] times the training step on a synthetic batch (CPU or CUDA).
#![deny(missing_docs)]

mod arch;
mod data;
mod error;
pub mod export;
pub mod knn;
pub mod packs;
mod run;
pub mod step_bench;
mod trainer;

pub use arch::{backbone_config, Init};
pub use data::{MultiCropBatch, MultiCropSource};
pub use error::{Error, Result};
pub use run::{run, RunOptions, RunSummary};
pub use trainer::{DinoTrainer, StepOutput};
