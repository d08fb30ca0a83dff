//! Building blocks of the heads, all differentiable from candle primitives.

use candle_core::{Tensor, Var};
use candle_nn::{Conv2dConfig, ConvTranspose2dConfig, Init, Module, VarBuilder};
use rand::Rng;

use crate::resize::{separable, Kind};
use crate::{Error, Result};

/// Whether a forward pass trains (batch statistics, dropout) or evaluates.
pub enum Mode<'a> {
    /// Inference: BatchNorm uses running statistics, dropout is off.
    Eval,
    /// Training: BatchNorm normalises with batch statistics and updates its running
    /// statistics; dropout draws its masks from the generator.
    Train(&'a mut dyn rand::RngCore),
}

impl std::fmt::Debug for Mode<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Eval => f.write_str("Eval"),
            Mode::Train(_) => f.write_str("Train"),
        }
    }
}

impl Mode<'_> {
    /// True in training mode.
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train(_))
    }
}

/// `BatchNorm2d` as PyTorch defines it: training normalises with the biased batch variance
/// over `(B, H, W)` and moves the running statistics by `momentum` toward the batch mean and
/// the unbiased batch variance; evaluation uses the running statistics.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm2d {
    /// Builds a norm over `channels` with parameters `weight`, `bias`, `running_mean`,
    /// `running_var` (PyTorch names) under `vb`.
    pub fn new(channels: usize, eps: f64, momentum: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps,
            momentum,
        })
    }

    /// Normalises `x` (`[B, C, H, W]`).
    pub fn forward(&self, x: &Tensor, mode: &Mode) -> Result<Tensor> {
        self.normalise(x, mode, false)
    }

    /// Normalises `x` (`[B, C, H, W]`), then ReLU: on the CPU one fused op
    /// ([`fused_ops::batch_norm_train`] in training, [`fused_ops::channel_affine`] in
    /// evaluation) whose autograd node keeps its input and output only.
    pub fn forward_relu(&self, x: &Tensor, mode: &Mode) -> Result<Tensor> {
        self.normalise(x, mode, true)
    }

    fn normalise(&self, x: &Tensor, mode: &Mode, relu: bool) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        if !mode.is_train() {
            // PyTorch's CPU inference form: x ⊙ (γ/√(σ² + ε)) + (β − μ γ/√(σ² + ε))
            let inv_std = (self.running_var.as_tensor() + self.eps)?.sqrt()?.recip()?;
            let scale = (inv_std * self.weight.flatten_all()?)?;
            let shift = (self.bias.flatten_all()? - (self.running_mean.as_tensor() * &scale)?)?;
            return Ok(fused_ops::channel_affine(x, &scale, &shift, relu)?);
        }
        let n = b * h * w;
        if n < 2 {
            return Err(Error::bad_input(
                "batch norm input",
                "more than one value per channel in training mode",
                x.dims(),
            ));
        }
        let out = fused_ops::batch_norm_train(x, &self.weight, &self.bias, self.eps, relu)?;
        let m = self.momentum;
        let unbiased = (out.var * (n as f64 / (n - 1) as f64))?;
        let new_mean = ((self.running_mean.as_tensor() * (1.0 - m))? + (out.mean * m)?)?;
        let new_var = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)?;
        Ok(out.y)
    }
}

