//! Data- and model-size scaling of chest X-ray encoders, and prototype-driven curation.
//!
//! - [`fit`]: `metric(n) = a − b·n^(−c)` by variable projection + Levenberg–Marquardt, with
//!   `curve_fit`-style covariance and bootstrap bands ([`fit::band`]).
//! - [`joint`]: Chinchilla's `L(N, D) = E + A·N^(−α) + B·D^(−β)`.
//! - [`kmeans`]: k-means++ seeding and Lloyd iterations (scikit-learn's algorithm).
//! - [`curation`]: CheXficient-style weighting of a pool by its prototypes, budgeted draws,
//!   and [`curation::SubsetSampler`], which feeds any selection to a pretraining loop
//!   through [`cxr_data::IndexSampler`].
//! - [`study`]: the resumable study runner (DINOv2 continual pretraining per
//!   (model size, subset) cell under a fixed step budget, pluggable evaluation tasks,
//!   tables with bootstrap CIs, fits and plots) and the curation comparison.
#![deny(missing_docs)]

pub mod curation;
mod error;
pub mod fit;
pub mod joint;
pub mod kmeans;
mod linalg;
mod lm;
pub mod study;

pub use error::{Error, Result};
