//! Bilinear resizing of `[B, C, H, W]` with PyTorch's `F.interpolate(mode="bilinear",
//! antialias=False)` source coordinates, and its backward (the adjoint: every output gradient
//! is scattered back to the four input pixels it was read from, with the same weights).

use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

use crate::storage::f32_slice;

/// Forward resize to `out` (`CustomOp1` on a contiguous f32 `[B, C, H, W]`).
#[derive(Debug, Clone, Copy)]
pub struct ResizeBilinear {
    /// Output `(height, width)`.
    pub out: (usize, usize),
    /// PyTorch's `align_corners`.
    pub align_corners: bool,
}

/// The gradient of [`ResizeBilinear`] with respect to its input of spatial size `input`
/// (`CustomOp1` on the output gradient).
#[derive(Debug, Clone, Copy)]
pub struct ResizeBilinearBackward {
    /// The forward's input `(height, width)`.
    pub input: (usize, usize),
    /// PyTorch's `align_corners`.
    pub align_corners: bool,
}

/// Differentiable bilinear resize of `x` (`[B, C, H, W]`) to `(height, width)`. Non-f32 inputs
/// are resized in f32 and cast back (the casts are differentiable too).
pub fn resize_bilinear(x: &Tensor, size: (usize, usize), align_corners: bool) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if size.0 == 0 || size.1 == 0 || h == 0 || w == 0 {
        bail!(
            "resize_bilinear: empty input {:?} or output {size:?}",
            x.dims()
        );
    }
    let dtype = x.dtype();
    let op = ResizeBilinear {
        out: size,
        align_corners,
    };
    x.to_dtype(DType::F32)?
        .contiguous()?
        .apply_op1(op)?
        .to_dtype(dtype)
}

/// One source tap along an axis: the two neighbours and their weights (PyTorch's
/// `area_pixel_compute_source_index` with the scale `in/out` of a given output size).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tap {
    pub i0: usize,
    pub i1: usize,
    pub l0: f32,
    pub l1: f32,
}

pub(crate) fn tap(dst: usize, input: usize, output: usize, align_corners: bool) -> Tap {
    let src = if align_corners {
        if output > 1 {
            (input - 1) as f32 / (output - 1) as f32 * dst as f32
        } else {
            0.0
        }
    } else {
        ((input as f32 / output as f32) * (dst as f32 + 0.5) - 0.5).max(0.0)
    };
    let i0 = (src.floor() as usize).min(input - 1);
    let i1 = (i0 + 1).min(input - 1);
    let l1 = src - i0 as f32;
    Tap {
        i0,
        i1,
        l0: 1.0 - l1,
        l1,
    }
}

fn dims(layout: &Layout, op: &str) -> Result<(usize, usize, usize)> {
    match layout.dims() {
        [b, c, h, w] if *h > 0 && *w > 0 => Ok((b * c, *h, *w)),
        d => bail!("{op}: expected a non-empty [B, C, H, W] tensor, got {d:?}"),
    }
}

impl CustomOp1 for ResizeBilinear {
    fn name(&self) -> &'static str {
        "fused-resize-bilinear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, ih, iw) = dims(l, self.name())?;
        let x = f32_slice(s, l, "input", self.name())?;
        let (oh, ow) = self.out;
        let ty: Vec<Tap> = (0..oh)
            .map(|d| tap(d, ih, oh, self.align_corners))
            .collect();
        let tx: Vec<Tap> = (0..ow)
            .map(|d| tap(d, iw, ow, self.align_corners))
            .collect();
        let mut y = vec![0f32; planes * oh * ow];
        for p in 0..planes {
            let src = &x[p * ih * iw..(p + 1) * ih * iw];
            let dst = &mut y[p * oh * ow..(p + 1) * oh * ow];
            for (oy, a) in ty.iter().enumerate() {
                for (ox, b) in tx.iter().enumerate() {
                    dst[oy * ow + ox] = a.l0
                        * (b.l0 * src[a.i0 * iw + b.i0] + b.l1 * src[a.i0 * iw + b.i1])
                        + a.l1 * (b.l0 * src[a.i1 * iw + b.i0] + b.l1 * src[a.i1 * iw + b.i1]);
                }
            }
        }
        let (bsz, c) = (l.dims()[0], l.dims()[1]);
        Ok((CpuStorage::F32(y), Shape::from((bsz, c, oh, ow))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (planes, ih, iw) = dims(l, self.name())?;
        let (oh, ow) = self.out;
        let out = crate::cuda::resize(
            "resize_fwd_f32",
            s,
            l,
            planes,
            (ih, iw),
            (oh, ow),
            self.align_corners,
            false,
        )?;
        let (bsz, c) = (l.dims()[0], l.dims()[1]);
        Ok((out, Shape::from((bsz, c, oh, ow))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        let back = ResizeBilinearBackward {
            input: (h, w),
            align_corners: self.align_corners,
        };
        Ok(Some(dy.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

impl CustomOp1 for ResizeBilinearBackward {
    fn name(&self) -> &'static str {
        "fused-resize-bilinear-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, oh, ow) = dims(l, self.name())?;
        let dy = f32_slice(s, l, "output gradient", self.name())?;
        let (ih, iw) = self.input;
        if ih == 0 || iw == 0 {
            bail!("{}: empty input size {:?}", self.name(), self.input);
        }
        let ty: Vec<Tap> = (0..oh)
            .map(|d| tap(d, ih, oh, self.align_corners))
            .collect();
        let tx: Vec<Tap> = (0..ow)
            .map(|d| tap(d, iw, ow, self.align_corners))
            .collect();
        let mut dx = vec![0f32; planes * ih * iw];
        for p in 0..planes {
            let g = &dy[p * oh * ow..(p + 1) * oh * ow];
            let dst = &mut dx[p * ih * iw..(p + 1) * ih * iw];
            for (oy, a) in ty.iter().enumerate() {
                for (ox, b) in tx.iter().enumerate() {
                    let v = g[oy * ow + ox];
                    dst[a.i0 * iw + b.i0] += a.l0 * b.l0 * v;
                    dst[a.i0 * iw + b.i1] += a.l0 * b.l1 * v;
                    dst[a.i1 * iw + b.i0] += a.l1 * b.l0 * v;
                    dst[a.i1 * iw + b.i1] += a.l1 * b.l1 * v;
                }
            }
        }
        let (bsz, c) = (l.dims()[0], l.dims()[1]);
        Ok((CpuStorage::F32(dx), Shape::from((bsz, c, ih, iw))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (planes, oh, ow) = dims(l, self.name())?;
        let (ih, iw) = self.input;
        let out = crate::cuda::resize(
            "resize_bwd_f32",
            s,
            l,
            planes,
            (ih, iw),
            (oh, ow),
            self.align_corners,
            true,
        )?;
        let (bsz, c) = (l.dims()[0], l.dims()[1]);
        Ok((out, Shape::from((bsz, c, ih, iw))))
    }
}