/// Layer norm over the channels of a `[B, C, H, W]` map (detectron2's `LayerNorm` of the
/// ViTDet pyramid), through [`fused_ops::layer_norm`] (one op with a backward): the composed
/// form's parameter gradients reduced a channels-last view over three strided axes, the
/// largest cost of a ViTDet head's training step.
#[derive(Debug, Clone)]
pub struct LayerNorm2d {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm2d {
    /// Builds a norm over `channels` with `weight` and `bias` under `vb`.
    pub fn new(channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    /// Normalises every pixel's channel vector.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.permute((0, 2, 3, 1))?;
        let y = fused_ops::layer_norm(&y, &self.weight, &self.bias, self.eps)?;
        Ok(y.permute((0, 3, 1, 2))?)
    }
}

/// candle_nn's `Conv2d` (the same `weight`/`bias` parameters and init; outputs equal up to
/// float summation order) run forward and backward as im2col GEMMs ([`fused_ops::conv2d`]):
/// candle's own CPU convolution, and above all its backward (a direct-loop transposed
/// convolution), dominated a UPerNet training step.
#[derive(Debug, Clone)]
pub struct Conv2d(candle_nn::Conv2d);

impl Conv2d {
    /// Wraps a candle_nn convolution.
    pub fn new(conv: candle_nn::Conv2d) -> Self {
        Self(conv)
    }

    /// `[O, C, kh, kw]`.
    pub fn weight(&self) -> &Tensor {
        self.0.weight()
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let c = self.0.config();
        let y = fused_ops::conv2d(
            x,
            self.0.weight(),
            c.padding,
            c.stride,
            c.dilation,
            c.groups,
        )?;
        add_channel_bias(y, self.0.bias())
    }
}

/// `y` `[B, C, H, W]` plus a per-channel bias `[C]`, if any ([`fused_ops::channel_bias`]: the
/// bias gradient as one pass of channel sums, where candle's broadcast backward reduced over
/// three strided axes).
fn add_channel_bias(y: Tensor, bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
    match bias {
        None => Ok(y),
        Some(b) => fused_ops::channel_bias(&y, b),
    }
}

/// A bias-free `kernel × kernel` convolution with `padding = kernel / 2` (`weight` under
/// `vb`), initialised as candle_nn's `conv2d_no_bias`.
pub fn conv_same(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: kernel / 2,
        ..Default::default()
    };
    Ok(Conv2d(candle_nn::conv2d_no_bias(
        in_channels,
        out_channels,
        kernel,
        cfg,
        vb,
    )?))
}

/// mmcv's `ConvModule` with a BatchNorm and ReLU: bias-free conv (`conv.weight`), then
/// `bn.*`, then ReLU.
#[derive(Debug, Clone)]
pub struct ConvBnRelu {
    conv: Conv2d,
    bn: BatchNorm2d,
}

/// BatchNorm settings shared by a head.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BnConfig {
    /// Added to the variance (PyTorch default 1e-5).
    pub eps: f64,
    /// Running-statistics momentum (PyTorch default 0.1).
    pub momentum: f64,
}

impl Default for BnConfig {
    fn default() -> Self {
        Self {
            eps: 1e-5,
            momentum: 0.1,
        }
    }
}

impl ConvBnRelu {
    /// A `kernel × kernel` conv with `padding = kernel / 2`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        bn: BnConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv: conv_same(in_channels, out_channels, kernel, vb.pp("conv"))?,
            bn: BatchNorm2d::new(out_channels, bn.eps, bn.momentum, vb.pp("bn"))?,
        })
    }

    /// conv → BN → ReLU.
    pub fn forward(&self, x: &Tensor, mode: &Mode) -> Result<Tensor> {
        let y = self.conv.forward(x)?;
        self.bn.forward_relu(&y, mode)
    }
}

/// candle_nn's `ConvTranspose2d` (the same parameters and init) that runs a kernel equal to
/// its stride, as ViT necks up-sample, as one GEMM ([`fused_ops::conv_transpose2d`]) instead
/// of candle's direct loop, with a GEMM backward.
#[derive(Debug, Clone)]
pub struct ConvTranspose2d(candle_nn::ConvTranspose2d);

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let c = self.0.config();
        if c.padding != 0 || c.output_padding != 0 || c.dilation != 1 {
            return self.0.forward(x);
        }
        let y = fused_ops::conv_transpose2d(x, self.0.weight(), c.stride)?;
        add_channel_bias(y, self.0.bias())
    }
}

