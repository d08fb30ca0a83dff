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
//! - when training, two forward ops, the probabilities (`H · N²` per image, [`AttentionProbs`],
//!   kept for the backward as the composed form keeps its softmax output) and the context
//!   `P v` written in the `[B, N, H·d]` layout the output projection reads
//!   ([`AttentionContext`]), whose backward is one op writing the gradient of the whole qkv
//!   projection ([`AttentionGrad`]).
//!
//! Other devices and dtypes run the composed form, [`self_attention_with_probs`], which the
//! tests hold the fused ops equal to, values and gradients.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result};
use candle_core::{Shape, Tensor};

use crate::attention_cpu::{self, Images};
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
    fused(qkv, heads, scale, None)
}

/// [`self_attention`] of images of different lengths in one token matrix (as dinov2 runs its
/// global and local crops through the backbone together): `qkv` `[T, 3·H·d]` holds the tokens
/// of `groups` `(images, tokens each)` one image after another, each image attends to its own
/// tokens only (a block-diagonal mask), and the context is `[T, H·d]`.
pub fn self_attention_varlen(
    qkv: &Tensor,
    groups: &[(usize, usize)],
    heads: usize,
    scale: f64,
) -> Result<Tensor> {
    let (rows, width) = qkv.dims2()?;
    let total: usize = groups.iter().map(|(b, n)| b * n).sum();
    if total != rows || heads == 0 || width % (3 * heads) != 0 {
        bail!(
            "self-attention: qkv {:?} is not [Σ images × tokens = {total}, 3 × {heads} heads × \
             head dim]",
            qkv.dims()
        );
    }
    if qkv.device().is_cpu() && qkv.dtype() == DType::F32 {
        return fused(qkv, heads, scale, Some(groups.to_vec()));
    }
    let mut parts = Vec::with_capacity(groups.len());
    let mut row = 0;
    for &(b, n) in groups {
        let group = qkv.narrow(0, row, b * n)?.reshape((b, n, width))?;
        let (ctx, _) = self_attention_with_probs(&group, heads, scale)?;
        parts.push(ctx.reshape((b * n, width / 3))?);
        row += b * n;
    }
    Tensor::cat(&parts, 0)
}

