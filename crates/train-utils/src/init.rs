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

/// Plain tensors for every variable of `varmap`, re-drawn the way Hugging Face's
/// `_init_weights` initialises ViTs: biases 0; variables the model created constant (norm
/// weights and biases, layer-scale gammas) kept as they are; every other tensor (matrices,
/// convolutions, tokens, position embeddings) truncated normal, std 0.02, cut at ±2 (the
/// absolute cut HF uses). Names are drawn in sorted order so one `seed` always gives the same
/// model. Build an inference model from the result with `VarBuilder::from_tensors`.
pub fn hf_vit_reinit(
    varmap: &candle_nn::VarMap,
    seed: u64,
    device: &Device,
) -> Result<std::collections::HashMap<String, Tensor>> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Config("hf_vit_reinit: poisoned VarMap".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut out = std::collections::HashMap::new();
    for name in names {
        let t = data[name].as_tensor();
        let flat = t.flatten_all()?.to_dtype(DType::F32)?;
        let constant = flat.max(0)?.to_scalar::<f32>()? == flat.min(0)?.to_scalar::<f32>()?;
        let value = if name.ends_with(".bias") || name.ends_with("_bias") {
            t.zeros_like()?
        } else if constant {
            t.clone()
        } else {
            trunc_normal(t.dims(), 0.0, 0.02, -2.0, 2.0, &mut rng, device)?
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{Init, VarMap};

    #[test]
    fn hf_vit_reinit_is_seeded_and_keeps_constants() {
        let vm = VarMap::new();
        let dev = Device::Cpu;
        vm.get(
            (4, 3),
            "layer.weight",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
            DType::F32,
            &dev,
        )
        .unwrap();
        vm.get(4, "layer.bias", Init::Const(0.5), DType::F32, &dev)
            .unwrap();
        vm.get(4, "norm.weight", Init::Const(1.0), DType::F32, &dev)
            .unwrap();
        let a = hf_vit_reinit(&vm, 7, &dev).unwrap();
        let b = hf_vit_reinit(&vm, 7, &dev).unwrap();
        let c = hf_vit_reinit(&vm, 8, &dev).unwrap();
        let w = |m: &std::collections::HashMap<String, Tensor>| {
            m["layer.weight"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(w(&a), w(&b));
        assert_ne!(w(&a), w(&c));
        assert!(w(&a).iter().all(|v| v.abs() <= 2.0 && *v != 0.0));
        let bias = a["layer.bias"].to_vec1::<f32>().unwrap();
        assert_eq!(bias, vec![0.0; 4]);
        assert_eq!(a["norm.weight"].to_vec1::<f32>().unwrap(), vec![1.0; 4]);
    }
}
