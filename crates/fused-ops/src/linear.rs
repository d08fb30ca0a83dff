//! `x Wᵀ (+ b)` with the CPU GEMM called directly and a backward of two GEMMs.
//!
//! candle differentiates `x.matmul(&w.t()) + b` through three nodes: the product, the
//! transpose of `W` and the bias add. The transpose's backward zero-fills a `[K, N]` gradient
//! and adds it to `W`'s through a strided read, once per layer and step; for a DINO head's
//! 65 536 × 256 prototype matrix that is 16.8M strided elements. Here the product is one
//! `CustomOp` whose backward writes `dx = dy W` and `dW = dyᵀ x` in `W`'s own layout, and
//! whose bias (when there is one) seeds the output before the GEMM accumulates onto it.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

use crate::storage::f32_slice;

/// `x Wᵀ` for `x` `[M, K]` and `W` `[N, K]`, contiguous f32 on the CPU (`CustomOp2`).
#[derive(Debug, Clone, Copy)]
pub struct LinearNoBias;

/// `x Wᵀ + b` for `x` `[M, K]`, `W` `[N, K]`, `b` `[N]`, contiguous f32 on the CPU
/// (`CustomOp3`): the bias seeds the output and the GEMM accumulates onto it.
#[derive(Debug, Clone, Copy)]
pub struct LinearBias;

/// `(M, K, N)` of `x` `[M, K]` and `W` `[N, K]`, or an error naming both shapes.
pub(crate) fn dims(lx: &Layout, lw: &Layout, op: &str) -> Result<(usize, usize, usize)> {
    match (lx.dims(), lw.dims()) {
        (&[m, k], &[n, k2]) if k == k2 => Ok((m, k, n)),
        (x, w) => bail!("{op}: x {x:?} and weight {w:?} do not fit (x [M, K], weight [N, K])"),
    }
}

/// The GEMM's threading for `flops / 2` multiply-adds: serial below 64³ (the work would not
/// pay for waking the pool).
fn parallelism(mul_adds: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if mul_adds > 64 * 64 * 64 && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// `x Wᵀ`, or `x Wᵀ + b` with `b` repeated over the rows as the GEMM's starting value.
pub(crate) fn gemm_x_wt(
    x: &[f32],
    w: &[f32],
    (m, k, n): (usize, usize, usize),
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    if let Some(b) = bias {
        for _ in 0..m {
            out.extend_from_slice(b);
        }
    }
    // SAFETY: out has room for m x n (row stride n); x is m x k (row stride k); w is n x k read
    // as its transpose k x n (row stride 1, column stride k); the callers checked the sizes.
    // Without a bias gemm only writes out (read_dst = false), every one of its m·n elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            bias.is_some(),
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(m * n * k),
        );
        out.set_len(m * n);
    }
    out
}

/// `(dy contiguous, dx, dW)` of `y = x Wᵀ`: `dy W` (candle's matmul, both operands
/// row-major) and `dyᵀ x` ([`LinearWeightGrad`]).
fn input_and_weight_grads(x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let dy = dy.contiguous()?;
    let dx = dy.matmul(&w.detach())?;
    let dw = dy.apply_op2_no_bwd(&x.detach().contiguous()?, &LinearWeightGrad)?;
    Ok((dy, dx, dw))
}

/// `dW = dyᵀ x` (`CustomOp2` on `dy` `[M, N]` and `x` `[M, K]`, contiguous f32): one GEMM
/// that reads `dy` transposed in place and writes `[N, K]` straight into a fresh buffer.
/// candle's `dy.t().matmul(x)` takes 20–30% longer at a ViT's linear-layer sizes.
#[derive(Debug, Clone, Copy)]
pub struct LinearWeightGrad;

impl CustomOp2 for LinearWeightGrad {
    fn name(&self) -> &'static str {
        "linear-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, n, k) = match (l1.dims(), l2.dims()) {
            (&[m, n], &[m2, k]) if m == m2 => (m, n, k),
            (d, x) => bail!("{}: dy {d:?} and x {x:?} differ in rows", self.name()),
        };
        let dy = f32_slice(s1, l1, "dy", self.name())?;
        let x = f32_slice(s2, l2, "x", self.name())?;
        let mut out: Vec<f32> = Vec::with_capacity(n * k);
        // SAFETY: out has room for n x k (row stride k); dy is m x n read as its transpose
        // n x m (row stride 1, column stride n); x is m x k (row stride k); gemm writes every
        // element of out without reading it (read_dst = false).
        unsafe {
            gemm::gemm(
                n,
                k,
                m,
                out.as_mut_ptr(),
                1,
                k as isize,
                false,
                dy.as_ptr(),
                n as isize,
                1,
                x.as_ptr(),
                1,
                k as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism(n * k * m),
            );
            out.set_len(n * k);
        }
        Ok((CpuStorage::F32(out), Shape::from((n, k))))
    }
}

