//! Fixture loading and comparison shared by the parity tests.
#![allow(dead_code)]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

pub struct Fixture {
    pub name: String,
    tensors: HashMap<String, Tensor>,
}

impl Fixture {
    pub fn load(case: &str) -> Self {
        let path = format!(
            "{}/tests/fixtures/{case}/tensors.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        Self {
            name: case.to_string(),
            tensors,
        }
    }

    pub fn get(&self, key: &str, dtype: DType) -> Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("fixture {}: no tensor {key}", self.name))
            .to_dtype(dtype)
            .unwrap()
    }

    pub fn var(&self, key: &str, dtype: DType) -> Var {
        Var::from_tensor(&self.get(key, dtype)).unwrap()
    }

    /// A VarMap holding every tensor whose key starts with `prefix` (prefix stripped),
    /// skipping `last_layer.weight_g` (frozen).
    pub fn varmap(&self, prefix: &str, dtype: DType) -> VarMap {
        let vm = VarMap::new();
        {
            let mut data = vm.data().lock().unwrap();
            for (k, v) in &self.tensors {
                if let Some(name) = k.strip_prefix(prefix) {
                    if name == "last_layer.weight_g" {
                        continue;
                    }
                    data.insert(
                        name.to_string(),
                        Var::from_tensor(&v.to_dtype(dtype).unwrap()).unwrap(),
                    );
                }
            }
        }
        vm
    }

    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect();
        keys.sort();
        keys
    }
}

/// Tolerance: 1e-5 for f32 (scaled by the reference's largest magnitude when above 1),
/// 1e-9 for f64.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    let tol = TOL.with(|t| *t.borrow());
    assert_close_tol(what, got, want, tol);
}

pub fn assert_close_tol(what: &str, got: &Tensor, want: &Tensor, tol: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let got = got.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let g: Vec<f64> = got.to_vec1().unwrap();
    let w: Vec<f64> = want
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let scale = w.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let mut worst = 0.0f64;
    for (a, b) in g.iter().zip(&w) {
        assert!(a.is_finite(), "{what}: non-finite value {a}");
        worst = worst.max((a - b).abs());
    }
    let tol = tol * scale;
    assert!(worst <= tol, "{what}: max abs diff {worst:e} > {tol:e}");
}

thread_local! {
    pub static TOL: std::cell::RefCell<f64> = const { std::cell::RefCell::new(1e-5) };
}

/// Runs `f` at f64 (tolerance 1e-9) and at f32 (tolerance 1e-5).
pub fn for_dtypes(f: impl Fn(DType)) {
    for (dtype, tol) in [(DType::F64, 1e-9), (DType::F32, 1e-5)] {
        TOL.with(|t| *t.borrow_mut() = tol);
        f(dtype);
    }
}
