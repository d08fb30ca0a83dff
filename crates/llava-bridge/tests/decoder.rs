//! Decoder behaviour beyond the fixtures: KV cache against full recomputation, fused against
//! differentiable kernels on a wider GQA config, tied heads, configuration errors.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use crate::common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use llava_bridge::config::LlamaConfig;
use llava_bridge::{Error, Kernels, Llama, LlamaKeys, Weights};

/// Weights drawn from a seeded stream (uniform, standard deviation 0.2), so every run checks
/// the same model: candle's CPU `randn` cannot be seeded, and a tolerance met by most draws
/// would fail on some.
fn random_weights(cfg: &LlamaConfig, tied: bool) -> Weights {
    use rand::{Rng, SeedableRng};
    let mut t = HashMap::new();
    let (h, v, i) = (cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size);
    let (hd, nh, kv) = (cfg.head_dim(), cfg.num_attention_heads, cfg.num_kv_heads());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let a = 0.2 * 3f32.sqrt();
    let mut r = |shape: &[usize]| {
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-a..a)).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    };
    t.insert("model.embed_tokens.weight".into(), r(&[v, h]));
    if !tied {
        t.insert("lm_head.weight".into(), r(&[v, h]));
    }
    t.insert("model.norm.weight".into(), (r(&[h]) + 1.0).unwrap());
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
            t.insert(format!("{p}{n}.weight"), r(&s));
        }
        t.insert(
            format!("{p}input_layernorm.weight"),
            (r(&[h]) + 1.0).unwrap(),
        );
        t.insert(
            format!("{p}post_attention_layernorm.weight"),
            (r(&[h]) + 1.0).unwrap(),
        );
    }
    Weights::from_map("random", t)
}

fn gqa_config() -> LlamaConfig {
    let mut cfg = LlamaConfig::tiny(64, 48, 3, 6);
    cfg.num_key_value_heads = Some(2);
    cfg
}

#[test]
fn kv_cached_steps_match_full_forward() {
    let cfg = gqa_config();
    let lm = Llama::new(&cfg, &random_weights(&cfg, false), &LlamaKeys::causal_lm()).unwrap();
    let ids = Tensor::from_vec(
        (0..20u32).map(|x| (x * 7) % 64).collect(),
        (2, 10),
        &Device::Cpu,
    )
    .unwrap();
    let full = lm.forward_ids(&ids, None, Kernels::Differentiable).unwrap();
    // fused kernels (no backward) against the differentiable path, no cache
    let fused = lm.forward_ids(&ids, None, Kernels::Fused).unwrap();
    let d = common::max_diff(&fused, &full);
    assert!(d < 1e-5, "fused vs differentiable max |diff| {d}");
    for kernels in [Kernels::Fused, Kernels::Differentiable] {
        let mut cache = lm.new_cache();
        // a 4-token prefill, then one token at a time
        let mut parts = vec![lm
            .forward_ids(&ids.narrow(1, 0, 4).unwrap(), Some(&mut cache), kernels)
            .unwrap()];
        for t in 4..10 {
            parts.push(
                lm.forward_ids(&ids.narrow(1, t, 1).unwrap(), Some(&mut cache), kernels)
                    .unwrap(),
            );
        }
        assert_eq!(cache.len(), 10);
        let stepped = Tensor::cat(&parts, 1).unwrap();
        let d = common::max_diff(&stepped, &full);
        assert!(d < 1e-4, "{kernels:?}: cached vs full max |diff| {d}");
    }
}

#[test]
fn tied_head_uses_the_embedding() {
    let mut cfg = gqa_config();
    cfg.tie_word_embeddings = true;
    let w = random_weights(&cfg, true);
    let lm = Llama::new(&cfg, &w, &LlamaKeys::causal_lm()).unwrap();
    let h = Tensor::randn(0f32, 1.0, (1, 48), &Device::Cpu).unwrap();
    let expected = h
        .matmul(&w.tensors["model.embed_tokens.weight"].t().unwrap())
        .unwrap();
    assert!(common::max_diff(&lm.logits(&h).unwrap(), &expected) < 1e-5);
    // untied config without lm_head is an error that names the tensor
    cfg.tie_word_embeddings = false;
    let err = Llama::new(&cfg, &w, &LlamaKeys::causal_lm()).unwrap_err();
    assert!(matches!(err, Error::MissingTensor { ref tensor, .. } if tensor == "lm_head.weight"));
}

#[test]
fn unsupported_configs_are_rejected() {
    let mut cfg = gqa_config();
    cfg.rope_scaling = Some(serde_json::json!({"rope_type": "linear", "factor": 2.0}));
    let err = cfg
        .validate(std::path::Path::new("config.json"))
        .unwrap_err();
    assert!(err.to_string().contains("linear"), "{err}");
    let mut cfg = gqa_config();
    cfg.num_key_value_heads = Some(4);
    assert!(cfg.validate(std::path::Path::new("c")).is_err());
    // values transformers reads without complaint that divide by zero or give NaN logits
    type Edit = fn(&mut LlamaConfig);
    let cases: [(&str, Edit); 5] = [
        ("num_key_value_heads 0", |c| c.num_key_value_heads = Some(0)),
        ("head_dim 0 is zero or odd", |c| c.head_dim = Some(0)),
        ("rms_norm_eps 0 is not a positive number", |c| {
            c.rms_norm_eps = 0.0
        }),
        ("rms_norm_eps -1 is not", |c| c.rms_norm_eps = -1.0),
        ("rope_theta -0.5 is not a positive number", |c| {
            c.rope_theta = Some(-0.5)
        }),
    ];
    for (says, edit) in cases {
        let mut cfg = gqa_config();
        edit(&mut cfg);
        let err = cfg.validate(std::path::Path::new("c")).unwrap_err();
        assert!(err.to_string().contains(says), "{says}: {err}");
    }
    let cfg = gqa_config();
    let mut w = random_weights(&cfg, false);
    w.tensors.insert(
        "model.norm.weight".into(),
        Tensor::ones(47, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = Llama::new(&cfg, &w, &LlamaKeys::causal_lm()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let ids = Tensor::from_vec(vec![64u32], (1, 1), &Device::Cpu).unwrap();
    let lm = Llama::new(&cfg, &random_weights(&cfg, false), &LlamaKeys::causal_lm()).unwrap();
    assert!(lm.forward_ids(&ids, None, Kernels::Fused).is_err());
}

#[test]
fn transformers_5_rope_parameters_are_read() {
    let cfg: LlamaConfig = serde_json::from_str(
        r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2,
            "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
            "eos_token_id": [2, 3]}"#,
    )
    .unwrap();
    assert_eq!(cfg.rope_theta(), 500000.0);
    assert_eq!(cfg.eos_ids(), vec![2, 3]);
    assert_eq!(cfg.num_kv_heads(), 2);
}
