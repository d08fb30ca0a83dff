//! Fused operations the workspace trains through, each a candle `CustomOp` with a CPU
//! implementation (the reference, always built and tested) and a CUDA kernel (`cuda` feature).
//!
//! candle's own fused kernels for these operations either have no backward pass
//! (`candle_nn::ops::layer_norm`, `upsample_bilinear2d`) or do not exist (the DINO teacher's
//! centring and Sinkhorn-Knopp). The composed forms in `cxr_core::ops`, `seg_decoders::resize`
//! and `dino_loss::teacher` are exact but launch many small kernels and keep every
//! intermediate alive for autograd; the operations here do one pass per row and recompute what
//! the backward needs.
//!
//! | operation | forward | backward |
//! |---|---|---|
//! | [`layer_norm`] | one pass per row, f32 statistics (f32, bf16, f16) | fused `dx`; `dw`, `db` as row sums |
//! | [`resize_bilinear`] | PyTorch `F.interpolate(mode="bilinear")` source taps | scatter-add of the four taps |
//! | [`center_softmax`] | `softmax((t − c) / τ)` per row | none (teacher targets are constants) |
//! | [`sinkhorn_knopp`] | dinov2's `sinkhorn_knopp_teacher` | none |
//! | [`attention()`] | flash-style multi-head attention from the fused qkv projection | none (inference) |
//! | [`self_attention()`] | multi-head attention from the fused qkv projection (CPU f32: score blocks never kept; training keeps the probabilities) | one op per layer writing the whole qkv gradient (five GEMMs and a row pass per head) |
//! | [`bias_gelu`], [`bias_scale_residual`] | the ViT block's GEMM epilogues in one pass | none (inference) |
//! | [`optim::adamw_update`], [`optim::ema_update`] | AdamW and EMA updates in place | none (optimizer) |
//! | [`linear`] | `x Wᵀ (+ b)`, one GEMM (bias-seeded) on the CPU | `dy W`, `dyᵀ x` (two GEMMs, no transposed copies), bias as a [`column_sum`] |
//! | [`weight_normed_linear`] | `x (g ⊙ v/‖v‖)ᵀ` with a frozen gain as `(x vᵀ) ⊙ g/‖v‖`: the matrix never formed (CPU f32) | `dx = r v`, `dv = rᵀx − (c/‖v‖²) v` with `r = dy ⊙ s`, `c` the column sums of `dy ⊙ y` |
//! | [`weight_norm_rows`] | `g ⊙ v / ‖v‖` per row (CPU) | one pass per row, `g`'s only when it trains |
//! | [`gelu_erf`] | exact GELU, one vectorised pass (CPU) | one pass `dy · (Φ(x) + x φ(x))` |
//! | [`softmax_last_dim`], [`log_softmax_last_dim`] | candle's fused softmax kernel / graph-free composed ops | closed forms `y ⊙ (dy − Σ dy ⊙ y)`, `dy − softmax ⊙ Σ dy` |
//! | [`scaled_residual`] | `x + keep_b · λ ⊙ y` (layer scale, stochastic depth, residual) in one pass (CPU f32) | `dx = dy`; `dy ⊙ keep_b λ` and `λ`'s row sum, one pass each |
//! | [`bias_add`], [`scale_columns`] | per-channel add / scale | parameter gradient as a coalesced [`column_sum`] |
//! | [`conv2d`] | im2col GEMMs by blocks of input channels (stride 1, one group; else candle's) | `dW = dY colsᵀ`; `dX` as the convolution of `dY` by the flipped, transposed kernel |
//! | [`batch_norm_train`] | training-mode BatchNorm (+ ReLU) over `(B, H, W)`, f64 statistics (CPU f32); the graph keeps `x` and `y` only | `dγ`, `dβ` as channel sums, `dx` in one pass recomputing `x̂` |
//! | [`channel_bias`] | `x + b` per channel of a `[B, C, H, W]` map (CPU f32) | `dx = dy`; `db` as channel sums over `(B, H, W)` |
//! | [`channel_affine`] | `x ⊙ s + t` per channel (+ ReLU): evaluation-mode BatchNorm (CPU f32); the graph keeps `x` and `y` only | `dx = g ⊙ s`; `ds`, `dt` as channel sums |
//! | [`conv_transpose2d`] | kernel = stride: one GEMM and a pixel shuffle (else candle's) | the matrix product's two GEMMs |
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::randn(0f32, 1., (2, 5, 8), &Device::Cpu)?;
//! let (w, b) = (Tensor::ones(8, candle_core::DType::F32, &Device::Cpu)?, Tensor::zeros(8, candle_core::DType::F32, &Device::Cpu)?);
//! let y = fused_ops::layer_norm(&x, &w, &b, 1e-6)?;
//! assert_eq!(y.dims(), &[2, 5, 8]);
//! # Ok::<(), candle_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod attention;
mod attention_cpu;
mod batch_norm;
mod columns;
mod conv;
#[cfg(feature = "cuda")]
mod cuda;
mod epilogue;
mod gelu;
mod layer_norm;
mod linear;
pub mod math;
pub mod optim;
pub mod parity;
mod residual;
mod resize;
pub mod self_attention;
mod softmax;
mod storage;
mod teacher;
#[cfg(test)]
mod test_util;
mod weight_norm;
mod weight_normed_linear;

