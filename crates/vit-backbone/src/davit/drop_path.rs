//! Stochastic depth masks, drawn from a counter-based generator so a run is reproducible.

use candle_core::{DType, Device, Result, Tensor};

/// A uniform draw in [0, 1) from `(seed, call, block, branch, sample)` (splitmix64 finaliser).
/// The ViT's stochastic depth draws from it too, so both backbones replay a run the same way.
pub(crate) fn unit_uniform(seed: u64, call: u64, block: u64, branch: u64, sample: u64) -> f64 {
    let mut z = seed
        ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ block.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ branch.wrapping_mul(0x1656_67B1_9E37_79F9)
        ^ sample.wrapping_mul(0x27D4_EB2F_1656_67C5);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Where one forward pass draws its masks from.
#[derive(Debug, Clone, Copy)]
pub struct DropPathDraw {
    /// Seed of the run.
    pub seed: u64,
    /// Index of the forward call.
    pub call: u64,
}

impl DropPathDraw {
    /// `[B, 1, 1]` keep mask divided by the keep probability, as timm's `DropPath` draws it
    /// (`floor(u + keep) / keep`), for residual `branch` of global block `block`.
    pub fn mask(
        &self,
        rate: f64,
        block: usize,
        branch: u64,
        batch: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let keep = 1.0 - rate;
        let v: Vec<f32> = (0..batch)
            .map(|s| {
                let u = unit_uniform(self.seed, self.call, block as u64, branch, s as u64);
                ((u + keep).floor() / keep) as f32
            })
            .collect();
        Tensor::from_vec(v, (batch, 1, 1), device)?.to_dtype(dtype)
    }
}
