//! CPU kernels for the hot path of the ViT forward pass.
//!
//! The exact (erf) GELU runs in place with the vectorised erf of `fused_ops::math`, so only
//! when no tensor involved tracks gradients (training takes `fused_ops::gelu_erf`); the
//! linear layers are `fused_ops::linear` in both modes. The tests compare the kernels with the
//! differentiable ops.

use candle_core::{CpuStorage, InplaceOp1, Layout, Result, Tensor};

fused_ops::simd_kernel! {
    fn gelu_slice(xs: &mut [f32]) {
        xs.iter_mut().for_each(|x| *x = fused_ops::math::gelu_erf(*x));
    }
}

/// In-place exact GELU over a contiguous f32 tensor.
#[derive(Debug, Clone, Copy)]
pub struct GeluInPlace;

impl InplaceOp1 for GeluInPlace {
    fn name(&self) -> &'static str {
        "gelu-erf-inplace"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("in-place GELU supports f32 tensors only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("in-place GELU needs a contiguous tensor");
        };
        use rayon::prelude::*;
        data[start..end]
            .par_chunks_mut(16 * 1024)
            .for_each(gelu_slice);
        Ok(())
    }
}

/// Whether the fast kernels apply to `t`: f32 on the CPU, and nothing tracks gradients.
pub(crate) fn fast_path(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && !t.track_op())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        cxr_core::ops::max_abs_diff(a, b).unwrap()
    }

    #[test]
    fn gelu_matches_candle_gelu_erf() {
        let x = (cxr_testkit::seeded_normal(&[3, 1000], 1) * 4.0).unwrap();
        let want = x.gelu_erf().unwrap();
        let got = x.copy().unwrap();
        got.inplace_op1(&GeluInPlace).unwrap();
        assert!(max_diff(&got, &want) < 1e-6);
    }
}
