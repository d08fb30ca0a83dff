//! Probes on synthetic features where the answer is known, and the protocol pieces.
#![allow(clippy::unwrap_used)] // tests may panic on failure
use probe_heads::demographics::{grouped_kfold, quantile_bins};
use probe_heads::knn::{knn_scores, KnnConfig};
use probe_heads::linear::{mean_std, LinearProbe, LinearProbeConfig};
use probe_heads::{macro_auroc, Matrix, Targets};
use rand::{Rng, SeedableRng};

/// Two informative dimensions among `d`: label 0 follows x0, label 1 follows x1.
fn data(n: usize, d: usize, seed: u64) -> (Matrix, Targets) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let row: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
        y.push(Some(row[0] + 0.3 * rng.random_range(-1.0f32..1.0) > 0.0));
        y.push(if rng.random_bool(0.1) {
            None
        } else {
            Some(row[1] > 0.2)
        });
        x.extend(row);
    }
    (
        Matrix::new(n, d, x).unwrap(),
        Targets::MultiLabel {
            names: vec!["a".into(), "b".into()],
            y,
        },
    )
}

#[test]
fn linear_probe_learns_multilabel_and_multiclass() {
    let (x, y) = data(200, 8, 0);
    let (vx, vy) = data(100, 8, 1);
    let (tx, ty) = data(200, 8, 2);
    let cfg = LinearProbeConfig {
        lr: 1e-2,
        max_epochs: 60,
        patience: 10,
        ..Default::default()
    };
    let p = LinearProbe::fit(&x, &y, &vx, &vy, &cfg, 0).unwrap();
    let auc = macro_auroc(&ty, &p.predict(&tx).unwrap()).unwrap();
    assert!(auc > 0.9, "multi-label test AUROC {auc}");
    // multi-class: class = sign pattern of (x0, x1)
    let to_mc = |x: &Matrix| Targets::MultiClass {
        names: (0..4).map(|i| i.to_string()).collect(),
        y: (0..x.rows)
            .map(|i| usize::from(x.row(i)[0] > 0.0) * 2 + usize::from(x.row(i)[1] > 0.0))
            .collect(),
    };
    let p = LinearProbe::fit(&x, &to_mc(&x), &vx, &to_mc(&vx), &cfg, 1).unwrap();
    let auc = macro_auroc(&to_mc(&tx), &p.predict(&tx).unwrap()).unwrap();
    assert!(auc > 0.85, "multi-class test AUROC {auc}");
}

