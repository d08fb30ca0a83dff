//! Layer norm over the last dimension with a fused backward pass.
//!
//! Forward and backward both recompute the row statistics (mean, then centred variance, in
//! f32) instead of saving them: one extra read of a row that is already in cache, and no
//! per-row tensors kept alive by autograd.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, D};
use half::{bf16, f16};
use rayon::prelude::*;

use crate::storage::contiguous;

/// `LayerNorm(x) · w + b` over the last dimension (`CustomOp3` on `x`, `w`, `b`).
#[derive(Debug, Clone, Copy)]
pub struct LayerNormForward {
    /// Added to the variance before the square root.
    pub eps: f32,
}

/// The input gradient of [`LayerNormForward`] (`CustomOp3` on `x`, `w`, `dy`):
/// `dx = rstd · (g − mean(g) − x̂ · mean(g · x̂))` with `g = dy · w`.
#[derive(Debug, Clone, Copy)]
pub struct LayerNormBackward {
    /// The forward's epsilon.
    pub eps: f32,
}

/// The parameter gradients of [`LayerNormForward`] (`CustomOp2` on `x` and `dy`): an f32
/// `[2, chunks, D]` of partial column sums of `dy · x̂` (row 0, summing to `dw`) and `dy` (row 1,
/// `db`) over chunks of rows; sum over dimension 1 for the gradients.
#[derive(Debug, Clone, Copy)]
pub struct LayerNormParamGrad {
    /// The forward's epsilon.
    pub eps: f32,
}

/// Differentiable fused layer norm of `x` (`[.., D]`) with weight and bias `[D]`, all of one
/// dtype (f32, bf16 or f16; statistics in f32). Gradients reach `x`, `weight` and `bias`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if t.dims() != [d] {
            bail!(
                "layer_norm: {name} has shape {:?}, expected [{d}] for input {:?}",
                t.dims(),
                x.dims()
            );
        }
        if t.dtype() != x.dtype() {
            bail!(
                "layer_norm: {name} is {:?} but the input is {:?}",
                t.dtype(),
                x.dtype()
            );
        }
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNormForward { eps: eps as f32 },
    )
}

/// Row statistics of one row in f32: (mean, 1/sqrt(var + eps)).
fn stats(row: impl Iterator<Item = f32> + Clone, d: usize, eps: f32) -> (f32, f32) {
    let mean = row.clone().sum::<f32>() / d as f32;
    let var = row.map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
    (mean, 1.0 / (var + eps).sqrt())
}

trait Element: Copy + Send + Sync {
    fn f(self) -> f32;
    fn of(v: f32) -> Self;
}
impl Element for f32 {
    fn f(self) -> f32 {
        self
    }
    fn of(v: f32) -> Self {
        v
    }
}
impl Element for bf16 {
    fn f(self) -> f32 {
        self.to_f32()
    }
    fn of(v: f32) -> Self {
        bf16::from_f32(v)
    }
}
impl Element for f16 {
    fn f(self) -> f32 {
        self.to_f32()
    }
    fn of(v: f32) -> Self {
        f16::from_f32(v)
    }
}

fn forward_rows<T: Element>(x: &[T], w: &[T], b: &[T], eps: f32) -> Vec<T> {
    let d = w.len();
    let mut y = vec![T::of(0.0); x.len()];
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(yr, xr)| {
            let (mean, rstd) = stats(xr.iter().map(|v| v.f()), d, eps);
            for i in 0..d {
                yr[i] = T::of((xr[i].f() - mean) * rstd * w[i].f() + b[i].f());
            }
        });
    y
}

fn backward_rows<T: Element>(x: &[T], w: &[T], dy: &[T], eps: f32) -> Vec<T> {
    let d = w.len();
    let mut dx = vec![T::of(0.0); x.len()];
    dx.par_chunks_mut(d)
        .zip(x.par_chunks(d).zip(dy.par_chunks(d)))
        .for_each(|(dxr, (xr, dyr))| {
            let (mean, rstd) = stats(xr.iter().map(|v| v.f()), d, eps);
            let (mut sg, mut sgx) = (0f32, 0f32);
            for i in 0..d {
                let g = dyr[i].f() * w[i].f();
                sg += g;
                sgx += g * (xr[i].f() - mean) * rstd;
            }
            let (mg, mgx) = (sg / d as f32, sgx / d as f32);
            for i in 0..d {
                let xh = (xr[i].f() - mean) * rstd;
                let g = dyr[i].f() * w[i].f();
                dxr[i] = T::of(rstd * (g - mg - xh * mgx));
            }
        });
    dx
}

