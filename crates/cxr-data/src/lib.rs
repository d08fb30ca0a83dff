//! The chest X-ray input pipeline: everything between a hospital's files and a batch tensor.
//!
//! - [`decode`]: PNG (8/16-bit, gray/RGB), JPEG and DICOM (modality LUT, VOI LUT/window,
//!   MONOCHROME1 inversion, Bits Stored) to a gray [`GrayImage`] in `[0, 1]`.
//! - [`processor`]: a Hugging Face image processor read from `preprocessor_config.json`,
//!   reproducing transformers' PIL-backed `BitImageProcessor` (Pillow's fixed-point resampling
//!   in [`resize`]).
//! - [`manifest`] and [`split`]: CSV manifests, patient-level splits, nested scaling subsets.
//! - [`augment`] and [`masking`]: DINOv2 multi-crop and iBOT block masks, seeded per sample.
//! - [`loader`]: parallel decode + transform with bounded prefetch into candle batches.
//! - [`sampler`]: the [`sampler::IndexSampler`] hook that decides which indices an epoch visits.
//! - [`shards`]: WebDataset-style tar shards with worker assignment and resumable positions,
//!   and [`ShardIndex`] for reading them by sample index.
//! - [`source`]: the [`ImageSource`] trait that loaders read images through: a file list, a
//!   [`ShardIndex`], or a [`Subset`] of either.
#![deny(missing_docs)]

pub mod augment;
pub mod decode;
mod error;
mod image;
pub mod loader;
pub mod manifest;
pub mod masking;
pub mod processor;
pub mod resize;
pub mod sampler;
pub mod shards;
pub mod source;
pub mod split;

pub use crate::image::{to_u8, GrayImage};
pub use decode::{decode_bytes, decode_file, DecodeOptions, DicomOptions, VoiChoice};
pub use error::{Error, Result};
pub use manifest::{Manifest, ManifestSpec, Record, Split, NIH_FINDINGS};
pub use processor::ImageProcessor;
pub use sampler::{IndexSampler, SeededShuffle};
pub use shards::ShardIndex;
pub use source::{ImageSource, Subset};
