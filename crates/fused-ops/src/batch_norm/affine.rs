//! Evaluation-mode BatchNorm (+ ReLU) as one op: the running statistics folded into a
//! per-channel scale and shift, whose autograd node keeps the input and the output only.

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::kernels::{map_dims, normalise, per_chunk_map};
use super::{BatchNormGradInput, BatchNormGradSums};
use crate::storage::f32_slice;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_norm::tests::rel_err;
    use crate::test_util::grads_of;
    use candle_core::Var;
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
