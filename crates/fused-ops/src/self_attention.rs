//! Multi-head self-attention from a fused qkv projection, for inference and training.
//!
//! The composed form (reshape, permute, three `get`s, a scale, two matmuls, softmax,
//! transpose, reshape) puts a dozen nodes per layer into candle's graph. candle's backward
//! allocates, zero-fills and adds to a gradient for each of them, and `get`'s backward
//! zero-pads each of q's, k's and v's gradients back to the whole `[3, B, H, N, d]` tensor.
//! On the CPU in f32, [`self_attention`] instead runs:
//!
//! - without a gradient to track, one op that never materialises the probabilities
//!   ([`SelfAttentionInference`]);
//! - when training, two forward ops, the `[B, H, N, N]` probabilities ([`AttentionProbs`],
//!   kept for the backward as the composed form keeps its softmax output) and the context
//!   `P v` written in the `[B, N, H·d]` layout the output projection reads
//!   ([`AttentionContext`]), whose backward is one op writing the gradient of the whole qkv
//!   projection ([`AttentionGrad`]).
//!
//! Other devices and dtypes run the composed form, [`self_attention_with_probs`], which the
//! tests hold the fused ops equal to, values and gradients.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result};
use candle_core::{Shape, Tensor};

use crate::attention_cpu::{self, Dims};
use crate::storage::f32_slice;

/// `softmax(scale · q kᵀ) v` per head of a fused qkv projection `qkv` `[B, N, 3·H·d]` (the q,
/// k and v blocks of `H·d` columns in that order, as one linear layer over the concatenated
/// q/k/v weights gives them), returned as the `[B, N, H·d]` context. Differentiable; see the
/// module docs for what runs where.
pub fn self_attention(qkv: &Tensor, heads: usize, scale: f64) -> Result<Tensor> {
    check_width(qkv, heads)?;
    if !(qkv.device().is_cpu() && qkv.dtype() == DType::F32) {
        return Ok(self_attention_with_probs(qkv, heads, scale)?.0);
    }
    let qkv = qkv.contiguous()?;
    let scale = scale as f32;
    if !qkv.track_op() {
        return qkv.apply_op1_no_bwd(&SelfAttentionInference { heads, scale });
    }
    let probs = qkv.apply_op1_no_bwd(&AttentionProbs { heads, scale })?;
    qkv.apply_op2(&probs, AttentionContext { heads, scale })
}

/// The composed, differentiable form of [`self_attention`] in candle ops (any device and
/// dtype), returning the context and the `[B, H, N, N]` probabilities (what `transformers`
/// returns with `output_attentions=True`).
pub fn self_attention_with_probs(
    qkv: &Tensor,
    heads: usize,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let (b, n, d) = check_width(qkv, heads)?;
    let t = qkv.reshape((b, n, 3, heads, d))?.permute((2, 0, 3, 1, 4))?; // [3, B, H, N, d]
    let q = (t.get(0)? * scale)?.contiguous()?;
    let k = t.get(1)?.contiguous()?;
    let v = t.get(2)?.contiguous()?;
    let probs = crate::softmax_last_dim(&q.matmul(&k.t()?)?)?;
    let ctx = probs
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((b, n, heads * d))?;
    Ok((ctx, probs))
}

/// `(B, N, d)` of a qkv tensor for `heads` heads, or an error naming its shape.
fn check_width(qkv: &Tensor, heads: usize) -> Result<(usize, usize, usize)> {
    let (b, n, width) = qkv.dims3()?;
    if heads == 0 || width % (3 * heads) != 0 {
        bail!(
            "self-attention: qkv {:?} is not [B, N, 3 × {heads} heads × head dim]",
            qkv.dims()
        );
    }
    Ok((b, n, width / (3 * heads)))
}

/// The sizes of a contiguous f32 qkv layout, or an error naming `op` and the shape.
fn dims_of(layout: &Layout, heads: usize, op: &str) -> Result<Dims> {
    let (b, n, width) = layout.shape().dims3()?;
    if heads == 0 || width % (3 * heads) != 0 {
        bail!(
            "{op}: qkv {:?} is not [B, N, 3 × {heads} heads × head dim]",
            layout.dims()
        );
    }
    Ok(Dims {
        b,
        n,
        heads,
        d: width / (3 * heads),
    })
}

