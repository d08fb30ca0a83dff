//! The conditional position encoding: `x + dwconv3x3(x)` over the token grid
//! (`conv1.fn.dw`, `conv2.fn.dw`; weight `[C, 1, 3, 3]`, bias `[C]`).
//!
//! Tokens stay channels-last (`[B, H·W, C]`), so the convolution is nine shifted
//! per-channel multiply-adds over a zero-padded grid. On the CPU in f32 one fused kernel does
//! it (residual, bias and the nine taps in a single sweep), with a closed-form backward: the
//! input gradient is the same sweep with the taps mirrored, the tap and bias gradients one
//! pass of per-channel sums. Elsewhere the same math runs in differentiable candle ops, whose
//! backward reduces every broadcast tap separately (a quarter of a DaViT training step went
//! there). candle's grouped `conv2d` would run one convolution per channel, thousands of them
//! at MI2's widths.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

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
        // the fused kernel (with its backward) wherever it runs: the CPU in f32
        let on_cpu_f32 = [x, &self.weight, &self.bias]
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32);
        if on_cpu_f32 {
            let op = DwConvResidual { b, h, w, c };
            return x
                .contiguous()?
                .apply_op3(&taps.contiguous()?, &self.bias.contiguous()?, op);
        }
        self.composed(x, &taps, (h, w))
    }

    /// The same math in differentiable candle ops, for other devices and dtypes.
    fn composed(&self, x: &Tensor, taps: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
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

/// Fused `x + bias + Σ taps` over a channels-last grid, with its backward.
#[derive(Debug, Clone, Copy)]
struct DwConvResidual {
    b: usize,
    h: usize,
    w: usize,
    c: usize,
}

/// The contiguous f32 slice of a storage, or an error naming `what`.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("davit dwconv: {what} must be f32");
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("davit dwconv: {what} must be contiguous");
    };
    Ok(&v[start..end])
}

/// The 3×3 window around `(y, x)` on an `h × w` grid, without the positions outside it:
/// `(tap ky·3 + kx, row, column)` of each neighbour.
fn window(y: usize, x: usize, h: usize, w: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..9).filter_map(move |k| {
        let (sy, sx) = ((y + k / 3).checked_sub(1)?, (x + k % 3).checked_sub(1)?);
        (sy < h && sx < w).then_some((k, sy, sx))
    })
}

impl DwConvResidual {
    /// `out[y, x] = centre[y, x] + bias + Σ_(ky, kx) taps[ky, kx] · src[y + ky − 1, x + kx − 1]`
    /// per channel, zero outside the grid; with `mirror` the taps are read at
    /// `(2 − ky, 2 − kx)`, which turns the sweep into its transpose (the input gradient).
    fn sweep(
        &self,
        centre: &[f32],
        src: &[f32],
        taps: &[f32],
        bias: &[f32],
        mirror: bool,
    ) -> Vec<f32> {
        let Self { h, w, c, .. } = *self;
        let mut out = vec![0f32; centre.len()];
        let row = w * c;
        out.par_chunks_mut(row)
            .enumerate()
            .for_each(|(by, out_row)| {
                let (bi, y) = (by / h, by % h);
                let img = &src[bi * h * row..(bi + 1) * h * row];
                let own = &centre[by * row..(by + 1) * row];
                for (xx, o) in out_row.chunks_mut(c).enumerate() {
                    for ((o, &v), &bb) in o.iter_mut().zip(&own[xx * c..(xx + 1) * c]).zip(bias) {
                        *o = v + bb;
                    }
                    for (k, sy, sx) in window(y, xx, h, w) {
                        let k = if mirror { 8 - k } else { k };
                        let s = &img[sy * row + sx * c..][..c];
                        let t = &taps[k * c..][..c];
                        for ((o, &v), &tw) in o.iter_mut().zip(s).zip(t) {
                            *o += v * tw;
                        }
                    }
                }
            });
        out
    }

    /// `[10, C]`: the gradient of each tap (`Σ dy[y, x] · x[y + ky − 1, x + kx − 1]` per
    /// channel) and, last, of the bias (`Σ dy`), summed over images and positions.
    fn param_grads(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let Self { h, w, c, .. } = *self;
        let row = w * c;
        let partial = |by: usize| -> Vec<f32> {
            let (bi, y) = (by / h, by % h);
            let img = &x[bi * h * row..(bi + 1) * h * row];
            let g = &dy[by * row..(by + 1) * row];
            let mut acc = vec![0f32; 10 * c];
            for xx in 0..w {
                let gx = &g[xx * c..(xx + 1) * c];
                for (a, &v) in acc[9 * c..].iter_mut().zip(gx) {
                    *a += v;
                }
                for (k, sy, sx) in window(y, xx, h, w) {
                    let s = &img[sy * row + sx * c..][..c];
                    let a = &mut acc[k * c..][..c];
                    for ((a, &v), &gv) in a.iter_mut().zip(s).zip(gx) {
                        *a += v * gv;
                    }
                }
            }
            acc
        };
        // fixed chunks of rows summed in a fixed order: the same bits on any number of threads
        // (rayon's `reduce` pairs partial sums as the work happened to split), which exact
        // resume needs
        const ROWS_PER_CHUNK: usize = 8;
        let rows = self.b * h;
        let chunks: Vec<Vec<f32>> = (0..rows.div_ceil(ROWS_PER_CHUNK))
            .into_par_iter()
            .map(|k| {
                let mut acc = vec![0f32; 10 * c];
                for by in k * ROWS_PER_CHUNK..((k + 1) * ROWS_PER_CHUNK).min(rows) {
                    for (a, v) in acc.iter_mut().zip(partial(by)) {
                        *a += v;
                    }
                }
                acc
            })
            .collect();
        let mut total = vec![0f32; 10 * c];
        for chunk in &chunks {
            for (t, v) in total.iter_mut().zip(chunk) {
                *t += v;
            }
        }
        total
    }
}

