//! Fixture loading and comparison shared by the tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use unicl_loss::{BatchTargets, LabelSet};

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

    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
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

    /// The batch targets as gen.py defines them: label sets from `flags` when present,
    /// otherwise label ids; `-1` / `is_report` marks a report.
    pub fn targets(&self) -> BatchTargets {
        let ids: Vec<i64> = self.get("labels", DType::I64).to_vec1().unwrap();
        let mut b = BatchTargets::builder();
        if self.has("flags") {
            let flags: Vec<Vec<i64>> = self.get("flags", DType::I64).to_vec2().unwrap();
            let rep: Vec<i64> = self.get("is_report", DType::I64).to_vec1().unwrap();
            for (row, r) in flags.iter().zip(rep) {
                if r == 1 {
                    b.push_report();
                } else {
                    let f: Vec<bool> = row.iter().map(|&v| v == 1).collect();
                    b.push_label_set(&LabelSet::from_flags(&f));
                }
            }
        } else {
            for id in ids {
                if id < 0 {
                    b.push_report();
                } else {
                    b.push_label_id(id as u64);
                }
            }
        }
        b.build()
    }
}

/// Max abs difference, scaled by the reference's largest magnitude when that is above 1.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let flat = |t: &Tensor| -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (g, w) = (flat(got), flat(want));
    let scale = w.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let mut worst = 0.0f64;
    for (a, b) in g.iter().zip(&w) {
        assert!(a.is_finite(), "{what}: non-finite value {a}");
        worst = worst.max((a - b).abs());
    }
    assert!(
        worst <= tol * scale,
        "{what}: max abs diff {worst:e} > {:e}",
        tol * scale
    );
}

/// f64 at 1e-9 (tighter than the 1e-6 asked for), f32 at 1e-5.
pub const DTYPES: [(DType, f64); 2] = [(DType::F64, 1e-9), (DType::F32, 1e-5)];
