//! Segmentation heads on any [`cxr_core::Encoder`].
#![deny(missing_docs)]

mod error;
pub mod resize;

pub use error::{Error, Result};
pub use resize::{resize_bilinear, AlignCorners};
