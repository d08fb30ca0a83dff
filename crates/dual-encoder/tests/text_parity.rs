//! The text tower against the PyTorch UniCL reference (random weights, tiny width).
#![allow(clippy::unwrap_used)]

use crate::common;

use candle_core::{DType, Device, Tensor};
use common::{batch, builder, load, max_diff, text_config};
use dual_encoder::{l2_normalize, Error, TextEncoder, TextTransformer, TokenBatch};

const TOL: f32 = 1e-4;

fn parity(case: &str) {
    let cfg = text_config(case);
    let model = TextTransformer::new(&cfg, builder(&format!("{case}/model.safetensors"))).unwrap();
    let exp = load(&format!("{case}/expected.safetensors"));
    let b = batch(&exp);
    let hidden = model.forward_hidden(&b).unwrap();
    let d = max_diff(&hidden, &exp["last_hidden_state"]);
    eprintln!("{case} last_hidden_state: max |diff| {d:.2e}");
    assert!(d < TOL, "{case} last_hidden_state: max diff {d}");
    let out = model.encode(&b).unwrap();
    let d = max_diff(&out.pooled, &exp["pooled"]);
    eprintln!("{case} pooled: max |diff| {d:.2e}");
    assert!(d < TOL, "{case} pooled: max diff {d}");
    let d = max_diff(&out.projected, &exp["projected"]);
    eprintln!("{case} projected: max |diff| {d:.2e}");
    assert!(d < TOL, "{case} projected: max diff {d}");
    let d = max_diff(&l2_normalize(&out.projected).unwrap(), &exp["normalized"]);
    eprintln!("{case} normalized: max |diff| {d:.2e}");
    assert!(d < TOL, "{case} normalized: max diff {d}");
}

#[test]
fn causal_unicl_tower_matches_pytorch() {
    parity("text_causal");
}

#[test]
fn bidirectional_mi2_tower_matches_pytorch() {
    parity("text_bidirectional");
}

#[test]
fn tokenizer_to_tower_end_to_end() {
    // the ids of the fixture were made by transformers' tokenizer; ours must give the same
    let exp = load("text_causal/expected.safetensors");
    let sentences = common::json("tokenizer/expected.json")["sentences"].clone();
    let s: Vec<String> = serde_json::from_value(sentences).unwrap();
    let ours = common::tokenizer()
        .encode_batch(&s[..5], &Device::Cpu)
        .unwrap();
    assert_eq!(
        ours.input_ids.to_vec2::<u32>().unwrap(),
        exp["input_ids"]
            .to_dtype(DType::U32)
            .unwrap()
            .to_vec2::<u32>()
            .unwrap()
    );
}

#[test]
fn bad_inputs_are_rejected() {
    let cfg = text_config("text_causal");
    let model = TextTransformer::new(&cfg, builder("text_causal/model.safetensors")).unwrap();
    let too_long = TokenBatch::from_rows(&[vec![1; 17]], None, &Device::Cpu).unwrap();
    let e = model.encode(&too_long).unwrap_err();
    assert!(e.to_string().contains("at most 16"), "{e}");
    let bad_id =
        TokenBatch::from_rows(&[vec![1, cfg.vocab_size as u32]], None, &Device::Cpu).unwrap();
    assert!(model.encode(&bad_id).is_err());
    let mismatched = TokenBatch {
        input_ids: Tensor::zeros((2, 4), DType::U32, &Device::Cpu).unwrap(),
        attention_mask: Tensor::zeros((2, 5), DType::U32, &Device::Cpu).unwrap(),
    };
    assert!(matches!(model.encode(&mismatched), Err(Error::Core(_))));
    // a checkpoint of the wrong width names the tensor
    let mut wrong = cfg.clone();
    wrong.width = 48;
    wrong.heads = 4;
    let e = TextTransformer::new(&wrong, builder("text_causal/model.safetensors")).unwrap_err();
    assert!(e.to_string().contains("token_embedding"), "{e}");
}

#[test]
fn mask_and_activation_are_not_interchangeable() {
    // the fixtures tell the variants apart, so the parity tests above check each choice
    let exp = load("text_bidirectional/expected.safetensors");
    let b = batch(&exp);
    let run = |cfg: &dual_encoder::TextConfig| {
        TextTransformer::new(cfg, builder("text_bidirectional/model.safetensors"))
            .unwrap()
            .encode(&b)
            .unwrap()
            .projected
    };
    let cfg = text_config("text_bidirectional");
    let causal = dual_encoder::TextConfig {
        causal: true,
        ..cfg.clone()
    };
    assert!(max_diff(&run(&causal), &exp["projected"]) > 1e-2);
    let gelu = dual_encoder::TextConfig {
        activation: dual_encoder::Activation::GeluErf,
        ..cfg.clone()
    };
    assert!(max_diff(&run(&gelu), &exp["projected"]) > 1e-3);
    let first = dual_encoder::TextConfig {
        pooling: dual_encoder::Pooling::First,
        ..cfg
    };
    assert!(max_diff(&run(&first), &exp["projected"]) > 1e-2);
}
