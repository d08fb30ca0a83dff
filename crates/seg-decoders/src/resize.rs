//! Differentiable bilinear resizing with PyTorch's `F.interpolate(mode="bilinear")` semantics.
//!
//! candle's `upsample_bilinear2d` has no backward pass. Bilinear resizing is separable and
//! linear, so it is written here as two matrix products, `Y = R_h · X · R_wᵀ`, with constant
//! interpolation matrices `R` (`out × in`, two non-zeros per row). candle's matmul backward
//! then gives the exact gradient `R_hᵀ · G · R_w`. The matrices are built once per
//! `(in, out, align_corners, device, dtype)` and cached.
//!
//! Semantics (PyTorch, output size given, `antialias=False`):
//! - `align_corners = false`: source coordinate `s = (d + 0.5) · in/out − 0.5`, clamped at 0;
//! - `align_corners = true`: `s = d · (in − 1)/(out − 1)` (0 when `out = 1`);
//!
//! then `i0 = ⌊s⌋`, `i1 = min(i0 + 1, in − 1)`, weights `1 − (s − i0)` and `s − i0`. Without
//! antialiasing, downsampling also reads only the two nearest source pixels, as PyTorch does.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use candle_core::{DType, Device, DeviceLocation, Tensor};

use crate::{Error, Result};

/// How pixel centres of the input and output grids are aligned.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum AlignCorners {
    /// PyTorch `align_corners=False` (the default of `F.interpolate` and mmsegmentation).
    #[default]
    False,
    /// PyTorch `align_corners=True`: the corner pixels of input and output coincide.
    True,
}

/// The `out × in` row-major interpolation matrix along one axis, in f64.
pub fn interpolation_matrix(input: usize, output: usize, align: AlignCorners) -> Vec<f64> {
    let mut m = vec![0f64; output * input];
    if input == 0 || output == 0 {
        return m;
    }
    let scale = match align {
        AlignCorners::False => input as f64 / output as f64,
        AlignCorners::True if output > 1 => (input - 1) as f64 / (output - 1) as f64,
        AlignCorners::True => 0.0,
    };
    for d in 0..output {
        let src = match align {
            AlignCorners::False => (scale * (d as f64 + 0.5) - 0.5).max(0.0),
            AlignCorners::True => scale * d as f64,
        };
        let i0 = (src.floor() as usize).min(input - 1);
        let i1 = (i0 + 1).min(input - 1);
        let l1 = src - i0 as f64;
        m[d * input + i0] += 1.0 - l1;
        m[d * input + i1] += l1;
    }
    m
}

/// Which one-dimensional linear map a cached matrix holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Bilinear(AlignCorners),
    AdaptiveAvg,
}

impl Kind {
    fn build(self, input: usize, output: usize) -> Vec<f64> {
        match self {
            Kind::Bilinear(align) => interpolation_matrix(input, output, align),
            Kind::AdaptiveAvg => adaptive_avg_matrix(input, output),
        }
    }
}

/// The `out × in` averaging matrix of PyTorch's adaptive average pooling along one axis:
/// output `i` averages inputs `⌊i·in/out⌋ .. ⌈(i+1)·in/out⌉`.
pub fn adaptive_avg_matrix(input: usize, output: usize) -> Vec<f64> {
    let mut m = vec![0f64; output * input];
    for i in 0..output {
        let start = (i * input) / output;
        let end = ((i + 1) * input).div_ceil(output);
        let w = 1.0 / (end - start) as f64;
        for j in start..end {
            m[i * input + j] = w;
        }
    }
    m
}

type Key = (usize, usize, Kind, DeviceLocation, DType, bool);

