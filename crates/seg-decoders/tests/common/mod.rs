#![allow(dead_code, clippy::unwrap_used)]
//! Helpers shared by the integration tests: fixture loading and comparisons.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

pub fn fixture(case: &str, name: &str) -> HashMap<String, Tensor> {
    let path = format!(
        "{}/tests/fixtures/{case}/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

pub fn assert_close(what: &str, ours: &Tensor, reference: &Tensor, tol: f32) {
    let d = max_abs_diff(ours, reference);
    assert!(d < tol, "{what}: max abs diff {d} exceeds {tol}");
}
