//! Seeded random llama weights (transformers' `_init_weights`: normal(0, initializer_range)
//! matrices, unit RMSNorm weights) and writing a `LlamaForCausalLM` directory, for small
//! experiments and benchmarks without a pretrained checkpoint.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::LlamaConfig;
use crate::weights::Weights;
use crate::{Error, Result};

fn normal(shape: &[usize], std: f64, rng: &mut ChaCha8Rng, device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            // Box-Muller
            let u1: f64 = rng.random::<f64>().max(1e-300);
            let u2: f64 = rng.random::<f64>();
            (std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// Random `LlamaForCausalLM` weights for `cfg` (HF names, f32), seeded.
pub fn random_llama(cfg: &LlamaConfig, std: f64, seed: u64, device: &Device) -> Result<Weights> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (h, v, i) = (cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size);
    let (hd, nh, kv) = (cfg.head_dim(), cfg.num_attention_heads, cfg.num_kv_heads());
    let mut t = HashMap::new();
    t.insert(
        "model.embed_tokens.weight".to_owned(),
        normal(&[v, h], std, &mut rng, device)?,
    );
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}.");
        for (n, s) in [
            ("self_attn.q_proj", [nh * hd, h]),
            ("self_attn.k_proj", [kv * hd, h]),
            ("self_attn.v_proj", [kv * hd, h]),
            ("self_attn.o_proj", [h, nh * hd]),
            ("mlp.gate_proj", [i, h]),
            ("mlp.up_proj", [i, h]),
            ("mlp.down_proj", [h, i]),
        ] {
            t.insert(format!("{p}{n}.weight"), normal(&s, std, &mut rng, device)?);
        }
        for n in ["input_layernorm", "post_attention_layernorm"] {
            t.insert(
                format!("{p}{n}.weight"),
                Tensor::ones(h, candle_core::DType::F32, device)?,
            );
        }
    }
    t.insert(
        "model.norm.weight".to_owned(),
        Tensor::ones(h, candle_core::DType::F32, device)?,
    );
    if !cfg.tie_word_embeddings {
        t.insert(
            "lm_head.weight".to_owned(),
            normal(&[v, h], std, &mut rng, device)?,
        );
    }
    Ok(Weights::from_map(format!("random llama (seed {seed})"), t))
}

/// Writes `config.json` and `model.safetensors` of a `LlamaForCausalLM` directory.
pub fn save_llama_dir(dir: &Path, cfg: &LlamaConfig, weights: &Weights) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut json = serde_json::to_value(cfg)
        .map_err(|e| Error::config(dir, format!("config not serialisable: {e}")))?;
    if let Some(o) = json.as_object_mut() {
        o.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForCausalLM"]),
        );
        o.insert("model_type".into(), serde_json::json!("llama"));
    }
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&json)
        .map_err(|e| Error::config(&path, format!("config not serialisable: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    candle_core::safetensors::save(&weights.tensors, dir.join("model.safetensors"))?;
    Ok(())
}
