//! The conditional position encoding: `x + dwconv3x3(x)` over the token grid
//! (`conv1.fn.dw`, `conv2.fn.dw`; weight `[C, 1, 3, 3]`, bias `[C]`).
//!
//! Tokens stay channels-last (`[B, H·W, C]`), so the convolution is nine shifted
//! per-channel multiply-adds over a zero-padded grid. Inference uses one fused CPU kernel
//! (residual, bias and the nine taps in a single sweep); training the same math in
//! differentiable candle ops. candle's grouped `conv2d` would run one convolution per
//! channel, thousands of them at MI2's widths.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

use crate::fast_ops::fast_path;

/// A 3×3 depthwise convolution with bias, applied as a residual.
#[derive(Debug, Clone)]
pub struct ConvPosEnc {
    /// `[C, 1, 3, 3]` as stored.
    weight: Tensor,
    bias: Tensor,
    dim: usize,
}

impl ConvPosEnc {
    /// Loads `dw.weight` and `dw.bias` under `vb` (the `conv1.fn` / `conv2.fn` prefix).
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("dw");
        // PyTorch's Conv2d default: fan_in = 1 · 3 · 3
        let bound = 1.0 / 3.0;
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Self {
            weight: vb.get_with_hints((dim, 1, 3, 3), "weight", init)?,
            bias: vb.get_with_hints(dim, "bias", init)?,
            dim,
        })
    }

    /// `x + dwconv(x)` for tokens `x` `[B, H·W, C]` on a `(H, W)` grid.
    pub fn forward(&self, x: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        if n != h * w || c != self.dim {
            candle_core::bail!(
                "conv position encoding: tokens {:?} do not fit a {h}x{w} grid of width {}",
                x.dims(),
                self.dim
            );
        }
        // taps as [9, C]: row ky·3 + kx holds every channel's weight at (ky, kx)
        let taps = self.weight.reshape((c, 9))?.t()?;
        if fast_path(&[x, &self.weight, &self.bias]) && x.dtype() == DType::F32 {
            let op = DwConvResidual { b, h, w, c };
            return x
                .contiguous()?
                .apply_op3_no_bwd(&taps.contiguous()?, &self.bias, &op);
        }
        let grid = x.reshape((b, h, w, c))?;
        let padded = grid.pad_with_zeros(1, 1, 1)?.pad_with_zeros(2, 1, 1)?;
        let mut acc = grid.broadcast_add(&self.bias)?;
        for ky in 0..3 {
            for kx in 0..3 {
                let tap = padded.narrow(1, ky, h)?.narrow(2, kx, w)?;
                acc = (acc + tap.broadcast_mul(&taps.get(ky * 3 + kx)?)?)?;
            }
        }
        acc.reshape((b, n, c))
    }
}

/// Fused `x + bias + Σ taps` over a channels-last grid (no backward).
#[derive(Debug, Clone, Copy)]
struct DwConvResidual {
    b: usize,
    h: usize,
    w: usize,
    c: usize,
}

impl CustomOp3 for DwConvResidual {
    fn name(&self) -> &'static str {
        "davit-dwconv3x3-residual"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        taps: &CpuStorage,
        lt: &Layout,
        bias: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(x), CpuStorage::F32(taps), CpuStorage::F32(bias)) = (x, taps, bias)
        else {
            candle_core::bail!("davit dwconv: f32 tensors expected");
        };
        let (Some((xs, xe)), Some((ts, te)), Some((bs, be))) = (
            lx.contiguous_offsets(),
            lt.contiguous_offsets(),
            lb.contiguous_offsets(),
        ) else {
            candle_core::bail!("davit dwconv: contiguous tensors expected");
        };
        let (x, taps, bias) = (&x[xs..xe], &taps[ts..te], &bias[bs..be]);
        let Self { b, h, w, c } = *self;
        if x.len() != b * h * w * c || taps.len() != 9 * c || bias.len() != c {
            candle_core::bail!("davit dwconv: inconsistent sizes");
        }
        let mut out = vec![0f32; x.len()];
        let row = w * c;
        out.par_chunks_mut(row)
            .enumerate()
            .for_each(|(by, out_row)| {
                let (bi, y) = (by / h, by % h);
                let img = &x[bi * h * row..(bi + 1) * h * row];
                for (xx, o) in out_row.chunks_mut(c).enumerate() {
                    let centre = &img[y * row + xx * c..y * row + (xx + 1) * c];
                    for ((o, &v), &bb) in o.iter_mut().zip(centre).zip(bias) {
                        *o = v + bb;
                    }
                    for ky in 0..3 {
                        let sy = y + ky;
                        if sy < 1 || sy > h {
                            continue;
                        }
                        for kx in 0..3 {
                            let sx = xx + kx;
                            if sx < 1 || sx > w {
                                continue;
                            }
                            let src = &img[(sy - 1) * row + (sx - 1) * c..][..c];
                            let t = &taps[(ky * 3 + kx) * c..][..c];
                            for ((o, &s), &tw) in o.iter_mut().zip(src).zip(t) {
                                *o += s * tw;
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, h * w, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fused_kernel_matches_the_differentiable_path() {
        let dev = Device::Cpu;
        let (b, h, w, c) = (2, 5, 7, 6);
        let x = Tensor::randn(0f32, 1.0, (b, h * w, c), &dev).unwrap();
        let weight = Tensor::randn(0f32, 1.0, (c, 1, 3, 3), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, c, &dev).unwrap();
        let fast = ConvPosEnc {
            weight: weight.clone(),
            bias: bias.clone(),
            dim: c,
        }
        .forward(&x, (h, w))
        .unwrap();
        let slow = ConvPosEnc {
            weight: Var::from_tensor(&weight).unwrap().as_tensor().clone(),
            bias: bias.clone(),
            dim: c,
        }
        .forward(&x, (h, w))
        .unwrap();
        // and both equal candle's grouped conv2d plus bias plus the residual
        let map = x.transpose(1, 2).unwrap().reshape((b, c, h, w)).unwrap();
        let conv = map
            .conv2d(&weight, 1, 1, 1, c)
            .unwrap()
            .flatten_from(2)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let reference = (conv.broadcast_add(&bias).unwrap() + &x).unwrap();
        let d1 = cxr_core::ops::max_abs_diff(&fast, &slow).unwrap();
        assert!(d1 < 1e-5, "fast vs slow {d1}");
        let d2 = cxr_core::ops::max_abs_diff(&slow, &reference).unwrap();
        assert!(d2 < 1e-5, "vs conv2d {d2}");
    }
}
