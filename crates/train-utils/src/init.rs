//! Seeded parameter initialisation (candle's own `randn` draws from an unseeded generator).

use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{named_vars, Error, Result};

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
    let mut out = std::collections::HashMap::new();
    for (name, var) in named_vars(varmap) {
        let t = var.as_tensor();
        let flat = t.flatten_all()?.to_dtype(DType::F32)?;
        let constant = flat.max(0)?.to_scalar::<f32>()? == flat.min(0)?.to_scalar::<f32>()?;
        let value = if name.ends_with(".bias") || name.ends_with("_bias") {
            t.zeros_like()?
        } else if constant {
            t.clone()
        } else {
            trunc_normal(t.dims(), 0.0, 0.02, -2.0, 2.0, &mut rng, device)?
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// Re-draws, in place and from a seeded generator, the variables of a freshly built DINOv2
/// ViT the way dinov2's `DinoVisionTransformer.init_weights` does for training from scratch:
/// position embeddings truncated normal (std 0.02, cut at ±2); CLS and register tokens
/// normal with std 1e-6; every linear layer's weight truncated normal (std 0.02, ±2) and its
/// bias 0 (`init_weights_vit_timm`); the patch-embedding convolution with PyTorch's default
/// `Conv2d` init, uniform in ±1/√fan_in (dinov2 leaves it so); the mask token, the norms and
/// the layer-scale gammas keep the constants the model was built with. Names are drawn in
/// sorted order, so one `seed` always gives the same model. Variables are recognised by the
/// `transformers` names (`…position_embeddings`, `…cls_token`, `…patch_embeddings.projection.*`)
/// and by rank (a 2-D `.weight` is a linear layer's); call it before adding other modules
/// (heads) to `varmap`.
pub fn dinov2_vit_init(varmap: &candle_nn::VarMap, seed: u64, device: &Device) -> Result<()> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let vars = named_vars(varmap);
    let data: std::collections::HashMap<&str, &candle_core::Var> =
        vars.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let rank_of = |name: &str| data.get(name).map(|v| v.as_tensor().rank());
    for (name, var) in &vars {
        let dims = var.as_tensor().dims().to_vec();
        let value = if name.ends_with("position_embeddings") {
            trunc_normal(&dims, 0.0, 0.02, -2.0, 2.0, &mut rng, device)?
        } else if name.ends_with("cls_token") || name.ends_with("register_tokens") {
            trunc_normal(&dims, 0.0, 1e-6, -2.0, 2.0, &mut rng, device)?
        } else if let Some(stem) = name
            .strip_suffix("patch_embeddings.projection.weight")
            .or_else(|| name.strip_suffix("patch_embeddings.projection.bias"))
        {
            let weight = format!("{stem}patch_embeddings.projection.weight");
            let w = data
                .get(weight.as_str())
                .ok_or_else(|| Error::Config(format!("dinov2_vit_init: no {weight}")))?;
            let fan_in: usize = w.as_tensor().dims().iter().skip(1).product();
            let bound = 1.0 / (fan_in as f64).sqrt();
            uniform(&dims, -bound, bound, &mut rng, device)?
        } else if dims.len() == 2 && name.ends_with(".weight") {
            trunc_normal(&dims, 0.0, 0.02, -2.0, 2.0, &mut rng, device)?
        } else if let Some(stem) = name.strip_suffix(".bias") {
            if rank_of(&format!("{stem}.weight")) != Some(2) {
                continue; // a norm's bias: keeps its constant
            }
            Tensor::zeros(dims.as_slice(), DType::F32, device)?
        } else {
            continue; // mask token, norm weights, layer-scale gammas
        };
        var.set(&value.to_dtype(var.as_tensor().dtype())?)?;
    }
    Ok(())
}

/// A `VarBuilder` over `varmap` whose new variables are drawn from a generator seeded with
/// `seed`, by the distribution their [`Init`] names, as candle would draw them (candle's own
/// draws come from an unseeded generator). A model built through it twice with one seed gets
/// the same variables, drawn in the order the model asks for them; variables already in
/// `varmap` are returned as they are.
pub fn seeded_var_builder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVarMap {
            varmap: varmap.clone(),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }),
        dtype,
        device.clone(),
    )
}