fn cache() -> &'static Mutex<HashMap<Key, Tensor>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Tensor>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The interpolation matrix as a tensor, `out × in` or (when `transposed`) `in × out`,
/// contiguous, from the cache when possible.
fn matrix(
    input: usize,
    output: usize,
    kind: Kind,
    device: &Device,
    dtype: DType,
    transposed: bool,
) -> Result<Tensor> {
    let key = (input, output, kind, device.location(), dtype, transposed);
    if let Ok(map) = cache().lock() {
        if let Some(t) = map.get(&key) {
            return Ok(t.clone());
        }
    }
    let m = Tensor::from_vec(kind.build(input, output), (output, input), &Device::Cpu)?;
    let m = if transposed { m.t()?.contiguous()? } else { m };
    let m = m.to_dtype(dtype)?.to_device(device)?;
    // A poisoned lock only costs the cache entry, never the result.
    if let Ok(mut map) = cache().lock() {
        map.insert(key, m.clone());
    }
    Ok(m)
}

/// Resizes `x` (`[B, C, H, W]`) to `(out_h, out_w)` bilinearly, differentiably.
///
/// Equal sizes return `x` unchanged (PyTorch's result is then the identity too).
pub fn resize_bilinear(x: &Tensor, size: (usize, usize), align: AlignCorners) -> Result<Tensor> {
    separable(x, size, Kind::Bilinear(align), "resize input")
}

/// Applies the separable linear map `kind` to the two spatial axes of `x`: `R_h · X · R_wᵀ`.
pub(crate) fn separable(
    x: &Tensor,
    size: (usize, usize),
    kind: Kind,
    what: &str,
) -> Result<Tensor> {
    let (b, c, h, w) = x
        .dims4()
        .map_err(|_| Error::bad_input(what, "[B, C, H, W]", x.dims()))?;
    let (oh, ow) = size;
    if oh == 0 || ow == 0 || h == 0 || w == 0 {
        return Err(Error::bad_input(
            what,
            format!("non-empty input and output sizes (output {oh}x{ow})"),
            x.dims(),
        ));
    }
    if (oh, ow) == (h, w) {
        return Ok(x.clone());
    }
    let (device, dtype) = (x.device(), x.dtype());
    let mut y = x.clone();
    if ow != w {
        let rw_t = matrix(w, ow, kind, device, dtype, true)?;
        y = y.reshape((b * c * h, w))?.matmul(&rw_t)?;
    }
    let y = y.reshape((b * c, h, ow))?;
    let y = if oh != h {
        let rh = matrix(h, oh, kind, device, dtype, false)?;
        rh.broadcast_left(b * c)?.matmul(&y)?
    } else {
        y
    };
    Ok(y.reshape((b, c, oh, ow))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one() {
        for align in [AlignCorners::False, AlignCorners::True] {
            for (i, o) in [(4, 9), (9, 4), (1, 5), (5, 1), (37, 518)] {
                let m = interpolation_matrix(i, o, align);
                for r in m.chunks(i) {
                    assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn doubling_uses_quarter_weights() {
        // the classic 2x upsampling kernel of align_corners=False: 0.75/0.25 away from borders
        let m = interpolation_matrix(4, 8, AlignCorners::False);
        assert_eq!(&m[4..8], &[0.75, 0.25, 0.0, 0.0]);
        assert_eq!(&m[8..12], &[0.25, 0.75, 0.0, 0.0]);
        assert_eq!(&m[0..4], &[1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn adaptive_pool_windows_follow_pytorch() {
        // 5 -> 3: windows [0,2), [1,4), [3,5)
        let m = adaptive_avg_matrix(5, 3);
        assert_eq!(&m[0..5], &[0.5, 0.5, 0.0, 0.0, 0.0]);
        let third = 1.0 / 3.0;
        assert_eq!(&m[5..10], &[0.0, third, third, third, 0.0]);
        assert_eq!(&m[10..15], &[0.0, 0.0, 0.0, 0.5, 0.5]);
    }

    #[test]
    fn rejects_wrong_rank() {
        let x = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(resize_bilinear(&x, (4, 4), AlignCorners::False).is_err());
    }
}
