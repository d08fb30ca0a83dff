//! `ConvEmbed` (`convs.{i}`): the strided convolution that starts every stage, with its
//! LayerNorm either on the incoming tokens (pre-norm, MI2 stages 1–3) or on the new ones
//! (post-norm, MI2 stage 0).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::layers::{tracks_grad, LayerNorm};

/// One patch embedding: `proj` (Conv2d with bias) and `norm` (LayerNorm).
#[derive(Debug, Clone)]
pub struct ConvEmbed {
    weight: Tensor,
    bias: Tensor,
    norm: LayerNorm,
    pre_norm: bool,
    stride: usize,
    padding: usize,
}

impl ConvEmbed {
    /// Loads `proj.{weight,bias}` and `norm.{weight,bias}` under `vb` (`convs.{i}`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        pre_norm: bool,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let bound = 1.0 / ((cin * kernel * kernel) as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let proj = vb.pp("proj");
        Ok(Self {
            weight: proj.get_with_hints((cout, cin, kernel, kernel), "weight", init)?,
            bias: proj.get_with_hints(cout, "bias", init)?,
            norm: LayerNorm::new(if pre_norm { cin } else { cout }, eps, vb.pp("norm"))?,
            pre_norm,
            stride,
            padding,
        })
    }

    /// Embeds an image `[B, C, H, W]`. As in the reference, a pre-norm never applies to the
    /// image itself (its LayerNorm only acts on token inputs).
    pub fn forward_image(&self, x: &Tensor) -> Result<(Tensor, (usize, usize))> {
        self.conv(x)
    }

    /// Embeds tokens `[B, H·W, C]` of a `(H, W)` grid.
    pub fn forward_tokens(
        &self,
        x: &Tensor,
        (h, w): (usize, usize),
    ) -> Result<(Tensor, (usize, usize))> {
        let (b, n, c) = x.dims3()?;
        if n != h * w {
            candle_core::bail!("patch embedding: {n} tokens do not fill a {h}x{w} grid");
        }
        let x = if self.pre_norm {
            self.norm.forward(x)?
        } else {
            x.clone()
        };
        let map = x.transpose(1, 2)?.reshape((b, c, h, w))?;
        self.conv(&map)
    }

    fn conv(&self, map: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let (_, _, h, w) = map.dims4()?;
        let (k, s, p) = (self.weight.dim(2)?, self.stride, self.padding);
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        // candle's conv computes its output size in unsigned arithmetic and underflows here
        if hp < k || wp < k {
            candle_core::bail!(
                "patch embedding: a {h}x{w} map padded by {p} is smaller than the {k}x{k} \
                 kernel (the input is too small for this stage)"
            );
        }
        let y = if tracks_grad(&[map, &self.weight]) {
            // candle's conv2d backward derives one output padding from the height and uses it
            // for the width too, which breaks grids whose sides differ in parity; zero-padding
            // by hand and dropping the rows and columns no window reaches makes the conv fit
            // exactly (output padding 0 on both sides) with the same result.
            let used = |n: usize| (n - k) / s * s + k;
            map.pad_with_zeros(2, p, p)?
                .pad_with_zeros(3, p, p)?
                .narrow(2, 0, used(hp))?
                .narrow(3, 0, used(wp))?
                .contiguous()?
                .conv2d(&self.weight, 0, s, 1, 1)?
        } else {
            map.contiguous()?.conv2d(&self.weight, p, s, 1, 1)?
        };
        let (b, c, h, w) = y.dims4()?;
        let y = y.broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?;
        let tokens = y.reshape((b, c, h * w))?.transpose(1, 2)?.contiguous()?;
        let tokens = if self.pre_norm {
            tokens
        } else {
            self.norm.forward(&tokens)?
        };
        Ok((tokens, (h, w)))
    }
}