pub use attention::{attention, FusedAttention};
pub use batch_norm::{
    batch_norm_train, batch_norm_train_composed, channel_affine, channel_bias, BatchNormGradInput,
    BatchNormGradSums, BatchNormOutput, BatchNormTrain, BatchStatistics, ChannelAffine,
    ChannelBias, ChannelSums,
};
pub use columns::{bias_add, column_sum, scale_columns, ColumnSum, PerChannel};
pub use conv::{conv2d, conv_transpose2d, Conv2dGrad, COLUMN_BUDGET};
pub use epilogue::{bias_gelu, bias_scale_residual, BiasGelu, BiasScaleResidual};
pub use gelu::{gelu_erf, GeluErf, GeluErfGrad};
pub use layer_norm::{layer_norm, LayerNormBackward, LayerNormForward, LayerNormParamGrad};
pub use linear::{linear, LinearBias, LinearNoBias, LinearWeightGrad};
pub use residual::{
    scaled_residual, ScaledResidual, ScaledResidualBranchGrad, ScaledResidualScaleGrad,
};
pub use resize::{resize_bilinear, ResizeBilinear, ResizeBilinearBackward};
pub use self_attention::{self_attention, self_attention_varlen, self_attention_with_probs};
pub use softmax::{log_softmax_last_dim, softmax_last_dim, SoftmaxGrad};
pub use teacher::{center_softmax, sinkhorn_knopp, CenterSoftmax, SinkhornKnopp};
pub use weight_norm::{weight_norm_rows, WeightNormRows, WeightNormRowsGrad};
pub use weight_normed_linear::{
    weight_normed_linear, ColumnDot, NormGradCorrection, RowScale, WeightNormedLinear,
};

/// True when autograd follows any of `ts` (a `Var` or a tensor computed from one): the test
/// by which a model picks an op with a backward over a faster inference-only kernel.
pub fn tracks_grad(ts: &[&candle_core::Tensor]) -> bool {
    ts.iter().any(|t| t.track_op())
}

/// The first CUDA device, or `None` with the reason (no `cuda` feature, no driver, no GPU), so
/// GPU tests and benchmarks can say why they skip.
pub fn cuda_device() -> std::result::Result<candle_core::Device, String> {
    if !candle_core::utils::cuda_is_available() {
        return Err("built without the `cuda` feature".into());
    }
    candle_core::Device::new_cuda(0).map_err(|e| format!("no usable CUDA device: {e}"))
}

/// Keeps the memory candle frees on a CUDA `device` in the driver's pool for reuse instead of
/// returning it at every synchronisation (CUDA's default), the way PyTorch's caching allocator
/// behaves. Long GPU jobs (benchmarks, training loops) call this once at start; without it,
/// every synchronised step maps its activations afresh. A no-op for the CPU.
pub fn retain_freed_gpu_memory(device: &candle_core::Device) -> candle_core::Result<()> {
    match device.location() {
        #[cfg(feature = "cuda")]
        candle_core::DeviceLocation::Cuda { gpu_id } => cuda::retain_pool_memory(gpu_id),
        _ => Ok(()),
    }
}
