//! Softmax over the last dimension with a backward pass, for training.
//!
//! candle's fused softmax (`candle_nn::ops::softmax_last_dim`) has no backward, so training
//! paths used the composed form (max, subtract, exp, sum, divide) and candle's autograd through
//! each of those ops: about fifteen passes over the `[B, H, N, N]` scores of every attention
//! layer, each gradient first zero-filled and then added to. Here the forward is candle's
//! fused kernel on a detached input (one read, one write) and the output is tied back to the
//! input by [`SoftmaxGrad`], whose backward is the closed form `dx = y ⊙ (dy − Σ dy ⊙ y)`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, D};

/// Ties a softmax output `y` to its input `x` (`CustomOp2` on `(x, y)`): the forward returns
/// `y`, the backward gives `x` the softmax gradient. Only [`softmax_last_dim`] builds it.
#[derive(Debug, Clone, Copy)]
pub struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "softmax-last-dim-grad"
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
        // y ⊙ dy − y ⊙ Σ(y ⊙ dy): four element-wise / row passes
        let gy = (grad * res)?;
        let s = gy.sum_keepdim(D::Minus1)?;
        Ok((Some((gy - res.broadcast_mul(&s)?)?), None))
    }
}

/// Softmax over the last dimension with a backward pass: candle's fused kernel forward (CPU
/// and CUDA), the closed-form gradient backward.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let y = candle_nn::ops::softmax_last_dim(&x.detach())?.contiguous()?;
    x.apply_op2(&y, SoftmaxGrad)
}
