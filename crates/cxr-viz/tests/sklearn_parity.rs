//! PCA and t-SNE against scikit-learn on the fixtures written by `gen.py`.
//!
//! Tolerances (f64 throughout): PCA components up to sign, explained variance (ratio) and
//! projections to 1e-6; t-SNE joint probabilities to 1e-6 absolute (entries are at most a few
//! 1e-2), KL and its gradient to 1e-6 relative, and the gradient against central finite
//! differences.
#![allow(clippy::unwrap_used)] // tests may panic on failure

use std::path::Path;

use cxr_viz::embedding_map::{
    joint_probabilities, kl_divergence, tsne, GradientDescent, TsneInit, TsneOptions,
};
use cxr_viz::pca::Pca;
use ndarray::{Array1, Array2};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn mat(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    let (n, d) = (rows.len(), rows[0].len());
    Array2::from_shape_vec((n, d), rows.into_iter().flatten().collect()).unwrap()
}

fn vec1(v: &Value) -> Array1<f64> {
    Array1::from(serde_json::from_value::<Vec<f64>>(v.clone()).unwrap())
}

/// Condensed (upper-triangle, row-major) view of a square matrix, as scipy's squareform.
fn condensed(m: &Array2<f64>) -> Vec<f64> {
    let n = m.nrows();
    let mut out = Vec::new();
    for i in 0..n {
        for j in (i + 1)..n {
            out.push(m[[i, j]]);
        }
    }
    out
}

/// `max |a - b|` over two equally long, non-empty sequences; NaN if any difference is NaN
/// (`f64::max` alone would drop it and let a NaN result pass every tolerance).
fn max_abs(a: impl IntoIterator<Item = f64>, b: impl IntoIterator<Item = f64>) -> f64 {
    let (a, b): (Vec<f64>, Vec<f64>) = (a.into_iter().collect(), b.into_iter().collect());
    assert_eq!(a.len(), b.len(), "max_abs: sequences of different lengths");
    assert!(!a.is_empty(), "max_abs: nothing to compare");
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m: f64, d| {
            if m.is_nan() || d.is_nan() {
                f64::NAN
            } else {
                m.max(d)
            }
        })
}

#[test]
fn pca_matches_sklearn_up_to_sign() {
    let f = fixture("pca.json");
    let x = mat(&f["x"]);
    let k = f["k"].as_u64().unwrap() as usize;
    let pca = Pca::fit(x.view(), k).unwrap();
    let want = mat(&f["components"]);
    assert_eq!(pca.components.dim(), want.dim());
    let mut signs = Vec::new();
    for c in 0..k {
        let dot: f64 = pca.components.row(c).dot(&want.row(c));
        let s = dot.signum();
        signs.push(s);
        let d = max_abs(
            pca.components.row(c).iter().map(|v| v * s),
            want.row(c).iter().copied(),
        );
        assert!(d < 1e-6, "component {c} differs by {d}");
    }
    assert!(max_abs(pca.mean.iter().copied(), vec1(&f["mean"])) < 1e-12);
    let d = max_abs(
        pca.explained_variance.iter().copied(),
        vec1(&f["explained_variance"]),
    );
    assert!(d < 1e-6, "explained variance differs by {d}");
    let d = max_abs(
        pca.explained_variance_ratio.iter().copied(),
        vec1(&f["explained_variance_ratio"]),
    );
    assert!(d < 1e-6, "explained variance ratio differs by {d}");
    let t = pca.transform(x.view()).unwrap();
    let want_t = mat(&f["transformed"]);
    assert_eq!(t.dim(), want_t.dim());
    for (c, sign) in signs.iter().enumerate() {
        let d = max_abs(
            t.column(c).iter().map(|v| v * sign),
            want_t.column(c).iter().copied(),
        );
        assert!(d < 1e-6, "projection {c} differs by {d}");
    }
}

#[test]
fn joint_probabilities_match_sklearn() {
    let f = fixture("tsne.json");
    let sq = mat(&f["sq_distances"]);
    for perp in [5, 10] {
        let p = joint_probabilities(sq.view(), perp as f64).unwrap();
        let want = vec1(&f[format!("p_perplexity_{perp}")]);
        let got = condensed(&p);
        assert_eq!(got.len(), want.len());
        let d = max_abs(got, want.iter().copied());
        assert!(d < 1e-6, "P at perplexity {perp} differs by {d}");
        // symmetric, zero diagonal, sums to one
        assert!((p.sum() - 1.0).abs() < 1e-9);
        assert!(p.diag().iter().all(|&v| v == 0.0));
    }
    assert!(joint_probabilities(sq.view(), 25.0).is_err());
}

