//! See what an encoder learned: CLS attention maps, patch-feature PCA, cross-scan patch
//! correspondences and 2-D embedding maps, as library functions over [`cxr_core::Encoder`].
//!
//! - [`attention`]: per-head CLS self-attention of any layer ([`attention::AttentionEncoder`],
//!   implemented for [`vit_backbone::Dinov2Model`]) and DINO's top-mass thresholding.
//! - [`pca`]: PCA by a Jacobi eigen-decomposition of the covariance ([`linalg`]), and DINOv2's
//!   patch-feature picture (background cut on PC1, refit on the foreground, three components
//!   as RGB), for one image or jointly over several.
//! - [`correspondence`]: mutual nearest-neighbour patch matches by cosine similarity.
//! - [`embedding_map`]: PCA and exact t-SNE (sklearn's `method="exact"` schedule) of image
//!   embeddings.
//! - [`render`]: overlays, match lines, tiles and labelled scatter plots.
//! - [`features`]: the encoder outputs as `f64` matrices.
//!
//! The `gallery` example runs all of it on `cxr-mini`:
//! `cargo run --release --example gallery -- --help`.
//!
//! ```
//! use ndarray::array;
//! use cxr_viz::correspondence::mutual_nearest_neighbours;
//!
//! let a = array![[1.0, 0.0], [0.0, 1.0]];
//! let b = array![[0.1, 1.0], [1.0, 0.2]];
//! // strongest first: a1-b0 (cosine 0.995), then a0-b1 (0.981)
//! let m = mutual_nearest_neighbours(a.view(), b.view(), None)?;
//! assert_eq!((m[0].a, m[0].b), (1, 0));
//! assert_eq!((m[1].a, m[1].b), (0, 1));
//! # Ok::<(), cxr_viz::Error>(())
//! ```
#![deny(missing_docs)]

pub mod attention;
pub mod correspondence;
pub mod embedding_map;
mod error;
pub mod features;
pub mod linalg;
pub mod pca;
pub mod render;

pub use error::{Error, Result};
