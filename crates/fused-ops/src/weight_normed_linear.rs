//! `x · (g ⊙ v / ‖v‖_row)ᵀ`, a linear layer through a weight-normalised matrix with a frozen
//! gain, without forming the matrix: the DINO head's last layer (65 536 × 256 in dinov2, whose
//! gain is fixed at 1 by `norm_last_layer`).
//!
//! With `s_k = g_k / ‖v_k‖` the output is `(x vᵀ) ⊙ s` column by column, so the forward is one
//! GEMM with `v` and an in-place scaling of the `[M, K]` output, not a fresh `[K, D]` matrix (64
//! MB at dinov2's size, for the student and again for the teacher). The backward, with
//! `r = dy ⊙ s` and `c_k = Σ_rows dy ⊙ y`, is `dx = r v`, `dv = rᵀ x − (c_k / ‖v_k‖²) v_k`:
//! no `[K, D]` gradient of the matrix that candle would zero-fill and add to, and no separate
//! weight-norm backward over it.

use candle_core::{
    bail, CpuStorage, CustomOp2, CustomOp3, DType, InplaceOp3, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

use crate::linear::{dims, gemm_x_wt};
use crate::storage::f32_slice;
use crate::weight_norm::{dot, rows_of};

/// Columns per task of the column reductions and the rows of `v` per task of its passes.
const CHUNK: usize = 1024;

/// `x · (g ⊙ v / ‖v‖_row)ᵀ` for `x` `[M, D]`, `v` `[K, D]` and a gain `g` of `K` values,
/// differentiable in `x` and `v`. On the CPU in f32 with a gain that does not train: the
/// fused form of the module docs. Otherwise (a trained gain, other devices or dtypes):
/// [`crate::linear`] of [`crate::weight_norm_rows`].
pub fn weight_normed_linear(x: &Tensor, v: &Tensor, g: &Tensor) -> Result<Tensor> {
    let fused = x.device().is_cpu()
        && [x.dtype(), v.dtype(), g.dtype()]
            .iter()
            .all(|&d| d == DType::F32)
        && !(g.is_variable() || g.track_op());
    if !fused {
        return crate::linear(x, &crate::weight_norm_rows(v, g)?, None);
    }
    let v = v.contiguous()?;
    let scale = v.apply_op2_no_bwd(&g.contiguous()?, &RowScale)?;
    x.contiguous()?.apply_op3(&v, &scale, WeightNormedLinear)
}

/// `s_k = g_k / ‖v_k‖` (`CustomOp2` on `v` `[K, D]` and `g` with `K` values), `[K]`.
#[derive(Debug, Clone, Copy)]
pub struct RowScale;

/// `(x vᵀ) ⊙ s` (`CustomOp3` on `x` `[M, D]`, `v` `[K, D]` and the [`RowScale`] `s` `[K]`),
/// `[M, K]`; its backward gives `x` and `v` their gradients (`s` is a constant of the gain,
/// `v`'s share of it is in `v`'s gradient).
#[derive(Debug, Clone, Copy)]
pub struct WeightNormedLinear;

/// `c_k = Σ_rows a ⊙ b` of two `[M, K]` tensors (`CustomOp2`), `[K]`.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDot;

/// `dv_k −= (c_k / ‖v_k‖²) v_k` in place on `dv` (`InplaceOp3` with `v` `[K, D]` and `c`
/// `[K]`): the weight norm's share of `v`'s gradient.
#[derive(Debug, Clone, Copy)]
pub struct NormGradCorrection;

impl CustomOp2 for RowScale {
    fn name(&self) -> &'static str {
        "weight-norm-row-scale"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (k, d) = rows_of(l1, l2, "gain", op)?;
        let (v, g) = (f32_slice(s1, l1, "v", op)?, f32_slice(s2, l2, "g", op)?);
        let mut s = vec![0f32; k];
        s.par_chunks_mut(CHUNK)
            .zip(v.par_chunks(CHUNK * d))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((s, v), g)| {
                for ((s, v), &g) in s.iter_mut().zip(v.chunks_exact(d)).zip(g) {
                    *s = g / dot(v, v).sqrt();
                }
            });
        Ok((CpuStorage::F32(s), Shape::from(k)))
    }
}

