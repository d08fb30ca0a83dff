//! Helpers shared by the unit tests of the ops.

use candle_core::backprop::GradStore;
use candle_core::Tensor;

/// Largest `|a − b|`, compared in f32 (`cxr_core::ops::max_abs_diff`, which also checks the
/// shapes agree).
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    cxr_core::ops::max_abs_diff(a, b).unwrap()
}

/// `g ⊙ v / ‖v‖_row` from candle's own ops (none of this crate's): the reference the weight
/// norm and the weight-normalised linear layer are checked against.
pub(crate) fn composed_weight_norm(v: &Tensor, g: &Tensor) -> Tensor {
    let norm = v
        .sqr()
        .unwrap()
        .sum_keepdim(candle_core::D::Minus1)
        .unwrap()
        .sqrt()
        .unwrap();
    v.broadcast_div(&norm).unwrap().broadcast_mul(g).unwrap()
}

/// The gradients of `Σ y ⊙ dy`: backpropagates `dy` through whatever built `y`.
pub(crate) fn grads_of(y: &Tensor, dy: &Tensor) -> GradStore {
    (y * dy).unwrap().sum_all().unwrap().backward().unwrap()
}

/// Largest `|x|` of `t`, as f64: the size that an error bound is relative to. NaN when `t`
/// holds a NaN: candle's `max_all` keeps a NaN only when it is the first element, so an error
/// measured with it would let a NaN further in pass.
pub(crate) fn max_magnitude(t: &Tensor) -> f64 {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
        .iter()
        .fold(0f64, |m, &x| {
            if m.is_nan() || x.is_nan() {
                f64::NAN
            } else {
                m.max(x.abs())
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn max_magnitude_keeps_a_nan_anywhere() {
        let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
        assert_eq!(max_magnitude(&t(&[1.0, -3.0, 2.0])), 3.0);
        assert!(max_magnitude(&t(&[1.0, f32::NAN, 2.0])).is_nan());
        assert!(max_magnitude(&t(&[1.0, 2.0, f32::NAN])).is_nan());
    }
}