#[test]
fn linear_probe_seeds_differ_but_agree() {
    let (x, y) = data(100, 4, 3);
    let cfg = LinearProbeConfig {
        lr: 1e-2,
        max_epochs: 5,
        patience: 5,
        ..Default::default()
    };
    let a = LinearProbe::fit(&x, &y, &x, &y, &cfg, 0)
        .unwrap()
        .predict(&x)
        .unwrap();
    let b = LinearProbe::fit(&x, &y, &x, &y, &cfg, 0)
        .unwrap()
        .predict(&x)
        .unwrap();
    let c = LinearProbe::fit(&x, &y, &x, &y, &cfg, 1)
        .unwrap()
        .predict(&x)
        .unwrap();
    assert_eq!(a, b, "same seed, same probe");
    assert_ne!(a, c, "another seed, another init");
    let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
    assert!((m - 2.0).abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
}

#[test]
fn knn_votes_are_temperature_weighted() {
    // train: two points of class 0 near e1, one of class 1 near e2
    let train = Matrix::new(3, 2, vec![1.0, 0.0, 1.0, 0.1, 0.0, 1.0]).unwrap();
    let ty = Targets::MultiClass {
        names: vec!["0".into(), "1".into()],
        y: vec![0, 0, 1],
    };
    let q = Matrix::new(1, 2, vec![0.6, 0.8]).unwrap(); // cos: 0.6, ~0.676, 0.8
    let s = knn_scores(
        &train,
        &ty,
        &q,
        &KnnConfig {
            k: 3,
            temperature: 0.07,
        },
    )
    .unwrap();
    let c2 = (0.6f64 + 0.08) / (1.01f64).sqrt();
    let w = [
        (0.6f64 / 0.07).exp(),
        (c2 / 0.07).exp(),
        (0.8f64 / 0.07).exp(),
    ];
    let want1 = w[2] / (w[0] + w[1] + w[2]);
    // features are f32, so 1e-6 rather than exact
    assert!(
        (s[1] - want1).abs() < 1e-6 && (s[0] + s[1] - 1.0).abs() < 1e-12,
        "{s:?}"
    );
    // k=1: only the nearest votes
    let s = knn_scores(
        &train,
        &ty,
        &q,
        &KnnConfig {
            k: 1,
            temperature: 0.07,
        },
    )
    .unwrap();
    assert_eq!(s, vec![0.0, 1.0]);
}

#[test]
fn quantile_bins_and_grouped_folds() {
    let ages: Vec<f64> = (0..100).map(f64::from).collect();
    let (edges, cls) = quantile_bins(&ages, 5).unwrap();
    for (e, want) in edges.iter().zip([19.8, 39.6, 59.4, 79.2]) {
        assert!((e - want).abs() < 1e-9, "{edges:?} vs numpy.quantile");
    }
    for c in 0..5 {
        assert_eq!(cls.iter().filter(|&&v| v == c).count(), 20);
    }
    let groups: Vec<String> = (0..100).map(|i| format!("p{}", i / 3)).collect();
    let folds = grouped_kfold(&groups, 5, 0).unwrap();
    for i in 0..100 {
        for j in 0..100 {
            if groups[i] == groups[j] {
                assert_eq!(folds[i], folds[j]);
            }
        }
    }
    for f in 0..5 {
        let n = folds.iter().filter(|&&v| v == f).count();
        assert!((18..=22).contains(&n), "fold {f} has {n}");
    }
    assert!(grouped_kfold(&groups[..6], 5, 0).is_err());
}

#[test]
fn paired_macro_auroc_pairs_the_resamples() {
    use metrics::bootstrap::BootstrapConfig;
    use probe_heads::eval::{evaluate, paired_macro_auroc};
    let (x, t) = data(120, 4, 7);
    // two patients per pair of rows, so the resampling is clustered
    let groups: Vec<String> = (0..x.rows).map(|i| format!("p{}", i / 2)).collect();
    let k = t.width();
    // A scores each label by its informative feature; B by the other one (uninformative)
    let good: Vec<f64> = (0..x.rows * k)
        .map(|e| f64::from(x.data[(e / k) * x.cols + e % k]))
        .collect();
    let poor: Vec<f64> = (0..x.rows * k)
        .map(|e| f64::from(x.data[(e / k) * x.cols + 2 + e % k]))
        .collect();
    let cfg = BootstrapConfig {
        n_resamples: 300,
        ..Default::default()
    };
    let p = paired_macro_auroc(&t, &good, &poor, &groups, &cfg).unwrap();
    // the full-data estimates are evaluate()'s macro AUROCs
    let macro_of = |s: &[f64]| {
        evaluate(&t, s, &groups, &cfg)
            .unwrap()
            .last()
            .unwrap()
            .auroc
            .estimate
            .unwrap()
    };
    assert!((p.a.estimate.unwrap() - macro_of(&good)).abs() < 1e-12);
    assert!((p.b.estimate.unwrap() - macro_of(&poor)).abs() < 1e-12);
    let d = p.difference.estimate.unwrap();
    assert!((d - (macro_of(&good) - macro_of(&poor))).abs() < 1e-12);
    let (lo, hi) = p.difference.ci.unwrap();
    assert!(lo > 0.2 && lo < d && d < hi, "{lo} {d} {hi}");
    assert_eq!(p.fraction_a_not_better, Some(0.0));
    // a system against itself: every paired difference is exactly zero
    let same = paired_macro_auroc(&t, &poor, &poor, &groups, &cfg).unwrap();
    assert_eq!(same.difference.ci, Some((0.0, 0.0)));
    assert_eq!(same.fraction_a_not_better, Some(1.0));
    // mismatched lengths are an error, not a panic
    assert!(paired_macro_auroc(&t, &good[1..], &poor, &groups, &cfg).is_err());
    // so is a NaN score, which would otherwise drop its column from the macro unseen
    let mut nan = good.clone();
    nan[5] = f64::NAN;
    for err in [
        paired_macro_auroc(&t, &nan, &poor, &groups, &cfg).unwrap_err(),
        evaluate(&t, &nan, &groups, &cfg).unwrap_err(),
    ] {
        assert!(err.to_string().contains("NaN"), "{err}");
    }
    // several pairs share each resample: (good, poor) and (poor, good) cancel on every one
    use probe_heads::eval::paired_mean_macro_auroc;
    let pooled = paired_mean_macro_auroc(
        &t,
        &[(&good[..], &poor[..]), (&poor[..], &good[..])],
        &groups,
        &cfg,
    )
    .unwrap();
    assert_eq!(pooled.difference.ci, Some((0.0, 0.0)));
    let twice = paired_mean_macro_auroc(&t, &[(&good[..], &poor[..]); 2], &groups, &cfg).unwrap();
    assert_eq!(twice.difference.estimate, p.difference.estimate);
    let err = paired_mean_macro_auroc(
        &t,
        &[(&good[..], &poor[..]), (&good[1..], &poor[..])],
        &groups,
        &cfg,
    )
    .unwrap_err();
    assert!(err.to_string().contains("pair 1"), "{err}");
}
