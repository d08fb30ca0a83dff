//! The residual update of a pre-norm transformer block with layer scale and stochastic depth,
//! `x + keep_b · λ ⊙ y`, as one op.
//!
//! Composed, it is three graph nodes over the `[B, N, C]` activation (the layer scale, the
//! per-sample drop-path mask, the add), each a pass forward and, in candle's backward, a
//! zero-filled gradient that is then added to. Here the CPU forward is one pass, and the
//! backward passes the gradient through to `x` as it is, writes `y`'s in one pass and reduces
//! `λ`'s over the rows in another.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::storage::{channel_width, f32_slice};

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// `x + keep_b · λ ⊙ y` for `x`, `y` `[B, .., C]`, `λ` `[C]` and an optional per-sample factor
/// `keep` (`B` values in any shape, e.g. the `[B, 1, 1]` stochastic-depth mask already divided
/// by the keep probability; a constant that gets no gradient). Differentiable in `x`, `y` and
/// `λ`. The CPU runs one pass for f32; other devices and dtypes the composed ops.
pub fn scaled_residual(
    x: &Tensor,
    y: &Tensor,
    lambda: &Tensor,
    keep: Option<&Tensor>,
) -> Result<Tensor> {
    if x.dims() != y.dims() {
        bail!(
            "scaled residual: x {:?} and branch {:?} differ in shape",
            x.dims(),
            y.dims()
        );
    }
    let fused = x.device().is_cpu()
        && [x.dtype(), y.dtype(), lambda.dtype()]
            .iter()
            .all(|&d| d == DType::F32);
    if !fused {
        // the per-channel op where λ trains (its gradient as a coalesced column sum), candle's
        // broadcast otherwise (any dtype)
        let per_channel = matches!(y.dtype(), DType::F32 | DType::BF16);
        let branch = if lambda.track_op() && per_channel {
            crate::scale_columns(y, lambda)?
        } else {
            y.broadcast_mul(lambda)?
        };
        let branch = match keep {
            Some(k) => branch.broadcast_mul(&k.to_dtype(branch.dtype())?)?,
            None => branch,
        };
        return x + branch;
    }
    let keep = match keep {
        Some(k) => Some(k.detach().to_dtype(DType::F32)?.flatten_all()?.to_vec1()?),
        None => None,
    };
    if let Some(k) = &keep {
        if x.rank() == 0 || k.len() != x.dim(0)? {
            bail!(
                "scaled residual: {} per-sample factors for x {:?}",
                k.len(),
                x.dims()
            );
        }
    }
    x.contiguous()?.apply_op3(
        &y.contiguous()?,
        &lambda.contiguous()?,
        ScaledResidual { keep },
    )
}

/// `x + keep_b · λ ⊙ y` (`CustomOp3` on `x`, `y`, `λ`; contiguous f32 CPU tensors).
#[derive(Debug, Clone)]
pub struct ScaledResidual {
    /// The per-sample factors (one per index of the first dimension), or none.
    pub keep: Option<Vec<f32>>,
}

/// `y`'s gradient `keep_b · λ ⊙ dy` (`CustomOp2` on `dy` and `λ`).
#[derive(Debug, Clone)]
pub struct ScaledResidualBranchGrad {
    /// As in [`ScaledResidual`].
    pub keep: Option<Vec<f32>>,
}

/// `λ`'s gradient `Σ_rows keep_b · dy ⊙ y` (`CustomOp2` on `dy` and `y`), `[C]`.
#[derive(Debug, Clone)]
pub struct ScaledResidualScaleGrad {
    /// As in [`ScaledResidual`].
    pub keep: Option<Vec<f32>>,
}

/// The factor of each row: `keep[b]` for the rows of sample `b` (rows split evenly over the
/// samples), 1 without factors.
struct RowFactors<'a> {
    keep: Option<&'a [f32]>,
    rows_per_sample: usize,
}

impl<'a> RowFactors<'a> {
    /// The factors of `rows` rows, or an error naming `op` when they do not split evenly.
    fn new(keep: &'a Option<Vec<f32>>, rows: usize, op: &str) -> Result<Self> {
        let keep = keep.as_deref();
        let samples = keep.map_or(1, <[f32]>::len);
        if samples == 0 || rows % samples != 0 {
            bail!("{op}: {samples} per-sample factors for {rows} rows");
        }
        Ok(Self {
            keep,
            rows_per_sample: (rows / samples).max(1),
        })
    }

