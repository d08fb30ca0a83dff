//! Fixture loading and comparison shared by the tests.
#![allow(dead_code, clippy::unwrap_used)]

use candle_core::DType;
use cxr_testkit::Tensors;
use unicl_loss::{BatchTargets, LabelSet};

pub use cxr_testkit::assert_close;

/// One case of `gen.py`: `tests/fixtures/<case>/tensors.safetensors`.
pub struct Fixture(Tensors);

impl std::ops::Deref for Fixture {
    type Target = Tensors;
    fn deref(&self) -> &Tensors {
        &self.0
    }
}

impl Fixture {
    pub fn load(case: &str) -> Self {
        Self(Tensors::load(format!(
            "{}/tests/fixtures/{case}/tensors.safetensors",
            env!("CARGO_MANIFEST_DIR")
        )))
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

/// f64 at 1e-9 (tighter than the 1e-6 asked for), f32 at 1e-5.
pub const DTYPES: [(DType, f64); 2] = [(DType::F64, 1e-9), (DType::F32, 1e-5)];
