//! DINOv2's self-supervised objectives, faithful to `facebookresearch/dinov2`.
//!
//! - [`DinoHead`]: the projection head (MLP, L2-normalised bottleneck, weight-normalised
//!   prototype layer), with dinov2's checkpoint key names.
//! - [`teacher`]: the teacher targets, either centering + sharpening ([`TeacherMode::Centering`])
//!   or Sinkhorn-Knopp ([`TeacherMode::SinkhornKnopp`]), as one function ([`teacher_targets`])
//!   so an accelerator kernel can replace it in one place.
//! - [`DinoLoss`]: the CLS-token cross-entropy over (student crop, teacher crop) pairs.
//! - [`IbotPatchLoss`]: the masked-patch cross-entropy.
//! - [`koleo_loss`]: the KoLeo entropy regulariser.
//! - [`DinoObjective`]: the three combined as dinov2's `SSLMetaArch.forward_backward` does.
//! - [`DinoV2Config`]: the training configuration (TOML, dinov2's sections and defaults, a
//!   RAD-DINO preset), with conversions to the head, loss and schedule settings.
//!
//! Every trainable path is built from differentiable primitives (`cxr_core::ops`), and the
//! parity tests compare values and gradients with PyTorch re-implementations of the
//! reference code (`tests/gen.py`).
//!
//! See [`training_step`] for how a trainer assembles these with `train-utils`.
#![deny(missing_docs)]

#[doc = include_str!("../docs/training_step.md")]
pub mod training_step {}

mod center;
mod config;
mod dino;
mod error;
mod head;
mod ibot;
mod koleo;
mod objective;
pub mod teacher;
mod teacher_state;

pub use center::Center;
pub use config::{
    CropsConfig, DinoSection, DinoV2Config, IbotSection, OptimConfig, StudentConfig, TeacherConfig,
    TrainSection,
};
pub use dino::{cross_entropy_pairs, DinoLoss, DinoLossParts};
pub use error::{Error, Result};
pub use head::{DinoHead, DinoHeadConfig};
pub use ibot::{masks_weight, IbotPatchLoss};
pub use koleo::{koleo_loss, l2_normalize};
pub use objective::{
    DinoObjective, ObjectiveConfig, ObjectiveLosses, StudentOutputs, TeacherOutputs, TeacherTargets,
};
pub use teacher::{teacher_targets, TeacherMode};