    fn of(&self, row: usize) -> f32 {
        self.keep.map_or(1.0, |k| k[row / self.rows_per_sample])
    }
}

/// `f(r, columns of row r, out row r)` for the `len / c` rows of a new `[len]` vector (rows of
/// width `c`), in parallel chunks of rows.
fn map_rows(
    len: usize,
    c: usize,
    f: impl Fn(usize, std::ops::Range<usize>, &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; len];
    out.par_chunks_mut(ROWS_PER_TASK * c)
        .enumerate()
        .for_each(|(task, dst)| {
            for (i, row) in dst.chunks_exact_mut(c).enumerate() {
                let r = task * ROWS_PER_TASK + i;
                f(r, r * c..(r + 1) * c, row);
            }
        });
    out
}

impl CustomOp3 for ScaledResidual {
    fn name(&self) -> &'static str {
        "scaled-residual"
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
        let c = channel_width(l1, l3, op)?;
        if l1.dims() != l2.dims() {
            bail!("{op}: x {:?} and branch {:?} differ", l1.dims(), l2.dims());
        }
        let (x, y) = (
            f32_slice(s1, l1, "x", op)?,
            f32_slice(s2, l2, "branch", op)?,
        );
        let lambda = f32_slice(s3, l3, "scale", op)?;
        let factors = RowFactors::new(&self.keep, x.len() / c, op)?;
        let out = map_rows(x.len(), c, |r, cols, out| {
            let s = factors.of(r);
            let (x, y) = (&x[cols.clone()], &y[cols]);
            for (((o, &a), &b), &l) in out.iter_mut().zip(x).zip(y).zip(lambda) {
                *o = a + s * l * b;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        y: &Tensor,
        lambda: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let keep = self.keep.clone();
        let dy = grad.apply_op2_no_bwd(lambda, &ScaledResidualBranchGrad { keep: keep.clone() })?;
        let dlambda = grad.apply_op2_no_bwd(y, &ScaledResidualScaleGrad { keep })?;
        Ok((Some(grad), Some(dy), Some(dlambda.reshape(lambda.shape())?)))
    }
}

impl CustomOp2 for ScaledResidualBranchGrad {
    fn name(&self) -> &'static str {
        "scaled-residual-branch-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let c = channel_width(l1, l2, op)?;
        let (dy, lambda) = (
            f32_slice(s1, l1, "dy", op)?,
            f32_slice(s2, l2, "scale", op)?,
        );
        let factors = RowFactors::new(&self.keep, dy.len() / c, op)?;
        let out = map_rows(dy.len(), c, |r, cols, out| {
            let s = factors.of(r);
            for ((o, &g), &l) in out.iter_mut().zip(&dy[cols]).zip(lambda) {
                *o = s * l * g;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

impl CustomOp2 for ScaledResidualScaleGrad {
    fn name(&self) -> &'static str {
        "scaled-residual-scale-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        if l1.dims() != l2.dims() {
            bail!("{op}: dy {:?} and branch {:?} differ", l1.dims(), l2.dims());
        }
        let Some(&c) = l1.dims().last().filter(|&&c| c > 0) else {
            bail!("{op}: needs a last dimension, got {:?}", l1.dims());
        };
        let (dy, y) = (
            f32_slice(s1, l1, "dy", op)?,
            f32_slice(s2, l2, "branch", op)?,
        );
        let factors = RowFactors::new(&self.keep, dy.len() / c, op)?;
        let chunk = ROWS_PER_TASK * c;
        let partials: Vec<Vec<f32>> = dy
            .par_chunks(chunk)
            .zip(y.par_chunks(chunk))
            .enumerate()
            .map(|(task, (g, y))| {
                let mut acc = vec![0f32; c];
                for (i, (g, y)) in g.chunks_exact(c).zip(y.chunks_exact(c)).enumerate() {
                    let s = factors.of(task * ROWS_PER_TASK + i);
                    for ((a, &g), &y) in acc.iter_mut().zip(g).zip(y) {
                        *a += s * g * y;
                    }
                }
                acc
            })
            .collect();
        let mut total = vec![0f32; c];
        for p in partials {
            total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
        }
        Ok((CpuStorage::F32(total), Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{grads_of, max_diff};
    use candle_core::{Device, Var};
    use cxr_testkit::seeded_randn;

    /// Standard normal draws, a stream per `seed`: one seed for every draw would make `x`,
    /// `y` and `dy` the same tensor, and a mix-up of `x` and `y` would go unseen.
    fn randn(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
        seeded_randn(0f32, 1.0, shape, seed)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    /// The three composed ops the fused one replaces.
    fn composed(x: &Tensor, y: &Tensor, l: &Tensor, keep: Option<&Tensor>) -> Tensor {
        let branch = y.broadcast_mul(l).unwrap();
        let branch = match keep {
            Some(k) => branch.broadcast_mul(k).unwrap(),
            None => branch,
        };
        (x + branch).unwrap()
    }

    #[test]
    fn values_and_gradients_match_the_composed_form() {
        // 150 rows: several 64-row tasks, the last partial
        for (case, (shape, with_keep)) in [
            (vec![3usize, 50, 7], true),
            (vec![3, 50, 7], false),
            (vec![2, 1, 5], true),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 100 + 10 * case as u64;
            let b = shape[0];
            let keep = with_keep.then(|| {
                Tensor::new(&[0.0f32, 1.25, 2.5][..b], &Device::Cpu)
                    .unwrap()
                    .reshape((b, 1, 1))
                    .unwrap()
            });
            let vars: Vec<Var> = [shape.as_slice(), &shape, &shape[2..]]
                .iter()
                .zip(seed..)
                .map(|(s, seed)| Var::from_tensor(&randn(s, DType::F32, seed)).unwrap())
                .collect();
            let dy = randn(&shape, DType::F32, seed + 3);
            let fused = scaled_residual(
                vars[0].as_tensor(),
                vars[1].as_tensor(),
                vars[2].as_tensor(),
                keep.as_ref(),
            )
            .unwrap();
            let f64_vars: Vec<Var> = vars
                .iter()
                .map(|v| Var::from_tensor(&v.to_dtype(DType::F64).unwrap()).unwrap())
                .collect();
            let keep64 = keep.as_ref().map(|k| k.to_dtype(DType::F64).unwrap());
            let reference = composed(
                f64_vars[0].as_tensor(),
                f64_vars[1].as_tensor(),
                f64_vars[2].as_tensor(),
                keep64.as_ref(),
            );
            assert!(max_diff(&fused, &reference) < 1e-5, "{shape:?} value");
            let got = grads_of(&fused, &dy);
            let want = grads_of(&reference, &dy.to_dtype(DType::F64).unwrap());
            for (v, w) in vars.iter().zip(&f64_vars) {
                let (g, w) = (got.get(v).unwrap(), want.get(w).unwrap());
                assert_eq!(g.dims(), v.dims(), "{shape:?} gradient shape");
                assert!(max_diff(g, w) < 1e-4, "{shape:?} gradient {:?}", v.dims());
            }
        }
    }

    #[test]
    fn other_dtypes_take_the_composed_form() {
        let (x, y, l) = (
            randn(&[2, 3, 4], DType::F64, 200),
            randn(&[2, 3, 4], DType::F64, 201),
            randn(&[4], DType::F64, 202),
        );
        let got = scaled_residual(&x, &y, &l, None).unwrap();
        assert_eq!(max_diff(&got, &composed(&x, &y, &l, None)), 0.0);
    }

    #[test]
    fn mismatched_shapes_and_factor_counts_are_refused() {
        let (x, l) = (
            randn(&[2, 3, 4], DType::F32, 300),
            randn(&[4], DType::F32, 301),
        );
        let err = scaled_residual(&x, &randn(&[2, 3, 5], DType::F32, 302), &l, None).unwrap_err();
        assert!(err.to_string().contains("[2, 3, 5]"), "{err}");
        let keep = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
        let err = scaled_residual(&x, &x, &l, Some(&keep)).unwrap_err();
        assert!(err.to_string().contains("3 per-sample factors"), "{err}");
        assert!(scaled_residual(&x, &x, &randn(&[5], DType::F32, 303), None).is_err());
    }
}
