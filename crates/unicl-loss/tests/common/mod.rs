//! Fixture loading and comparison shared by the tests.
#![allow(dead_code, clippy::unwrap_used)]

use candle_core::DType;
use unicl_loss::{BatchTargets, LabelSet};

pub use cxr_testkit::assert_close;

/// One case of `gen.py`.
pub use cxr_testkit::Tensors as Fixture;

pub fn load(case: &str) -> Fixture {
    cxr_testkit::gen_case(env!("CARGO_MANIFEST_DIR"), case)
}

/// The batch targets as gen.py defines them: label sets from `flags` when present,
/// otherwise label ids; `-1` / `is_report` marks a report.
pub fn targets(fx: &Fixture) -> BatchTargets {
    let ids: Vec<i64> = fx.get("labels", DType::I64).to_vec1().unwrap();
    let mut b = BatchTargets::builder();
    if fx.has("flags") {
        let flags: Vec<Vec<i64>> = fx.get("flags", DType::I64).to_vec2().unwrap();
        let rep: Vec<i64> = fx.get("is_report", DType::I64).to_vec1().unwrap();
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

/// f64 at 1e-9 (tighter than the 1e-6 asked for), f32 at 1e-5.
pub const DTYPES: [(DType, f64); 2] = [(DType::F64, 1e-9), (DType::F32, 1e-5)];
