//! A per-channel bias on a `[B, C, H, W]` map (a convolution's), whose gradient is one pass of
//! per-channel sums. candle's backward of the broadcast add reduces over three strided axes,
//! which took a fifth of a ViTDet head's training step.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::checked_for_fused;
use super::kernels::{channel_sums, map_dims, normalise, per_chunk_map};
use crate::storage::f32_slice;

/// `x + b` per channel of `x` `[B, C, H, W]` (`b` `[C]`), differentiable in both. On the CPU
/// in f32 one op whose backward passes `dy` on and sums it per channel for `db`; elsewhere a
/// broadcast add.
pub fn channel_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !checked_for_fused("channel bias", x, [("bias", b)])? {
        return x.broadcast_add(&b.reshape((1, x.dim(1)?, 1, 1))?);
    }
    x.contiguous()?.apply_op2(&b.flatten_all()?, ChannelBias)
}

/// [`channel_bias`]'s op (`CustomOp2` on `x`, `b`, CPU f32); its backward is `dy` itself and
/// [`ChannelSums`] of it.
#[derive(Debug, Clone, Copy)]
pub struct ChannelBias;

/// The sum of each channel of a contiguous f32 `[B, C, H, W]` map over `(B, H, W)`, `[C]`
/// (`CustomOp1`, CPU), accumulated in f64.
#[derive(Debug, Clone, Copy)]
pub struct ChannelSums;

impl CustomOp2 for ChannelBias {
    fn name(&self) -> &'static str {
        "channel-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims @ (_, c, hw) = map_dims(l1, "x", self.name())?;
        let x = f32_slice(s1, l1, "x", self.name())?;
        let b = f32_slice(s2, l2, "bias", self.name())?;
        if b.len() != c {
            bail!("{}: bias {:?} for {c} channels", self.name(), l2.dims());
        }
        // (v − 0) · 1 + b is v + b exactly
        let y = per_chunk_map(dims, |ch, at, out| {
            normalise(&x[at..at + hw], out, 0.0, 1.0, b[ch], false)
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = dy.contiguous()?.apply_op1_no_bwd(&ChannelSums)?;
        Ok((Some(dy.clone()), Some(db)))
    }
}

impl CustomOp1 for ChannelSums {
    fn name(&self) -> &'static str {
        "channel-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims @ (_, c, _) = map_dims(l, "x", self.name())?;
        let x = f32_slice(s, l, "x", self.name())?;
        let sums = channel_sums(x, dims).iter().map(|&s| s as f32).collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_norm::tests::rel_err;
    use crate::test_util::grads_of;
    use candle_core::{DType, Var};
    use cxr_testkit::seeded_normal;

    /// Value and both gradients against the broadcast add in f64, on a map whose `H·W` is not
    /// a multiple of the kernels' lanes.
    #[test]
    fn channel_bias_matches_the_broadcast_add_in_f64() {
        let x = seeded_normal(&[3, 4, 5, 7], 21);
        let b = seeded_normal(&[4], 22);
        let dy = seeded_normal(&[3, 4, 5, 7], 23);
        let run = |x: &Tensor, b: &Tensor, dy: &Tensor| {
            let (vx, vb) = (Var::from_tensor(x).unwrap(), Var::from_tensor(b).unwrap());
            let y = if x.dtype() == DType::F32 {
                channel_bias(vx.as_tensor(), vb.as_tensor()).unwrap()
            } else {
                let b4 = vb.as_tensor().reshape((1, 4, 1, 1)).unwrap();
                vx.as_tensor().broadcast_add(&b4).unwrap()
            };
            let g = grads_of(&y, dy);
            let (gx, gb) = (
                g.get(vx.as_tensor()).unwrap(),
                g.get(vb.as_tensor()).unwrap(),
            );
            [y.clone(), gx.clone(), gb.clone()]
        };
        let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let got = run(&x, &b, &dy);
        let want = run(&f64_of(&x), &f64_of(&b), &f64_of(&dy));
        for (name, (g, w)) in ["y", "dx", "db"].iter().zip(got.iter().zip(&want)) {
            assert_eq!(g.dtype(), DType::F32, "{name}");
            let e = rel_err(g, w);
            assert!(e < 1e-6, "{name} relative error {e}");
        }
        let short = seeded_normal(&[3], 24);
        let err = channel_bias(&x, &short).unwrap_err();
        assert!(err.to_string().contains("bias [3]"), "{err}");
    }
}
