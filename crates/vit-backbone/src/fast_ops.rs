//! CPU kernels for the hot path of the ViT forward pass.
//!
//! Each kernel replaces a chain of candle ops that would allocate and sweep a large activation
//! several times: the bias is written into the GEMM output before the product accumulates
//! onto it, and the exact (erf) GELU runs in place with the vectorised erf of
//! `fused_ops::math`. The GELU runs in place and so only when no tensor involved tracks
//! gradients; the linear layer has a backward and serves training as well. The tests compare
//! them with the differentiable ops.

use candle_core::{CpuStorage, CustomOp3, InplaceOp1, Layout, Result, Shape, Tensor};

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

/// `x Wᵀ + b` for `x` `[M, K]`, `W` `[N, K]`, `b` `[N]`, all contiguous f32: the bias seeds the
/// output and the GEMM accumulates onto it. With a backward, so training on the CPU takes it
/// too.
#[derive(Debug, Clone, Copy)]
pub struct LinearBias;

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
        let (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) = (s1, s2, s3) else {
            candle_core::bail!("fused linear supports f32 tensors only");
        };
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 || l3.shape().dims1()? != n {
            candle_core::bail!(
                "fused linear: x {:?}, weight {:?}, bias {:?} do not fit",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let (Some((xs, xe)), Some((ws, we)), Some((bs, be))) = (
            l1.contiguous_offsets(),
            l2.contiguous_offsets(),
            l3.contiguous_offsets(),
        ) else {
            candle_core::bail!("fused linear needs contiguous inputs");
        };
        let (x, w, b) = (&x[xs..xe], &w[ws..we], &b[bs..be]);
        let mut out = Vec::with_capacity(m * n);
        for _ in 0..m {
            out.extend_from_slice(b);
        }
        let threads = rayon::current_num_threads();
        let parallelism = if m * n * k > 64 * 64 * 64 && threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: out is m x n (row stride n), x is m x k (row stride k), w is n x k read as
        // its transpose k x n (row stride 1, column stride k); all in bounds by the checks above.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
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
                parallelism,
            );
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }

    /// `dx = dy W`, `dW = dyᵀ x` (one GEMM each, reading `dy` transposed in place rather than
    /// differentiating `x.matmul(W.t())` and then the transpose, which zero-fills and adds a
    /// strided `[K, N]` gradient per layer) and `db = Σ_rows dy` as a coalesced column sum.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = dy.matmul(&w.detach())?;
        let dw = dy.t()?.matmul(&x.detach())?;
        let db = fused_ops::column_sum(&dy)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Whether the fast kernels apply to `t`: f32 on the CPU, and nothing tracks gradients.
pub(crate) fn fast_path(ts: &[&Tensor]) -> bool {
    cpu_f32(ts) && ts.iter().all(|t| !t.track_op())
}

/// Whether every tensor is f32 on the CPU (what the kernels with a backward take).
pub(crate) fn cpu_f32(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        cxr_core::ops::max_abs_diff(a, b).unwrap()
    }

    #[test]
    fn gelu_matches_candle_gelu_erf() {
        let x = (Tensor::randn(0f32, 1.0, (3, 1000), &Device::Cpu).unwrap() * 4.0).unwrap();
        let want = x.gelu_erf().unwrap();
        let got = x.copy().unwrap();
        got.inplace_op1(&GeluInPlace).unwrap();
        assert!(max_diff(&got, &want) < 1e-6);
    }

    #[test]
    fn linear_bias_matches_matmul_plus_bias() {
        for (m, k, n) in [(1, 3, 2), (70, 48, 96), (300, 64, 200)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
            let b = Tensor::randn(0f32, 1.0, n, &Device::Cpu).unwrap();
            let want = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let got = x.apply_op3_no_bwd(&w, &b, &LinearBias).unwrap();
            assert!(max_diff(&got, &want) < 1e-4, "({m},{k},{n})");
        }
    }

    #[test]
    fn linear_bias_gradients_match_the_composed_linear() {
        use candle_core::Var;
        let dev = Device::Cpu;
        let (m, k, n) = (37, 48, 96);
        let x = Var::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let w = Var::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let b = Var::randn(0f32, 1.0, n, &dev).unwrap();
        let dy = Tensor::randn(0f32, 1.0, (m, n), &dev).unwrap();
        let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
        let fused = xt.apply_op3(wt, bt, LinearBias).unwrap();
        let composed = xt
            .matmul(&wt.t().unwrap())
            .unwrap()
            .broadcast_add(bt)
            .unwrap();
        assert!(max_diff(&fused, &composed) < 1e-4);
        let grads = |y: &Tensor| (y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gc) = (grads(&fused), grads(&composed));
        for (name, v) in [("x", xt), ("weight", wt), ("bias", bt)] {
            let (a, c) = (gf.get(v).unwrap(), gc.get(v).unwrap());
            assert_eq!(a.dims(), c.dims(), "{name}");
            assert!(max_diff(a, c) < 1e-3, "{name}: {}", max_diff(a, c));
        }
    }

    #[test]
    fn linear_bias_rejects_shapes_that_do_not_fit() {
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((4, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(x.apply_op3_no_bwd(&w, &b, &LinearBias).is_err());
    }
}
