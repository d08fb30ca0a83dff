//! `torch.nn.utils.weight_norm(dim=0)` of a matrix: `W = g ⊙ v / ‖v‖` row by row, with a
//! one-pass backward.
//!
//! A DINO head's last layer is a weight-normalised `[K, bottleneck]` matrix (65 536 × 256 in
//! dinov2). Composed from candle ops (square, row sum, square root, divide, multiply by the
//! gain) the forward is five passes over it and the backward about ten more, each over
//! 16.8M values, every step, for the student and the teacher. Here the forward is one pass per
//! row and the backward one pass per row: with `u = v / ‖v‖` and `d = ∂L/∂W`,
//! `∂L/∂v = (g / ‖v‖) (d − u (u · d))` and `∂L/∂g = u · d`.

use candle_core::{
    bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;

use crate::storage::f32_slice;

/// `g ⊙ v / ‖v‖_row` (`CustomOp2` on `v` `[K, D]` and `g` `[K, 1]`, contiguous f32 on the
/// CPU); its backward gives `v` the gradient through [`WeightNormRowsGrad`] and `g` (when it
/// tracks gradients) `u · d` per row.
#[derive(Debug, Clone, Copy)]
pub struct WeightNormRows;

/// `(g / ‖v‖) (d − u (u · d))` per row (`CustomOp3` on `v` `[K, D]`, `g` `[K, 1]` and `d`
/// `[K, D]`): the gradient of `v` under [`WeightNormRows`].
#[derive(Debug, Clone, Copy)]
pub struct WeightNormRowsGrad;

/// `(K, D)` of `v` once `per_row` (a gain, a scale, ...: `what`) is checked to hold one value
/// per row, or an error naming `op` and both shapes.
pub(crate) fn rows_of(
    lv: &Layout,
    per_row: &Layout,
    what: &str,
    op: &str,
) -> Result<(usize, usize)> {
    match lv.dims() {
        &[k, d] if per_row.shape().elem_count() == k && d > 0 => Ok((k, d)),
        v => bail!(
            "{op}: v {v:?} must be [K, D] with a {what} of K values, got {:?}",
            per_row.dims()
        ),
    }
}

/// `a · b`.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl CustomOp2 for WeightNormRows {
    fn name(&self) -> &'static str {
        "weight-norm-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, d) = rows_of(l1, l2, "gain", self.name())?;
        let v = f32_slice(s1, l1, "v", self.name())?;
        let g = f32_slice(s2, l2, "g", self.name())?;
        let mut w = vec![0f32; v.len()];
        w.par_chunks_mut(d)
            .zip(v.par_chunks(d))
            .zip(g.par_iter())
            .for_each(|((w, v), &g)| {
                // no epsilon, as torch: a zero row gives NaN there too
                let scale = g / dot(v, v).sqrt();
                w.iter_mut().zip(v).for_each(|(w, &x)| *w = x * scale);
            });
        Ok((CpuStorage::F32(w), l1.shape().clone()))
    }

    fn bwd(
        &self,
        v: &Tensor,
        g: &Tensor,
        _w: &Tensor,
        dw: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dw = dw.contiguous()?;
        let g_trains = g.is_variable() || g.track_op();
        let (v, g) = (v.detach(), g.detach());
        let dv = v.apply_op3_no_bwd(&g, &dw, &WeightNormRowsGrad)?;
        // the gain is usually frozen (dinov2's norm_last_layer): only compute its gradient
        // when something asks for it
        let dg = if g_trains {
            let u = v.broadcast_div(&v.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)?;
            Some((u * &dw)?.sum_keepdim(D::Minus1)?.reshape(g.shape())?)
        } else {
            None
        };
        Ok((Some(dv), dg))
    }
}

