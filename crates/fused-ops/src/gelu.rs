//! Exact (erf) GELU for training, with a one-pass backward.
//!
//! candle's `gelu_erf` computes its forward with a scalar libm `erf` and its backward as
//! nine tensor ops (square, negate, scale, exp, multiply, scale, erf, two adds), then
//! multiplies by the incoming gradient: about ten passes and temporaries over each
//! `[tokens, 4·dim]` MLP activation of a ViT layer. Here the CPU forward is one vectorised
//! pass, and the backward is one pass that recomputes `Φ(x)` and `φ(x)` from `x` and writes
//! `dy · (Φ(x) + x φ(x))`.

use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::math::{gelu_erf as gelu_scalar, gelu_erf_derivative};
use crate::storage::{contiguous, f32_slice, narrowed, widened};

/// Elements per parallel task: large enough to amortise the scheduling, small enough that
/// two cores share a `[tokens, hidden]` activation evenly.
const CHUNK: usize = 16 * 1024;

crate::simd_kernel! {
    fn gelu_slice(x: &[f32], y: &mut [MaybeUninit<f32>]) {
        for (o, &v) in y.iter_mut().zip(x) {
            o.write(gelu_scalar(v));
        }
    }
}

crate::simd_kernel! {
    fn gelu_grad_slice(x: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
        for ((o, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
            o.write(g * gelu_erf_derivative(v));
        }
    }
}

/// `f(chunk of xs.., chunk of out)` over `n` elements in parallel, into a fresh vector that is
/// written once (never zero-filled first).
fn map_into_new(n: usize, f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| f(i * CHUNK, chunk));
    // SAFETY: the chunks above cover `0..n` and every kernel writes each element of its chunk.
    unsafe { out.set_len(n) };
    out
}

/// The f32 elements of `s`, borrowed when it is f32 and widened from bf16 otherwise.
fn as_f32<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
    op: &str,
    buf: &'a mut Vec<f32>,
) -> Result<&'a [f32]> {
    if let CpuStorage::F32(_) = s {
        return f32_slice(s, l, what, op);
    }
    *buf = widened(s, l, what, op)?;
    Ok(buf)
}

/// `gelu_erf(x)` (`CustomOp1`; CPU, f32 or bf16 computed in f32); its backward applies
/// [`GeluErfGrad`].
#[derive(Debug, Clone, Copy)]
pub struct GeluErf;

/// `dy · gelu_erf'(x)` (`CustomOp2` on `(x, dy)`, same shapes; CPU, f32 or bf16 computed in
/// f32): the backward of [`GeluErf`].
#[derive(Debug, Clone, Copy)]
pub struct GeluErfGrad;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut buf = Vec::new();
        let x = as_f32(s, l, "x", self.name(), &mut buf)?;
        let y = map_into_new(x.len(), |at, out| gelu_slice(&x[at..at + out.len()], out));
        Ok((narrowed(y, s.dtype()), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.to_dtype(x.dtype())?.contiguous()?;
        Ok(Some(x.apply_op2_no_bwd(&grad, &GeluErfGrad)?))
    }
}

impl CustomOp2 for GeluErfGrad {
    fn name(&self) -> &'static str {
        "gelu-erf-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!(
                "{}: x {:?} and dy {:?} differ",
                self.name(),
                l1.dims(),
                l2.dims()
            );
        }
        contiguous(l2, "dy", self.name())?;
        let (mut bx, mut bg) = (Vec::new(), Vec::new());
        let x = as_f32(s1, l1, "x", self.name(), &mut bx)?;
        let dy = as_f32(s2, l2, "dy", self.name(), &mut bg)?;
        let dx = map_into_new(x.len(), |at, out| {
            let end = at + out.len();
            gelu_grad_slice(&x[at..end], &dy[at..end], out)
        });
        Ok((narrowed(dx, s1.dtype()), l1.shape().clone()))
    }
}

