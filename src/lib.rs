//! The Rust toolkit for radiology foundation models, as one dependency.
//!
//! Each part is its own crate, usable alone; this crate re-exports the four that most users
//! start from and hosts the end-to-end examples (`examples/`):
//! - [`core`]: the `Encoder` contract every backbone implements and every head consumes;
//! - [`data`]: chest X-ray decoding (PNG/JPEG/DICOM), Hugging Face preprocessing, manifests,
//!   splits, augmentation, loaders and shards;
//! - [`vit`]: DINOv2 / RAD-DINO vision transformers at parity with `transformers`;
//! - [`metrics`]: scikit-learn-exact classification metrics, segmentation and text metrics,
//!   bootstrap confidence intervals;
//! - [`pipeline`]: the README's end-to-end run (embed → probe → segment → report → scaling)
//!   on the real packs, through the `Encoder` trait.
#![deny(missing_docs)]

pub use cxr_core as core;
pub use cxr_data as data;
pub use metrics;
pub mod pipeline;
pub use vit_backbone as vit;
