//! BERT + CXR-BERT projection head against transformers, and its gradients.
#![allow(clippy::unwrap_used)]

use crate::common;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::{batch, builder, fixture, load, max_diff};
use dual_encoder::{BertConfig, BertTextEncoder, ProjectionHead, TextEncoder, TokenBatch};

#[test]
fn bert_cls_and_projection_match_transformers() {
    let cfg = BertTextEncoder::config_from_file(&fixture("bert/config.json")).unwrap();
    let enc = BertTextEncoder::new(&cfg, Some(8), builder("bert/model.safetensors")).unwrap();
    let exp = load("bert/expected.safetensors");
    let out = enc.encode(&batch(&exp)).unwrap();
    let d = max_diff(&out.pooled, &exp["cls"]);
    eprintln!("cls: max |diff| {d:.2e}");
    assert!(d < 1e-4, "cls: {d}");
    let d = max_diff(&out.projected, &exp["projected"]);
    eprintln!("projected: max |diff| {d:.2e}");
    assert!(d < 1e-4, "projected: {d}");
    assert_eq!(enc.embed_dim(), 8);
}

#[test]
fn projection_head_is_differentiable() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let head = ProjectionHead::new(8, 4, vb).unwrap();
    let x = Tensor::randn(0f32, 1.0, (3, 8), &Device::Cpu).unwrap();
    let w = Tensor::randn(0f32, 1.0, (3, 4), &Device::Cpu).unwrap();
    let loss = (head.forward(&x).unwrap() * w).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    assert_eq!(varmap.all_vars().len(), 6);
    common::assert_every_var_has_a_gradient(&varmap, &grads);
}

#[test]
fn one_backward_step_reaches_every_bert_parameter() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let cfg = BertTextEncoder::config_from_file(&fixture("bert/config.json")).unwrap();
    let enc = BertTextEncoder::new(&cfg, Some(8), vb).unwrap();
    // the second row is padded: its last two keys are masked out
    let batch = TokenBatch::from_rows(
        &[vec![2, 17, 40, 9, 3], vec![2, 55, 3, 0, 0]],
        Some(&[vec![1, 1, 1, 1, 1], vec![1, 1, 1, 0, 0]]),
        &Device::Cpu,
    )
    .unwrap();
    let out = enc.encode(&batch).unwrap();
    let w = Tensor::randn(0f32, 1.0, out.projected.dims(), &Device::Cpu).unwrap();
    let loss = (out.projected * w).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    // 5 embedding tensors, 16 per layer, 6 in the head; token type 1 is never used, so that
    // row has no gradient, but the tensor as a whole does
    assert_eq!(varmap.all_vars().len(), 5 + 16 * cfg.num_hidden_layers + 6);
    common::assert_every_var_has_a_gradient(&varmap, &grads);
}

#[test]
fn padding_keys_do_not_change_the_real_tokens() {
    let cfg = BertTextEncoder::config_from_file(&fixture("bert/config.json")).unwrap();
    let enc = BertTextEncoder::new(&cfg, None, builder("bert/model.safetensors")).unwrap();
    let short = TokenBatch::from_rows(&[vec![2, 55, 3]], None, &Device::Cpu).unwrap();
    let padded = TokenBatch::from_rows(
        &[vec![2, 55, 3, 0, 0]],
        Some(&[vec![1, 1, 1, 0, 0]]),
        &Device::Cpu,
    )
    .unwrap();
    let a = enc.encode(&short).unwrap().pooled;
    let b = enc.encode(&padded).unwrap().pooled;
    assert!(max_diff(&a, &b) < 1e-5);
    let cfg_err = BertConfig {
        hidden_act: "swish".into(),
        ..cfg
    };
    let vb = VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu);
    let err = BertTextEncoder::new(&cfg_err, None, vb)
        .unwrap_err()
        .to_string();
    assert!(err.contains("swish"), "{err}");
}
