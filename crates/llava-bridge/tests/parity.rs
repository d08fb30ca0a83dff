//! Parity with transformers: `LlavaMultiModalProjector`, `LlamaForCausalLM` logits (token
//! ids and LLaVA-spliced embeddings), the report-token loss and its projector gradients, and
//! `generate` (greedy and beam search with 3 beams). Fixtures from `tests/gen.py`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use crate::common;

use candle_core::{DType, Tensor};
use common::{load, max_diff};
use llava_bridge::generate::{generate, Decoding, GenerationConfig};
use llava_bridge::Kernels;

const LOGIT_TOL: f32 = 1e-4;

#[test]
fn projector_matches_transformers() {
    let f = load();
    let out = f
        .generator
        .projector
        .forward(f.t("image_features"))
        .unwrap();
    let d = max_diff(&out, f.t("projector_out"));
    eprintln!("projector max |diff| {d:.2e}");
    assert!(d < 1e-5, "projector max |diff| {d}");
}

#[test]
fn token_logits_match_transformers_both_kernels() {
    let f = load();
    let ids = f.t("plain_ids").to_dtype(DType::U32).unwrap();
    for kernels in [Kernels::Differentiable, Kernels::Fused] {
        let logits = f.generator.lm.forward_ids(&ids, None, kernels).unwrap();
        let d = max_diff(&logits, f.t("plain_logits"));
        eprintln!("{kernels:?}: token logits max |diff| {d:.2e}");
        assert!(d < LOGIT_TOL, "{kernels:?}: logits max |diff| {d}");
    }
}

#[test]
fn spliced_logits_match_transformers() {
    let f = load();
    let feats = f.t("image_features");
    let examples = [f.example(0, true), f.example(1, true)];
    let img = f.generator.projector.forward(feats).unwrap();
    let batch = f.generator.splice(&img, &examples).unwrap();
    for kernels in [Kernels::Differentiable, Kernels::Fused] {
        let logits = f
            .generator
            .lm
            .forward_embeds(&batch.embeds, None, kernels)
            .unwrap();
        for (i, ex) in examples.iter().enumerate() {
            let len = ex.len(9);
            let ours = logits.get(i).unwrap().narrow(0, 0, len).unwrap();
            let d = max_diff(&ours, f.t(&format!("spliced_logits_{i}")));
            eprintln!("{kernels:?} sample {i}: spliced logits max |diff| {d:.2e}");
            assert!(d < LOGIT_TOL, "{kernels:?} sample {i}: max |diff| {d}");
        }
    }
    // labels: only the report tokens (and EOS) carry a label
    let labels = &batch.labels;
    let n_labelled: Vec<usize> = labels
        .iter()
        .map(|l| l.iter().filter(|&&x| x != -100).count())
        .collect();
    assert_eq!(n_labelled, vec![5, 3]);
    assert_eq!(&labels[1][17..20], &[40, 41, 2]);
    assert!(
        labels[1][20..].iter().all(|&x| x == -100),
        "padding is ignored"
    );
}

#[test]
fn loss_and_projector_gradients_match_pytorch() {
    let f = load();
    let examples = [f.example(0, true), f.example(1, true)];
    let loss = f.generator.loss(f.t("image_features"), &examples).unwrap();
    let ours = loss.to_scalar::<f32>().unwrap();
    let theirs = f.t("loss").to_vec1::<f32>().unwrap()[0];
    eprintln!("loss {ours} vs PyTorch {theirs}");
    assert!((ours - theirs).abs() < 1e-5, "loss {ours} vs {theirs}");
    let grads = loss.backward().unwrap();
    for (name, var) in f.generator.projector.named_vars("multi_modal_projector") {
        let g = grads.get(var.as_tensor()).expect("projector gradient");
        let reference = f.t(&format!("grad.{name}"));
        let scale = reference
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let d = max_diff(g, reference);
        eprintln!("{name}: grad max |diff| {d:.2e} (max |grad| {scale:.2e})");
        assert!(scale > 0.0, "{name}: zero reference gradient");
        assert!(
            d < 1e-4 * scale.max(1.0),
            "{name}: grad max |diff| {d} (scale {scale})"
        );
    }
}

fn prompt_embeds(f: &common::Fixture, i: usize) -> Tensor {
    let feats = f.t("image_features").narrow(0, i, 1).unwrap();
    let img = f.generator.projector.forward(&feats).unwrap();
    f.generator
        .splice(&img, &[f.example(i, false)])
        .unwrap()
        .embeds
}

#[test]
fn greedy_generation_matches_transformers() {
    let f = load();
    for i in 0..2 {
        let cfg = GenerationConfig::greedy(12, vec![2]);
        let out = generate(&f.generator.lm, &prompt_embeds(&f, i), &cfg, None).unwrap();
        assert_eq!(out[0], f.tokens(&format!("greedy_{i}")), "sample {i}");
    }
    // batched prompts give the same tokens as one at a time
    let cfg = GenerationConfig::greedy(12, vec![2]);
    let out = f
        .generator
        .generate(f.t("image_features"), &f.example(0, false), &cfg, None)
        .unwrap();
    assert_eq!(out[0], f.tokens("greedy_0"));
    assert_eq!(out[1], f.tokens("greedy_1"));
    // an EOS the model produces ends generation, EOS included
    let cfg = GenerationConfig::greedy(12, vec![23]);
    let out = generate(&f.generator.lm, &prompt_embeds(&f, 1), &cfg, None).unwrap();
    assert_eq!(out[0], f.tokens("greedy_eos_alt_1"));
}

#[test]
fn beam_search_matches_transformers() {
    let f = load();
    let beam = |lp: f64, eos: u32, i: usize| {
        let cfg = GenerationConfig {
            max_new_tokens: 12,
            decoding: Decoding::Beam {
                num_beams: 3,
                length_penalty: lp,
                early_stopping: false,
            },
            eos_token_ids: vec![eos],
            stop_strings: vec![],
        };
        generate(&f.generator.lm, &prompt_embeds(&f, i), &cfg, None).unwrap()[0].clone()
    };
    for i in 0..2 {
        assert_eq!(
            beam(1.0, 2, i),
            f.tokens(&format!("beam3_{i}")),
            "sample {i}"
        );
    }
    assert_eq!(beam(1.0, 23, 1), f.tokens("beam3_eos_alt_lp1.0_1"));
    assert_eq!(beam(0.5, 23, 1), f.tokens("beam3_eos_alt_lp0.5_1"));
}
