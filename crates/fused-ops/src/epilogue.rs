//! GEMM epilogues of the ViT block for inference, so the bias add, the GELU, the layer scale
//! and the residual add cost one pass over the activations instead of three or four:
//!
//! - [`bias_gelu`]: `gelu_erf(x + b)` after `fc1`;
//! - [`bias_scale_residual`]: `r + λ ⊙ (a + b)` after the attention output projection and
//!   after `fc2`.
//!
//! Both broadcast their per-channel operands over the last dimension, compute in f32 and round
//! once to the input dtype (f32 or bf16). Inference only: no backward.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::storage::{channel_width, last_dim, narrowed, widened};

/// `gelu_erf(x + b)` (`CustomOp2` on `x` `[.., d]` and `b` `[d]`).
#[derive(Debug, Clone, Copy)]
pub struct BiasGelu;

/// `r + λ ⊙ (a + b)` (`CustomOp3` on `a` `[.., d]`, `params` `[2, d]` = rows `b` and `λ`, and
/// `r` shaped like `a`).
#[derive(Debug, Clone, Copy)]
pub struct BiasScaleResidual;

/// The exact (erf) GELU PyTorch's `nn.GELU()` computes, with candle's f64 `erf`.
pub(crate) fn gelu_erf(v: f32) -> f32 {
    let v = v as f64;
    (0.5 * v * (1.0 + candle_core::cpu::erf::erf_f64(v * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

/// The width `d` of the branch (`l1`) once `[b; λ]` (`l2`) is checked to hold `2d` elements
/// and the residual (`l3`) as many as the branch.
fn residual_width(l1: &Layout, l2: &Layout, l3: &Layout, op: &str) -> Result<usize> {
    let d = last_dim(l1, op)?;
    if l2.shape().elem_count() != 2 * d || l3.shape().elem_count() != l1.shape().elem_count() {
        bail!("{op}: operands do not match a width of {d}");
    }
    Ok(d)
}

/// `gelu_erf(x + b)` with `b` broadcast over the last dimension of `x`.
pub fn bias_gelu(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let b = b.to_dtype(x.dtype())?.flatten_all()?.contiguous()?;
    x.contiguous()?.apply_op2(&b, BiasGelu)
}

/// `r + λ ⊙ (a + b)` with `b` and `λ` broadcast over the last dimension of `a` (`r` shaped
/// like `a`).
pub fn bias_scale_residual(a: &Tensor, b: &Tensor, lambda: &Tensor, r: &Tensor) -> Result<Tensor> {
    if a.dims() != r.dims() {
        bail!(
            "bias_scale_residual: branch {:?} and residual {:?} differ",
            a.dims(),
            r.dims()
        );
    }
    let params = Tensor::stack(
        &[
            b.to_dtype(a.dtype())?.flatten_all()?,
            lambda.to_dtype(a.dtype())?.flatten_all()?,
        ],
        0,
    )?;
    a.contiguous()?.apply_op3(
        &params,
        &r.to_dtype(a.dtype())?.contiguous()?,
        BiasScaleResidual,
    )
}

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "fused-bias-gelu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = channel_width(l1, l2, self.name())?;
        let mut x = widened(s1, l1, "x", self.name())?;
        let b = widened(s2, l2, "bias", self.name())?;
        x.par_chunks_mut(d).for_each(|row| {
            row.iter_mut()
                .zip(&b)
                .for_each(|(v, bb)| *v = gelu_erf(*v + bb));
        });
        Ok((narrowed(x, s1.dtype()), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let d = channel_width(l1, l2, self.name())?;
        let out = crate::cuda::epilogue("bias_gelu", [(s1, l1), (s2, l2), (s1, l1)], d)?;
        Ok((out, l1.shape().clone()))
    }
}

impl CustomOp3 for BiasScaleResidual {
    fn name(&self) -> &'static str {
        "fused-bias-scale-residual"
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
        let d = residual_width(l1, l2, l3, self.name())?;
        let mut a = widened(s1, l1, "branch", self.name())?;
        let p = widened(s2, l2, "bias/scale", self.name())?;
        let r = widened(s3, l3, "residual", self.name())?;
        let (bias, lambda) = p.split_at(d);
        a.par_chunks_mut(d)
            .zip(r.par_chunks(d))
            .for_each(|(row, res)| {
                for i in 0..d {
                    row[i] = res[i] + lambda[i] * (row[i] + bias[i]);
                }
            });
        Ok((narrowed(a, s1.dtype()), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let d = residual_width(l1, l2, l3, self.name())?;
        let out = crate::cuda::epilogue("bias_scale_residual", [(s1, l1), (s2, l2), (s3, l3)], d)?;
        Ok((out, l1.shape().clone()))
    }
}
