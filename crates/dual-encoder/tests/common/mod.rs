//! Shared helpers of the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use dual_encoder::{TextConfig, TextTokenizer, TokenBatch};

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(rel)
}

pub fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(&fixture("tokenizer/tokenizer.json"), 16).unwrap()
}

pub fn load(rel: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(rel), &Device::Cpu).unwrap()
}

pub fn builder(rel: &str) -> VarBuilder<'static> {
    VarBuilder::from_tensors(load(rel), DType::F32, &Device::Cpu)
}

pub fn text_config(case: &str) -> TextConfig {
    TextConfig::from_file(&fixture(&format!("{case}/config.json"))).unwrap()
}

/// The ids and mask of an expected file as a batch.
pub fn batch(expected: &HashMap<String, Tensor>) -> TokenBatch {
    TokenBatch {
        input_ids: expected["input_ids"].to_dtype(DType::U32).unwrap(),
        attention_mask: expected["attention_mask"].to_dtype(DType::U32).unwrap(),
    }
}

pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    cxr_core::ops::max_abs_diff(a, b).unwrap()
}

pub fn json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap()
}

/// Asserts that every variable of `varmap` has a finite, non-zero gradient in `grads`.
pub fn assert_every_var_has_a_gradient(varmap: &VarMap, grads: &GradStore) {
    let data = varmap.data().lock().unwrap();
    assert!(!data.is_empty());
    for (name, var) in data.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let n = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n.is_finite() && n > 0.0, "{name}: |gradient| sum {n}");
    }
}
