//! Fixture loading and comparison shared by the parity tests.
#![allow(dead_code)]

use candle_core::{DType, Tensor};
use candle_nn::VarMap;

/// One case of `gen.py`.
pub use cxr_testkit::Tensors as Fixture;

pub fn load(case: &str) -> Fixture {
    cxr_testkit::gen_case(env!("CARGO_MANIFEST_DIR"), case)
}

/// A VarMap holding every tensor whose key starts with `prefix` (prefix stripped),
/// skipping `last_layer.weight_g` (frozen).
pub fn varmap(fx: &Fixture, prefix: &str, dtype: DType) -> VarMap {
    let vm = VarMap::new();
    {
        let mut data = vm.data().lock().unwrap();
        for name in fx.keys_with_prefix(prefix) {
            if name != "last_layer.weight_g" {
                let var = fx.var(&format!("{prefix}{name}"), dtype);
                data.insert(name, var);
            }
        }
    }
    vm
}

/// Tolerance: 1e-5 for f32 (scaled by the reference's largest magnitude when above 1),
/// 1e-9 for f64.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    let tol = TOL.with(|t| *t.borrow());
    assert_close_tol(what, got, want, tol);
}

pub use cxr_testkit::assert_close as assert_close_tol;

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
