//! Training-mode batch normalisation of a `[B, C, H, W]` map, optionally followed by ReLU, as
//! one op with a closed-form backward.
//!
//! Composed from tensor ops (a mean, the centred map, its square, a second mean, a scale, a
//! shift, the ReLU), a `ConvModule`'s BatchNorm + ReLU leaves about seven maps the size of its
//! input in the autograd graph: candle's ops hold their operands until the backward, whether
//! the backward reads them or not. Here the graph holds the input and the output only, as
//! PyTorch's does with an in-place ReLU, and the backward recomputes `x̂` from the input and
//! the batch statistics. [`channel_affine`] is the evaluation-mode form (running statistics
//! folded into a per-channel scale and shift), with the same economy.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::storage::f32_slice;

/// Elements a parallel task covers at least: channels of small maps are grouped.
const MIN_TASK: usize = 16 * 1024;

/// Lanes of the f64 accumulators: fixed-width arrays that LLVM vectorises.
const LANES: usize = 8;

/// A map normalised with its batch statistics, and those statistics.
#[derive(Debug, Clone)]
pub struct BatchNormOutput {
    /// `γ ⊙ (x − μ) / √(σ² + ε) + β`, then ReLU where asked: `[B, C, H, W]`, differentiable in
    /// `x`, `γ` and `β`.
    pub y: Tensor,
    /// The batch mean of each channel, `[C]`, detached.
    pub mean: Tensor,
    /// The biased batch variance of each channel, `[C]`, detached: what normalises. A running
    /// estimate wants the unbiased one, this times `n / (n − 1)`.
    pub var: Tensor,
}

/// PyTorch's `BatchNorm2d` in training mode on `x` `[B, C, H, W]` with `weight` (`γ`) and
/// `bias` (`β`) `[C]`, then ReLU when `relu`: statistics over `(B, H, W)` per channel, the
/// biased variance in the denominator. The running statistics are the caller's to move (from
/// the returned `mean` and `var`).
///
/// On the CPU in f32 this is one op (statistics accumulated in f64) whose autograd node keeps
/// `x` and `y` only; elsewhere it is [`batch_norm_train_composed`].
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<BatchNormOutput> {
    let (_, c, _, _) = x.dims4()?;
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if t.elem_count() != c {
            bail!(
                "batch norm: {what} {:?} for a map of {c} channels {:?}",
                t.dims(),
                x.dims()
            );
        }
    }
    let all_f32 = [x, weight, bias].iter().all(|t| t.dtype() == DType::F32);
    if !(x.device().is_cpu() && all_f32) {
        return batch_norm_train_composed(x, weight, bias, eps, relu);
    }
    let x = x.contiguous()?;
    let stats = x.apply_op1_no_bwd(&BatchStatistics)?;
    let rows = stats.to_vec2::<f32>()?;
    let inv_std = rows[1]
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    let op = BatchNormTrain {
        mean: rows[0].clone(),
        inv_std,
        relu,
    };
    let y = x.apply_op3(&weight.flatten_all()?, &bias.flatten_all()?, op)?;
    Ok(BatchNormOutput {
        y,
        mean: stats.get(0)?,
        var: stats.get(1)?,
    })
}

