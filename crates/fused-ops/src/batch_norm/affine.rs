//! Evaluation-mode BatchNorm (+ ReLU) as one op: the running statistics folded into a
//! per-channel scale and shift, whose autograd node keeps the input and the output only.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::{checked_for_fused, normalise_backward, per_channel_affine};

/// `x ⊙ scale + shift` per channel of `x` `[B, C, H, W]` (`scale`, `shift` `[C]`), then ReLU
/// when `relu`: an evaluation-mode BatchNorm with its running statistics folded in (`scale =
/// γ / √(σ² + ε)`, `shift = β − μ ⊙ scale`, PyTorch's CPU inference form), differentiable in
/// all three. On the CPU in f32 one op whose node keeps `x` and `y` only; elsewhere composed.
pub fn channel_affine(x: &Tensor, scale: &Tensor, shift: &Tensor, relu: bool) -> Result<Tensor> {
    if !checked_for_fused("channel affine", x, [("scale", scale), ("shift", shift)])? {
        let shape = (1, x.dim(1)?, 1, 1);
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
/// [`super::BatchNormGradSums`] and [`super::BatchNormGradInput`] with a zero mean, a unit
/// deviation and no batch-statistics terms.
#[derive(Debug, Clone, Copy)]
pub struct ChannelAffine {
    relu: bool,
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
        let operands = [(s1, l1), (s2, l2), (s3, l3)];
        per_channel_affine(self.name(), operands, ["scale", "shift"], None, self.relu)
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _shift: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = scale.elem_count();
        let stats = (vec![0f32; c], vec![1f32; c]);
        let (dx, ds, dt) = normalise_backward(x, y, dy, stats, scale, self.relu, false)?;
        Ok((Some(dx), Some(ds), Some(dt)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_norm::tests::rel_err;
    use crate::test_util::grads_of;
    use candle_core::{DType, Var};
    use cxr_testkit::seeded_normal;

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
}
