//! 2-D convolution as im2col GEMMs, forward and backward.
//!
//! candle's CPU conv2d builds its im2col tiles with scalar loops, and its backward is slower
//! still: the input gradient is a `conv_transpose2d`, which on the CPU is a direct loop of dot
//! products, and the weight gradient is a convolution whose "kernel" is the whole output
//! gradient (148×148 at RAD-DINO size). That made an UPerNet forward + backward at RAD-DINO
//! size about 5× slower than PyTorch.
//!
//! Here (stride 1, one group), for a block of input channels at a time, so that the columns
//! stay within [`COLUMN_BUDGET`] elements, the columns `cols` `[c·kh·kw, B·Ho·Wo]` are
//! gathered from shifted views of the padded input (row copies), and
//!
//! - the output is `Σ_blocks W_c · cols_c` (one GEMM per block),
//! - the weight gradient is `dY · colsᵀ` (one GEMM per block),
//! - the input gradient is itself such a convolution: of `dY`, with the kernel flipped and its
//!   two channel axes swapped, padded by `dilation·(k − 1) − padding` (stride 1 makes the
//!   transposed convolution a plain one). Its columns hold output channels, not input ones:
//!   for UPerNet's 2048 → 512 bottleneck, a quarter of what folding `Wᵀ · dY` back would move.
//!
//! [`Conv2dGrad`] ties the output to `x` and `w` for autograd. Everything is tensor ops, so it
//! runs on every device candle does.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Storage, Tensor};

/// Elements of im2col columns built at once (2^26: 256 MiB in f32). Larger inputs are
/// processed a block of channels at a time.
pub const COLUMN_BUDGET: usize = 1 << 26;

/// Ties a convolution output to its input `x` and weight `w` (`CustomOp2` on `(x, w)`): the
/// forward hands over the output computed beforehand, the backward gives `x` and `w` their
/// gradients as im2col GEMMs (see the module documentation). Only [`conv2d`] builds it.
///
/// The output is carried by the op and taken by its forward, not passed as a third operand:
/// an operand stays referenced by the graph until the backward, so every convolution output
/// would be held twice.
#[derive(Debug)]
pub struct Conv2dGrad {
    padding: (usize, usize),
    dilation: usize,
    /// Channels per block; `None`: as many as [`COLUMN_BUDGET`] allows.
    block: Option<usize>,
    output: std::sync::Mutex<Option<Tensor>>,
}