/// [`batch_norm_train`] composed from candle's differentiable tensor ops: any device and
/// dtype, and the reference the fused op is tested against.
pub fn batch_norm_train_composed(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<BatchNormOutput> {
    let (_, c, _, _) = x.dims4()?;
    let shape = (1, c, 1, 1);
    let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred
        .sqr()?
        .mean_keepdim(0)?
        .mean_keepdim(2)?
        .mean_keepdim(3)?;
    let scale = (&var + eps)?
        .sqrt()?
        .recip()?
        .broadcast_mul(&weight.reshape(shape)?)?;
    let y = centred
        .broadcast_mul(&scale)?
        .broadcast_add(&bias.reshape(shape)?)?;
    Ok(BatchNormOutput {
        y: if relu { y.relu()? } else { y },
        mean: mean.detach().flatten_all()?,
        var: var.detach().flatten_all()?,
    })
}

/// `x ⊙ scale + shift` per channel of `x` `[B, C, H, W]` (`scale`, `shift` `[C]`), then ReLU
/// when `relu`: an evaluation-mode BatchNorm with its running statistics folded in (`scale =
/// γ / √(σ² + ε)`, `shift = β − μ ⊙ scale`, PyTorch's CPU inference form), differentiable in
/// all three. On the CPU in f32 one op whose node keeps `x` and `y` only; elsewhere composed.
pub fn channel_affine(x: &Tensor, scale: &Tensor, shift: &Tensor, relu: bool) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    for (what, t) in [("scale", scale), ("shift", shift)] {
        if t.elem_count() != c {
            bail!(
                "channel affine: {what} {:?} for a map of {c} channels {:?}",
                t.dims(),
                x.dims()
            );
        }
    }
    let all_f32 = [x, scale, shift].iter().all(|t| t.dtype() == DType::F32);
    if !(x.device().is_cpu() && all_f32) {
        let shape = (1, c, 1, 1);
        let y = x
            .broadcast_mul(&scale.reshape(shape)?)?
            .broadcast_add(&shift.reshape(shape)?)?;
        return if relu { y.relu() } else { Ok(y) };
    }
    x.contiguous()?.apply_op3(
        &scale.flatten_all()?,
        &shift.flatten_all()?,
        ChannelAffine { relu },
    )
}

/// [`channel_affine`]'s op (`CustomOp3` on `x`, `scale`, `shift`, CPU f32); its backward is
/// [`BatchNormGradSums`] and [`BatchNormGradInput`] with a zero mean and unit deviation.
#[derive(Debug, Clone, Copy)]
pub struct ChannelAffine {
    relu: bool,
}

/// The batch mean and biased variance of each channel of a contiguous f32 `[B, C, H, W]` map
/// (`CustomOp1`, CPU): `[2, C]` f32, accumulated in f64 over two passes (mean, then squared
/// deviations from it).
#[derive(Debug, Clone, Copy)]
pub struct BatchStatistics;

/// The normalisation itself (`CustomOp3` on `x`, `γ`, `β`, CPU f32) with the statistics that
/// [`BatchStatistics`] measured; its backward runs [`BatchNormGradSums`] and
/// [`BatchNormGradInput`].
#[derive(Debug, Clone)]
pub struct BatchNormTrain {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    relu: bool,
}

/// `(Σ g, Σ g ⊙ x̂)` per channel, `[2, C]` f32 (`CustomOp3` on `x`, `y`, `dy`, CPU f32), with
/// `g = dy`, masked by `y > 0` after a ReLU: the gradients of `β` and `γ`.
#[derive(Debug, Clone)]
pub struct BatchNormGradSums {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    relu: bool,
}

/// `dx = γ σ⁻¹ (g − Σg / n − x̂ Σ(g ⊙ x̂) / n)` (`CustomOp3` on `x`, `y`, `dy`, CPU f32).
#[derive(Debug, Clone)]
pub struct BatchNormGradInput {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    relu: bool,
    gamma: Vec<f32>,
    sum_g: Vec<f32>,
    sum_gx: Vec<f32>,
}

/// `(B, C, H·W)` of a contiguous 4-D layout, or an error naming `what`.
fn map_dims(l: &Layout, what: &str, op: &str) -> Result<MapDims> {
    match l.dims() {
        &[b, c, h, w] if b * h * w > 0 => Ok((b, c, h * w)),
        d => bail!("{op}: {what} must be a non-empty [B, C, H, W] map, got {d:?}"),
    }
}

/// `(B, C, H·W)` of a map.
type MapDims = (usize, usize, usize);

