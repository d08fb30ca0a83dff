//! The `score` example's logic on a tiny CSV pair, against sklearn (fixture from gen.py).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use crate::common;
use common::*;
use metrics::bootstrap::BootstrapConfig;
use metrics::table::{score_files, ScoreOptions};
use metrics::MetricsError;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/table"))
}

#[test]
fn csv_pair_matches_sklearn() {
    let d = dir();
    let got = score_files(
        &d.join("y_true.csv"),
        &d.join("y_score.csv"),
        None,
        &ScoreOptions::default(),
    )
    .unwrap();
    let exp = fixture("table/expected.json");
    for metric in ["auroc", "auprc", "f1@0.5"] {
        for (key, e) in exp[metric].as_object().unwrap() {
            let g = &got[metric][key];
            match e.as_f64() {
                Some(e) => close(g.as_f64().unwrap(), e, 1e-9, &format!("{metric} {key}")),
                None => assert!(g.is_null(), "{metric} {key} should be null, got {g}"),
            }
        }
    }
    assert_eq!(got["n_samples"], 24);
    assert!(got.get("ci95").is_none());
}

#[test]
fn bootstrap_ci_has_the_same_shape_and_is_deterministic() {
    let d = dir();
    let opts = ScoreOptions {
        bootstrap: Some(BootstrapConfig {
            n_resamples: 200,
            seed: 3,
            ..Default::default()
        }),
        ..Default::default()
    };
    let a = score_files(
        &d.join("y_true.csv"),
        &d.join("y_score.csv"),
        Some(&d.join("groups.csv")),
        &opts,
    )
    .unwrap();
    let b = score_files(
        &d.join("y_true.csv"),
        &d.join("y_score.csv"),
        Some(&d.join("groups.csv")),
        &opts,
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a["bootstrap"]["clustered"], true);
    assert_eq!(a["bootstrap"]["n_groups"], 12);
    for metric in ["auroc", "auprc", "f1@0.5"] {
        let point = a[metric].as_object().unwrap();
        let ci = a["ci95"][metric].as_object().unwrap();
        assert_eq!(
            point.keys().collect::<Vec<_>>(),
            ci.keys().collect::<Vec<_>>()
        );
        for (key, v) in point {
            if let Some(v) = v.as_f64() {
                let pair = ci[key].as_array().unwrap();
                let (lo, hi) = (pair[0].as_f64().unwrap(), pair[1].as_f64().unwrap());
                // a percentile interval need not contain the point estimate; check sanity
                assert!(
                    (0.0..=1.0).contains(&v) && 0.0 <= lo && lo <= hi && hi <= 1.0,
                    "{metric} {key}: {v}, [{lo}, {hi}]"
                );
            } else {
                assert!(ci[key].is_null());
            }
        }
    }
    // Hernia has negatives only: undefined everywhere, all resamples skipped
    assert_eq!(a["bootstrap"]["skipped"]["auroc"]["Hernia"], 200);
    let unclustered =
        score_files(&d.join("y_true.csv"), &d.join("y_score.csv"), None, &opts).unwrap();
    assert_eq!(unclustered["bootstrap"]["clustered"], false);
    assert_ne!(unclustered["ci95"], a["ci95"]);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn errors_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let labels = write(t, "y.csv", "A,B\n1,0\n0,x\n");
    let scores = write(t, "s.csv", "A,B\n0.1,0.2\n0.3,0.4\n");
    let e = score_files(&labels, &scores, None, &ScoreOptions::default()).unwrap_err();
    assert!(
        matches!(&e, MetricsError::Csv { line: 3, path, .. } if path == &labels),
        "{e}"
    );
    assert!(e.to_string().contains("y.csv:3"), "{e}");

    let labels = write(t, "y.csv", "A,B\n1,0\n0,\n");
    let scores = write(t, "s.csv", "A,B\n0.1,0.2\n0.3,nan\n");
    let e = score_files(&labels, &scores, None, &ScoreOptions::default()).unwrap_err();
    assert!(e.to_string().contains("s.csv:3"), "{e}");

    let scores = write(t, "s.csv", "A,C\n0.1,0.2\n0.3,0.4\n");
    let e = score_files(&labels, &scores, None, &ScoreOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("s.csv:1") && e.to_string().contains("\"B\""),
        "{e}"
    );

    // a repeated label name used to score two label columns against one score column
    let dup = write(t, "d.csv", "A,A\n1,0\n0,1\n");
    let scores = write(t, "s.csv", "A,B\n0.1,0.2\n0.3,0.4\n");
    let e = score_files(&dup, &scores, None, &ScoreOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:1: column \"A\" appears twice (columns 1 and 2)",
            dup.display()
        )
    );

    let scores = write(t, "s.csv", "A,B\n0.1,0.2\n0.3\n");
    let e = score_files(&labels, &scores, None, &ScoreOptions::default()).unwrap_err();
    assert!(e.to_string().contains("s.csv:3"), "{e}");

    let scores = write(t, "s.csv", "A,B\n0.1,0.2\n");
    let e = score_files(&labels, &scores, None, &ScoreOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("2 samples") && e.to_string().contains("1"),
        "{e}"
    );

    let e = score_files(
        &t.join("missing.csv"),
        &scores,
        None,
        &ScoreOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing.csv"), "{e}");
}
