//! Seeded parameter initialisation (candle's own `randn` draws from an unseeded generator).

use candle_core::{DType, Device, Tensor};
use rand::Rng;

use crate::{Error, Result};

/// `torch.nn.init.trunc_normal_`'s distribution: normal `(mean, std)` restricted to the
/// absolute interval `[a, b]` (by rejection), drawn from `rng`. The values differ from
/// PyTorch's (another generator); the distribution is the same.
pub fn trunc_normal(
    shape: &[usize],
    mean: f64,
    std: f64,
    a: f64,
    b: f64,
    rng: &mut impl Rng,
    device: &Device,
) -> Result<Tensor> {
    if !(std > 0.0 && a < b && a <= mean + 6.0 * std && b >= mean - 6.0 * std) {
        return Err(Error::Config(format!(
            "trunc_normal: need std > 0 and an interval [{a}, {b}] near the mean {mean}"
        )));
    }
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        // Box–Muller
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        for z in [r * theta.cos(), r * theta.sin()] {
            let v = mean + std * z;
            if (a..=b).contains(&v) && out.len() < n {
                out.push(v as f32);
            }
        }
    }
    Ok(Tensor::from_vec(out, shape, device)?)
}

/// Uniform values in `[lo, hi)` from `rng`, f32.
pub fn uniform(
    shape: &[usize],
    lo: f64,
    hi: f64,
    rng: &mut impl Rng,
    device: &Device,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| (lo + (hi - lo) * rng.random::<f64>()) as f32)
        .collect();
    Ok(Tensor::from_vec(v, shape, device)?.to_dtype(DType::F32)?)
}