/// Exact (erf) GELU, `x · Φ(x)`, as PyTorch's `nn.GELU()`, differentiable.
///
/// On the CPU, f32 and bf16 run [`GeluErf`] (one pass forward, one pass backward). f64
/// anywhere runs the composed `x · (1 + erf(x/√2)) / 2`, exact to f64 for parity tests;
/// other devices and dtypes run candle's `gelu_erf`.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    match x.dtype() {
        DType::F32 | DType::BF16 if x.device().is_cpu() => x.contiguous()?.apply_op1(GeluErf),
        DType::F64 => {
            let cdf = ((x / std::f64::consts::SQRT_2)?.erf()? + 1.0)? * 0.5;
            x * cdf?
        }
        _ => x.gelu_erf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{grads_of, max_diff, max_magnitude};
    use candle_core::{Device, Var};
    use cxr_testkit::seeded_randn;

    /// `(gelu(x), d/dx Σ gelu(x) ⊙ dy)` with `x` as a variable.
    fn value_and_grad(x: &Tensor, dy: &Tensor) -> (Tensor, Tensor) {
        let v = Var::from_tensor(x).unwrap();
        let y = gelu_erf(v.as_tensor()).unwrap();
        let grads = grads_of(&y, dy);
        let dx = grads.get(v.as_tensor()).unwrap().clone();
        (y, dx)
    }

    /// Largest `|a − b| / max(1, |b|)`, in f64; NaN when either holds a NaN (candle's `max`
    /// would keep one only as the first element).
    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let (a, b) = (
            a.to_dtype(DType::F64).unwrap(),
            b.to_dtype(DType::F64).unwrap(),
        );
        let scale = b.abs().unwrap().maximum(1.0).unwrap();
        max_magnitude(&((&a - &b).unwrap() / scale).unwrap())
    }

    /// Value and gradient against the composed f64 form on the same (rounded) inputs: f32 to
    /// the erf approximation's accuracy, bf16 to its rounding (2⁻⁸ relative).
    #[test]
    fn gelu_and_gradient_match_the_composed_f64_form() {
        let x = (seeded_randn(0., 1.0, (3, 7, 1000), 100)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            * 3.0)
            .unwrap();
        let dy = seeded_randn(0., 1.0, (3, 7, 1000), 101)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        for (dtype, tol) in [(DType::F32, 1e-6), (DType::BF16, 8e-3)] {
            let (xr, dyr) = (x.to_dtype(dtype).unwrap(), dy.to_dtype(dtype).unwrap());
            let (y, dx) = value_and_grad(&xr, &dyr);
            assert_eq!((y.dtype(), dx.dtype()), (dtype, dtype));
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            let (want_y, want_dx) = value_and_grad(&f64_of(&xr), &f64_of(&dyr));
            let (ey, edx) = (max_rel(&y, &want_y), max_rel(&dx, &want_dx));
            assert!(ey < tol, "{dtype:?} value error {ey}");
            assert!(edx < tol, "{dtype:?} gradient error {edx}");
        }
    }

    #[test]
    fn matches_candle_gelu_erf_and_handles_odd_lengths_and_offsets() {
        let x = (seeded_randn(0f32, 1.0, (5, 16 * 1024 + 3), 102).unwrap() * 4.0).unwrap();
        let narrowed = x.narrow(1, 1, 16 * 1024 + 1).unwrap();
        let want = narrowed.gelu_erf().unwrap();
        let got = gelu_erf(&narrowed).unwrap();
        assert!(max_diff(&got, &want) < 1e-6);
    }

    #[test]
    fn grad_op_rejects_mismatched_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let dy = Tensor::zeros((3, 2), DType::F32, &dev).unwrap();
        let err = x.apply_op2_no_bwd(&dy, &GeluErfGrad).unwrap_err();
        assert!(err.to_string().contains("differ"), "{err}");
    }
}
