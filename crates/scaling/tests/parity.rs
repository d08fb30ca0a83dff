//! The power-law fit against scipy.optimize.curve_fit and the Lloyd iterations against
//! scikit-learn's KMeans, on the fixtures written by tests/gen.py.
#![allow(clippy::unwrap_used)]

use scaling::fit::{fit_power_law, FitOptions};
use scaling::kmeans::lloyd;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    serde_json::from_str(&std::fs::read_to_string(format!("{p}{name}")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn power_law_matches_curve_fit_to_1e_6() {
    let f = fixture("power_law.json");
    let cases = f["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (n, y) = (floats(&case["n"]), floats(&case["y"]));
        let sigma = case["sigma"].as_array().map(|_| floats(&case["sigma"]));
        let fit = fit_power_law(&n, &y, sigma.as_deref(), &FitOptions::default()).unwrap();
        let got = [fit.law.a, fit.law.b, fit.law.c];
        let popt = floats(&case["popt"]);
        assert_eq!(popt.len(), 3, "{name}: scipy's popt");
        for (g, e) in got.iter().zip(popt) {
            assert!(rel(*g, e) < 1e-6, "{name}: params {got:?} vs scipy {e}");
        }
        let cov = fit.covariance.unwrap();
        let want: Vec<f64> = case["pcov"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(floats)
            .collect();
        assert_eq!(want.len(), 9, "{name}: scipy's pcov is 3 x 3");
        assert_eq!(cov.len(), 9, "{name}: our covariance is 3 x 3");
        for (g, e) in cov.iter().zip(&want) {
            // covariance entries inherit the parameters' error amplified by the inverse
            assert!(rel(*g, *e) < 1e-5, "{name}: pcov {cov:?} vs {want:?}");
        }
    }
}

#[test]
fn lloyd_matches_sklearn_kmeans_from_the_same_centres() {
    let f = fixture("kmeans.json");
    let cases = f["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dim = case["dim"].as_u64().unwrap() as usize;
        let init = floats(&case["init"]);
        assert!(!init.is_empty() && init.len() % dim == 0, "{name}: init");
        let km = lloyd(&floats(&case["x"]), dim, &init, 300, 1e-4).unwrap();
        let labels: Vec<usize> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(km.labels, labels, "{name}");
        assert_eq!(
            km.n_iter,
            case["n_iter"].as_u64().unwrap() as usize,
            "{name}"
        );
        // k · dim centre coordinates, k = the number of initial centres
        let centers = floats(&case["centers"]);
        assert_eq!(centers.len(), init.len(), "{name}: sklearn's centres");
        assert_eq!(km.centers.len(), init.len(), "{name}: our centres");
        for (g, e) in km.centers.iter().zip(centers) {
            assert!((g - e).abs() < 1e-10, "{name}: centre {g} vs {e}");
        }
        assert!(
            rel(km.inertia, case["inertia"].as_f64().unwrap()) < 1e-10,
            "{name}"
        );
    }
}
