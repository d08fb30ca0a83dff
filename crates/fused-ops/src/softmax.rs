//! Softmax and log-softmax over the last dimension with closed-form backward passes, for
//! training.
//!
//! candle's fused softmax (`candle_nn::ops::softmax_last_dim`) has no backward, so training
//! paths used the composed forms (max, subtract, exp, sum, divide / log) and candle's autograd
//! through each of those ops: about fifteen passes over the `[B, H, N, N]` scores of every
//! attention layer or the `[rows, K]` logits of a DINO head, each gradient first zero-filled
//! and then added to. Here the forward runs on a detached input (candle's fused kernel for the
//! softmax, the composed ops without a graph for the log-softmax) and the output is tied back
//! to the input by [`SoftmaxGrad`], whose backward is the closed form: `dx = y ⊙ (dy − Σ dy ⊙
//! y)` for the softmax, `dx = dy − softmax ⊙ Σ dy` for the log-softmax.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};

/// Ties a (log-)softmax output `y` to its input `x` (`CustomOp2` on `(x, y)`): the forward
/// returns `y`, the backward gives `x` the gradient of the function named. Only
/// [`softmax_last_dim`] and [`log_softmax_last_dim`] build it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxGrad {
    /// `y = softmax(x)`.
    Softmax,
    /// `y = log_softmax(x)`.
    LogSoftmax,
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        match self {
            Self::Softmax => "softmax-last-dim-grad",
            Self::LogSoftmax => "log-softmax-last-dim-grad",
        }
    }

    fn cpu_fwd(
        &self,
        _x: &CpuStorage,
        _lx: &Layout,
        y: &CpuStorage,
        ly: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((y.try_clone(ly)?, ly.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _x: &candle_core::CudaStorage,
        _lx: &Layout,
        y: &candle_core::CudaStorage,
        ly: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((y.try_clone(ly)?, ly.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _y: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // half types in f32: the row sums of a bf16 gradient over thousands of columns lose
        // too much in bf16 arithmetic (candle's CPU bf16 ops round every step); f32 and f64
        // as they are
        let dtype = grad.dtype();
        let work = match dtype {
            DType::BF16 | DType::F16 => DType::F32,
            other => other,
        };
        let (g, y) = (grad.to_dtype(work)?, res.to_dtype(work)?);
        let dx = match self {
            // y ⊙ dy − y ⊙ Σ(y ⊙ dy): four element-wise / row passes
            Self::Softmax => {
                let gy = (g * &y)?;
                let s = gy.sum_keepdim(D::Minus1)?;
                (gy - y.broadcast_mul(&s)?)?
            }
            // dy − exp(y) ⊙ Σ dy
            Self::LogSoftmax => {
                let s = g.sum_keepdim(D::Minus1)?;
                (g - y.exp()?.broadcast_mul(&s)?)?
            }
        };
        Ok((Some(dx.to_dtype(dtype)?), None))
    }
}

/// Softmax over the last dimension with a backward pass: candle's fused kernel forward (CPU
/// and CUDA), the closed-form gradient backward.
///
/// On the CPU, f16/bf16 inputs are normalised in f32 and rounded once: candle's CPU kernel
/// sums the exponentials in the half type, which puts errors of several per cent into the
/// probabilities (and so into the gradient) of long rows. Its CUDA kernel accumulates in f32.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let half = matches!(x.dtype(), DType::BF16 | DType::F16);
    let y = if half && x.device().is_cpu() {
        candle_nn::ops::softmax_last_dim(&x.detach().to_dtype(DType::F32)?)?.to_dtype(x.dtype())?
    } else {
        candle_nn::ops::softmax_last_dim(&x.detach())?.contiguous()?
    };
    x.apply_op2(&y, SoftmaxGrad::Softmax)
}

/// Log-softmax over the last dimension, max-subtracted, with a closed-form backward pass (the
/// forward's ops run without a graph).
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let d = x.detach();
    let shifted = d.broadcast_sub(&d.max_keepdim(D::Minus1)?)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let y = shifted.broadcast_sub(&lse)?.contiguous()?;
    x.apply_op2(&y, SoftmaxGrad::LogSoftmax)
}
