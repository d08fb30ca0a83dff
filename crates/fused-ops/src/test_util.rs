//! Helpers shared by the unit tests of the ops.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};

/// Largest `|a − b|`, compared in f32.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let f32_of = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    (f32_of(a) - f32_of(b))
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The gradients of `Σ y ⊙ dy`: backpropagates `dy` through whatever built `y`.
pub(crate) fn grads_of(y: &Tensor, dy: &Tensor) -> GradStore {
    (y * dy).unwrap().sum_all().unwrap().backward().unwrap()
}
