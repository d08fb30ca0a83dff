//! The one-call probe protocol: F1 at thresholds chosen on val, and every probe fitted and
//! scored on synthetic features whose answer is known.
use metrics::bootstrap::BootstrapConfig;
use metrics::classification::BinaryCounts;
use probe_heads::eval::{evaluate_f1, f1_thresholds, logreg_probe, logreg_probe_scores};
use probe_heads::logreg::default_c_grid;
use probe_heads::protocol::{result_rows, run_probes, Probe, ProbeData, ProtocolConfig, SplitData};
use probe_heads::{Matrix, Targets};
use rand::{Rng, SeedableRng};

/// Label `signal` follows x0; label `noise` is independent of every feature.
fn data(n: usize, seed: u64) -> (Matrix, Targets) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let row: Vec<f32> = (0..6).map(|_| rng.random_range(-1.0..1.0)).collect();
        y.push(Some(row[0] + 0.3 * rng.random_range(-1.0f32..1.0) > 0.3));
        y.push(if rng.random_bool(0.1) {
            None
        } else {
            Some(rng.random_bool(0.3))
        });
        x.extend(row);
    }
    let names = vec!["signal".into(), "noise".into()];
    (
        Matrix::new(n, 6, x).unwrap(),
        Targets::MultiLabel { names, y },
    )
}

fn labels(names: &[&str], y: Vec<Option<bool>>) -> Targets {
    Targets::MultiLabel {
        names: names.iter().map(|s| s.to_string()).collect(),
        y,
    }
}

fn boot(n: usize) -> BootstrapConfig {
    BootstrapConfig {
        n_resamples: n,
        ..Default::default()
    }
}

#[test]
fn the_val_threshold_maximises_val_f1() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let n = 60;
    let mut y = Vec::new();
    let mut s = Vec::new();
    for _ in 0..n {
        let t = rng.random_bool(0.25);
        y.push(Some(t));
        s.push(f64::from(u8::from(t)) * 0.3 + rng.random_range(0.0..0.7));
        // a second column without a positive on val
        y.push(Some(false));
        s.push(rng.random_range(0.0..1.0));
    }
    let val = labels(&["a", "none"], y.clone());
    let t = f1_thresholds(&val, &s).unwrap();
    assert_eq!(t[1], (0.5, false), "no positive on val: 0.5, not from val");
    assert!(t[0].1);
    // brute force over every observed score of column 0
    let truth: Vec<bool> = y.iter().step_by(2).map(|v| v.unwrap()).collect();
    let col: Vec<f64> = s.iter().step_by(2).copied().collect();
    let f1_at = |th: f64| BinaryCounts::at_threshold(&truth, &col, th).unwrap().f1();
    let best = col.iter().map(|&c| f1_at(c)).fold(0.0, f64::max);
    assert_eq!(f1_at(t[0].0), best);
}

