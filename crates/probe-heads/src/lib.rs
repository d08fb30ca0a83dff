//! Frozen-feature evaluation of chest X-ray encoders, as RAD-DINO evaluates them: features
//! are extracted once per encoder and split and cached ([`extract`]); probes are fit on the
//! frozen features: a linear layer with AdamW and early stopping over seeds ([`linear`]), an
//! L2 logistic regression with C tuned on val ([`logreg`], [`eval::logreg_probe`]) and DINO's
//! weighted kNN ([`knn`]); test scores get AUROC/AUPRC with patient-level bootstrap CIs
//! ([`eval`]); [`demographics`] bins continuous targets and cross-validates by patient; and
//! [`results`] writes the tables; [`protocol`] runs the whole protocol (every probe, AUROC,
//! AUPRC and F1 at thresholds chosen on val) on any labelled data set in one call.
//! Everything takes `&dyn Encoder`.
#![deny(missing_docs)]

pub mod demographics;
mod error;
pub mod eval;
pub mod extract;
pub mod knn;
pub mod linear;
pub mod logreg;
mod matrix;
pub mod pixel;
pub mod protocol;
pub mod results;
mod targets;

pub use error::{Error, Result};
pub use matrix::Matrix;
pub use targets::{macro_auroc, Targets};