/// The input gradient of [`DwConvResidual`]: `dy` plus the sweep of `dy` with mirrored taps.
#[derive(Debug, Clone, Copy)]
struct DwConvInputGrad(DwConvResidual);

impl candle_core::CustomOp2 for DwConvInputGrad {
    fn name(&self) -> &'static str {
        "davit-dwconv3x3-input-grad"
    }

    fn cpu_fwd(
        &self,
        dy: &CpuStorage,
        ldy: &Layout,
        taps: &CpuStorage,
        lt: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (dy, taps) = (f32_slice(dy, ldy, "dy")?, f32_slice(taps, lt, "taps")?);
        let DwConvResidual { b, h, w, c } = self.0;
        if dy.len() != b * h * w * c || taps.len() != 9 * c {
            candle_core::bail!("davit dwconv backward: inconsistent sizes");
        }
        let zero = vec![0f32; c];
        let dx = self.0.sweep(dy, dy, taps, &zero, true);
        Ok((CpuStorage::F32(dx), Shape::from((b, h * w, c))))
    }
}

/// The tap and bias gradients of [`DwConvResidual`], as `[10, C]`.
#[derive(Debug, Clone, Copy)]
struct DwConvParamGrad(DwConvResidual);

impl candle_core::CustomOp2 for DwConvParamGrad {
    fn name(&self) -> &'static str {
        "davit-dwconv3x3-param-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        dy: &CpuStorage,
        ldy: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, dy) = (f32_slice(x, lx, "x")?, f32_slice(dy, ldy, "dy")?);
        let DwConvResidual { b, h, w, c } = self.0;
        if x.len() != b * h * w * c || dy.len() != x.len() {
            candle_core::bail!("davit dwconv backward: inconsistent sizes");
        }
        Ok((
            CpuStorage::F32(self.0.param_grads(x, dy)),
            Shape::from((10, c)),
        ))
    }
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
        let (x, taps, bias) = (
            f32_slice(x, lx, "x")?,
            f32_slice(taps, lt, "taps")?,
            f32_slice(bias, lb, "bias")?,
        );
        let Self { b, h, w, c } = *self;
        if x.len() != b * h * w * c || taps.len() != 9 * c || bias.len() != c {
            candle_core::bail!("davit dwconv: inconsistent sizes");
        }
        let out = self.sweep(x, x, taps, bias, false);
        Ok((CpuStorage::F32(out), Shape::from((b, h * w, c))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        taps: &Tensor,
        _bias: &Tensor,
        _out: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(taps, &DwConvInputGrad(*self))?;
        let grads = x.apply_op2_no_bwd(&dy, &DwConvParamGrad(*self))?;
        Ok((Some(dx), Some(grads.narrow(0, 0, 9)?), Some(grads.get(9)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;
    use cxr_testkit::seeded_normal;

    /// The fused op's closed-form backward against candle's autograd of the composed ops:
    /// values, and the gradients of the input, the weight and the bias.
    #[test]
    fn fused_backward_matches_the_composed_ops() {
        let (b, h, w, c) = (2, 5, 7, 6);
        let var = |shape: &[usize], seed| Var::from_tensor(&seeded_normal(shape, seed)).unwrap();
        let (x, weight, bias) = (var(&[b, h * w, c], 1), var(&[c, 1, 3, 3], 2), var(&[c], 3));
        let conv = ConvPosEnc {
            weight: weight.as_tensor().clone(),
            bias: bias.as_tensor().clone(),
            dim: c,
        };
        let r = seeded_normal(&[b, h * w, c], 4);
        let fused = conv.forward(x.as_tensor(), (h, w)).unwrap();
        let taps = conv.weight.reshape((c, 9)).unwrap().t().unwrap();
        let composed = conv.composed(x.as_tensor(), &taps, (h, w)).unwrap();
        let diff = |a: &Tensor, b: &Tensor| cxr_core::ops::max_abs_diff(a, b).unwrap();
        assert!(diff(&fused, &composed) < 1e-5);
        let grads = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gc) = (grads(&fused), grads(&composed));
        for (name, v) in [("x", &x), ("weight", &weight), ("bias", &bias)] {
            let (a, b) = (gf.get(v).unwrap(), gc.get(v).unwrap());
            cxr_testkit::assert_finite_nonzero_gradient(name, a);
            cxr_testkit::assert_close(name, a, b, 1e-5);
        }
    }

    #[test]
    fn fused_kernel_matches_the_differentiable_path() {
        let (b, h, w, c) = (2, 5, 7, 6);
        let x = seeded_normal(&[b, h * w, c], 5);
        let weight = seeded_normal(&[c, 1, 3, 3], 6);
        let bias = seeded_normal(&[c], 7);
        let fast = ConvPosEnc {
            weight: weight.clone(),
            bias: bias.clone(),
            dim: c,
        }
        .forward(&x, (h, w))
        .unwrap();
        let taps = weight.reshape((c, 9)).unwrap().t().unwrap();
        let slow = ConvPosEnc {
            weight: weight.clone(),
            bias: bias.clone(),
            dim: c,
        }
        .composed(&x, &taps, (h, w))
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