#[test]
fn test_f1_applies_the_thresholds_and_skips_labels_without_positives() {
    // column 0: scores separate the classes at 0.5; column 1: no positive on test
    let y = vec![
        Some(true),
        Some(false),
        Some(true),
        Some(false),
        Some(false),
        None,
        Some(false),
        Some(false),
    ];
    let s = vec![0.9, 0.6, 0.4, 0.1, 0.7, 0.3, 0.2, 0.8];
    let test = labels(&["a", "b"], y);
    let groups: Vec<String> = ["p1", "p1", "p2", "p3"].map(String::from).to_vec();
    let r = evaluate_f1(&test, &s, &[(0.5, true), (0.5, true)], &groups, &boot(200)).unwrap();
    // column a at 0.5: rows 0 (tp), 1 (fp 0.7), 2 (fn 0.4), 3 (tn) -> 2 / (2 + 1 + 1)
    assert_eq!(r[0].name, "a");
    assert!((r[0].f1.estimate.unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(
        r[1].f1.estimate, None,
        "b has no positive: undefined, not 0"
    );
    assert_eq!(r[2].name, "macro");
    assert!((r[2].f1.estimate.unwrap() - 0.5).abs() < 1e-12);
    let (lo, hi) = r[0].f1.ci.unwrap();
    assert!(lo <= 0.5 && 0.5 <= hi && lo >= 0.0 && hi <= 1.0);
    // a threshold of 0.0 predicts every row positive: 2 tp, 2 fp
    let all = evaluate_f1(&test, &s, &[(0.0, true), (0.5, true)], &groups, &boot(10)).unwrap();
    assert!((all[0].f1.estimate.unwrap() - 4.0 / 6.0).abs() < 1e-12);
    // wrong lengths are errors, not panics
    assert!(evaluate_f1(&test, &s, &[(0.5, true)], &groups, &boot(10)).is_err());
    assert!(evaluate_f1(&test, &s[..6], &[(0.5, true); 2], &groups, &boot(10)).is_err());
}

#[test]
fn logreg_scores_of_several_inputs_match_the_single_call() {
    let (x, y) = data(120, 0);
    let (vx, vy) = data(60, 1);
    let (tx, _) = data(80, 2);
    let grid = [0.1, 1.0, 10.0];
    let (test, chosen) = logreg_probe((&x, &y), (&vx, &vy), &tx, &grid).unwrap();
    let (both, chosen2) = logreg_probe_scores((&x, &y), (&vx, &vy), &[&vx, &tx], &grid).unwrap();
    assert_eq!(chosen, chosen2);
    assert_eq!(both[1], test);
    assert_eq!(both[0].len(), 60 * 2);
}

#[test]
fn every_probe_finds_the_signal_and_not_the_noise() {
    let (x, y) = data(240, 10);
    let (vx, vy) = data(120, 11);
    let (tx, ty) = data(160, 12);
    // two test images per patient
    let patients: Vec<String> = (0..160).map(|i| format!("p{}", i / 2)).collect();
    let cfg = ProtocolConfig {
        c_grid: default_c_grid(),
        linear: probe_heads::linear::LinearProbeConfig {
            lr: 1e-2,
            max_epochs: 60,
            patience: 10,
            ..Default::default()
        },
        seeds: 2,
        bootstrap: boot(200),
        ..Default::default()
    };
    let data = ProbeData::new([&x, &vx, &tx], [&y, &vy, &ty], &patients);
    assert_eq!(data.val.x.rows, 120);
    assert_eq!(data.test.y.len(), 160);
    let out = run_probes(&data, &cfg).unwrap();
    // F1 of calling every test image positive: what a useless probe's F1 can reach
    let truth: Vec<bool> = ty.column(0).into_iter().flatten().collect();
    let all_positive_f1 = BinaryCounts::at_threshold(&truth, &vec![1.0; truth.len()], 0.5)
        .unwrap()
        .f1();
    assert_eq!(
        out.iter().map(|o| o.probe).collect::<Vec<_>>(),
        Probe::ALL.to_vec()
    );
    for o in &out {
        let (signal, noise) = (&o.columns[0], &o.columns[1]);
        let auc = signal.auroc.estimate.unwrap();
        assert!(auc > 0.9, "{}: signal AUROC {auc}", o.label);
        let (lo, hi) = signal.auroc.ci.unwrap();
        assert!(lo > 0.8 && hi <= 1.0, "{}: signal CI ({lo}, {hi})", o.label);
        let noise_auc = noise.auroc.estimate.unwrap();
        assert!(
            (noise_auc - 0.5).abs() < 0.15,
            "{}: noise AUROC {noise_auc}",
            o.label
        );
        let f1 = o.f1[0].f1.estimate.unwrap();
        assert!(f1 > all_positive_f1 + 0.1, "{}: signal F1 {f1}", o.label);
        assert!(o.f1[0].from_val);
        assert_eq!(o.test_scores.len(), 160 * 2);
        assert_eq!(o.columns.len(), 3);
        assert_eq!(o.f1.len(), 3);
    }
    // the C chosen on val is kept for the logistic regression, one per label
    assert_eq!(out[0].chosen_c.as_ref().map(Vec::len), Some(2));
    assert!(out[1].chosen_c.is_none() && out[2].chosen_c.is_none());
    let linear = &out[1];
    assert_eq!(linear.seeds, 2);
    // the spread is that of the two seeds' own test AUROCs of the signal label
    let hot = ty.one_hot();
    let per_seed: Vec<f64> = (0..2u64)
        .map(|seed| {
            let p =
                probe_heads::linear::LinearProbe::fit(&x, &y, &vx, &vy, &cfg.linear, seed).unwrap();
            let s = p.predict(&tx).unwrap();
            let view = metrics::classification::MultiLabelView::new(2, &hot, &s).unwrap();
            view.column_ranking(0, None).unwrap().auroc
        })
        .collect();
    let std = linear.auroc_std.as_ref().unwrap()[0].unwrap();
    let want = probe_heads::linear::mean_std(&per_seed).1;
    assert!(
        (std - want).abs() < 1e-12,
        "std {std} vs {want} of {per_seed:?}"
    );
    // AUROC, AUPRC and F1 for each label and the macro row, per probe
    let rows = result_rows("synthetic", "toy", &out);
    assert_eq!(rows.len(), 3 * 3 * 3);
    assert!(rows
        .iter()
        .any(|r| r.task == "toy/macro" && r.metric == "F1"));
    assert!(rows
        .iter()
        .filter(|r| r.metric == "AUROC" && r.probe.starts_with("linear"))
        .all(|r| r.std.is_some()));
}

#[test]
fn mismatched_splits_and_unknown_probes_are_errors() {
    let (x, y) = data(40, 0);
    let (vx, vy) = data(20, 1);
    let (tx, ty) = data(20, 2);
    let patients: Vec<String> = (0..19).map(|i| i.to_string()).collect();
    let data = ProbeData {
        train: SplitData { x: &x, y: &y },
        val: SplitData { x: &vx, y: &vy },
        test: SplitData { x: &tx, y: &ty },
        test_patients: &patients,
    };
    let e = run_probes(&data, &ProtocolConfig::default()).unwrap_err();
    assert!(
        e.to_string().contains("19 test patients for 20 test rows"),
        "{e}"
    );
    let narrow = Matrix::new(20, 5, vec![0.0; 100]).unwrap();
    let patients: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let data = ProbeData {
        test: SplitData { x: &narrow, y: &ty },
        test_patients: &patients,
        ..data
    };
    let e = run_probes(&data, &ProtocolConfig::default()).unwrap_err();
    assert!(e.to_string().contains("test has 5 features"), "{e}");
    assert_eq!(Probe::parse("knn").unwrap(), Probe::Knn);
    assert!(Probe::parse("svm")
        .unwrap_err()
        .to_string()
        .contains("logreg, linear, knn"));
}
