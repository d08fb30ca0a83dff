//! Gradients reach the projector (and LoRA adapters) through the frozen decoder: every
//! trainable variable gets a finite, non-zero gradient, and the projector gradient matches
//! central finite differences in f64.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use crate::common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use common::{fixture_dir, load};
use llava_bridge::lora::{add_lora, LoraConfig};
use llava_bridge::{Llama, Projector, ReportGenerator, Weights};
use rand::SeedableRng;

fn generator_f64() -> (ReportGenerator, VarMap) {
    let dir = fixture_dir();
    let lm = Llama::from_dir(&dir.join("lm"), DType::F64, &Device::Cpu).unwrap();
    let vm = VarMap::new();
    let pw = Weights::read(
        &[dir.join("projector.safetensors")],
        DType::F64,
        &Device::Cpu,
    )
    .unwrap();
    let p = Projector::load(&pw, "multi_modal_projector", 24, 32, &vm, DType::F64).unwrap();
    (ReportGenerator::new(p, lm).unwrap(), vm)
}

#[test]
fn projector_gradient_matches_finite_differences() {
    let f = load();
    let examples = [f.example(0, true), f.example(1, true)];
    let (gen, _vm) = generator_f64();
    let feats = f.t("image_features").to_dtype(DType::F64).unwrap();
    let loss = gen.loss(&feats, &examples).unwrap();
    let grads = loss.backward().unwrap();
    let vars = gen.projector.named_vars("p");
    let h = 1e-6;
    for (name, var) in &vars {
        let g: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let dims = var.as_tensor().dims().to_vec();
        // a spread of entries of each tensor
        for k in (0..base.len()).step_by(base.len() / 5 + 1) {
            let eval = |delta: f64| {
                let mut v = base.clone();
                v[k] += delta;
                var.set(&Tensor::from_vec(v, dims.as_slice(), &Device::Cpu).unwrap())
                    .unwrap();
                gen.loss(&feats, &examples)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let fd = (eval(h) - eval(-h)) / (2.0 * h);
            eval(0.0);
            assert!(
                (fd - g[k]).abs() < 1e-6 + 1e-4 * fd.abs(),
                "{name}[{k}]: autograd {} vs finite differences {fd}",
                g[k]
            );
        }
    }
}

#[test]
fn every_trainable_variable_gets_a_finite_nonzero_gradient() {
    let f = load();
    let examples = [f.example(0, true), f.example(1, true)];
    let mut gen = f.generator.clone();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let lora = add_lora(
        &mut gen.lm,
        &LoraConfig {
            rank: 4,
            alpha: 8.0,
        },
        &f.varmap,
        &mut rng,
    )
    .unwrap();
    // B starts at zero (so A's gradient would be zero): give B values first
    for (name, var) in &lora {
        if name.contains("lora_B") {
            let t = (Tensor::randn(0f32, 0.1, var.as_tensor().dims(), &Device::Cpu).unwrap())
                .to_dtype(DType::F32)
                .unwrap();
            var.set(&t).unwrap();
        }
    }
    let loss = gen.loss(f.t("image_features"), &examples).unwrap();
    let grads = loss.backward().unwrap();
    let mut vars = gen.projector.named_vars("multi_modal_projector");
    vars.extend(lora);
    assert_eq!(vars.len(), 4 + 2 * 2 * 2);
    for (name, var) in vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let n = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n.is_finite() && n > 0.0, "{name}: gradient norm² {n}");
    }
}

#[test]
fn lora_with_zero_b_leaves_the_decoder_unchanged() {
    let f = load();
    let ids = f.t("plain_ids").to_dtype(DType::U32).unwrap();
    let mut lm = f.generator.lm.clone();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let vm = VarMap::new();
    let vars = add_lora(
        &mut lm,
        &LoraConfig {
            rank: 2,
            alpha: 4.0,
        },
        &vm,
        &mut rng,
    )
    .unwrap();
    let a = lm
        .forward_ids(&ids, None, llava_bridge::Kernels::Fused)
        .unwrap();
    let d = common::max_diff(&a, f.t("plain_logits"));
    assert!(d < 1e-4, "zero-B LoRA changed logits by {d}");
    assert!(vars[0]
        .0
        .starts_with("model.layers.0.self_attn.q_proj.lora_A"));
}

/// `report_gen train --tiny-lm --train-lm` builds the decoder on `Var`s (the weights of
/// `Weights::from_map` are the variables' tensors): every decoder weight must then train.
#[test]
fn decoder_built_on_vars_gets_a_gradient_in_every_weight() {
    let f = load();
    let examples = [f.example(0, true), f.example(1, true)];
    let dir = fixture_dir().join("lm");
    let cfg = llava_bridge::LlamaConfig::from_file(dir.join("config.json")).unwrap();
    let mut vars = Vec::new();
    let mut tensors = std::collections::HashMap::new();
    let files = llava_bridge::weights::model_files(&dir).unwrap();
    let loaded = files
        .iter()
        .flat_map(|p| candle_core::safetensors::load(p, &Device::Cpu).unwrap());
    for (name, t) in loaded {
        let v = candle_core::Var::from_tensor(&t.to_dtype(DType::F32).unwrap()).unwrap();
        tensors.insert(name.clone(), v.as_tensor().clone());
        vars.push((name, v));
    }
    let w = Weights::from_map("vars", tensors);
    let lm = Llama::new(&cfg, &w, &llava_bridge::LlamaKeys::detect(&w).unwrap()).unwrap();
    let mut gen = f.generator.clone();
    gen.lm = lm;
    let loss = gen.loss(f.t("image_features"), &examples).unwrap();
    let grads = loss.backward().unwrap();
    assert!(vars.len() > 5);
    for (name, var) in vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let n = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n.is_finite() && n > 0.0, "{name}: gradient norm² {n}");
    }
}