impl CustomOp3 for WeightNormedLinear {
    fn name(&self) -> &'static str {
        "weight-normed-linear"
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
        let op = self.name();
        let (m, d, k) = dims(l1, l2, op)?;
        rows_of(l2, l3, "scale", op)?;
        let x = f32_slice(s1, l1, "x", op)?;
        let v = f32_slice(s2, l2, "v", op)?;
        let s = f32_slice(s3, l3, "scale", op)?;
        let mut y = gemm_x_wt(x, v, (m, d, k), None);
        y.par_chunks_mut(k).for_each(|row| {
            row.iter_mut().zip(s).for_each(|(y, &s)| *y *= s);
        });
        Ok((CpuStorage::F32(y), Shape::from((m, k))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        v: &Tensor,
        s: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let r = dy.apply_op2_no_bwd(s, &crate::PerChannel::Scale)?;
        let dx = r.matmul(&v.detach())?;
        let dv = r.apply_op2_no_bwd(x, &crate::LinearWeightGrad)?;
        let c = dy.apply_op2_no_bwd(y, &ColumnDot)?;
        dv.inplace_op3(v, &c, &NormGradCorrection)?;
        Ok((Some(dx), Some(dv), None))
    }
}

impl CustomOp2 for ColumnDot {
    fn name(&self) -> &'static str {
        "column-dot"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (&[m, k], true) = (l1.dims(), l1.dims() == l2.dims()) else {
            bail!(
                "{op}: two [M, K] tensors, got {:?} and {:?}",
                l1.dims(),
                l2.dims()
            );
        };
        let (a, b) = (f32_slice(s1, l1, "a", op)?, f32_slice(s2, l2, "b", op)?);
        let mut c = vec![0f32; k];
        c.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| {
            let k0 = i * CHUNK;
            for r in 0..m {
                let (a, b) = (&a[r * k + k0..], &b[r * k + k0..]);
                c.iter_mut()
                    .zip(a.iter().zip(b))
                    .for_each(|(c, (&a, &b))| *c += a * b);
            }
        });
        Ok((CpuStorage::F32(c), Shape::from(k)))
    }
}

