//! BERT + CXR-BERT projection head against transformers (inference path).
#![allow(clippy::unwrap_used)]

mod common;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use common::{batch, builder, fixture, load, max_diff};
use dual_encoder::{BertTextEncoder, ProjectionHead, TextEncoder};

#[test]
fn bert_cls_and_projection_match_transformers() {
    let cfg = BertTextEncoder::config_from_file(&fixture("bert/config.json")).unwrap();
    let enc = BertTextEncoder::new(&cfg, Some(8), builder("bert/model.safetensors")).unwrap();
    let exp = load("bert/expected.safetensors");
    let out = enc.encode(&batch(&exp)).unwrap();
    let d = max_diff(&out.pooled, &exp["cls"]);
    assert!(d < 1e-4, "cls: {d}");
    let d = max_diff(&out.projected, &exp["projected"]);
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
    let vars: Vec<Var> = varmap.all_vars();
    assert_eq!(vars.len(), 6);
    for v in vars {
        let g = grads.get(v.as_tensor()).expect("gradient");
        let n = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n.is_finite() && n > 0.0);
    }
}