/// The fused CPU ops: one op without a gradient to track, the probabilities and the context
/// op (with its backward) when training.
fn fused(
    qkv: &Tensor,
    heads: usize,
    scale: f64,
    groups: Option<Vec<(usize, usize)>>,
) -> Result<Tensor> {
    let qkv = qkv.contiguous()?;
    let spec = AttentionSpec {
        heads,
        scale: scale as f32,
        groups,
    };
    if !qkv.track_op() {
        return qkv.apply_op1_no_bwd(&SelfAttentionInference(spec));
    }
    let probs = qkv.apply_op1_no_bwd(&AttentionProbs(spec.clone()))?;
    qkv.apply_op2(&probs, AttentionContext(spec))
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

/// The images of a qkv layout (`[B, N, 3·H·d]` without `groups`, `[T, 3·H·d]` with) and the
/// shape of its context, or an error naming `op` and the shape.
fn images_of(
    layout: &Layout,
    heads: usize,
    groups: &Option<Vec<(usize, usize)>>,
    op: &str,
) -> Result<(Images, Shape)> {
    let dims = layout.dims();
    let width = dims.last().copied().unwrap_or(0);
    if heads == 0 || width == 0 || width % (3 * heads) != 0 {
        bail!("{op}: qkv {dims:?} is not [.., 3 × {heads} heads × head dim]");
    }
    let d = width / (3 * heads);
    match (dims, groups) {
        (&[b, n, _], None) => Ok((
            Images::new(&[(b, n)], heads, d),
            Shape::from((b, n, width / 3)),
        )),
        (&[rows, _], Some(g)) if g.iter().map(|(b, n)| b * n).sum::<usize>() == rows => {
            Ok((Images::new(g, heads, d), Shape::from((rows, width / 3))))
        }
        _ => bail!("{op}: qkv {dims:?} does not hold the images {groups:?}"),
    }
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

/// What every attention op here is built from.
#[derive(Debug, Clone)]
pub struct AttentionSpec {
    /// Heads `H`.
    pub heads: usize,
    /// Multiplier of the scores (`d^-1/2`).
    pub scale: f32,
    /// `(images, tokens each)` of a `[T, 3·H·d]` qkv; `None` for `[B, N, 3·H·d]`.
    pub groups: Option<Vec<(usize, usize)>>,
}

impl AttentionSpec {
    /// The images of the qkv layout `l` and the shape of its context (see [`images_of`]).
    fn images(&self, l: &Layout, op: &str) -> Result<(Images, Shape)> {
        images_of(l, self.heads, &self.groups, op)
    }
}

/// Inference attention (`CustomOp1` on a contiguous f32 CPU qkv): the context, with score rows
/// computed block by block and never kept. No backward.
#[derive(Debug, Clone)]
pub struct SelfAttentionInference(pub AttentionSpec);

/// The attention probabilities `softmax(scale · q kᵀ)`, `[H, N, N]` per image one after another
/// in a flat tensor (`CustomOp1` on a contiguous f32 CPU qkv). No backward:
/// [`AttentionContext`] differentiates both ops.
#[derive(Debug, Clone)]
pub struct AttentionProbs(pub AttentionSpec);

/// The context `P v`, `[B, N, H·d]` or `[T, H·d]` (`CustomOp2` on the qkv and the
/// [`AttentionProbs`] of it); its backward gives the qkv the gradient of the whole attention
/// ([`AttentionGrad`]) and the probabilities none.
#[derive(Debug, Clone)]
pub struct AttentionContext(pub AttentionSpec);

/// The gradient of the qkv, in its shape (`CustomOp3` on the qkv, its probabilities and the
/// context's gradient).
#[derive(Debug, Clone)]
pub struct AttentionGrad(pub AttentionSpec);

impl CustomOp1 for SelfAttentionInference {
    fn name(&self) -> &'static str {
        "self-attention-inference"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (images, shape) = self.0.images(l, op)?;
        let out = attention_cpu::inference(f32_slice(s, l, "qkv", op)?, &images, self.0.scale);
        Ok((CpuStorage::F32(out), shape))
    }
}

impl CustomOp1 for AttentionProbs {
    fn name(&self) -> &'static str {
        "attention-probs"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (images, _) = self.0.images(l, op)?;
        let probs =
            attention_cpu::probabilities(f32_slice(s, l, "qkv", op)?, &images, self.0.scale);
        let shape = Shape::from(probs.len());
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
        let (images, shape) = self.0.images(l1, op)?;
        expect_shape(l2, &[images.prob_len()], "probs", op)?;
        let qkv = f32_slice(s1, l1, "qkv", op)?;
        let ctx = attention_cpu::context(qkv, f32_slice(s2, l2, "probs", op)?, &images);
        Ok((CpuStorage::F32(ctx), shape))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        probs: &Tensor,
        _ctx: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = AttentionGrad(self.0.clone());
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
        let (images, ctx_shape) = self.0.images(l1, op)?;
        expect_shape(l2, &[images.prob_len()], "probs", op)?;
        expect_shape(l3, ctx_shape.dims(), "context gradient", op)?;
        let dqkv = attention_cpu::backward(
            f32_slice(s1, l1, "qkv", op)?,
            f32_slice(s2, l2, "probs", op)?,
            f32_slice(s3, l3, "context gradient", op)?,
            &images,
            self.0.scale,
        );
        Ok((CpuStorage::F32(dqkv), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{grads_of, max_diff, max_magnitude};
    use candle_core::{Device, Var};
    use cxr_testkit::seeded_normal;

    /// A seeded draw of `shape` (the seed from the shape, so every run checks the same
    /// numbers: an unseeded draw broke the 1e-5 bound once in a few hundred runs).
    fn draw(shape: &[usize]) -> Tensor {
        let seed = shape.iter().fold(17u64, |h, &d| h * 1009 + d as u64);
        seeded_normal(shape, seed)
    }

    /// A qkv tensor with scores large enough that the softmax is far from uniform.
    fn qkv(b: usize, n: usize, heads: usize, d: usize, dtype: DType) -> Tensor {
        let t = draw(&[b, n, 3 * heads * d]);
        (t * 2.0).unwrap().to_dtype(dtype).unwrap()
    }

    // shapes: one token, widths and token counts that are not multiples of the query-row
    // block or the GEMM tiles, a RAD-DINO-like head width, and a sequence of three row blocks,
    // the last partial
    const SHAPES: [(usize, usize, usize, usize); 6] = [
        (1, 1, 1, 4),
        (1, 5, 1, 4),
        (2, 70, 3, 16),
        (3, 17, 2, 8),
        (1, 130, 2, 64),
        (2, 2 * crate::attention_cpu::ROW_BLOCK + 9, 2, 8),
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
            let dy = draw(&[b, n, h * d]);
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
            let scale_of = max_magnitude(w);
            let diff = max_diff(g, w) as f64;
            assert!(
                diff < 1e-5 * scale_of.max(1.0),
                "({b},{n},{h},{d}): {diff} of {scale_of}"
            );
        }
    }

    /// Images of several lengths in one token matrix: each group through the composed form on
    /// its own, values and (in f64) gradients.
    #[test]
    fn varlen_attention_matches_each_group_attended_alone() {
        let groups = [(2usize, 5usize), (3, 2), (1, 70), (2, 1)];
        let (h, d) = (2, 8);
        let rows: usize = groups.iter().map(|(b, n)| b * n).sum();
        let x = qkv(1, rows, h, d, DType::F32).squeeze(0).unwrap();
        let dy = draw(&[rows, h * d]);
        let scale = (d as f64).powf(-0.5);
        let reference = |x: &Tensor| -> Tensor {
            let mut parts = Vec::new();
            let mut row = 0;
            for &(b, n) in &groups {
                let g = x
                    .narrow(0, row, b * n)
                    .unwrap()
                    .reshape((b, n, 3 * h * d))
                    .unwrap();
                let (ctx, _) = self_attention_with_probs(&g, h, scale).unwrap();
                parts.push(ctx.reshape((b * n, h * d)).unwrap());
                row += b * n;
            }
            Tensor::cat(&parts, 0).unwrap()
        };
        let inference = self_attention_varlen(&x, &groups, h, scale).unwrap();
        assert!(max_diff(&inference, &reference(&x)) < 1e-5, "inference");
        let var = Var::from_tensor(&x).unwrap();
        let fused = self_attention_varlen(var.as_tensor(), &groups, h, scale).unwrap();
        assert!(max_diff(&fused, &reference(&x)) < 1e-5, "training");
        let got = grads_of(&fused, &dy);
        let var64 = Var::from_tensor(&x.to_dtype(DType::F64).unwrap()).unwrap();
        let want = grads_of(
            &reference(var64.as_tensor()),
            &dy.to_dtype(DType::F64).unwrap(),
        );
        let w = want.get(var64.as_tensor()).unwrap();
        let diff = max_diff(got.get(var.as_tensor()).unwrap(), w) as f64;
        // an f32 gradient against an f64 one: relative to its size, as in the test above
        // (random inputs gave up to 1.7e-5 absolute on gradients of several units)
        let scale_of = max_magnitude(w);
        assert!(
            diff < 1e-5 * scale_of.max(1.0),
            "gradient {diff} of {scale_of}"
        );
        // f64 takes the composed path per group
        let composed = self_attention_varlen(&x.to_dtype(DType::F64).unwrap(), &groups, h, scale);
        assert!(
            max_diff(&composed.unwrap(), &reference(&x)) < 1e-5,
            "composed"
        );
        let err = self_attention_varlen(&x, &groups[..2], h, scale).unwrap_err();
        assert!(err.to_string().contains("Σ images × tokens = 16"), "{err}");
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
        let op = AttentionContext(AttentionSpec {
            heads: 1,
            scale: 1.0,
            groups: None,
        });
        let err = x.apply_op2_no_bwd(&probs, &op).unwrap_err().to_string();
        assert!(err.contains("probs has shape [1, 1, 3, 4]"), "{err}");
    }
}