impl Conv2dGrad {
    /// The output, once (candle runs an op's forward exactly once). It is the fresh result of
    /// [`Geometry::forward`]: contiguous, from offset 0, its storage exactly its size, which
    /// is what copying the storage whole needs.
    fn take_output(&self) -> Result<Tensor> {
        let y = self
            .output
            .lock()
            .map_err(|_| candle_core::Error::Msg("conv2d: output lock poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("conv2d: output already taken".into()))?;
        if !y.is_contiguous() || y.layout().start_offset() != 0 {
            candle_core::bail!("conv2d: the output to hand over is a view");
        }
        Ok(y)
    }
}

impl CustomOp2 for Conv2dGrad {
    fn name(&self) -> &'static str {
        "conv2d-im2col-grad"
    }

    fn cpu_fwd(
        &self,
        _x: &CpuStorage,
        _lx: &Layout,
        _w: &CpuStorage,
        _lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = self.take_output()?;
        let (storage, layout) = y.storage_and_layout();
        match &*storage {
            Storage::Cpu(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("conv2d: output on another device than its input"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _x: &candle_core::CudaStorage,
        _lx: &Layout,
        _w: &candle_core::CudaStorage,
        _lw: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let y = self.take_output()?;
        let (storage, layout) = y.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("conv2d: output on another device than its input"),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let wanted = Wanted {
            input: x.track_op(),
            weight: w.track_op(),
        };
        conv2d_backward(x, w, dy, wanted, (self.padding, self.dilation, self.block))
    }
}

/// PyTorch's `F.conv2d(x, w, padding=padding, stride=stride, dilation=dilation,
/// groups=groups)` for `x` `[B, C, H, W]` and `w` `[O, C/groups, kh, kw]`. Stride 1 with one
/// group runs as im2col GEMMs forward and backward (see the module documentation); other
/// strides and groups go to candle's `conv2d`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    dilation: usize,
    groups: usize,
) -> Result<Tensor> {
    if stride != 1 || groups != 1 {
        return x.conv2d(w, padding, stride, dilation, groups);
    }
    conv2d_blocked(x, w, (padding, padding), dilation, None)
}

/// [`conv2d`] at stride 1 with per-axis padding and an optional fixed channel block (tests
/// exercise several blocks on small inputs).
fn conv2d_blocked(
    x: &Tensor,
    w: &Tensor,
    padding: (usize, usize),
    dilation: usize,
    block: Option<usize>,
) -> Result<Tensor> {
    let g = Geometry::new(x, w, padding, dilation)?;
    let y = g.forward(&x.detach(), &w.detach(), block)?;
    if !crate::tracks_grad(&[x, w]) {
        return Ok(y);
    }
    x.apply_op2(
        w,
        Conv2dGrad {
            padding,
            dilation,
            block,
            output: std::sync::Mutex::new(Some(y)),
        },
    )
}

/// PyTorch's `F.conv_transpose2d(x, w, stride=stride)` for `x` `[B, C, H, W]` and `w`
/// `[C, O, k, k]` (no padding, output padding or dilation, one group). When the kernel equals
/// the stride (the non-overlapping up-sampling of ViT necks: 2×2 at stride 2), every output
/// pixel comes from one input pixel, so the op is one GEMM `Wᵀ · x` `[O·k·k, B·H·W]` and a
/// pixel shuffle, and its backward the two GEMMs of a matrix product (candle's autograd).
/// Other settings go to candle's `conv_transpose2d`.
pub fn conv_transpose2d(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (wc, o, kh, kw) = w.dims4()?;
    if wc != c || kh != stride || kw != stride || stride == 0 {
        return x.conv_transpose2d(w, 0, 0, stride, 1);
    }
    let k = stride;
    let x2 = x.transpose(0, 1)?.contiguous()?.reshape((c, b * h * wd))?;
    let z = w.reshape((c, o * k * k))?.t()?.matmul(&x2)?; // [O·k·k, B·H·W]
    z.reshape((o, k, k, b, h, wd))?
        .permute((3, 0, 4, 1, 5, 2))? // [B, O, H, k, W, k]
        .contiguous()?
        .reshape((b, o, h * k, wd * k))
}

/// Which gradients autograd needs: a frozen weight or an input that is data saves its GEMMs.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    input: bool,
    weight: bool,
}

/// The sizes of a stride-1, one-group convolution.
struct Geometry {
    b: usize,
    cin: usize,
    cout: usize,
    ho: usize,
    wo: usize,
    padding: (usize, usize),
    /// `(row, column)` offset of every kernel tap in the padded input, in the weight's
    /// `(kh, kw)` order.
    taps: Vec<(usize, usize)>,
}

impl Geometry {
    fn new(x: &Tensor, w: &Tensor, padding: (usize, usize), dilation: usize) -> Result<Self> {
        let (b, cin, h, wd) = x.dims4()?;
        let (cout, wc, kh, kw) = w.dims4()?;
        if wc != cin {
            candle_core::bail!(
                "conv2d: input {:?} of {cin} channels, weight {:?}",
                x.dims(),
                w.dims()
            );
        }
        let (hp, wp) = (h + 2 * padding.0, wd + 2 * padding.1);
        let fits = kh > 0 && kw > 0 && (kh - 1) * dilation < hp && (kw - 1) * dilation < wp;
        if !fits {
            candle_core::bail!(
                "conv2d: kernel {kh}×{kw} (dilation {dilation}) does not fit the padded input \
                 {hp}×{wp}"
            );
        }
        Ok(Self {
            b,
            cin,
            cout,
            ho: hp - (kh - 1) * dilation,
            wo: wp - (kw - 1) * dilation,
            padding,
            taps: (0..kh)
                .flat_map(|i| (0..kw).map(move |j| (i * dilation, j * dilation)))
                .collect(),
        })
    }

    /// Input channels per block: `fixed`, or as many as keep the columns within
    /// [`COLUMN_BUDGET`].
    fn channel_block(&self, fixed: Option<usize>) -> usize {
        channel_block(
            self.cin,
            self.taps.len() * self.b * self.ho * self.wo,
            fixed,
        )
    }

    /// `x` `[B, C, H, W]` zero-padded and channels first, `[C, B, Hp, Wp]` contiguous, so a
    /// block of channels is one narrow and a tap's rows are runs of memory.
    fn padded_channels_first(&self, x: &Tensor) -> Result<Tensor> {
        let (ph, pw) = self.padding;
        // contiguous first: candle pads a strided view (the transpose, at batch > 1) by
        // concatenating along axis 0 of a transposed copy, which leaves the width outermost in
        // memory, and the im2col copies then move one element at a time
        x.transpose(0, 1)?
            .contiguous()?
            .pad_with_zeros(2, ph, ph)?
            .pad_with_zeros(3, pw, pw)
    }

    /// The im2col columns of channels `xs` `[c, B, Hp, Wp]`: `[c·k, B·Ho·Wo]`, rows in the
    /// weight's `(channel, kh, kw)` order.
    fn columns(&self, xs: &Tensor) -> Result<Tensor> {
        let c = xs.dim(0)?;
        let taps = self
            .taps
            .iter()
            .map(|&(i, j)| xs.narrow(2, i, self.ho)?.narrow(3, j, self.wo))
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&taps, 1)?.reshape((c * self.taps.len(), self.b * self.ho * self.wo))
    }

    /// The convolution of `x` by `w` (no graph is built for either): `Σ_blocks W_c · cols_c`
    /// as `[B, O, Ho, Wo]`.
    fn forward(&self, x: &Tensor, w: &Tensor, block: Option<usize>) -> Result<Tensor> {
        let k = self.taps.len();
        let block = self.channel_block(block);
        let x_pad = self.padded_channels_first(x)?;
        let w2 = w.reshape((self.cout, self.cin * k))?;
        let mut acc: Option<Tensor> = None;
        let mut c0 = 0;
        while c0 < self.cin {
            let c = block.min(self.cin - c0);
            let part = w2
                .narrow(1, c0 * k, c * k)?
                .matmul(&self.columns(&x_pad.narrow(0, c0, c)?)?)?;
            acc = Some(match acc {
                None => part,
                Some(a) => (a + part)?,
            });
            c0 += c;
        }
        let acc = acc.ok_or_else(|| candle_core::Error::Msg("conv2d: no input channels".into()))?;
        acc.reshape((self.cout, self.b, self.ho, self.wo))?
            .transpose(0, 1)?
            .contiguous()
    }
}

/// Channels per block of `cin` whose columns take `per_channel` elements each: `fixed`, or as
/// many as fit [`COLUMN_BUDGET`]; at least one, at most all.
fn channel_block(cin: usize, per_channel: usize, fixed: Option<usize>) -> usize {
    fixed
        .unwrap_or(COLUMN_BUDGET / per_channel.max(1))
        .clamp(1, cin.max(1))
}

/// `w` `[O, C, kh, kw]` rotated by 180° in its spatial axes, with its channel axes swapped:
/// `[C, O, kh, kw]`, the kernel of the transposed convolution.
fn transposed_kernel(w: &Tensor) -> Result<Tensor> {
    let (_, _, kh, kw) = w.dims4()?;
    let reversed = |n: usize| Tensor::from_vec((0..n as u32).rev().collect(), n, w.device());
    // candle's index-select reads contiguous tensors only
    w.contiguous()?
        .index_select(&reversed(kh)?, 2)?
        .index_select(&reversed(kw)?, 3)?
        .transpose(0, 1)?
        .contiguous()
}

/// `(dx, dw)` of a stride-1, one-group convolution from its output gradient `dy`, each only
/// when wanted.
fn conv2d_backward(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    wanted: Wanted,
    (padding, dilation, block): ((usize, usize), usize, Option<usize>),
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let (x, w, dy) = (x.detach(), w.detach(), dy.contiguous()?);
    let g = Geometry::new(&x, &w, padding, dilation)?;
    let dw = if wanted.weight {
        let block = g.channel_block(block);
        // output positions as columns, batch-major: [O, B·Ho·Wo]
        let dy_t = dy
            .transpose(0, 1)?
            .contiguous()?
            .reshape((g.cout, g.b * g.ho * g.wo))?;
        let x_pad = g.padded_channels_first(&x)?;
        let mut blocks = Vec::new();
        let mut c0 = 0;
        while c0 < g.cin {
            let c = block.min(g.cin - c0);
            let cols = g.columns(&x_pad.narrow(0, c0, c)?)?;
            blocks.push(dy_t.matmul(&cols.t()?)?);
            c0 += c;
        }
        Some(Tensor::cat(&blocks, 1)?.reshape(w.shape())?)
    } else {
        None
    };
    let dx = if wanted.input {
        // the transposed convolution at stride 1: a convolution of dy padded by d·(k − 1) −
        // padding; a padding beyond d·(k − 1) is cropped from the result instead
        let (_, _, kh, kw) = w.dims4()?;
        let (h, wd) = (x.dim(2)?, x.dim(3)?);
        let span = |k: usize| dilation * (k - 1);
        let (mh, mw) = (padding.0.min(span(kh)), padding.1.min(span(kw)));
        let wt = transposed_kernel(&w)?;
        let gt = Geometry::new(&dy, &wt, (span(kh) - mh, span(kw) - mw), dilation)?;
        let full = gt.forward(&dy, &wt, block)?;
        Some(
            full.narrow(2, padding.0 - mh, h)?
                .narrow(3, padding.1 - mw, wd)?
                .contiguous()?,
        )
    } else {
        None
    };
    Ok((dx, dw))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_util::{grads_of, max_diff, max_magnitude};
    use candle_core::{DType, Device, Var};
    use cxr_testkit::seeded_normal;
    use cxr_testkit::seeded_randn;

    /// At batch 2 the padded, channels-first input is contiguous: a strided one made every
    /// im2col copy move single elements (a UPerNet training step at batch 2 took 3.6× as
    /// long as it does now).
    #[test]
    fn padded_channels_first_is_contiguous_at_any_batch() {
        for b in [1, 2, 3] {
            let x = seeded_normal(&[b, 4, 5, 6], 9);
            let w = seeded_normal(&[2, 4, 3, 3], 10);
            let g = Geometry::new(&x, &w, (1, 1), 1).unwrap();
            let p = g.padded_channels_first(&x).unwrap();
            assert_eq!(p.dims(), &[4, b, 7, 8]);
            assert!(p.is_contiguous(), "batch {b}: {:?}", p.layout());
            let inner = p.narrow(2, 1, 5).unwrap().narrow(3, 1, 6).unwrap();
            let want = x.transpose(0, 1).unwrap();
            assert_eq!(max_diff(&inner, &want), 0.0);
        }
    }

    /// Output and gradients of `Σ conv(x, w) ⊙ dy` through candle's own conv2d and through
    /// ours (with channel blocks of `block`), for one shape and setting.
    fn check(
        shape: (usize, usize, usize, usize),
        kernel: (usize, usize, usize),
        pad: usize,
        dil: usize,
        block: usize,
    ) {
        let (b, c, h, wd) = shape;
        let x = Var::from_tensor(&seeded_normal(&[b, c, h, wd], 1)).unwrap();
        let (out, kh, kw) = kernel;
        let w = (seeded_normal(&[out, c, kh, kw], 2) * 0.5).unwrap();
        let w = Var::from_tensor(&w).unwrap();
        let reference = x.conv2d(&w, pad, 1, dil, 1).unwrap();
        let y = conv2d_blocked(&x, &w, (pad, pad), dil, Some(block)).unwrap();
        let what = format!("{shape:?} kernel {kernel:?} p{pad} d{dil} block {block}");
        let tol = |r: &Tensor| 1e-5 * max_magnitude(r).max(1.0) as f32;
        assert!(
            max_diff(&y, &reference) <= tol(&reference),
            "output, {what}"
        );
        let dy = seeded_normal(y.dims(), 3);
        let (g_ref, g) = (grads_of(&reference, &dy), grads_of(&y, &dy));
        for (name, v) in [("x", &x), ("w", &w)] {
            let (a, r) = (g.get(v).unwrap(), g_ref.get(v).unwrap());
            let d = max_diff(a, r);
            assert!(d <= tol(r), "{name} grad, {what}: {d} > {}", tol(r));
        }
    }

    #[test]
    fn output_and_gradients_match_candles_conv2d() {
        check((2, 5, 9, 7), (4, 3, 3), 1, 1, 5);
        check((2, 5, 9, 7), (4, 3, 3), 1, 1, 2); // three channel blocks, the last of one
        check((1, 3, 8, 8), (6, 1, 1), 0, 1, 1);
        check((2, 4, 11, 10), (3, 3, 3), 0, 1, 4); // no padding: the output is smaller
        check((1, 4, 12, 12), (2, 3, 3), 2, 2, 3); // dilation
        check((1, 2, 6, 9), (3, 5, 5), 2, 1, 2);
        check((2, 3, 7, 8), (2, 1, 3), 1, 1, 2); // 1×3: padding beyond the kernel's rows
        check((1, 3, 5, 4), (2, 1, 1), 1, 1, 3); // 1×1 with padding: a cropped input gradient
    }

    #[test]
    fn strided_views_are_inputs_like_any_other() {
        let base = seeded_randn(0f32, 1., (2, 4, 7, 9), 100)
            .and_then(|t| Var::from_tensor(&t))
            .unwrap();
        let x = base.transpose(2, 3).unwrap(); // [2, 4, 9, 7], not contiguous
        let w = seeded_randn(0f32, 0.5, (3, 3, 3, 4), 101)
            .and_then(|t| Var::from_tensor(&t))
            .unwrap();
        let w_view = w.permute((0, 3, 1, 2)).unwrap(); // [3, 4, 3, 3], not contiguous
        let y = conv2d(&x, &w_view, 1, 1, 1, 1).unwrap();
        let reference = x.conv2d(&w_view, 1, 1, 1, 1).unwrap();
        assert!(max_diff(&y, &reference) < 1e-5);
        let dy = seeded_randn(0f32, 1., y.shape(), 102).unwrap();
        let (g, g_ref) = (grads_of(&y, &dy), grads_of(&reference, &dy));
        for v in [&base, &w] {
            assert!(max_diff(g.get(v).unwrap(), g_ref.get(v).unwrap()) < 1e-4);
        }
        let wt = seeded_randn(0f32, 0.5, (2, 2, 5, 4), 103)
            .and_then(|t| Var::from_tensor(&t))
            .unwrap();
        let wt_view = wt.permute((3, 2, 0, 1)).unwrap(); // [4, 5, 2, 2], not contiguous
        let up = conv_transpose2d(&x, &wt_view, 2).unwrap();
        let up_ref = x.conv_transpose2d(&wt_view, 0, 0, 2, 1).unwrap();
        assert!(max_diff(&up, &up_ref) < 1e-5);
        let dy = seeded_randn(0f32, 1., up.shape(), 104).unwrap();
        let (g, g_ref) = (grads_of(&up, &dy), grads_of(&up_ref, &dy));
        for v in [&base, &wt] {
            assert!(max_diff(g.get(v).unwrap(), g_ref.get(v).unwrap()) < 1e-4);
        }
    }

    #[test]
    fn inference_and_strided_convolutions_are_candles() {
        let dev = Device::Cpu;
        let x = seeded_randn(0f32, 1., (1, 3, 8, 8), 105).unwrap();
        let w = seeded_randn(0f32, 1., (2, 3, 3, 3), 106).unwrap();
        let y = conv2d(&x, &w, 1, 1, 1, 1).unwrap();
        assert!(!y.track_op(), "no graph when nothing trains");
        assert!(max_diff(&y, &x.conv2d(&w, 1, 1, 1, 1).unwrap()) < 1e-5);
        let xv = Var::from_tensor(&x).unwrap();
        let strided = conv2d(&xv, &w, 1, 2, 1, 1).unwrap();
        assert_eq!(
            max_diff(&strided, &x.conv2d(&w, 1, 2, 1, 1).unwrap()),
            0.0,
            "candle's"
        );
        // its input gradient is candle's too: the same as through candle's conv on the variable
        let dy = seeded_randn(0f32, 1., strided.shape(), 115).unwrap();
        let reference = xv.conv2d(&w, 1, 2, 1, 1).unwrap();
        let (g, g_ref) = (grads_of(&strided, &dy), grads_of(&reference, &dy));
        let dx = g.get(&xv).expect("the strided input gets a gradient");
        assert_eq!(dx.dims(), xv.dims());
        cxr_testkit::assert_finite_nonzero_gradient("strided conv2d input", dx);
        assert_eq!(
            max_diff(dx, g_ref.get(&xv).unwrap()),
            0.0,
            "candle's gradient"
        );
        // a kernel larger than the padded input, or other channels, is an error, not a panic
        let big = Tensor::zeros((2, 3, 11, 11), DType::F32, &dev).unwrap();
        assert!(conv2d(&x, &big, 1, 1, 1, 1).is_err());
        let wrong = Tensor::zeros((2, 4, 3, 3), DType::F32, &dev).unwrap();
        assert!(conv2d(&x, &wrong, 1, 1, 1, 1).is_err());
    }

    #[test]
    fn only_the_gradients_autograd_follows_are_computed() {
        let x = seeded_randn(0f32, 1., (1, 3, 6, 6), 107).unwrap();
        let w = seeded_randn(0f32, 1., (2, 3, 3, 3), 108)
            .and_then(|t| Var::from_tensor(&t))
            .unwrap();
        let op = ((1, 1), 1, Some(2));
        let y = conv2d(&x, &w, 1, 1, 1, 1).unwrap();
        let dy = seeded_randn(0f32, 1., y.shape(), 109).unwrap();
        let want = |input, weight| Wanted { input, weight };
        let (dx, dw) = conv2d_backward(&x, &w, &dy, want(true, true), op).unwrap();
        let (none, dw_only) = conv2d_backward(&x, &w, &dy, want(false, true), op).unwrap();
        assert!(none.is_none() && dx.is_some());
        assert_eq!(max_diff(&dw_only.unwrap(), dw.as_ref().unwrap()), 0.0);
        // through autograd: the frozen input gets nothing, the weight its gradient
        let g = grads_of(&y, &dy);
        assert!(g.get(&x).is_none());
        assert!(max_diff(g.get(&w).unwrap(), &dw.unwrap()) < 1e-5);
    }

    #[test]
    fn non_overlapping_transposed_convolution_matches_candles() {
        for (shape, out, k) in [
            ((2, 3, 4, 5), 4, 2),
            ((1, 2, 3, 3), 3, 3),
            ((1, 4, 2, 2), 2, 1),
        ] {
            let x = seeded_randn(0f32, 1., shape, 110)
                .and_then(|t| Var::from_tensor(&t))
                .unwrap();
            let w = seeded_randn(0f32, 0.5, (shape.1, out, k, k), 111)
                .and_then(|t| Var::from_tensor(&t))
                .unwrap();
            let reference = x.conv_transpose2d(&w, 0, 0, k, 1).unwrap();
            let y = conv_transpose2d(&x, &w, k).unwrap();
            assert!(max_diff(&y, &reference) < 1e-5, "{shape:?} k{k}");
            let dy = seeded_randn(0f32, 1., y.shape(), 112).unwrap();
            let (g_ref, g) = (grads_of(&reference, &dy), grads_of(&y, &dy));
            for v in [&x, &w] {
                assert!(max_diff(g.get(v).unwrap(), g_ref.get(v).unwrap()) < 1e-4);
            }
        }
        // an overlapping kernel is candle's
        let x = seeded_randn(0f32, 1., (1, 2, 3, 3), 113).unwrap();
        let w = seeded_randn(0f32, 1., (2, 3, 3, 3), 114).unwrap();
        let y = conv_transpose2d(&x, &w, 2).unwrap();
        assert_eq!(
            max_diff(&y, &x.conv_transpose2d(&w, 0, 0, 2, 1).unwrap()),
            0.0
        );
    }

    #[test]
    fn blocks_keep_the_columns_in_budget() {
        // RAD-DINO's UPerNet bottleneck: 2048 channels, 3×3 at 148×148
        let per = 9 * 148 * 148;
        let c = channel_block(2048, per, None);
        assert!(c * per <= COLUMN_BUDGET && (c + 1) * per > COLUMN_BUDGET);
        assert_eq!(channel_block(3, 16, None), 3);
        assert_eq!(channel_block(8, 1 << 30, None), 1);
        assert_eq!(channel_block(8, 16, Some(3)), 3);
        assert_eq!(channel_block(8, 16, Some(0)), 1);
    }
}