#[test]
fn kl_divergence_and_gradient_match_sklearn_and_finite_differences() {
    let f = fixture("tsne.json");
    let sq = mat(&f["sq_distances"]);
    let p = joint_probabilities(sq.view(), 5.0).unwrap();
    let y = mat(&f["y"]);
    let (kl, grad) = kl_divergence(p.view(), y.view()).unwrap();
    let want_kl = f["kl"].as_f64().unwrap();
    assert!(
        (kl - want_kl).abs() < 1e-6 * want_kl.abs().max(1.0),
        "KL {kl} vs {want_kl}"
    );
    let want_grad = mat(&f["grad"]);
    let scale = want_grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_eq!(grad.dim(), want_grad.dim());
    let d = max_abs(grad.iter().copied(), want_grad.iter().copied());
    assert!(d < 1e-6 * scale.max(1.0), "gradient differs by {d}");
    // central differences of the objective (Q is far above its epsilon floor here)
    let h = 1e-6;
    for i in [0, 7, 24] {
        for c in 0..2 {
            let mut up = y.clone();
            up[[i, c]] += h;
            let mut down = y.clone();
            down[[i, c]] -= h;
            let fd = (kl_divergence(p.view(), up.view()).unwrap().0
                - kl_divergence(p.view(), down.view()).unwrap().0)
                / (2.0 * h);
            assert!(
                (fd - grad[[i, c]]).abs() < 1e-6,
                "({i}, {c}): fd {fd} vs {}",
                grad[[i, c]]
            );
        }
    }
}

#[test]
fn gradient_descent_steps_match_sklearn() {
    let f = fixture("tsne.json");
    let p = joint_probabilities(mat(&f["sq_distances"]).view(), 5.0).unwrap();
    for phase in ["early", "late"] {
        let case = &f[format!("descent_{phase}")];
        let descent = GradientDescent {
            learning_rate: case["learning_rate"].as_f64().unwrap(),
            momentum: case["momentum"].as_f64().unwrap(),
            min_grad_norm: 1e-7,
            n_iter_without_progress: 300,
            check_every: case["check_every"].as_u64().unwrap() as usize,
        };
        let pe = &p * case["exaggeration"].as_f64().unwrap();
        let mut y = mat(&f["descent_init"]);
        let steps = case["steps"].as_u64().unwrap() as usize;
        let (err, last) = descent.run(pe.view(), &mut y, 0, steps).unwrap();
        assert_eq!(last as u64, case["last_iter"].as_u64().unwrap());
        let want = mat(&case["y"]);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_eq!(y.dim(), want.dim(), "{phase}");
        let d = max_abs(y.iter().copied(), want.iter().copied());
        assert!(
            d < 1e-6 * scale,
            "{phase}: embedding differs by {d} (scale {scale})"
        );
        let want_err = case["error"].as_f64().unwrap();
        assert!(
            (err - want_err).abs() < 1e-6 * want_err,
            "{phase}: error {err} vs {want_err}"
        );
    }
}

/// The full schedule is chaotic on small data (see gen.py), so a whole run is judged by what
/// t-SNE must do: keep the three input clusters apart and reach a KL divergence of the order
/// sklearn reaches on the same points.
#[test]
fn full_exact_tsne_run_separates_the_clusters() {
    let f = fixture("tsne.json");
    let x = mat(&f["x"]);
    let opts = TsneOptions {
        perplexity: 5.0,
        ..Default::default()
    };
    let out = tsne(x.view(), &opts).unwrap();
    let sk = f["sklearn_full_run_kl"].as_f64().unwrap();
    eprintln!(
        "KL {} (sklearn {sk}), last step {}",
        out.kl_divergence, out.n_iter
    );
    assert!(out.kl_divergence < 3.0 * sk + 0.1);
    // gen.py draws point i from centre i % 3: every point's nearest embedded neighbour shares it
    let n = x.nrows();
    for i in 0..n {
        let nearest = (0..n)
            .filter(|&j| j != i)
            .min_by(|&a, &b| {
                let d = |j: usize| {
                    (out.embedding[[i, 0]] - out.embedding[[j, 0]]).powi(2)
                        + (out.embedding[[i, 1]] - out.embedding[[j, 1]]).powi(2)
                };
                d(a).total_cmp(&d(b))
            })
            .unwrap();
        assert_eq!(
            nearest % 3,
            i % 3,
            "point {i}'s nearest neighbour is {nearest}"
        );
    }
    // a given start is used as is
    let given = tsne(
        x.view(),
        &TsneOptions {
            perplexity: 5.0,
            max_iter: 250,
            init: TsneInit::Given(Array2::zeros((n, 3))),
            ..Default::default()
        },
    );
    assert!(given.is_err());
}