/// A `2 × 2`, stride-2 transposed convolution, with or without bias (doubles the
/// resolution).
pub fn deconv2x2(
    in_channels: usize,
    out_channels: usize,
    bias: bool,
    vb: VarBuilder,
) -> Result<ConvTranspose2d> {
    let cfg = ConvTranspose2dConfig {
        stride: 2,
        ..Default::default()
    };
    Ok(ConvTranspose2d(if bias {
        candle_nn::conv_transpose2d(in_channels, out_channels, 2, cfg, vb)?
    } else {
        candle_nn::conv_transpose2d_no_bias(in_channels, out_channels, 2, cfg, vb)?
    }))
}

/// The final `1 × 1` classifier `conv_seg` (weight and bias), initialised as mmsegmentation
/// does: normal with std 0.01, zero bias.
pub fn classifier(in_channels: usize, classes: usize, vb: VarBuilder) -> Result<Conv2d> {
    let weight = vb.get_with_hints(
        (classes, in_channels, 1, 1),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 0.01,
        },
    )?;
    let bias = vb.get_with_hints(classes, "bias", Init::Const(0.0))?;
    Ok(Conv2d(candle_nn::Conv2d::new(
        weight,
        Some(bias),
        Conv2dConfig::default(),
    )))
}

/// PyTorch's `AdaptiveAvgPool2d(size)`: output cell `(i, j)` averages rows
/// `⌊i·H/oh⌋ .. ⌈(i+1)·H/oh⌉` and the analogous columns. Written as two matrix products, so
/// it is differentiable.
pub fn adaptive_avg_pool2d(x: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    separable(x, size, Kind::AdaptiveAvg, "adaptive pool input")
}

/// `MaxPool2d(2, 2)` with PyTorch's floor mode (an odd last row/column is dropped).
pub fn max_pool_2x2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h < 2 || w < 2 {
        return Err(Error::bad_input(
            "max pool input",
            "at least 2x2 spatially",
            x.dims(),
        ));
    }
    // candle's own max-pool backward scales the gradient by the window's tie fraction over 4
    // (a quarter of the true gradient) and misplaces it on odd sizes, so pool with a reshape
    // and max reductions, whose backward routes the gradient to the maximum.
    let (b, c) = (x.dim(0)?, x.dim(1)?);
    let (oh, ow) = (h / 2, w / 2);
    let x = x.narrow(2, 0, 2 * oh)?.narrow(3, 0, 2 * ow)?;
    Ok(x.reshape((b, c, oh, 2, ow, 2))?.max(5)?.max(3)?)
}

/// `Dropout2d(p)`: in training mode, zeroes whole channels with probability `p` and scales
/// the rest by `1 / (1 - p)`; the identity in evaluation mode.
pub fn dropout2d(x: &Tensor, p: f64, mode: &mut Mode) -> Result<Tensor> {
    let Mode::Train(rng) = mode else {
        return Ok(x.clone());
    };
    if p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        return Ok(x.zeros_like()?);
    }
    let (b, c) = (x.dim(0)?, x.dim(1)?);
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..b * c)
        .map(|_| {
            if rng.random::<f64>() < p {
                0.0
            } else {
                keep as f32
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (b, c, 1, 1), x.device())?.to_dtype(x.dtype())?;
    Ok(x.broadcast_mul(&mask)?)
}

/// Exact (erf) GELU, as `nn.GELU()` (`fused_ops::gelu_erf`: a one-pass backward on the CPU).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    Ok(fused_ops::gelu_erf(x)?)
}

/// Checks a `[B, C, H, W]` feature map has `channels` channels.
pub(crate) fn check_map(name: &str, x: &Tensor, channels: usize) -> Result<()> {
    match x.dims() {
        [_, c, h, w] if *c == channels && *h > 0 && *w > 0 => Ok(()),
        d => Err(Error::bad_input(name, format!("[B, {channels}, H, W]"), d)),
    }
}