/// Checks shapes (`a` is `[.., D]`, `w` is `[D]`, `c` like `a`) and returns `D`.
/// The (non-zero) last dimension of `la`.
fn feature_dim(op: &str, la: &Layout) -> Result<usize> {
    match la.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => bail!(
            "{op}: input of shape {:?} has no feature dimension",
            la.dims()
        ),
    }
}

/// Checks that `x` (`lx`) and `dy` (`ldy`) have one shape with a feature dimension; returns it.
fn check_pair(op: &str, lx: &Layout, ldy: &Layout) -> Result<usize> {
    let d = feature_dim(op, lx)?;
    if lx.dims() != ldy.dims() {
        bail!("{op}: x {:?} and dy {:?} differ", lx.dims(), ldy.dims());
    }
    Ok(d)
}

fn check(op: &str, la: &Layout, lw: &Layout, lc: &Layout, c_name: &str) -> Result<usize> {
    let d = feature_dim(op, la)?;
    if lw.dims() != [d] {
        bail!(
            "{op}: weight {:?} does not match input {:?}",
            lw.dims(),
            la.dims()
        );
    }
    if lc.dims() != la.dims() && !(c_name == "bias" && lc.dims() == [d]) {
        bail!(
            "{op}: {c_name} {:?} does not match input {:?}",
            lc.dims(),
            la.dims()
        );
    }
    Ok(d)
}

/// Applies `f` to the three CPU storages as slices of one element type.
fn cpu3(
    op: &str,
    s: [(&CpuStorage, &Layout); 3],
    f32_fn: impl Fn(&[f32], &[f32], &[f32]) -> Vec<f32>,
    bf16_fn: impl Fn(&[bf16], &[bf16], &[bf16]) -> Vec<bf16>,
    f16_fn: impl Fn(&[f16], &[f16], &[f16]) -> Vec<f16>,
) -> Result<CpuStorage> {
    let r: Vec<(usize, usize)> = s
        .iter()
        .enumerate()
        .map(|(i, (_, l))| contiguous(l, ["input", "weight", "third operand"][i], op))
        .collect::<Result<_>>()?;
    Ok(match (s[0].0, s[1].0, s[2].0) {
        (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => CpuStorage::F32(f32_fn(
            &a[r[0].0..r[0].1],
            &b[r[1].0..r[1].1],
            &c[r[2].0..r[2].1],
        )),
        (CpuStorage::BF16(a), CpuStorage::BF16(b), CpuStorage::BF16(c)) => CpuStorage::BF16(
            bf16_fn(&a[r[0].0..r[0].1], &b[r[1].0..r[1].1], &c[r[2].0..r[2].1]),
        ),
        (CpuStorage::F16(a), CpuStorage::F16(b), CpuStorage::F16(c)) => CpuStorage::F16(f16_fn(
            &a[r[0].0..r[0].1],
            &b[r[1].0..r[1].1],
            &c[r[2].0..r[2].1],
        )),
        (a, b, c) => bail!(
            "{op}: operands must share one of f32/bf16/f16, got {:?}, {:?}, {:?}",
            a.dtype(),
            b.dtype(),
            c.dtype()
        ),
    })
}

impl CustomOp3 for LayerNormForward {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
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
        check(self.name(), l1, l2, l3, "bias")?;
        let eps = self.eps;
        let out = cpu3(
            self.name(),
            [(s1, l1), (s2, l2), (s3, l3)],
            |x, w, b| forward_rows(x, w, b, eps),
            |x, w, b| forward_rows(x, w, b, eps),
            |x, w, b| forward_rows(x, w, b, eps),
        )?;
        Ok((out, l1.shape().clone()))
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
        let d = check(self.name(), l1, l2, l3, "bias")?;
        let out =
            crate::cuda::layer_norm_rows("ln_fwd", [(s1, l1), (s2, l2), (s3, l3)], d, self.eps)?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = x.apply_op3_no_bwd(w, &dy, &LayerNormBackward { eps: self.eps })?;
        let sums = x
            .apply_op2_no_bwd(&dy, &LayerNormParamGrad { eps: self.eps })?
            .sum(1)?;
        let dw = sums.get(0)?.to_dtype(w.dtype())?;
        let db = sums.get(1)?.to_dtype(b.dtype())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "fused-layer-norm-backward"
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
        check(self.name(), l1, l2, l3, "output gradient")?;
        let eps = self.eps;
        let out = cpu3(
            self.name(),
            [(s1, l1), (s2, l2), (s3, l3)],
            |x, w, dy| backward_rows(x, w, dy, eps),
            |x, w, dy| backward_rows(x, w, dy, eps),
            |x, w, dy| backward_rows(x, w, dy, eps),
        )?;
        Ok((out, l1.shape().clone()))
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
        let d = check(self.name(), l1, l2, l3, "output gradient")?;
        let out =
            crate::cuda::layer_norm_rows("ln_bwd", [(s1, l1), (s2, l2), (s3, l3)], d, self.eps)?;
        Ok((out, l1.shape().clone()))
    }
}

