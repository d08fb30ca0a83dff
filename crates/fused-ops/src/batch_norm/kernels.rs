//! The per-channel passes behind the batch-norm ops: chunking a `[B, C, H, W]` map into its
//! `H·W` runs, and the vectorised kernels over one run.

use candle_core::{bail, CpuStorage, Layout, Result};
use rayon::prelude::*;

use crate::storage::f32_slice;

/// Elements a parallel task covers at least: channels of small maps are grouped.
const MIN_TASK: usize = 16 * 1024;

/// Lanes of the f64 accumulators: fixed-width arrays that LLVM vectorises.
const LANES: usize = 8;

/// `(B, C, H·W)` of a contiguous 4-D layout, or an error naming `what`.
pub(super) fn map_dims(l: &Layout, what: &str, op: &str) -> Result<MapDims> {
    match l.dims() {
        &[b, c, h, w] if b * h * w > 0 => Ok((b, c, h * w)),
        d => bail!("{op}: {what} must be a non-empty [B, C, H, W] map, got {d:?}"),
    }
}

/// `(B, C, H·W)` of a map.
pub(super) type MapDims = (usize, usize, usize);

/// The slices of `x`, `y` and `dy` (one map shape), with its `(B, C, H·W)`.
pub(super) fn three_maps<'a>(
    op: &str,
    s: [(&'a CpuStorage, &Layout); 3],
) -> Result<([&'a [f32]; 3], MapDims)> {
    let dims = map_dims(s[0].1, "x", op)?;
    for (what, (_, l)) in ["y", "dy"].iter().zip(&s[1..]) {
        if l.dims() != s[0].1.dims() {
            bail!(
                "{op}: {what} {:?} differs from x {:?}",
                l.dims(),
                s[0].1.dims()
            );
        }
    }
    let x = f32_slice(s[0].0, s[0].1, "x", op)?;
    let y = f32_slice(s[1].0, s[1].1, "y", op)?;
    let dy = f32_slice(s[2].0, s[2].1, "dy", op)?;
    Ok(([x, y, dy], dims))
}

/// `f(channel, chunk)` for each `H·W` chunk of channel `c` of image `b`, in parallel, summed
/// per channel in f64 (pairs of sums for the gradient).
pub(super) fn per_channel_sums<const K: usize>(
    (b, c, hw): MapDims,
    f: impl Fn(usize, usize) -> [f64; K] + Sync,
) -> Vec<[f64; K]> {
    let chunks: Vec<[f64; K]> = (0..b * c)
        .into_par_iter()
        .with_min_len(MIN_TASK.div_ceil(hw))
        .map(|i| f(i % c, i * hw))
        .collect();
    let mut sums = vec![[0f64; K]; c];
    for (i, s) in chunks.iter().enumerate() {
        for (total, v) in sums[i % c].iter_mut().zip(s) {
            *total += v;
        }
    }
    sums
}

/// The sum of each channel of the map `x` over `(B, H, W)`, in f64.
pub(super) fn channel_sums(x: &[f32], dims @ (_, _, hw): MapDims) -> Vec<f64> {
    per_channel_sums(dims, |_, at| [sum(&x[at..at + hw])])
        .iter()
        .map(|s| s[0])
        .collect()
}

/// `f(channel, start, out chunk)` for each `H·W` chunk into a fresh `[B, C, H, W]` buffer.
pub(super) fn per_chunk_map(
    (b, c, hw): MapDims,
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; b * c * hw];
    out.par_chunks_mut(hw)
        .with_min_len(MIN_TASK.div_ceil(hw))
        .enumerate()
        .for_each(|(i, chunk)| f(i % c, i * hw, chunk));
    out
}

crate::simd_kernel! {
    pub(super) fn sum(x: &[f32]) -> f64 {
        let mut acc = [0f64; LANES];
        let mut it = x.chunks_exact(LANES);
        for lane in &mut it {
            for (a, &v) in acc.iter_mut().zip(lane) {
                *a += v as f64;
            }
        }
        acc.iter().sum::<f64>() + it.remainder().iter().map(|&v| v as f64).sum::<f64>()
    }
}

crate::simd_kernel! {
    pub(super) fn squared_deviations(x: &[f32], mean: f64) -> f64 {
        let mut acc = [0f64; LANES];
        let mut it = x.chunks_exact(LANES);
        for lane in &mut it {
            for (a, &v) in acc.iter_mut().zip(lane) {
                let d = v as f64 - mean;
                *a += d * d;
            }
        }
        let tail: f64 = it.remainder().iter().map(|&v| (v as f64 - mean).powi(2)).sum();
        acc.iter().sum::<f64>() + tail
    }
}

crate::simd_kernel! {
    pub(super) fn normalise(x: &[f32], out: &mut [f32], mean: f32, scale: f32, shift: f32, relu: bool) {
        for (o, &v) in out.iter_mut().zip(x) {
            let z = (v - mean) * scale + shift;
            *o = if relu { z.max(0.0) } else { z };
        }
    }
}

crate::simd_kernel! {
    pub(super) fn grad_sums(x: &[f32], y: &[f32], dy: &[f32], mean: f32, inv_std: f32, relu: bool) -> [f64; 2] {
        let (mut sg, mut sgx) = ([0f64; LANES], [0f64; LANES]);
        let lanes = x.chunks_exact(LANES).zip(y.chunks_exact(LANES)).zip(dy.chunks_exact(LANES));
        for ((x, y), dy) in lanes {
            for k in 0..LANES {
                let g = if relu && y[k] <= 0.0 { 0.0 } else { dy[k] };
                sg[k] += g as f64;
                sgx[k] += (g * (x[k] - mean) * inv_std) as f64;
            }
        }
        let mut total = [sg.iter().sum::<f64>(), sgx.iter().sum::<f64>()];
        let tail = x.len() / LANES * LANES;
        for ((&x, &y), &dy) in x[tail..].iter().zip(&y[tail..]).zip(&dy[tail..]) {
            let g = if relu && y <= 0.0 { 0.0 } else { dy };
            total[0] += g as f64;
            total[1] += (g * (x - mean) * inv_std) as f64;
        }
        total
    }
}

crate::simd_kernel! {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn grad_input(x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32], mean: f32, inv_std: f32, k: f32, a: f32, c: f32, relu: bool) {
        for (((o, &v), &y), &d) in dx.iter_mut().zip(x).zip(y).zip(dy) {
            let g = if relu && y <= 0.0 { 0.0 } else { d };
            *o = k * (g - a - (v - mean) * inv_std * c);
        }
    }
}
