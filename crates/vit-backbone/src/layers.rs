//! Building blocks shared by the ViT: linear, layer norm, feed-forward, layer scale.
//!
//! Each op picks candle's fused inference kernel when nothing needs a gradient and the
//! differentiable form from `cxr_core::ops` otherwise, so one model type serves inference
//! (weights as plain tensors) and training (weights as `Var`s).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::fast_ops::{fast_path, GeluInPlace};

pub(crate) use fused_ops::tracks_grad;

/// Softmax over the last dimension: candle's fused kernel, with `fused_ops`' closed-form
/// backward when a gradient is tracked (instead of autograd through the five composed ops of
/// `cxr_core::ops::softmax_last_dim`, which stays the reference the tests compare with).
pub(crate) fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.track_op() {
        fused_ops::softmax_last_dim(x)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// `y = x Wᵀ + b` on inputs of any rank, as one GEMM over the flattened leading dims.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `weight` `[out, in]` and, if `bias`, `bias` `[out]` (PyTorch's default init when
    /// the builder creates them).
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let weight = vb.get_with_hints(
            (out_dim, in_dim),
            "weight",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(
                out_dim,
                "bias",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// The `[out, in]` weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The `[out]` bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Applies an explicit weight and bias (used for the fused q/k/v projection):
    /// `fused_ops::linear`, one bias-seeded GEMM on the CPU with a backward of two GEMMs.
    pub(crate) fn apply(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        fused_ops::linear(x, weight, bias)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Self::apply(x, &self.weight, self.bias.as_ref())
    }
}

/// Layer norm over the last dimension with learned `weight` and `bias`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `weight` and `bias` of width `dim`.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // on CUDA the fused kernel also serves f32/bf16 inference: it keeps each row in
        // registers, one read of x (its CUDA kernels take no other dtype)
        let cuda_fused = x.device().is_cuda()
            && matches!(
                x.dtype(),
                candle_core::DType::F32 | candle_core::DType::BF16
            );
        if tracks_grad(&[x, &self.weight, &self.bias]) || cuda_fused {
            // one pass per row with a fused backward (CPU and CUDA), instead of the ~10
            // primitive ops of the composed form
            fused_ops::layer_norm(x, &self.weight, &self.bias, self.eps)
        } else {
            candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32)
        }
    }
}

/// Per-channel learned scaling of a residual branch (`lambda1`), applied together with the
/// stochastic depth and the residual add by `fused_ops::scaled_residual`.
#[derive(Debug, Clone)]
pub struct LayerScale {
    lambda: Tensor,
}

impl LayerScale {
    /// Loads `lambda1` of width `dim`, initialised to `init`.
    pub fn new(dim: usize, init: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            lambda: vb.get_with_hints(dim, "lambda1", Init::Const(init))?,
        })
    }

    /// The per-channel scale `λ`.
    pub(crate) fn lambda(&self) -> &Tensor {
        &self.lambda
    }
}

/// The feed-forward block: GELU MLP (`fc1`, `fc2`) or SwiGLU (`weights_in`, `weights_out`).
#[derive(Debug, Clone)]
pub enum FeedForward {
    /// `fc2(gelu_erf(fc1(x)))`.
    Mlp {
        /// First projection.
        fc1: Linear,
        /// Second projection.
        fc2: Linear,
    },
    /// `weights_out(silu(gate) * up)` with `[gate; up] = weights_in(x)`.
    SwiGlu {
        /// Joint gate and up projection.
        weights_in: Linear,
        /// Down projection.
        weights_out: Linear,
    },
}

impl FeedForward {
    /// Builds the variant the config asks for.
    pub fn new(dim: usize, hidden: usize, swiglu: bool, vb: VarBuilder) -> Result<Self> {
        if swiglu {
            Ok(Self::SwiGlu {
                weights_in: Linear::new(dim, 2 * hidden, true, vb.pp("weights_in"))?,
                weights_out: Linear::new(hidden, dim, true, vb.pp("weights_out"))?,
            })
        } else {
            Ok(Self::Mlp {
                fc1: Linear::new(dim, hidden, true, vb.pp("fc1"))?,
                fc2: Linear::new(hidden, dim, true, vb.pp("fc2"))?,
            })
        }
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Mlp { fc1, fc2 } => {
                let h = fc1.forward(x)?;
                let h = if fast_path(&[&h]) && h.is_contiguous() {
                    // h is a fresh temporary: nothing else holds its storage
                    h.inplace_op1(&GeluInPlace)?;
                    h
                } else {
                    // training: a one-pass backward instead of candle's ten-op composition
                    fused_ops::gelu_erf(&h)?
                };
                fc2.forward(&h)
            }
            Self::SwiGlu {
                weights_in,
                weights_out,
            } => {
                let h = weights_in.forward(x)?;
                let half = h.dim(candle_core::D::Minus1)? / 2;
                let gate = h.narrow(candle_core::D::Minus1, 0, half)?;
                let up = h.narrow(candle_core::D::Minus1, half, half)?;
                weights_out.forward(&(candle_nn::ops::silu(&gate)? * up)?)
            }
        }
    }
}
