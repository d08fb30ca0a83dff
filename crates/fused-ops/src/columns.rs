//! Per-channel (last-dimension) operations for training, whose parameter gradients are sums
//! over every leading row:
//!
//! - [`bias_add`]: `x + b`, gradient of `b` = `Σ_rows dy`;
//! - [`scale_columns`]: `x ⊙ λ` (layer scale), gradient of `λ` = `Σ_rows dy ⊙ x`;
//! - [`column_sum`]: `Σ_rows x`, the reduction both backward passes use.
//!
//! candle's own backward of a broadcast reduces over the leading dims with one thread block per
//! output channel, each block walking its column with a stride of the row width: on a GPU that
//! is an uncoalesced read of the whole activation per bias, in every block of the ViT. Here
//! the rows are split into chunks whose partial sums are read along the rows (consecutive
//! threads, consecutive channels), then the chunks are added.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::storage::{channel_width, contiguous, last_dim};

/// Rows per CPU task of [`column_sum`].
const CPU_ROWS: usize = 256;

/// `Σ_rows x` of `x` `[.., C]` as `[C]` (`CustomOp1`), accumulated in f32.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSum;

/// A per-channel operation of `x` `[.., C]` with `p` `[C]` broadcast over its rows
/// (`CustomOp2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerChannel {
    /// `x + b`; `db = Σ_rows dy`.
    BiasAdd,
    /// `x ⊙ λ`; `dx = dy ⊙ λ`, `dλ = Σ_rows dy ⊙ x`.
    Scale,
}

impl PerChannel {
    fn apply(self, x: f32, p: f32) -> f32 {
        match self {
            Self::BiasAdd => x + p,
            Self::Scale => x * p,
        }
    }

    /// The CUDA epilogue kernel (kernels.cu).
    #[cfg(feature = "cuda")]
    fn kernel(self) -> &'static str {
        match self {
            Self::BiasAdd => "bias_add",
            Self::Scale => "scale_columns",
        }
    }
}

/// Column sums of the contiguous `rows × c` slice, in f32.
fn cpu_column_sum<T: Copy + Sync>(x: &[T], c: usize, to_f32: impl Fn(T) -> f32 + Sync) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = x
        .par_chunks(CPU_ROWS * c)
        .map(|chunk| {
            let mut acc = vec![0f32; c];
            for row in chunk.chunks_exact(c) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += to_f32(v);
                }
            }
            acc
        })
        .collect();
    let mut total = vec![0f32; c];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Rows per CPU task of the per-channel forward: about 64 K values, so that rayon's per-task
/// cost stays small next to the work (with one row per task and the operation matched per
/// element, `bias_add` on `[308, 2048]` took 0.45 ms; now 0.26 ms).
fn rows_per_task(c: usize) -> usize {
    (65536 / c.max(1)).max(1)
}

/// `y[r, j] = f(x[r, j], p[j])` over the rows of `x`, in parallel chunks of rows. Generic in
/// `f` so that each operation gets its own vectorised loop.
fn per_channel_rows<T: Copy + Default + Send + Sync>(
    x: &[T],
    p: &[T],
    c: usize,
    f: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    // one read of x and one write of y (a copy of x modified in place was a pass more)
    let mut y = vec![T::default(); x.len()];
    let chunk = rows_per_task(c) * c;
    y.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(ys, xs)| {
            for (yr, xr) in ys.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
                for ((o, &v), &q) in yr.iter_mut().zip(xr).zip(p) {
                    *o = f(v, q);
                }
            }
        });
    y
}

