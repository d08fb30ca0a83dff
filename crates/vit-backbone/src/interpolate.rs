//! Separable resampling of the position-embedding grid, as PyTorch's `F.interpolate` does it.
//!
//! Each 1-D resampling is a dense `[out, in]` weight matrix, so the 2-D resize is two matmuls:
//! exact to PyTorch up to float summation order, and differentiable through candle's autograd
//! (the position embeddings keep their gradient when a model is trained at another size).

use candle_core::{Result, Tensor};

use crate::config::PosInterpolation;

/// PyTorch's cubic convolution constant for `mode="bicubic"` without antialiasing.
const TORCH_CUBIC_A: f64 = -0.75;
/// Pillow's (and PyTorch's antialiased) bicubic constant.
const PILLOW_CUBIC_A: f64 = -0.5;

fn cubic1(x: f64, a: f64) -> f64 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

fn cubic2(x: f64, a: f64) -> f64 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

fn cubic_filter(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        cubic1(x, a)
    } else if x < 2.0 {
        cubic2(x, a)
    } else {
        0.0
    }
}

/// `[out, in]` weights of `upsample_bicubic2d` along one axis (`align_corners=False`),
/// sampling at `scale * (i + 0.5) - 0.5` with border clamping.
pub fn bicubic_weights(input: usize, output: usize, scale: f64) -> Vec<f64> {
    let mut w = vec![0.0; output * input];
    let last = input as isize - 1;
    for i in 0..output {
        let real = scale * (i as f64 + 0.5) - 0.5;
        let idx = real.floor();
        let t = real - idx;
        let coeffs = [
            cubic2(t + 1.0, TORCH_CUBIC_A),
            cubic1(t, TORCH_CUBIC_A),
            cubic1(1.0 - t, TORCH_CUBIC_A),
            cubic2(2.0 - t, TORCH_CUBIC_A),
        ];
        for (k, c) in coeffs.iter().enumerate() {
            let src = (idx as isize - 1 + k as isize).clamp(0, last) as usize;
            w[i * input + src] += c;
        }
    }
    w
}

/// `[out, in]` weights of `_upsample_bicubic2d_aa` along one axis (Pillow's scheme): the
/// filter support grows with the downsampling factor and weights are renormalised at borders.
pub fn bicubic_antialias_weights(input: usize, output: usize, scale: f64) -> Vec<f64> {
    let mut w = vec![0.0; output * input];
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    for i in 0..output {
        let center = scale * (i as f64 + 0.5);
        let xmin = ((center - support + 0.5) as isize).max(0) as usize;
        let xmax = ((center + support + 0.5) as isize)
            .min(input as isize)
            .max(0) as usize;
        let mut total = 0.0;
        for j in xmin..xmax {
            let v = cubic_filter((j as f64 - center + 0.5) * invscale, PILLOW_CUBIC_A);
            w[i * input + j] = v;
            total += v;
        }
        if total != 0.0 {
            for j in xmin..xmax {
                w[i * input + j] /= total;
            }
        }
    }
    w
}

/// The 1-D weight matrix that maps a trained grid side `input` to `output` positions.
pub fn axis_weights(input: usize, output: usize, mode: PosInterpolation) -> Vec<f64> {
    match mode {
        PosInterpolation::Bicubic => bicubic_weights(input, output, input as f64 / output as f64),
        PosInterpolation::BicubicAntialias => {
            bicubic_antialias_weights(input, output, input as f64 / output as f64)
        }
        // interpolate(scale_factor = (output + 0.1) / input): torch samples with 1/scale_factor
        PosInterpolation::BicubicOffset => {
            bicubic_weights(input, output, input as f64 / (output as f64 + 0.1))
        }
    }
}

/// Resamples `grid` (`[rows_in * cols_in, D]`, row-major) to `[rows_out * cols_out, D]`.
pub fn resample_grid(
    grid: &Tensor,
    (rows_in, cols_in): (usize, usize),
    (rows_out, cols_out): (usize, usize),
    mode: PosInterpolation,
) -> Result<Tensor> {
    let (_, dim) = grid.dims2()?;
    let device = grid.device();
    let dtype = grid.dtype();
    let to_tensor = |w: Vec<f64>, r: usize, c: usize| -> Result<Tensor> {
        Tensor::from_vec(
            w.into_iter().map(|v| v as f32).collect::<Vec<_>>(),
            (r, c),
            device,
        )
    };
    let wh = to_tensor(axis_weights(rows_in, rows_out, mode), rows_out, rows_in)?;
    let ww = to_tensor(axis_weights(cols_in, cols_out, mode), cols_out, cols_in)?;
    // interpolation runs in f32 whatever the model dtype, as transformers does
    let g = grid.to_dtype(candle_core::DType::F32)?;
    let rows = wh.matmul(&g.reshape((rows_in, cols_in * dim))?)?; // [ro, ci*D]
    let rows = rows
        .reshape((rows_out, cols_in, dim))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((cols_in, rows_out * dim))?;
    let both = ww.matmul(&rows)?; // [co, ro*D]
    both.reshape((cols_out, rows_out, dim))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((rows_out * cols_out, dim))?
        .to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_weights_sum_to_one() {
        for mode in [
            PosInterpolation::Bicubic,
            PosInterpolation::BicubicAntialias,
            PosInterpolation::BicubicOffset,
        ] {
            for (i, o) in [(4, 7), (37, 16), (16, 37), (5, 5)] {
                let w = axis_weights(i, o, mode);
                for r in 0..o {
                    let s: f64 = w[r * i..(r + 1) * i].iter().sum();
                    assert!((s - 1.0).abs() < 1e-12, "{mode:?} {i}->{o} row {r}: {s}");
                }
            }
        }
    }

    #[test]
    fn same_size_bicubic_is_identity() {
        let w = axis_weights(6, 6, PosInterpolation::Bicubic);
        for r in 0..6 {
            for c in 0..6 {
                let want = if r == c { 1.0 } else { 0.0 };
                assert!((w[r * 6 + c] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn offset_mode_differs_from_exact_size() {
        let a = axis_weights(37, 16, PosInterpolation::Bicubic);
        let b = axis_weights(37, 16, PosInterpolation::BicubicOffset);
        assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-3));
    }
}