/// Checks that `layout` has `shape`, naming `what` and both shapes otherwise.
fn expect_shape(layout: &Layout, shape: &[usize], what: &str, op: &str) -> Result<()> {
    if layout.dims() != shape {
        bail!(
            "{op}: {what} has shape {:?}, expected {shape:?}",
            layout.dims()
        );
    }
    Ok(())
}

/// Inference attention (`CustomOp1` on a contiguous f32 CPU qkv): the context, with score rows
/// computed block by block and never kept. No backward.
#[derive(Debug, Clone, Copy)]
pub struct SelfAttentionInference {
    /// Heads `H`.
    pub heads: usize,
    /// Multiplier of the scores (`d^-1/2`).
    pub scale: f32,
}

/// The attention probabilities `softmax(scale · q kᵀ)` `[B, H, N, N]` (`CustomOp1` on a
/// contiguous f32 CPU qkv). No backward: [`AttentionContext`] differentiates both ops.
#[derive(Debug, Clone, Copy)]
pub struct AttentionProbs {
    /// Heads `H`.
    pub heads: usize,
    /// Multiplier of the scores (`d^-1/2`).
    pub scale: f32,
}

/// The context `P v` `[B, N, H·d]` (`CustomOp2` on the qkv and the [`AttentionProbs`] of it);
/// its backward gives the qkv the gradient of the whole attention ([`AttentionGrad`]) and the
/// probabilities none.
#[derive(Debug, Clone, Copy)]
pub struct AttentionContext {
    /// Heads `H`.
    pub heads: usize,
    /// Multiplier of the scores, for the backward.
    pub scale: f32,
}

/// The gradient `[B, N, 3·H·d]` of the qkv (`CustomOp3` on the qkv, its probabilities and the
/// context's gradient).
#[derive(Debug, Clone, Copy)]
pub struct AttentionGrad {
    /// Heads `H`.
    pub heads: usize,
    /// Multiplier of the scores.
    pub scale: f32,
}

impl CustomOp1 for SelfAttentionInference {
    fn name(&self) -> &'static str {
        "self-attention-inference"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let dims = dims_of(l, self.heads, op)?;
        let out = attention_cpu::inference(f32_slice(s, l, "qkv", op)?, dims, self.scale);
        Ok((
            CpuStorage::F32(out),
            Shape::from((dims.b, dims.n, dims.heads * dims.d)),
        ))
    }
}

impl CustomOp1 for AttentionProbs {
    fn name(&self) -> &'static str {
        "attention-probs"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let dims = dims_of(l, self.heads, op)?;
        let probs = attention_cpu::probabilities(f32_slice(s, l, "qkv", op)?, dims, self.scale);
        let shape = Shape::from((dims.b, dims.heads, dims.n, dims.n));
        Ok((CpuStorage::F32(probs), shape))
    }
}

impl CustomOp2 for AttentionContext {
    fn name(&self) -> &'static str {
        "attention-context"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let dims = dims_of(l1, self.heads, op)?;
        expect_shape(l2, &[dims.b, dims.heads, dims.n, dims.n], "probs", op)?;
        let qkv = f32_slice(s1, l1, "qkv", op)?;
        let ctx = attention_cpu::context(qkv, f32_slice(s2, l2, "probs", op)?, dims);
        Ok((
            CpuStorage::F32(ctx),
            Shape::from((dims.b, dims.n, dims.heads * dims.d)),
        ))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        probs: &Tensor,
        _ctx: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = AttentionGrad {
            heads: self.heads,
            scale: self.scale,
        };
        let dqkv = qkv.apply_op3_no_bwd(probs, &grad.contiguous()?, &op)?;
        Ok((Some(dqkv), None))
    }
}

