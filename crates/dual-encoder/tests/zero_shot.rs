//! Zero-shot probabilities, binary scores, similarity and retrieval of a whole tiny UniCL
//! model (DINOv2 tiny image tower + text tower) against PyTorch.
#![allow(clippy::unwrap_used)]

use crate::common;

use candle_core::{DType, Device};
use common::{builder, json, load, max_diff, text_config};
use dual_encoder::{retrieval_recall, DualEncoder, Templates, TextTransformer, ZeroShotClassifier};
use vit_backbone::{Dinov2Config, Dinov2Model};

const TOL: f32 = 1e-5;

fn model() -> DualEncoder {
    let vb = builder("zero_shot/model.safetensors");
    let img_cfg = Dinov2Config {
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        image_size: 28,
        ..Dinov2Config::rad_dino()
    };
    let image = Dinov2Model::new(&img_cfg, vb.pp("image_encoder")).unwrap();
    let mut cfg = text_config("text_bidirectional");
    cfg.projection_dim = 12;
    let text = TextTransformer::new(&cfg, vb.clone()).unwrap();
    DualEncoder::new(Box::new(image), Box::new(text), vb).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn zero_shot_matches_pytorch() {
    let m = model();
    let exp = load("zero_shot/expected.safetensors");
    let meta = json("zero_shot/expected.json");
    let tok = common::tokenizer();
    let img = m.encode_image(&exp["images"], false).unwrap();
    let d = max_diff(&img, &exp["image_embeddings"]);
    eprintln!("image embeddings: max |diff| {d:.2e}");
    assert!(d < TOL, "image embeddings: {d}");

    let findings = strings(&meta["findings"]);
    let names: Vec<&str> = findings.iter().map(String::as_str).collect();
    let pos = Templates::new(strings(&meta["positive_templates"])).unwrap();
    let neg = Templates::new(strings(&meta["negative_templates"])).unwrap();
    let zs = ZeroShotClassifier::new(&m, &tok, &names, &pos, Some(&neg)).unwrap();
    let d = max_diff(zs.class_embeddings(), &exp["class_embeddings"]);
    eprintln!("class embeddings: max |diff| {d:.2e}");
    assert!(d < TOL, "class embeddings: {d}");
    let probs = zs.probabilities(&m, &img).unwrap();
    let d = max_diff(&probs, &exp["probs"]);
    eprintln!("probabilities: max |diff| {d:.2e}");
    assert!(d < TOL, "probabilities: {d}");
    let sums: Vec<f32> = probs.sum(1).unwrap().to_vec1().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
    let binary = zs.binary_scores(&m, &img).unwrap();
    let d = max_diff(&binary, &exp["binary"]);
    eprintln!("binary scores: max |diff| {d:.2e}");
    assert!(d < TOL, "binary scores: {d}");

    let scale = m.scale().unwrap().to_scalar::<f32>().unwrap();
    assert!((scale - 2.3f32.exp()).abs() < 1e-4);
}

#[test]
fn similarity_and_retrieval_match_pytorch() {
    let m = model();
    let exp = load("zero_shot/expected.safetensors");
    let meta = json("zero_shot/expected.json");
    let tok = common::tokenizer();
    let captions = strings(&meta["captions"]);
    let batch = tok.encode_batch(&captions, &Device::Cpu).unwrap();
    let sim = m.similarity(&exp["images"], &batch).unwrap();
    // logits are scaled by exp(2.3) ≈ 10, so the tolerance scales with them
    let d = max_diff(&sim, &exp["similarity"]);
    eprintln!("similarity: max |diff| {d:.2e}");
    assert!(d < 1e-4, "similarity: {d}");
    let text_image: Vec<usize> = serde_json::from_value(meta["text_image"].clone()).unwrap();
    let r = retrieval_recall(
        &exp["similarity"].to_dtype(DType::F32).unwrap(),
        &text_image,
        &[1, 2, 5],
    )
    .unwrap();
    for (k, v) in &r.image_to_text {
        let want = meta["retrieval"][format!("i2t_r@{k}")].as_f64().unwrap();
        assert!((v - want).abs() < 1e-12, "i2t r@{k}: {v} vs {want}");
    }
    for (k, v) in &r.text_to_image {
        let want = meta["retrieval"][format!("t2i_r@{k}")].as_f64().unwrap();
        assert!((v - want).abs() < 1e-12, "t2i r@{k}: {v} vs {want}");
    }
    // our own similarity ranks the same way
    let r2 = retrieval_recall(&sim, &text_image, &[1, 2, 5]).unwrap();
    assert_eq!(r, r2);
}

#[test]
fn template_and_class_errors() {
    assert!(Templates::new(Vec::<String>::new()).is_err());
    let e = Templates::new(["chest x-ray"]).unwrap_err();
    assert!(e.to_string().contains("placeholder"), "{e}");
    let t = Templates::new(["no {finding}", "{} present"]).unwrap();
    assert_eq!(t.fill("edema"), vec!["no edema", "edema present"]);
    let m = model();
    let tok = common::tokenizer();
    assert!(ZeroShotClassifier::new(&m, &tok, &[], &t, None).is_err());
    let zs = ZeroShotClassifier::new(&m, &tok, &["edema"], &t, None).unwrap();
    let img = candle_core::Tensor::ones((1, 12), DType::F32, &Device::Cpu).unwrap();
    let e = zs.binary_scores(&m, &img).unwrap_err();
    assert!(e.to_string().contains("negative"), "{e}");
}
