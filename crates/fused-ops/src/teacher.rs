//! The DINO/iBOT teacher's target distributions: centring + temperature softmax, and dinov2's
//! Sinkhorn-Knopp normalisation. Teacher targets are constants of the loss, so neither
//! operation has (or needs) a backward pass; both detach their input.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::storage::f32_slice;

/// `softmax((t − center) / temp)` over the last dimension (`CustomOp2` on f32 `t` `[N, K]` and
/// `center` with `K` elements).
#[derive(Debug, Clone, Copy)]
pub struct CenterSoftmax {
    /// `1 / temp`.
    pub inv_temp: f32,
}

/// dinov2's `sinkhorn_knopp_teacher` (`CustomOp1` on f32 logits `[N, K]`): `Q = exp((t −
/// max t) / temp)`, `Q /= ΣQ`, then `iterations` rounds of "every prototype (column) to mass
/// `1/K`, every sample (row) to mass `1/n_samples`", and `Q · n_samples` (rows sum to 1).
#[derive(Debug, Clone, Copy)]
pub struct SinkhornKnopp {
    /// `1 / temp`.
    pub inv_temp: f32,
    /// dinov2's `B`: rows across all processes (the all-reduced count).
    pub n_samples: f32,
    /// Rounds (dinov2: 3).
    pub iterations: usize,
}

fn nk(layout: &Layout, op: &str) -> Result<(usize, usize)> {
    match layout.dims() {
        [n, k] if *k > 0 => Ok((*n, *k)),
        d => bail!("{op}: teacher logits must be [N, K] with K > 0, got {d:?}"),
    }
}

fn check_center(op: &str, center_len: usize, k: usize) -> Result<()> {
    if center_len != k {
        bail!("{op}: center has {center_len} elements, logits have K = {k}");
    }
    Ok(())
}

fn check_temp(temp: f64, op: &str) -> Result<()> {
    if !(temp.is_finite() && temp > 0.0) {
        bail!("{op}: temperature must be positive and finite, got {temp}");
    }
    Ok(())
}

/// Teacher targets `softmax((t − center) / temp)` for logits `[N, K]` and a center of `K`
/// elements (`[K]` or `[1, K]`); computed in f32.
pub fn center_softmax(t: &Tensor, center: &Tensor, temp: f64) -> Result<Tensor> {
    check_temp(temp, "center_softmax")?;
    let t = t.detach().to_dtype(DType::F32)?.contiguous()?;
    let center = center
        .detach()
        .to_dtype(DType::F32)?
        .flatten_all()?
        .contiguous()?;
    t.apply_op2_no_bwd(
        &center,
        &CenterSoftmax {
            inv_temp: (1.0 / temp) as f32,
        },
    )
}

/// dinov2's Sinkhorn-Knopp teacher targets for logits `[N, K]` (see [`SinkhornKnopp`]).
pub fn sinkhorn_knopp(t: &Tensor, temp: f64, n_samples: f64, iterations: usize) -> Result<Tensor> {
    check_temp(temp, "sinkhorn_knopp")?;
    if !(n_samples.is_finite() && n_samples > 0.0) {
        bail!("sinkhorn_knopp: sample count must be positive, got {n_samples}");
    }
    let t = t.detach().to_dtype(DType::F32)?.contiguous()?;
    t.apply_op1_no_bwd(&SinkhornKnopp {
        inv_temp: (1.0 / temp) as f32,
        n_samples: n_samples as f32,
        iterations,
    })
}

impl CustomOp2 for CenterSoftmax {
    fn name(&self) -> &'static str {
        "fused-center-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, k) = nk(l1, self.name())?;
        let t = f32_slice(s1, l1, "logits", self.name())?;
        let c = f32_slice(s2, l2, "center", self.name())?;
        check_center(self.name(), c.len(), k)?;
        let it = self.inv_temp;
        let mut y = vec![0f32; t.len()];
        y.par_chunks_mut(k)
            .zip(t.par_chunks(k))
            .for_each(|(yr, tr)| {
                let m = tr
                    .iter()
                    .zip(c)
                    .map(|(a, b)| (a - b) * it)
                    .fold(f32::NEG_INFINITY, f32::max);
                let mut s = 0f64;
                for i in 0..k {
                    let e = ((tr[i] - c[i]) * it - m).exp();
                    yr[i] = e;
                    s += e as f64;
                }
                let inv = (1.0 / s) as f32;
                yr.iter_mut().for_each(|v| *v *= inv);
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, k) = nk(l1, self.name())?;
        check_center(self.name(), l2.shape().elem_count(), k)?;
        let out = crate::cuda::center_softmax(s1, l1, s2, l2, n, k, self.inv_temp)?;
        Ok((out, l1.shape().clone()))
    }
}

impl CustomOp1 for SinkhornKnopp {
    fn name(&self) -> &'static str {
        "fused-sinkhorn-knopp"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, k) = nk(l, self.name())?;
        let t = f32_slice(s, l, "logits", self.name())?;
        let max = t.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut q: Vec<f32> = t
            .iter()
            .map(|v| ((v - max) * self.inv_temp).exp())
            .collect();
        let total: f64 = q.iter().map(|&v| v as f64).sum();
        let inv = (1.0 / total) as f32;
        q.iter_mut().for_each(|v| *v *= inv);
        let mut col_sum = vec![0f64; k];
        for it in 0..self.iterations {
            col_sum.iter_mut().for_each(|c| *c = 0.0);
            for row in q.chunks(k) {
                col_sum
                    .iter_mut()
                    .zip(row)
                    .for_each(|(c, &v)| *c += v as f64);
            }
            // prototype mass times K: dividing by it leaves each prototype with mass 1/K
            let col: Vec<f32> = col_sum.iter().map(|c| (c * k as f64) as f32).collect();
            let out_scale = if it + 1 == self.iterations {
                self.n_samples
            } else {
                1.0
            };
            q.par_chunks_mut(k).for_each(|row| {
                let mut s = 0f64;
                for (v, c) in row.iter_mut().zip(&col) {
                    *v /= c;
                    s += *v as f64;
                }
                let scale = out_scale / (s as f32 * self.n_samples);
                row.iter_mut().for_each(|v| *v *= scale);
            });
        }
        if self.iterations == 0 {
            q.iter_mut().for_each(|v| *v *= self.n_samples);
        }
        Ok((CpuStorage::F32(q), l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, k) = nk(l, self.name())?;
        let out = crate::cuda::sinkhorn(s, l, n, k, self)?;
        Ok((out, l.shape().clone()))
    }
}