impl CustomOp3 for AttentionGrad {
    fn name(&self) -> &'static str {
        "attention-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let dims = dims_of(l1, self.heads, op)?;
        expect_shape(l2, &[dims.b, dims.heads, dims.n, dims.n], "probs", op)?;
        expect_shape(
            l3,
            &[dims.b, dims.n, dims.heads * dims.d],
            "context gradient",
            op,
        )?;
        let dqkv = attention_cpu::backward(
            f32_slice(s1, l1, "qkv", op)?,
            f32_slice(s2, l2, "probs", op)?,
            f32_slice(s3, l3, "context gradient", op)?,
            dims,
            self.scale,
        );
        Ok((CpuStorage::F32(dqkv), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{grads_of, max_diff};
    use candle_core::{Device, Var};

    /// A qkv tensor with scores large enough that the softmax is far from uniform.
    fn qkv(b: usize, n: usize, heads: usize, d: usize, dtype: DType) -> Tensor {
        let t = Tensor::randn(0f32, 1.0, (b, n, 3 * heads * d), &Device::Cpu).unwrap();
        (t * 2.0).unwrap().to_dtype(dtype).unwrap()
    }

    // shapes: one token, widths and token counts that are not multiples of the 64-row block
    // or the GEMM tiles, a two-block sequence, and a RAD-DINO-like head width
    const SHAPES: [(usize, usize, usize, usize); 5] = [
        (1, 1, 1, 4),
        (1, 5, 1, 4),
        (2, 70, 3, 16),
        (3, 17, 2, 8),
        (1, 130, 2, 64),
    ];

    #[test]
    fn inference_and_training_forwards_match_the_composed_form() {
        for (b, n, h, d) in SHAPES {
            let x = qkv(b, n, h, d, DType::F32);
            let scale = (d as f64).powf(-0.5);
            let want = self_attention_with_probs(&x, h, scale).unwrap().0;
            let inference = self_attention(&x, h, scale).unwrap();
            assert!(
                max_diff(&inference, &want) < 1e-5,
                "inference ({b},{n},{h},{d})"
            );
            let var = Var::from_tensor(&x).unwrap();
            let training = self_attention(var.as_tensor(), h, scale).unwrap();
            assert!(
                max_diff(&training, &want) < 1e-5,
                "training ({b},{n},{h},{d})"
            );
        }
    }

    #[test]
    fn the_qkv_gradient_matches_the_composed_form_in_f64() {
        for (b, n, h, d) in SHAPES {
            let x = qkv(b, n, h, d, DType::F32);
            let dy = Tensor::randn(0f32, 1.0, (b, n, h * d), &Device::Cpu).unwrap();
            let scale = (d as f64).powf(-0.5);
            let fused_var = Var::from_tensor(&x).unwrap();
            let fused = self_attention(fused_var.as_tensor(), h, scale).unwrap();
            let got = grads_of(&fused, &dy);
            let reference_var = Var::from_tensor(&x.to_dtype(DType::F64).unwrap()).unwrap();
            let (reference, _) =
                self_attention_with_probs(reference_var.as_tensor(), h, scale).unwrap();
            let want = grads_of(&reference, &dy.to_dtype(DType::F64).unwrap());
            let g = got.get(fused_var.as_tensor()).unwrap();
            let w = want.get(reference_var.as_tensor()).unwrap();
            let scale_of = w
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            let diff = max_diff(g, w) as f64;
            assert!(
                diff < 1e-5 * scale_of.max(1.0),
                "({b},{n},{h},{d}): {diff} of {scale_of}"
            );
        }
    }

    #[test]
    fn other_dtypes_take_the_composed_form() {
        let x = qkv(2, 9, 2, 8, DType::F64);
        let got = self_attention(&x, 2, 0.3).unwrap();
        let want = self_attention_with_probs(&x, 2, 0.3).unwrap().0;
        assert_eq!(max_diff(&got, &want), 0.0);
    }

    #[test]
    fn widths_that_do_not_split_into_heads_are_refused_with_the_shape() {
        let x = qkv(1, 3, 1, 8, DType::F32); // width 24
        let err = self_attention(&x, 5, 1.0).unwrap_err().to_string();
        assert!(
            err.contains("[1, 3, 24]") && err.contains("5 heads"),
            "{err}"
        );
        assert!(self_attention(&x, 0, 1.0).is_err());
        let probs = Tensor::zeros((1, 1, 3, 4), DType::F32, &Device::Cpu).unwrap();
        let op = AttentionContext {
            heads: 1,
            scale: 1.0,
        };
        let err = x.apply_op2_no_bwd(&probs, &op).unwrap_err().to_string();
        assert!(err.contains("probs has shape [1, 1, 3, 4]"), "{err}");
    }
}