/// The CPU forward of [`LinearNoBias`] and [`LinearBias`]: shapes checked (the bias, when
/// given, must hold one value per output), then [`gemm_x_wt`].
fn linear_cpu(
    (sx, lx): (&CpuStorage, &Layout),
    (sw, lw): (&CpuStorage, &Layout),
    bias: Option<(&CpuStorage, &Layout)>,
    op: &str,
) -> Result<(CpuStorage, Shape)> {
    let (m, k, n) = dims(lx, lw, op)?;
    let b = match bias {
        Some((_, lb)) if lb.dims() != [n] => {
            bail!("{op}: bias {:?} for a weight {:?}", lb.dims(), lw.dims())
        }
        Some((sb, lb)) => Some(f32_slice(sb, lb, "bias", op)?),
        None => None,
    };
    let x = f32_slice(sx, lx, "x", op)?;
    let w = f32_slice(sw, lw, "weight", op)?;
    let y = gemm_x_wt(x, w, (m, k, n), b);
    Ok((CpuStorage::F32(y), Shape::from((m, n))))
}

impl CustomOp2 for LinearNoBias {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        linear_cpu((s1, l1), (s2, l2), None, self.name())
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, dx, dw) = input_and_weight_grads(x, w, dy)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for LinearBias {
    fn name(&self) -> &'static str {
        "linear-bias"
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
        linear_cpu((s1, l1), (s2, l2), Some((s3, l3)), self.name())
    }

    /// `dx = dy W`, `dW = dyᵀ x` and `db = Σ_rows dy` as a coalesced column sum.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dy, dx, dw) = input_and_weight_grads(x, w, dy)?;
        let db = crate::column_sum(&dy)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `x Wᵀ + b` over the last dimension of `x` `[.., K]`, `W` `[N, K]`, `b` `[N]`, as
/// `torch.nn.functional.linear`, differentiable.
///
/// f32 on the CPU runs [`LinearBias`] / [`LinearNoBias`]. Elsewhere: candle's
/// `matmul(W.t())` and, for a bias that tracks gradients in f32/bf16, [`crate::bias_add`]
/// (a coalesced bias gradient), else a broadcast add.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let in_dim = match x.dims().last() {
        Some(&k) => k,
        None => bail!("linear: x is a scalar"),
    };
    let rows = x.elem_count() / in_dim.max(1);
    let x2 = x.reshape((rows, in_dim))?;
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    let y = if cpu_f32(x) && cpu_f32(w) && b.is_none_or(cpu_f32) {
        let (x2, w) = (x2.contiguous()?, w.contiguous()?);
        match b {
            Some(b) => x2.apply_op3(&w, &b.contiguous()?, LinearBias)?,
            None => x2.apply_op2(&w, LinearNoBias)?,
        }
    } else {
        let y = x2.matmul(&w.t()?)?;
        match b {
            Some(b) if b.track_op() && matches!(y.dtype(), DType::F32 | DType::BF16) => {
                crate::bias_add(&y, b)?
            }
            Some(b) => y.broadcast_add(b)?,
            None => y,
        }
    };
    let mut out_dims = x.dims().to_vec();
    if let Some(last) = out_dims.last_mut() {
        *last = y.dim(1)?;
    }
    y.reshape(out_dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{grads_of, max_diff};
    use candle_core::{Device, Var};
    use cxr_testkit::seeded_randn;

    /// Values and the gradients of x, W and b against the composed `matmul(W.t()) + b`, with
    /// and without a bias, for a 3-D input and sizes on both sides of the GEMM's parallel
    /// threshold.
    #[test]
    fn values_and_gradients_match_the_composed_linear() {
        for (rows, k, n, with_bias) in [(5, 3, 2, true), (37, 48, 96, true), (37, 48, 96, false)] {
            let x = seeded_randn(0f32, 1.0, (1, rows, k), 100)
                .and_then(|t| Var::from_tensor(&t))
                .unwrap();
            let w = seeded_randn(0f32, 1.0, (n, k), 101)
                .and_then(|t| Var::from_tensor(&t))
                .unwrap();
            let b = seeded_randn(0f32, 1.0, n, 102)
                .and_then(|t| Var::from_tensor(&t))
                .unwrap();
            let dy = seeded_randn(0f32, 1.0, (1, rows, n), 103).unwrap();
            let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
            let bias = with_bias.then_some(bt);
            let fused = linear(xt, wt, bias).unwrap();
            let mut composed = xt.broadcast_matmul(&wt.t().unwrap()).unwrap();
            if with_bias {
                composed = composed.broadcast_add(bt).unwrap();
            }
            assert_eq!(fused.dims(), &[1, rows, n]);
            assert!(max_diff(&fused, &composed) < 1e-4);
            let (gf, gc) = (grads_of(&fused, &dy), grads_of(&composed, &dy));
            let mut vars = vec![("x", xt), ("weight", wt)];
            if with_bias {
                vars.push(("bias", bt));
            }
            for (name, v) in vars {
                let (a, c) = (gf.get(v).unwrap(), gc.get(v).unwrap());
                assert_eq!(a.dims(), c.dims(), "{name}");
                assert!(max_diff(a, c) < 1e-3, "{name}: {}", max_diff(a, c));
            }
            assert_eq!(gf.get(bt).is_some(), with_bias);
        }
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused_with_both_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((4, 5), DType::F32, &dev).unwrap();
        let b = Tensor::zeros(4, DType::F32, &dev).unwrap();
        let err = linear(&x, &w, Some(&b)).unwrap_err().to_string();
        assert!(err.contains("[2, 3]") && err.contains("[4, 5]"), "{err}");
        let w = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
        let b = Tensor::zeros(5, DType::F32, &dev).unwrap();
        let err = linear(&x, &w, Some(&b)).unwrap_err().to_string();
        assert!(err.contains("bias [5]"), "{err}");
    }
}
