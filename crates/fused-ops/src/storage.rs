//! Reading candle CPU storage as contiguous f32 (or native half) slices.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, Result};

/// The contiguous element range of `layout`, or an error naming `what`.
pub(crate) fn contiguous(layout: &Layout, what: &str, op: &str) -> Result<(usize, usize)> {
    match layout.contiguous_offsets() {
        Some(r) => Ok(r),
        None => bail!(
            "{op}: {what} must be contiguous (shape {:?})",
            layout.dims()
        ),
    }
}

/// The f32 elements of a contiguous f32 storage.
pub(crate) fn f32_slice<'a>(
    s: &'a CpuStorage,
    layout: &Layout,
    what: &str,
    op: &str,
) -> Result<&'a [f32]> {
    let (a, b) = contiguous(layout, what, op)?;
    match s {
        CpuStorage::F32(v) => Ok(&v[a..b]),
        other => bail!("{op}: {what} must be f32, got {:?}", other.dtype()),
    }
}

/// The elements of a contiguous f32 or bf16 storage, widened to f32.
pub(crate) fn widened(s: &CpuStorage, layout: &Layout, what: &str, op: &str) -> Result<Vec<f32>> {
    let (a, b) = contiguous(layout, what, op)?;
    match s {
        CpuStorage::F32(v) => Ok(v[a..b].to_vec()),
        CpuStorage::BF16(v) => Ok(v[a..b].iter().map(|x| x.to_f32()).collect()),
        other => bail!("{op}: {what} must be f32 or bf16, got {:?}", other.dtype()),
    }
}

/// f32 values stored back in `dtype` (f32 or bf16, as [`widened`] accepts).
pub(crate) fn narrowed(v: Vec<f32>, dtype: candle_core::DType) -> CpuStorage {
    match dtype {
        candle_core::DType::BF16 => {
            CpuStorage::BF16(v.into_iter().map(half::bf16::from_f32).collect())
        }
        _ => CpuStorage::F32(v),
    }
}

/// The last dimension of `l` (an error naming `op` for a scalar or an empty last dim).
pub(crate) fn last_dim(l: &Layout, op: &str) -> Result<usize> {
    match l.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => bail!("{op}: needs a last dimension, got {:?}", l.dims()),
    }
}

/// The width `d` of `x` (`l1`) once a per-channel operand (`l2`: a bias, a scale) is checked
/// to hold `d` elements; the error names both shapes.
pub(crate) fn channel_width(l1: &Layout, l2: &Layout, op: &str) -> Result<usize> {
    let d = last_dim(l1, op)?;
    let n = l2.shape().elem_count();
    if n != d {
        bail!(
            "{op}: per-channel operand of {n} elements ({:?}) for x of width {d} ({:?})",
            l2.dims(),
            l1.dims()
        );
    }
    Ok(d)
}
