//! Fixture loading shared by the parity tests.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| match x {
            Value::String(s) if s == "inf" => f64::INFINITY,
            x => x.as_f64().unwrap(),
        })
        .collect()
}

pub fn bools(v: &Value) -> Vec<bool> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_bool().unwrap())
        .collect()
}

#[track_caller]
pub fn close(actual: f64, expected: f64, tol: f64, what: &str) {
    let ok = actual == expected || (actual - expected).abs() <= tol;
    assert!(ok, "{what}: {actual} vs {expected} (tol {tol})");
}

#[track_caller]
pub fn close_all(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        close(*a, *e, tol, &format!("{what}[{i}]"));
    }
}