impl CustomOp3 for WeightNormRowsGrad {
    fn name(&self) -> &'static str {
        "weight-norm-rows-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, d) = rows_of(l1, l2, "gain", self.name())?;
        if l3.dims() != l1.dims() {
            bail!(
                "{}: v {:?} and its gradient {:?} differ",
                self.name(),
                l1.dims(),
                l3.dims()
            );
        }
        let v = f32_slice(s1, l1, "v", self.name())?;
        let g = f32_slice(s2, l2, "g", self.name())?;
        let dw = f32_slice(s3, l3, "dW", self.name())?;
        let mut dv = vec![0f32; v.len()];
        dv.par_chunks_mut(d)
            .zip(v.par_chunks(d).zip(dw.par_chunks(d)))
            .zip(g.par_iter())
            .for_each(|((dv, (v, dw)), &g)| {
                let inv_norm = 1.0 / dot(v, v).sqrt();
                // u · d with u = v / ‖v‖
                let ud = dot(v, dw) * inv_norm;
                let (a, b) = (g * inv_norm, g * inv_norm * ud * inv_norm);
                dv.iter_mut()
                    .zip(v.iter().zip(dw))
                    .for_each(|(o, (&x, &d))| *o = a * d - b * x);
            });
        Ok((CpuStorage::F32(dv), l1.shape().clone()))
    }
}

/// `g ⊙ v / ‖v‖` over the rows of `v` `[K, D]` with `g` `[K, 1]`: PyTorch's
/// `weight_norm(dim=0)` reconstruction, differentiable in `v` (and in `g` when it tracks
/// gradients).
///
/// Contiguous-able f32 on the CPU runs [`WeightNormRows`]; elsewhere the composed candle ops.
pub fn weight_norm_rows(v: &Tensor, g: &Tensor) -> Result<Tensor> {
    if v.device().is_cpu() && v.dtype() == DType::F32 && g.dtype() == DType::F32 {
        return v.contiguous()?.apply_op2(&g.contiguous()?, WeightNormRows);
    }
    let norm = v.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    v.broadcast_div(&norm)?.broadcast_mul(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{grads_of, max_diff, max_magnitude};
    use candle_core::{Device, Var};
    use cxr_testkit::seeded_randn;

    use crate::test_util::composed_weight_norm as composed;

    /// Value and the gradients of v and of a trainable g against the composed ops.
    #[test]
    fn value_and_gradients_match_the_composed_form() {
        let dev = Device::Cpu;
        let v = seeded_randn(0f32, 1.0, (33, 70), 100)
            .and_then(|t| Var::from_tensor(&t))
            .unwrap();
        let g = Var::from_tensor(&(Tensor::rand(0.5f32, 2.0, (33, 1), &dev).unwrap())).unwrap();
        let dw = seeded_randn(0f32, 1.0, (33, 70), 101).unwrap();
        let fused = weight_norm_rows(v.as_tensor(), g.as_tensor()).unwrap();
        let want = composed(v.as_tensor(), g.as_tensor());
        assert!(max_diff(&fused, &want) < 1e-6);
        let (gf, gc) = (grads_of(&fused, &dw), grads_of(&want, &dw));
        for (name, t) in [("v", v.as_tensor()), ("g", g.as_tensor())] {
            let (a, b) = (gf.get(t).unwrap(), gc.get(t).unwrap());
            assert_eq!(a.dims(), b.dims(), "{name}");
            assert!(max_diff(a, b) < 1e-5, "{name}: {}", max_diff(a, b));
        }
    }

    /// A frozen gain (a plain tensor) gets no gradient and v's is unchanged.
    #[test]
    fn a_frozen_gain_gets_no_gradient() {
        let dev = Device::Cpu;
        let v = seeded_randn(0f32, 1.0, (5, 8), 102)
            .and_then(|t| Var::from_tensor(&t))
            .unwrap();
        let g = Tensor::ones((5, 1), DType::F32, &dev).unwrap();
        let w = weight_norm_rows(v.as_tensor(), &g).unwrap();
        let grads = w.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&g).is_none());
        // ‖W_row‖ = 1 whatever v, so Σ W² is constant and v's gradient vanishes
        // (`max_magnitude` is NaN if any element is, so a NaN gradient fails)
        let dv = grads.get(v.as_tensor()).unwrap();
        assert_eq!(dv.dims(), v.dims());
        let largest = max_magnitude(dv);
        assert!(largest < 1e-6, "largest |dv| {largest}");
    }

    #[test]
    fn a_gain_of_the_wrong_length_is_refused() {
        let dev = Device::Cpu;
        let v = Tensor::ones((5, 8), DType::F32, &dev).unwrap();
        let g = Tensor::ones((4, 1), DType::F32, &dev).unwrap();
        let err = weight_norm_rows(&v, &g).unwrap_err().to_string();
        assert!(err.contains("[5, 8]") && err.contains("[4, 1]"), "{err}");
    }
}
