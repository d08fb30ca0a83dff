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