/// The backend of [`seeded_var_builder`].
struct SeededVarMap {
    varmap: VarMap,
    rng: Mutex<ChaCha8Rng>,
}

impl SeededVarMap {
    /// A tensor of `shape` as `init` describes it, from the seeded generator.
    fn draw(&self, shape: &Shape, init: Init, device: &Device) -> candle_core::Result<Tensor> {
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("seeded init: generator lock poisoned".into()))?;
        let dims = shape.dims();
        let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| {
            // practically untruncated: 40 standard deviations either side
            trunc_normal(
                dims,
                mean,
                std,
                mean - 40.0 * std,
                mean + 40.0 * std,
                rng,
                device,
            )
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
        };
        let wrap = |e: Error| candle_core::Error::Msg(e.to_string());
        match init {
            Init::Const(v) => Tensor::ones(dims, DType::F32, device)?.affine(v, 0.0),
            Init::Uniform { lo, up } => uniform(dims, lo, up, &mut *rng, device).map_err(wrap),
            Init::Randn { mean, stdev } if stdev > 0.0 => normal(&mut rng, mean, stdev),
            Init::Randn { mean, .. } => Tensor::ones(dims, DType::F32, device)?.affine(0.0, mean),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(dims, -bound, bound, &mut *rng, device).map_err(wrap)
                    }
                    NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
                }
            }
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        path: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("seeded init: VarMap lock poisoned".into()))?;
        if let Some(var) = data.get(path) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "seeded init: {path} is {:?}, asked for {:?}",
                    var.dims(),
                    shape.dims()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let value = self.draw(&shape, init, device)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&value)?;
        let tensor = var.as_tensor().clone();
        data.insert(path.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _: &Device) -> candle_core::Result<Tensor> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("seeded init: VarMap lock poisoned".into()))?;
        match data.get(name) {
            Some(var) => var.as_tensor().to_dtype(dtype),
            None => candle_core::bail!("seeded init: no variable {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .is_ok_and(|d| d.contains_key(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{Init, VarMap};

    /// A small "model": a Kaiming-uniform conv weight, a normal matrix, a constant.
    fn build(seed: u64) -> (VarMap, Vec<Vec<f32>>) {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, seed, DType::F32, &Device::Cpu);
        let conv = vb
            .get_with_hints(
                (8, 4, 3, 3),
                "conv.weight",
                candle_nn::init::DEFAULT_KAIMING_UNIFORM,
            )
            .unwrap();
        let lin = vb
            .pp("head")
            .get_with_hints(
                (5, 6),
                "weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
            )
            .unwrap();
        let one = vb
            .get_with_hints(3, "norm.weight", Init::Const(1.0))
            .unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let values = vec![flat(&conv), flat(&lin), flat(&one)];
        (vm, values)
    }

    #[test]
    fn a_seeded_var_builder_draws_the_same_model_from_the_same_seed() {
        let (vm, a) = build(7);
        let (_, b) = build(7);
        let (_, c) = build(8);
        assert_eq!(a, b, "one seed, one model");
        assert_ne!(a[0], c[0]);
        assert_ne!(a[1], c[1]);
        // the distributions candle would use: Kaiming uniform within its bound (fan in 36,
        // gain for leaky ReLU), a std-0.01 normal, the constant exactly
        let bound = 3f64.sqrt() * NonLin::gain() / 36f64.sqrt();
        assert!(a[0].iter().all(|v| f64::from(v.abs()) <= bound));
        let std = (a[1].iter().map(|v| f64::from(v * v)).sum::<f64>() / 30.0).sqrt();
        assert!((0.005..0.02).contains(&std), "std {std}");
        assert_eq!(a[2], vec![1.0; 3]);
        // the variables are the VarMap's, and a second request returns them unchanged
        assert_eq!(vm.all_vars().len(), 3);
        let again = seeded_var_builder(&vm, 99, DType::F32, &Device::Cpu)
            .pp("head")
            .get_with_hints((5, 6), "weight", Init::Const(0.0))
            .unwrap();
        assert_eq!(again.flatten_all().unwrap().to_vec1::<f32>().unwrap(), a[1]);
        assert!(seeded_var_builder(&vm, 1, DType::F32, &Device::Cpu)
            .pp("head")
            .get_with_hints((6, 5), "weight", Init::Const(0.0))
            .is_err());
    }

    /// The gain of candle's default Kaiming initialisation.
    struct NonLin;
    impl NonLin {
        fn gain() -> f64 {
            match candle_nn::init::DEFAULT_KAIMING_UNIFORM {
                Init::Kaiming { non_linearity, .. } => non_linearity.gain(),
                _ => unreachable!(),
            }
        }
    }

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

    #[test]
    fn dinov2_vit_init_follows_dinov2_and_is_seeded() {
        let dev = Device::Cpu;
        let build = || {
            let vm = VarMap::new();
            let randn = Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            };
            let get = |shape: &[usize], name: &str, init: Init| {
                vm.get(shape, name, init, DType::F32, &dev).unwrap();
            };
            get(&[1, 1, 8], "embeddings.cls_token", randn);
            get(&[1, 17, 8], "embeddings.position_embeddings", randn);
            get(&[1, 8], "embeddings.mask_token", Init::Const(0.0));
            let conv = "embeddings.patch_embeddings.projection";
            get(&[8, 3, 4, 4], &format!("{conv}.weight"), randn);
            get(&[8], &format!("{conv}.bias"), randn);
            get(&[32, 8], "encoder.layer.0.mlp.fc1.weight", randn);
            get(&[32], "encoder.layer.0.mlp.fc1.bias", randn);
            get(&[8], "encoder.layer.0.norm1.weight", Init::Const(1.0));
            get(&[8], "encoder.layer.0.norm1.bias", Init::Const(0.0));
            get(
                &[8],
                "encoder.layer.0.layer_scale1.lambda1",
                Init::Const(1e-5),
            );
            vm
        };
        let values = |vm: &VarMap, name: &str| -> Vec<f32> {
            let data = vm.data().lock().unwrap();
            data[name]
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (a, b, c) = (build(), build(), build());
        dinov2_vit_init(&a, 3, &dev).unwrap();
        dinov2_vit_init(&b, 3, &dev).unwrap();
        dinov2_vit_init(&c, 4, &dev).unwrap();
        let fc1 = "encoder.layer.0.mlp.fc1.weight";
        assert_eq!(values(&a, fc1), values(&b, fc1));
        assert_ne!(values(&a, fc1), values(&c, fc1));
        let std = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
        assert!((std(&values(&a, fc1)) - 0.02).abs() < 0.005);
        let pos = values(&a, "embeddings.position_embeddings");
        assert!((std(&pos) - 0.02).abs() < 0.005);
        let cls = values(&a, "embeddings.cls_token");
        assert!(cls.iter().all(|v| v.abs() < 1e-5) && cls.iter().any(|&v| v != 0.0));
        let bound = 1.0 / 48f32.sqrt();
        for name in ["weight", "bias"] {
            let v = values(
                &a,
                &format!("embeddings.patch_embeddings.projection.{name}"),
            );
            assert!(v.iter().all(|x| x.abs() <= bound) && std(&v) > bound / 4.0);
        }
        assert_eq!(values(&a, "encoder.layer.0.mlp.fc1.bias"), vec![0.0; 32]);
        assert_eq!(values(&a, "encoder.layer.0.norm1.weight"), vec![1.0; 8]);
        assert_eq!(values(&a, "encoder.layer.0.norm1.bias"), vec![0.0; 8]);
        assert_eq!(
            values(&a, "encoder.layer.0.layer_scale1.lambda1"),
            vec![1e-5; 8]
        );
        assert_eq!(values(&a, "embeddings.mask_token"), vec![0.0; 8]);
    }
}