/// `op` of the contiguous `x` (`s1`) and `p` (`s2`, `[C]`), in x's dtype.
fn cpu_per_channel(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    op: PerChannel,
) -> Result<(CpuStorage, Shape)> {
    let name = op.name();
    let c = channel_width(l1, l2, name)?;
    let (a0, a1) = contiguous(l1, "x", name)?;
    let (b0, b1) = contiguous(l2, "per-channel operand", name)?;
    let bf = |v: half::bf16| v.to_f32();
    let out = match ((s1, s2), op) {
        ((CpuStorage::F32(x), CpuStorage::F32(p)), PerChannel::BiasAdd) => {
            CpuStorage::F32(per_channel_rows(&x[a0..a1], &p[b0..b1], c, |v, q| v + q))
        }
        ((CpuStorage::F32(x), CpuStorage::F32(p)), PerChannel::Scale) => {
            CpuStorage::F32(per_channel_rows(&x[a0..a1], &p[b0..b1], c, |v, q| v * q))
        }
        ((CpuStorage::BF16(x), CpuStorage::BF16(p)), op) => {
            CpuStorage::BF16(per_channel_rows(&x[a0..a1], &p[b0..b1], c, |v, q| {
                half::bf16::from_f32(op.apply(bf(v), bf(q)))
            }))
        }
        ((a, b), _) => bail!(
            "{name}: f32 or bf16 operands of one dtype, got {:?} and {:?}",
            a.dtype(),
            b.dtype()
        ),
    };
    Ok((out, l1.shape().clone()))
}

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let c = last_dim(l, op)?;
        let (a, b) = contiguous(l, "x", op)?;
        let out = match s {
            CpuStorage::F32(x) => CpuStorage::F32(cpu_column_sum(&x[a..b], c, |v| v)),
            CpuStorage::BF16(x) => CpuStorage::BF16(
                cpu_column_sum(&x[a..b], c, |v| v.to_f32())
                    .into_iter()
                    .map(half::bf16::from_f32)
                    .collect(),
            ),
            other => bail!("{op}: f32 or bf16, got {:?}", other.dtype()),
        };
        Ok((out, Shape::from(c)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let c = last_dim(l, self.name())?;
        let rows = l.shape().elem_count() / c;
        Ok((crate::cuda::column_sum(s, l, rows, c)?, Shape::from(c)))
    }

    fn bwd(&self, x: &Tensor, _sum: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.broadcast_as(x.shape())?.contiguous()?))
    }
}

impl CustomOp2 for PerChannel {
    fn name(&self) -> &'static str {
        match self {
            Self::BiasAdd => "bias-add",
            Self::Scale => "scale-columns",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_per_channel(s1, l1, s2, l2, *self)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let c = channel_width(l1, l2, self.name())?;
        let out = crate::cuda::epilogue(self.kernel(), [(s1, l1), (s2, l2), (s1, l1)], c)?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (dx, dp) = match self {
            Self::BiasAdd => (grad.clone(), column_sum(&grad)?),
            Self::Scale => (scale_columns(&grad, p)?, column_sum(&(&grad * x)?)?),
        };
        Ok((Some(dx), Some(dp.reshape(p.shape())?)))
    }
}

/// `Σ_rows x` of `x` `[.., C]`: `[C]` in x's dtype (f32 or bf16; f32 accumulation).
pub fn column_sum(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(ColumnSum)
}

/// `x + b`, `b` `[C]` broadcast over the rows of `x` `[.., C]` (f32 or bf16, one dtype), with
/// a backward whose bias gradient is a [`column_sum`].
pub fn bias_add(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let b = b.to_dtype(x.dtype())?;
    x.contiguous()?
        .apply_op2(&b.contiguous()?, PerChannel::BiasAdd)
}

/// `x ⊙ λ`, `λ` `[C]` broadcast over the rows of `x` `[.., C]` (f32 or bf16, one dtype),
/// with a backward whose `λ` gradient is a [`column_sum`] of `dy ⊙ x`.
pub fn scale_columns(x: &Tensor, lambda: &Tensor) -> Result<Tensor> {
    let lambda = lambda.to_dtype(x.dtype())?;
    x.contiguous()?
        .apply_op2(&lambda.contiguous()?, PerChannel::Scale)
}
