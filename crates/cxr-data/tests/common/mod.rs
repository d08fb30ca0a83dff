#![allow(clippy::unwrap_used)] // test helpers may unwrap
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};

pub use cxr_testkit::shared_dir as shared;

pub fn mini() -> PathBuf {
    cxr_testkit::pack("cxr-mini")
}

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(rel)
}

pub fn load(rel: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(rel), &Device::Cpu).unwrap()
}

pub fn vec_f32(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

pub fn vec_f64(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// `max |a - b|` over two equally long, non-empty slices; NaN if any difference is NaN
/// (`f32::max` alone would drop it and let a NaN output pass a tolerance check).
pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "max_abs: slices of different lengths");
    assert!(!a.is_empty(), "max_abs: nothing to compare");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m: f32, d| {
            if m.is_nan() || d.is_nan() {
                f32::NAN
            } else {
                m.max(d)
            }
        })
}
