//! Label F1: scikit-learn parity, batching, bootstrap CIs, errors.

#![allow(clippy::unwrap_used)]

use metrics::bootstrap::BootstrapConfig;
use report_labeler::score::{label_f1, label_f1_with_ci, LabelF1State};
use report_labeler::{Label, Labeler, LabelerError, Observation as O, ReportLabels};

fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/label_f1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn labels(v: &serde_json::Value) -> Vec<ReportLabels> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let mut l = ReportLabels::default();
            for (o, x) in O::ALL.iter().zip(row.as_array().unwrap()) {
                l.set(*o, x.as_i64().map(|x| Label::from_value(x as i8).unwrap()));
            }
            l
        })
        .collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-12, "{what}: {a} vs sklearn {b}");
}

#[test]
fn matches_sklearn_f1_score() {
    let fx = fixture();
    let (g, r) = (labels(&fx["generated"]), labels(&fx["reference"]));
    let s = label_f1(&g, &r).unwrap();
    assert_eq!(s.n_reports, 60);
    for (i, e) in fx["per_observation"].as_array().unwrap().iter().enumerate() {
        close(s.per_observation[i], e.as_f64().unwrap(), O::ALL[i].name());
    }
    close(
        s.macro_f1_14,
        fx["macro_f1_14"].as_f64().unwrap(),
        "macro-14",
    );
    close(
        s.micro_f1_14,
        fx["micro_f1_14"].as_f64().unwrap(),
        "micro-14",
    );
    close(s.macro_f1_5, fx["macro_f1_5"].as_f64().unwrap(), "macro-5");
    close(s.micro_f1_5, fx["micro_f1_5"].as_f64().unwrap(), "micro-5");
    // the fixture has an observation with no positive on either side: F1 0 there
    assert_eq!(s.per_observation[O::PleuralOther.index()], 0.0);
}

#[test]
fn batched_equals_one_shot() {
    let fx = fixture();
    let (g, r) = (labels(&fx["generated"]), labels(&fx["reference"]));
    let cfg = BootstrapConfig {
        n_resamples: 200,
        seed: 3,
        confidence: 0.9,
    };
    let one = label_f1_with_ci(&g, &r, &cfg).unwrap();
    let mut state = LabelF1State::new();
    let mut at = 0;
    for size in [1, 7, 0, 13, 39] {
        state.update(&g[at..at + size], &r[at..at + size]).unwrap();
        at += size;
    }
    assert_eq!(at, g.len());
    assert_eq!(state.n_reports(), 60);
    assert_eq!(state.compute().unwrap(), label_f1(&g, &r).unwrap());
    assert_eq!(state.compute_with_ci(&cfg).unwrap(), one);
}

#[test]
fn intervals_bracket_estimates_and_are_seeded() {
    let fx = fixture();
    let (g, r) = (labels(&fx["generated"]), labels(&fx["reference"]));
    let cfg = BootstrapConfig {
        n_resamples: 300,
        ..BootstrapConfig::default()
    };
    let ci = label_f1_with_ci(&g, &r, &cfg).unwrap();
    let point = label_f1(&g, &r).unwrap();
    assert_eq!(ci.macro_f1_14.estimate, Some(point.macro_f1_14));
    assert_eq!(ci.micro_f1_5.estimate, Some(point.micro_f1_5));
    for i in [
        &ci.macro_f1_14,
        &ci.micro_f1_14,
        &ci.macro_f1_5,
        &ci.micro_f1_5,
    ] {
        let (lo, hi) = i.ci.unwrap();
        let e = i.estimate.unwrap();
        assert!(lo < hi && lo <= e && e <= hi, "{i:?}");
        assert_eq!(i.n_valid, 300);
    }
    assert_eq!(ci.per_observation.len(), 14);
    assert_eq!(label_f1_with_ci(&g, &r, &cfg).unwrap(), ci);
    let other = BootstrapConfig { seed: 1, ..cfg };
    assert_ne!(
        label_f1_with_ci(&g, &r, &other).unwrap().macro_f1_14.ci,
        ci.macro_f1_14.ci
    );
}

#[test]
fn only_positive_counts_as_positive() {
    let labeler = Labeler::new();
    let reference = [
        "Right pleural effusion.",
        "Right pleural effusion.",
        "No effusion.",
    ];
    // uncertain and negative generated labels are misses; a blank reference is a negative
    let generated = [
        "Possible right pleural effusion.",
        "No effusion.",
        "Small effusion.",
    ];
    let mut s = LabelF1State::new();
    s.update_texts(&labeler, &generated, &reference).unwrap();
    let f = s.compute().unwrap();
    // tp 0, fn 2, fp 1
    assert_eq!(f.per_observation[O::PleuralEffusion.index()], 0.0);
    let same = label_f1(
        &labeler.label_all(&reference),
        &labeler.label_all(&reference),
    )
    .unwrap();
    assert_eq!(same.per_observation[O::PleuralEffusion.index()], 1.0);
    // No Finding is positive in the third report on both sides
    assert_eq!(same.per_observation[O::NoFinding.index()], 1.0);
}

#[test]
fn errors() {
    let one = [ReportLabels::default()];
    assert!(matches!(
        label_f1(&one, &[]),
        Err(LabelerError::LengthMismatch {
            generated: 1,
            reference: 0
        })
    ));
    assert!(matches!(
        LabelF1State::new().compute(),
        Err(LabelerError::NoReports)
    ));
    let bad = BootstrapConfig {
        n_resamples: 0,
        ..BootstrapConfig::default()
    };
    assert!(matches!(
        label_f1_with_ci(&one, &one, &bad),
        Err(LabelerError::Metrics(_))
    ));
}