/// The slices of `x`, `y` and `dy` (one map shape), with its `(B, C, H·W)`.
fn three_maps<'a>(
    op: &str,
    s: [(&'a CpuStorage, &Layout); 3],
) -> Result<([&'a [f32]; 3], MapDims)> {
    let dims = map_dims(s[0].1, "x", op)?;
    for (what, (_, l)) in ["y", "dy"].iter().zip(&s[1..]) {
        if l.dims() != s[0].1.dims() {
            bail!(
                "{op}: {what} {:?} differs from x {:?}",
                l.dims(),
                s[0].1.dims()
            );
        }
    }
    let x = f32_slice(s[0].0, s[0].1, "x", op)?;
    let y = f32_slice(s[1].0, s[1].1, "y", op)?;
    let dy = f32_slice(s[2].0, s[2].1, "dy", op)?;
    Ok(([x, y, dy], dims))
}

/// `f(channel, chunk)` for each `H·W` chunk of channel `c` of image `b`, in parallel, summed
/// per channel in f64 (pairs of sums for the gradient).
fn per_channel_sums<const K: usize>(
    (b, c, hw): MapDims,
    f: impl Fn(usize, usize) -> [f64; K] + Sync,
) -> Vec<[f64; K]> {
    let chunks: Vec<[f64; K]> = (0..b * c)
        .into_par_iter()
        .with_min_len(MIN_TASK.div_ceil(hw))
        .map(|i| f(i % c, i * hw))
        .collect();
    let mut sums = vec![[0f64; K]; c];
    for (i, s) in chunks.iter().enumerate() {
        for (total, v) in sums[i % c].iter_mut().zip(s) {
            *total += v;
        }
    }
    sums
}

/// `f(channel, start, out chunk)` for each `H·W` chunk into a fresh `[B, C, H, W]` buffer.
fn per_chunk_map((b, c, hw): MapDims, f: impl Fn(usize, usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; b * c * hw];
    out.par_chunks_mut(hw)
        .with_min_len(MIN_TASK.div_ceil(hw))
        .enumerate()
        .for_each(|(i, chunk)| f(i % c, i * hw, chunk));
    out
}

crate::simd_kernel! {
    fn sum(x: &[f32]) -> f64 {
        let mut acc = [0f64; LANES];
        let mut it = x.chunks_exact(LANES);
        for lane in &mut it {
            for (a, &v) in acc.iter_mut().zip(lane) {
                *a += v as f64;
            }
        }
        acc.iter().sum::<f64>() + it.remainder().iter().map(|&v| v as f64).sum::<f64>()
    }
}

crate::simd_kernel! {
    fn squared_deviations(x: &[f32], mean: f64) -> f64 {
        let mut acc = [0f64; LANES];
        let mut it = x.chunks_exact(LANES);
        for lane in &mut it {
            for (a, &v) in acc.iter_mut().zip(lane) {
                let d = v as f64 - mean;
                *a += d * d;
            }
        }
        let tail: f64 = it.remainder().iter().map(|&v| (v as f64 - mean).powi(2)).sum();
        acc.iter().sum::<f64>() + tail
    }
}

crate::simd_kernel! {
    fn normalise(x: &[f32], out: &mut [f32], mean: f32, scale: f32, shift: f32, relu: bool) {
        for (o, &v) in out.iter_mut().zip(x) {
            let z = (v - mean) * scale + shift;
            *o = if relu { z.max(0.0) } else { z };
        }
    }
}

crate::simd_kernel! {
    fn grad_sums(x: &[f32], y: &[f32], dy: &[f32], mean: f32, inv_std: f32, relu: bool) -> [f64; 2] {
        let (mut sg, mut sgx) = ([0f64; LANES], [0f64; LANES]);
        let lanes = x.chunks_exact(LANES).zip(y.chunks_exact(LANES)).zip(dy.chunks_exact(LANES));
        for ((x, y), dy) in lanes {
            for k in 0..LANES {
                let g = if relu && y[k] <= 0.0 { 0.0 } else { dy[k] };
                sg[k] += g as f64;
                sgx[k] += (g * (x[k] - mean) * inv_std) as f64;
            }
        }
        let mut total = [sg.iter().sum::<f64>(), sgx.iter().sum::<f64>()];
        let tail = x.len() / LANES * LANES;
        for ((&x, &y), &dy) in x[tail..].iter().zip(&y[tail..]).zip(&dy[tail..]) {
            let g = if relu && y <= 0.0 { 0.0 } else { dy };
            total[0] += g as f64;
            total[1] += (g * (x - mean) * inv_std) as f64;
        }
        total
    }
}

crate::simd_kernel! {
    #[allow(clippy::too_many_arguments)]
    fn grad_input(x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32], mean: f32, inv_std: f32, k: f32, a: f32, c: f32, relu: bool) {
        for (((o, &v), &y), &d) in dx.iter_mut().zip(x).zip(y).zip(dy) {
            let g = if relu && y <= 0.0 { 0.0 } else { d };
            *o = k * (g - a - (v - mean) * inv_std * c);
        }
    }
}

impl CustomOp1 for BatchStatistics {
    fn name(&self) -> &'static str {
        "batch-norm-statistics"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims @ (b, c, hw) = map_dims(l, "x", self.name())?;
        let x = f32_slice(s, l, "x", self.name())?;
        let n = (b * hw) as f64;
        let means: Vec<f64> = per_channel_sums(dims, |_, at| [sum(&x[at..at + hw])])
            .iter()
            .map(|s| s[0] / n)
            .collect();
        let vars = per_channel_sums(dims, |ch, at| {
            [squared_deviations(&x[at..at + hw], means[ch])]
        });
        let mut out: Vec<f32> = means.iter().map(|&m| m as f32).collect();
        out.extend(vars.iter().map(|v| (v[0] / n) as f32));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
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
        let dims @ (_, c, hw) = map_dims(l1, "x", self.name())?;
        let x = f32_slice(s1, l1, "x", self.name())?;
        let gamma = f32_slice(s2, l2, "weight", self.name())?;
        let beta = f32_slice(s3, l3, "bias", self.name())?;
        if gamma.len() != c || beta.len() != c || self.mean.len() != c {
            bail!(
                "{}: weight {:?} and bias {:?} for {c} channels",
                self.name(),
                l2.dims(),
                l3.dims()
            );
        }
        let y = per_chunk_map(dims, |ch, at, out| {
            let scale = gamma[ch] * self.inv_std[ch];
            let x = &x[at..at + hw];
            normalise(x, out, self.mean[ch], scale, beta[ch], self.relu)
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (mean, inv_std, relu) = (self.mean.clone(), self.inv_std.clone(), self.relu);
        let sums = x.apply_op3_no_bwd(
            y,
            &dy,
            &BatchNormGradSums {
                mean: mean.clone(),
                inv_std: inv_std.clone(),
                relu,
            },
        )?;
        let rows = sums.to_vec2::<f32>()?;
        let dx = x.apply_op3_no_bwd(
            y,
            &dy,
            &BatchNormGradInput {
                mean,
                inv_std,
                relu,
                gamma: w.to_vec1::<f32>()?,
                sum_g: rows[0].clone(),
                sum_gx: rows[1].clone(),
            },
        )?;
        Ok((Some(dx), Some(sums.get(1)?), Some(sums.get(0)?)))
    }
}

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "channel-affine"
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
        let dims @ (_, c, hw) = map_dims(l1, "x", self.name())?;
        let x = f32_slice(s1, l1, "x", self.name())?;
        let scale = f32_slice(s2, l2, "scale", self.name())?;
        let shift = f32_slice(s3, l3, "shift", self.name())?;
        if scale.len() != c || shift.len() != c {
            bail!(
                "{}: scale {:?} and shift {:?} for {c} channels",
                self.name(),
                l2.dims(),
                l3.dims()
            );
        }
        let y = per_chunk_map(dims, |ch, at, out| {
            normalise(&x[at..at + hw], out, 0.0, scale[ch], shift[ch], self.relu)
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _shift: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let c = scale.elem_count();
        let (zeros, ones) = (vec![0f32; c], vec![1f32; c]);
        let sums = x.apply_op3_no_bwd(
            y,
            &dy,
            &BatchNormGradSums {
                mean: zeros.clone(),
                inv_std: ones.clone(),
                relu: self.relu,
            },
        )?;
        let dx = x.apply_op3_no_bwd(
            y,
            &dy,
            &BatchNormGradInput {
                mean: zeros.clone(),
                inv_std: ones,
                relu: self.relu,
                gamma: scale.to_vec1::<f32>()?,
                sum_g: zeros.clone(),
                sum_gx: zeros,
            },
        )?;
        Ok((Some(dx), Some(sums.get(1)?), Some(sums.get(0)?)))
    }
}

impl CustomOp3 for BatchNormGradSums {
    fn name(&self) -> &'static str {
        "batch-norm-grad-sums"
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
        let ([x, y, dy], dims @ (_, c, hw)) =
            three_maps(self.name(), [(s1, l1), (s2, l2), (s3, l3)])?;
        if self.mean.len() != c {
            bail!(
                "{}: statistics of {} channels, x {:?}",
                self.name(),
                self.mean.len(),
                l1.dims()
            );
        }
        let sums = per_channel_sums(dims, |ch, at| {
            let r = at..at + hw;
            let (m, s) = (self.mean[ch], self.inv_std[ch]);
            grad_sums(&x[r.clone()], &y[r.clone()], &dy[r], m, s, self.relu)
        });
        let mut out: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
        out.extend(sums.iter().map(|s| s[1] as f32));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

impl CustomOp3 for BatchNormGradInput {
    fn name(&self) -> &'static str {
        "batch-norm-grad-input"
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
        let ([x, y, dy], dims @ (b, c, hw)) =
            three_maps(self.name(), [(s1, l1), (s2, l2), (s3, l3)])?;
        let per_channel = [
            &self.mean,
            &self.inv_std,
            &self.gamma,
            &self.sum_g,
            &self.sum_gx,
        ];
        if per_channel.iter().any(|v| v.len() != c) {
            bail!(
                "{}: per-channel values for another width than x {:?}",
                self.name(),
                l1.dims()
            );
        }
        let n = (b * hw) as f32;
        let dx = per_chunk_map(dims, |ch, at, out| {
            let r = at..at + hw;
            let s = self.inv_std[ch];
            let (a, cc) = (self.sum_g[ch] / n, self.sum_gx[ch] / n);
            let k = self.gamma[ch] * s;
            let m = self.mean[ch];
            grad_input(
                &x[r.clone()],
                &y[r.clone()],
                &dy[r],
                out,
                m,
                s,
                k,
                a,
                cc,
                self.relu,
            )
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{grads_of, max_magnitude};
    use candle_core::{Device, Var};
    use cxr_testkit::seeded_normal;

    /// `(y, mean, var, dx, dγ, dβ)` of `Σ y ⊙ dy` through `f`, with all three inputs as
    /// variables.
    fn run(
        f: fn(&Tensor, &Tensor, &Tensor, f64, bool) -> Result<BatchNormOutput>,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        dy: &Tensor,
        relu: bool,
    ) -> Vec<Tensor> {
        let vars = [x, w, b].map(|t| Var::from_tensor(t).unwrap());
        let out = f(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            1e-5,
            relu,
        )
        .unwrap();
        let grads = grads_of(&out.y, dy);
        let mut all = vec![out.y, out.mean, out.var];
        all.extend(
            vars.iter()
                .map(|v| grads.get(v.as_tensor()).unwrap().clone()),
        );
        all
    }

    /// Largest `|a − b|` over the largest `|b|` (at least 1).
    fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
        let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap();
        max_magnitude(&d) / max_magnitude(b).max(1.0)
    }

    /// The fused op's values and gradients against the composed form in f64 on the same
    /// inputs, with and without the ReLU, on maps with a ragged `H·W` and a shifted mean (so
    /// that one-pass statistics would lose digits).
    #[test]
    fn matches_the_composed_form_in_f64() {
        for (dims, relu, seed) in [
            ((2, 5, 7, 9), true, 1),
            ((3, 4, 1, 1), false, 2),
            ((1, 3, 33, 17), true, 3),
        ] {
            let (bs, c, h, w) = dims;
            let x = seeded_normal(&[bs, c, h, w], seed)
                .affine(3.0, 40.0)
                .unwrap();
            let gamma = seeded_normal(&[c], seed + 10).affine(0.5, 1.0).unwrap();
            let beta = (seeded_normal(&[c], seed + 20) * 0.5).unwrap();
            let dy = seeded_normal(&[bs, c, h, w], seed + 30);
            let got = run(batch_norm_train, &x, &gamma, &beta, &dy, relu);
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            let want = run(
                batch_norm_train_composed,
                &f64_of(&x),
                &f64_of(&gamma),
                &f64_of(&beta),
                &f64_of(&dy),
                relu,
            );
            let names = ["y", "mean", "var", "dx", "dweight", "dbias"];
            for ((name, g), w) in names.iter().zip(&got).zip(&want) {
                assert_eq!(g.dtype(), DType::F32, "{name}");
                let e = rel_err(g, w);
                assert!(e < 2e-5, "{dims:?} relu {relu}: {name} relative error {e}");
            }
        }
    }

    /// The f32 composed form agrees as well, which is what other devices run.
    #[test]
    fn composed_f32_agrees_with_the_fused_op() {
        let x = seeded_normal(&[2, 6, 5, 5], 4);
        let (w, b) = (seeded_normal(&[6], 5), seeded_normal(&[6], 6));
        let dy = seeded_normal(&[2, 6, 5, 5], 7);
        let fused = run(batch_norm_train, &x, &w, &b, &dy, true);
        let composed = run(batch_norm_train_composed, &x, &w, &b, &dy, true);
        for (f, c) in fused.iter().zip(&composed) {
            assert!(rel_err(f, c) < 1e-5, "{}", rel_err(f, c));
        }
    }

    /// The evaluation-mode op's value and gradients (`x`, `scale`, `shift`) against the same
    /// formula composed in f64.
    #[test]
    fn channel_affine_matches_the_composed_form_in_f64() {
        for (relu, seed) in [(true, 8), (false, 9)] {
            let x = seeded_normal(&[2, 5, 6, 7], seed);
            let scale = seeded_normal(&[5], seed + 1);
            let shift = seeded_normal(&[5], seed + 2);
            let dy = seeded_normal(&[2, 5, 6, 7], seed + 3);
            let grads = |x: &Tensor, s: &Tensor, t: &Tensor, dy: &Tensor| {
                let vars = [x, s, t].map(|t| Var::from_tensor(t).unwrap());
                let (x, s, t) = (
                    vars[0].as_tensor(),
                    vars[1].as_tensor(),
                    vars[2].as_tensor(),
                );
                let y = if x.dtype() == DType::F32 {
                    channel_affine(x, s, t, relu).unwrap()
                } else {
                    let shape = (1, 5, 1, 1);
                    let y = x
                        .broadcast_mul(&s.reshape(shape).unwrap())
                        .unwrap()
                        .broadcast_add(&t.reshape(shape).unwrap())
                        .unwrap();
                    if relu {
                        y.relu().unwrap()
                    } else {
                        y
                    }
                };
                let g = grads_of(&y, dy);
                let mut all = vec![y];
                all.extend(vars.iter().map(|v| g.get(v.as_tensor()).unwrap().clone()));
                all
            };
            let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            let got = grads(&x, &scale, &shift, &dy);
            let want = grads(&f64_of(&x), &f64_of(&scale), &f64_of(&shift), &f64_of(&dy));
            for (name, (g, w)) in ["y", "dx", "dscale", "dshift"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                let e = rel_err(g, w);
                assert!(e < 1e-6, "relu {relu}: {name} relative error {e}");
            }
        }
    }

    #[test]
    fn rejects_parameters_of_another_width_and_maps_of_another_rank() {
        let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let ok = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
        let short = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
        let err = batch_norm_train(&x, &short, &ok, 1e-5, false).unwrap_err();
        assert!(err.to_string().contains("weight [2]"), "{err}");
        let flat = x.flatten_from(2).unwrap();
        assert!(batch_norm_train(&flat, &ok, &ok, 1e-5, false).is_err());
        let empty = Tensor::zeros((0, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let err = batch_norm_train(&empty, &ok, &ok, 1e-5, false).unwrap_err();
        assert!(err.to_string().contains("non-empty"), "{err}");
    }
}
