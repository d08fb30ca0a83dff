//! Helpers shared by the unit tests of the ops.

use candle_core::backprop::GradStore;
use candle_core::Tensor;

/// Largest `|a − b|`, compared in f32 (`cxr_core::ops::max_abs_diff`, which also checks the
/// shapes agree).
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    cxr_core::ops::max_abs_diff(a, b).unwrap()
}

/// The gradients of `Σ y ⊙ dy`: backpropagates `dy` through whatever built `y`.
pub(crate) fn grads_of(y: &Tensor, dy: &Tensor) -> GradStore {
    (y * dy).unwrap().sum_all().unwrap().backward().unwrap()
}

/// Largest `|x|` of `t`, as f64: the size that an error bound is relative to.
pub(crate) fn max_magnitude(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}
