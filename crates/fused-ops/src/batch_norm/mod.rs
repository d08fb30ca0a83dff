//! Training-mode batch normalisation of a `[B, C, H, W]` map, optionally followed by ReLU, as
//! one op with a closed-form backward.
//!
//! Composed from tensor ops (a mean, the centred map, its square, a second mean, a scale, a
//! shift, the ReLU), a `ConvModule`'s BatchNorm + ReLU leaves about seven maps the size of its
//! input in the autograd graph: candle's ops hold their operands until the backward, whether
//! the backward reads them or not. Here the graph holds the input and the output only, as
//! PyTorch's does with an in-place ReLU, and the backward recomputes `x̂` from the input and
//! the batch statistics. [`channel_affine`] is the evaluation-mode form (running statistics
//! folded into a per-channel scale and shift), with the same economy, and [`channel_bias`] a
//! convolution's bias, whose gradient is one pass of channel sums.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor};

mod affine;
mod bias;
mod kernels;

use crate::storage::f32_slice;
pub use affine::{channel_affine, ChannelAffine};
pub use bias::{channel_bias, ChannelBias, ChannelSums};
use kernels::{
    channel_sums, grad_input, grad_sums, map_dims, normalise, per_channel_sums, per_chunk_map,
    squared_deviations, three_maps,
};

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
    if !checked_for_fused("batch norm", x, [("weight", weight), ("bias", bias)])? {
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

/// Whether the fused CPU op takes `x` `[B, C, H, W]` and its per-channel operands (CPU, all
/// f32), once each operand is checked to hold `C` values (an error naming `op` and it).
fn checked_for_fused<const N: usize>(
    op: &str,
    x: &Tensor,
    per_channel: [(&str, &Tensor); N],
) -> Result<bool> {
    let (_, c, _, _) = x.dims4()?;
    for (what, t) in per_channel {
        if t.elem_count() != c {
            bail!(
                "{op}: {what} {:?} for a map of {c} channels {:?}",
                t.dims(),
                x.dims()
            );
        }
    }
    let all_f32 = per_channel.iter().all(|(_, t)| t.dtype() == DType::F32);
    Ok(x.device().is_cpu() && x.dtype() == DType::F32 && all_f32)
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

/// `relu?((x − μ) σ⁻¹ ⊙ a + b)` per channel of the map `x`, `a` and `b` the op's other two
/// operands (named `names` in errors) and `(μ, σ⁻¹)` the statistics of `centre` (none: 0, 1):
/// the forward of [`BatchNormTrain`] and of [`ChannelAffine`].
fn per_channel_affine(
    op: &str,
    [(s1, l1), (s2, l2), (s3, l3)]: [(&CpuStorage, &Layout); 3],
    names: [&str; 2],
    centre: Option<(&[f32], &[f32])>,
    relu: bool,
) -> Result<(CpuStorage, Shape)> {
    let dims @ (_, c, hw) = map_dims(l1, "x", op)?;
    let x = f32_slice(s1, l1, "x", op)?;
    let a = f32_slice(s2, l2, names[0], op)?;
    let b = f32_slice(s3, l3, names[1], op)?;
    if a.len() != c || b.len() != c || centre.is_some_and(|(m, _)| m.len() != c) {
        bail!(
            "{op}: {} {:?} and {} {:?} for {c} channels",
            names[0],
            l2.dims(),
            names[1],
            l3.dims()
        );
    }
    let y = per_chunk_map(dims, |ch, at, out| {
        let (mean, inv_std) = centre.map_or((0.0, 1.0), |(m, s)| (m[ch], s[ch]));
        normalise(&x[at..at + hw], out, mean, a[ch] * inv_std, b[ch], relu)
    });
    Ok((CpuStorage::F32(y), l1.shape().clone()))
}

/// `(dx, da, db)` of `y = relu?((x − μ) σ⁻¹ ⊙ a + b)` from `dy`: `da = Σ g x̂`, `db = Σ g`
/// per channel, and `dx` through the batch statistics when `batch_statistics` (training-mode
/// BatchNorm, whose `μ`, `σ` depend on `x`), else `a σ⁻¹ g` (constants, as in
/// [`ChannelAffine`]).
fn normalise_backward(
    x: &Tensor,
    y: &Tensor,
    dy: &Tensor,
    (mean, inv_std): (Vec<f32>, Vec<f32>),
    a: &Tensor,
    relu: bool,
    batch_statistics: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dy = dy.contiguous()?;
    let sums_op = BatchNormGradSums {
        mean: mean.clone(),
        inv_std: inv_std.clone(),
        relu,
    };
    let sums = x.apply_op3_no_bwd(y, &dy, &sums_op)?;
    let [sum_g, sum_gx]: [Vec<f32>; 2] = if batch_statistics {
        let rows = sums.to_vec2::<f32>()?;
        [rows[0].clone(), rows[1].clone()]
    } else {
        [vec![0f32; mean.len()], vec![0f32; mean.len()]]
    };
    let input_op = BatchNormGradInput {
        mean,
        inv_std,
        relu,
        gamma: a.to_vec1::<f32>()?,
        sum_g,
        sum_gx,
    };
    let dx = x.apply_op3_no_bwd(y, &dy, &input_op)?;
    Ok((dx, sums.get(1)?, sums.get(0)?))
}

impl CustomOp1 for BatchStatistics {
    fn name(&self) -> &'static str {
        "batch-norm-statistics"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims @ (b, c, hw) = map_dims(l, "x", self.name())?;
        let x = f32_slice(s, l, "x", self.name())?;
        let n = (b * hw) as f64;
        let means: Vec<f64> = channel_sums(x, dims).iter().map(|s| s / n).collect();
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
        let centre = Some((&self.mean[..], &self.inv_std[..]));
        let operands = [(s1, l1), (s2, l2), (s3, l3)];
        per_channel_affine(self.name(), operands, ["weight", "bias"], centre, self.relu)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = (self.mean.clone(), self.inv_std.clone());
        let (dx, dw, db) = normalise_backward(x, y, dy, stats, w, self.relu, true)?;
        Ok((Some(dx), Some(dw), Some(db)))
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

    /// Largest `|a − b|` over the largest `|b|` (at least 1); NaN when either holds a NaN
    /// (`max_magnitude` propagates it), so a NaN fails every `rel_err(..) < tol` check.
    pub(super) fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
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