fn param_grad_rows<T: Element>(x: &[T], dy: &[T], d: usize, eps: f32) -> Vec<f32> {
    let (sw, sb) = x
        .par_chunks(d * 64)
        .zip(dy.par_chunks(d * 64))
        .map(|(xc, dyc)| {
            let (mut sw, mut sb) = (vec![0f64; d], vec![0f64; d]);
            for (xr, dyr) in xc.chunks(d).zip(dyc.chunks(d)) {
                let (mean, rstd) = stats(xr.iter().map(|v| v.f()), d, eps);
                for i in 0..d {
                    let g = dyr[i].f() as f64;
                    sw[i] += g * ((xr[i].f() - mean) * rstd) as f64;
                    sb[i] += g;
                }
            }
            (sw, sb)
        })
        // collected, then summed in chunk order: the same bits however rayon split the work
        // (a `reduce` pairs partial sums as it happened to), which exact resume needs
        .collect::<Vec<_>>()
        .into_iter()
        .fold(
            (vec![0f64; d], vec![0f64; d]),
            |(mut aw, mut ab), (bw, bb)| {
                aw.iter_mut().zip(&bw).for_each(|(a, b)| *a += b);
                ab.iter_mut().zip(&bb).for_each(|(a, b)| *a += b);
                (aw, ab)
            },
        );
    sw.into_iter().chain(sb).map(|v| v as f32).collect()
}

impl CustomOp2 for LayerNormParamGrad {
    fn name(&self) -> &'static str {
        "fused-layer-norm-param-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = check_pair(self.name(), l1, l2)?;
        let (a, b) = contiguous(l1, "x", self.name())?;
        let (c, e) = contiguous(l2, "dy", self.name())?;
        let eps = self.eps;
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(dy)) => {
                param_grad_rows(&x[a..b], &dy[c..e], d, eps)
            }
            (CpuStorage::BF16(x), CpuStorage::BF16(dy)) => {
                param_grad_rows(&x[a..b], &dy[c..e], d, eps)
            }
            (CpuStorage::F16(x), CpuStorage::F16(dy)) => {
                param_grad_rows(&x[a..b], &dy[c..e], d, eps)
            }
            (x, dy) => bail!(
                "{}: x and dy must share one of f32/bf16/f16, got {:?} and {:?}",
                self.name(),
                x.dtype(),
                dy.dtype()
            ),
        };
        Ok((CpuStorage::F32(out), Shape::from((2, 1, d))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let d = check_pair(self.name(), l1, l2)?;
        let (out, chunks) = crate::cuda::layer_norm_param_partials(s1, l1, s2, l2, d, self.eps)?;
        Ok((out, Shape::from((2, chunks, d))))
    }
}