impl InplaceOp3 for NormGradCorrection {
    fn name(&self) -> &'static str {
        "weight-norm-grad-correction"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let op = self.name();
        let (_, d) = rows_of(l2, l3, "column dot", op)?;
        if l1.dims() != l2.dims() {
            bail!(
                "{op}: gradient {:?} and v {:?} differ",
                l1.dims(),
                l2.dims()
            );
        }
        let (v, c) = (f32_slice(s2, l2, "v", op)?, f32_slice(s3, l3, "c", op)?);
        let Some((start, end)) = l1.contiguous_offsets() else {
            bail!("{op}: the gradient must be contiguous");
        };
        let CpuStorage::F32(dv) = s1 else {
            bail!("{op}: the gradient must be f32");
        };
        dv[start..end]
            .par_chunks_mut(CHUNK * d)
            .zip(v.par_chunks(CHUNK * d))
            .zip(c.par_chunks(CHUNK))
            .for_each(|((dv, v), c)| {
                for ((dv, v), &c) in dv.chunks_exact_mut(d).zip(v.chunks_exact(d)).zip(c) {
                    let a = c / dot(v, v);
                    dv.iter_mut().zip(v).for_each(|(g, &x)| *g -= a * x);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{grads_of, max_diff};
    use candle_core::{Device, Var};
    use cxr_testkit::{assert_finite_nonzero_gradient, seeded_randn};

    /// Standard normal draws, a stream per `seed` (one seed for every draw would make `x` the
    /// first rows of `v`).
    fn randn(shape: &[usize], seed: u64) -> Tensor {
        seeded_randn(0f32, 1.0, shape, seed).unwrap()
    }

    /// `x · (g ⊙ v / ‖v‖_row)ᵀ` from candle's own ops (none of this crate's).
    fn composed(x: &Tensor, v: &Tensor, g: &Tensor) -> Tensor {
        let w = crate::test_util::composed_weight_norm(v, g);
        x.matmul(&w.t().unwrap()).unwrap()
    }

    /// The fused form (a frozen gain, so a plain tensor, not a variable) against the linear
    /// layer of the weight norm in f64: the value, the gradients of `x` and `v`, and none for
    /// the gain.
    #[test]
    fn values_and_gradients_match_linear_of_the_weight_norm_in_f64() {
        // K spans several column chunks, the last one partial
        let (m, k, d) = (7, 2 * CHUNK + 37, 12);
        let (x, v) = (
            Var::from_tensor(&randn(&[m, d], 100)).unwrap(),
            randn(&[k, d], 101),
        );
        let v = Var::from_tensor(&(v * 3.0).unwrap()).unwrap();
        let g = (randn(&[k, 1], 102).abs().unwrap() + 0.5).unwrap();
        let dy = randn(&[m, k], 103);
        let fused = weight_normed_linear(x.as_tensor(), v.as_tensor(), &g).unwrap();
        let to64 = |t: &Tensor| Var::from_tensor(&t.to_dtype(DType::F64).unwrap()).unwrap();
        let (x64, v64) = (to64(x.as_tensor()), to64(v.as_tensor()));
        let g64 = g.to_dtype(DType::F64).unwrap();
        let w = crate::weight_norm_rows(v64.as_tensor(), &g64).unwrap();
        let reference = x64.as_tensor().matmul(&w.t().unwrap()).unwrap();
        assert!(max_diff(&fused, &reference) < 1e-5, "value");
        let got = grads_of(&fused, &dy);
        let want = grads_of(&reference, &dy.to_dtype(DType::F64).unwrap());
        for (a, b) in [(&x, &x64), (&v, &v64)] {
            let (ga, gb) = (got.get(a).unwrap(), want.get(b).unwrap());
            assert_eq!(ga.dims(), a.dims());
            let diff = max_diff(ga, gb);
            assert!(diff < 1e-4, "gradient of {:?}: {diff}", a.dims());
            assert_finite_nonzero_gradient("weight_normed_linear", ga);
        }
        assert!(got.get(&g).is_none(), "a frozen gain gets no gradient");
    }

    /// A trained gain (a variable) goes through the linear layer of the weight norm: the value
    /// and the gradients of `x`, `v` and `g` against the composed form in f64.
    #[test]
    fn a_trained_gain_takes_the_weight_norm_path() {
        let var = |t: Tensor| Var::from_tensor(&t).unwrap();
        let x = var(randn(&[3, 4], 110));
        let v = var(randn(&[5, 4], 111));
        let g = var((randn(&[5, 1], 112).abs().unwrap() + 0.5).unwrap());
        let dy = randn(&[3, 5], 113);
        let y = weight_normed_linear(x.as_tensor(), v.as_tensor(), g.as_tensor()).unwrap();
        let want = crate::linear(
            x.as_tensor(),
            &crate::weight_norm_rows(v.as_tensor(), g.as_tensor()).unwrap(),
            None,
        );
        assert_eq!(max_diff(&y, &want.unwrap()), 0.0);
        let to64 = |t: &Var| var(t.as_tensor().to_dtype(DType::F64).unwrap());
        let (x64, v64, g64) = (to64(&x), to64(&v), to64(&g));
        let reference = composed(x64.as_tensor(), v64.as_tensor(), g64.as_tensor());
        assert!(max_diff(&y, &reference) < 1e-6, "value");
        let got = grads_of(&y, &dy);
        let want = grads_of(&reference, &dy.to_dtype(DType::F64).unwrap());
        for (name, a, b) in [("x", &x, &x64), ("v", &v, &v64), ("g", &g, &g64)] {
            let ga = got
                .get(a)
                .unwrap_or_else(|| panic!("no gradient of {name}"));
            assert_eq!(ga.dims(), a.dims(), "{name}");
            assert_finite_nonzero_gradient(name, ga);
            let diff = max_diff(ga, want.get(b).unwrap());
            assert!(diff < 1e-5, "gradient of {name}: {diff}");
        }
    }

    #[test]
    fn mismatched_shapes_are_refused_with_both_shapes() {
        let g = Tensor::ones((5, 1), DType::F32, &Device::Cpu).unwrap();
        let err = weight_normed_linear(&randn(&[3, 4], 120), &randn(&[5, 6], 121), &g).unwrap_err();
        assert!(err.to_string().contains("[3, 4]"), "{err}");
        let err = weight_normed_linear(&randn(&[3, 4], 120), &randn(&[6, 4], 122), &g).unwrap_err();
        assert!(err.to_string().contains("[6, 4]"), "{err}");
    }
}
