//! L2 logistic regression vs scikit-learn `LogisticRegression` (fixture from `gen.py`).
#![allow(clippy::unwrap_used)] // tests may panic on failure
use probe_heads::logreg::{LogReg, LogRegConfig};
use probe_heads::Matrix;

#[test]
fn matches_sklearn_coefficients_and_probabilities() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/logreg/case.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows: Vec<Vec<f64>> = serde_json::from_value(v["x"].clone()).unwrap();
    let y: Vec<i64> = serde_json::from_value(v["y"].clone()).unwrap();
    let y: Vec<bool> = y.iter().map(|&v| v == 1).collect();
    let (n, d) = (rows.len(), rows[0].len());
    let x = Matrix::new(n, d, rows.iter().flatten().map(|&v| v as f32).collect()).unwrap();
    for case in v["cases"].as_array().unwrap() {
        let c = case["c"].as_f64().unwrap();
        let m = LogReg::fit(
            &x,
            &y,
            &LogRegConfig {
                c,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(m.converged, "C={c}: not converged after {}", m.iterations);
        let coef: Vec<f64> = serde_json::from_value(case["coef"].clone()).unwrap();
        // sklearn's own fit stops at its tol=1e-12: both are the optimum to ~1e-7.
        assert_eq!(m.coef.len(), coef.len(), "C={c}: coefficients");
        for (a, b) in m.coef.iter().zip(&coef) {
            assert!((a - b).abs() < 1e-6, "C={c}: coef {a} vs sklearn {b}");
        }
        let b0 = case["intercept"].as_f64().unwrap();
        assert!((m.intercept - b0).abs() < 1e-6, "C={c}: intercept");
        let proba: Vec<f64> = serde_json::from_value(case["proba"].clone()).unwrap();
        let ours = m.predict_proba(&x).unwrap();
        assert_eq!(
            (ours.len(), proba.len()),
            (x.rows, x.rows),
            "C={c}: probabilities"
        );
        for (a, b) in ours.iter().zip(&proba) {
            assert!((a - b).abs() < 1e-7, "C={c}: proba {a} vs {b}");
        }
    }
}

#[test]
fn rejects_bad_input() {
    let x = Matrix::new(2, 1, vec![0.0, 1.0]).unwrap();
    assert!(LogReg::fit(&x, &[true], &LogRegConfig::default()).is_err());
    let c = LogRegConfig {
        c: 0.0,
        ..Default::default()
    };
    assert!(LogReg::fit(&x, &[true, false], &c).is_err());
}
