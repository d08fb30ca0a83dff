//! Parity of the classification metrics with scikit-learn (fixtures from gen.py).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use crate::common;
use common::*;
use metrics::classification::*;
use metrics::MetricsError;

const TOL: f64 = 1e-9;

#[test]
fn binary_cases_match_sklearn() {
    let fx = fixture("classification_binary.json");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let y = bools(&case["y_true"]);
        let s = f64s(&case["y_score"]);
        if case.get("auroc").is_some() {
            let r = ranking_scores(&y, &s).unwrap();
            close(
                r.auroc,
                case["auroc"].as_f64().unwrap(),
                TOL,
                &format!("{name} auroc"),
            );
            close(
                r.average_precision,
                case["average_precision"].as_f64().unwrap(),
                TOL,
                &format!("{name} ap"),
            );
            for (key, drop) in [("roc_drop", true), ("roc_full", false)] {
                let roc = roc_curve(&y, &s, drop).unwrap();
                close_all(
                    &roc.fpr,
                    &f64s(&case[key]["fpr"]),
                    TOL,
                    &format!("{name} {key} fpr"),
                );
                close_all(
                    &roc.tpr,
                    &f64s(&case[key]["tpr"]),
                    TOL,
                    &format!("{name} {key} tpr"),
                );
                assert_eq!(
                    roc.thresholds,
                    f64s(&case[key]["thresholds"]),
                    "{name} {key} thresholds"
                );
            }
            let pr = precision_recall_curve(&y, &s).unwrap();
            close_all(
                &pr.precision,
                &f64s(&case["pr"]["precision"]),
                TOL,
                &format!("{name} pr precision"),
            );
            close_all(
                &pr.recall,
                &f64s(&case["pr"]["recall"]),
                TOL,
                &format!("{name} pr recall"),
            );
            assert_eq!(
                pr.thresholds,
                f64s(&case["pr"]["thresholds"]),
                "{name} pr thresholds"
            );
        } else {
            assert!(matches!(
                ranking_scores(&y, &s),
                Err(MetricsError::SingleClass { .. })
            ));
        }
        let c = BinaryCounts::at_threshold(&y, &s, 0.5).unwrap();
        let at = &case["at_0_5"];
        close(
            c.f1(),
            at["f1"].as_f64().unwrap(),
            TOL,
            &format!("{name} f1"),
        );
        close(
            c.precision(),
            at["precision"].as_f64().unwrap(),
            TOL,
            &format!("{name} precision"),
        );
        close(
            c.recall(),
            at["recall"].as_f64().unwrap(),
            TOL,
            &format!("{name} recall"),
        );
        close(
            c.accuracy(),
            at["accuracy"].as_f64().unwrap(),
            TOL,
            &format!("{name} accuracy"),
        );
        if let Some(b) = at["balanced_accuracy"].as_f64() {
            close(
                c.balanced_accuracy(),
                b,
                TOL,
                &format!("{name} balanced accuracy"),
            );
        }
        let best = best_f1_threshold(&y, &s).unwrap();
        assert_eq!(
            best.threshold,
            case["best_f1"]["threshold"].as_f64().unwrap(),
            "{name} best threshold"
        );
        close(
            best.f1,
            case["best_f1"]["f1"].as_f64().unwrap(),
            TOL,
            &format!("{name} best f1"),
        );
        close(
            best.f1,
            case["best_f1"]["f1_sklearn"].as_f64().unwrap(),
            TOL,
            &format!("{name} best f1 sklearn"),
        );
    }
}

fn multilabel_inputs() -> (serde_json::Value, usize, Vec<Option<bool>>, Vec<f64>) {
    let fx = fixture("classification_multilabel.json");
    let k = fx["n_labels"].as_u64().unwrap() as usize;
    let y: Vec<Option<bool>> = fx["y_true"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_bool()))
        .collect();
    let s: Vec<f64> = fx["y_score"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(f64s)
        .collect();
    (fx, k, y, s)
}

#[test]
fn multilabel_with_missing_matches_sklearn() {
    let (fx, k, y, s) = multilabel_inputs();
    let view = MultiLabelView::new(k, &y, &s).unwrap();
    let r = multilabel_ranking(&view, None);
    let c = multilabel_counts(&view, 0.5, None);
    for (l, p) in fx["per_label"].as_array().unwrap().iter().enumerate() {
        let got = r.per_label[l].unwrap();
        close(got.auroc, p["auroc"].as_f64().unwrap(), TOL, "label auroc");
        close(
            got.average_precision,
            p["average_precision"].as_f64().unwrap(),
            TOL,
            "label ap",
        );
        close(
            c.per_label[l].f1(),
            p["f1"].as_f64().unwrap(),
            TOL,
            "label f1",
        );
        close(
            c.per_label[l].precision(),
            p["precision"].as_f64().unwrap(),
            TOL,
            "label precision",
        );
        close(
            c.per_label[l].recall(),
            p["recall"].as_f64().unwrap(),
            TOL,
            "label recall",
        );
        close(
            c.per_label[l].accuracy(),
            p["accuracy"].as_f64().unwrap(),
            TOL,
            "label accuracy",
        );
    }
    close(
        r.macro_auroc.unwrap(),
        fx["macro_auroc"].as_f64().unwrap(),
        TOL,
        "macro auroc",
    );
    close(
        r.macro_average_precision.unwrap(),
        fx["macro_average_precision"].as_f64().unwrap(),
        TOL,
        "macro ap",
    );
    close(
        r.micro.unwrap().auroc,
        fx["micro_auroc"].as_f64().unwrap(),
        TOL,
        "micro auroc",
    );
    close(
        r.micro.unwrap().average_precision,
        fx["micro_average_precision"].as_f64().unwrap(),
        TOL,
        "micro ap",
    );
    close(
        c.micro().f1(),
        fx["micro_f1"].as_f64().unwrap(),
        TOL,
        "micro f1",
    );
    close(
        c.micro().precision(),
        fx["micro_precision"].as_f64().unwrap(),
        TOL,
        "micro precision",
    );
    close(
        c.micro().recall(),
        fx["micro_recall"].as_f64().unwrap(),
        TOL,
        "micro recall",
    );
    close(
        c.macro_of(BinaryCounts::f1).unwrap(),
        fx["macro_f1"].as_f64().unwrap(),
        TOL,
        "macro f1",
    );

    // sklearn's own average="macro"/"micro" on the rows with no missing label
    let rows: Vec<usize> = fx["complete_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let r = multilabel_ranking(&view, Some(&rows));
    let c = multilabel_counts(&view, 0.5, Some(&rows));
    close(
        r.macro_auroc.unwrap(),
        fx["complete_macro_auroc"].as_f64().unwrap(),
        TOL,
        "complete macro auroc",
    );
    // the bootstrap statistic is the same macro, to the bit, with and without a row subset
    assert_eq!(multilabel_macro_auroc(&view, Some(&rows)), r.macro_auroc);
    assert_eq!(
        multilabel_macro_auroc(&view, None),
        multilabel_ranking(&view, None).macro_auroc
    );
    close(
        r.micro.unwrap().auroc,
        fx["complete_micro_auroc"].as_f64().unwrap(),
        TOL,
        "complete micro auroc",
    );
    close(
        r.macro_average_precision.unwrap(),
        fx["complete_macro_average_precision"].as_f64().unwrap(),
        TOL,
        "complete macro ap",
    );
    close(
        r.micro.unwrap().average_precision,
        fx["complete_micro_average_precision"].as_f64().unwrap(),
        TOL,
        "complete micro ap",
    );
    close(
        c.macro_of(BinaryCounts::f1).unwrap(),
        fx["complete_macro_f1"].as_f64().unwrap(),
        TOL,
        "complete macro f1",
    );
    close(
        c.micro().f1(),
        fx["complete_micro_f1"].as_f64().unwrap(),
        TOL,
        "complete micro f1",
    );
}

#[test]
fn multiclass_matches_sklearn() {
    let fx = fixture("classification_multiclass.json");
    let n = fx["n_classes"].as_u64().unwrap() as usize;
    let idx = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    let m =
        multiclass::ConfusionMatrix::from_predictions(n, &idx(&fx["y_true"]), &idx(&fx["y_pred"]))
            .unwrap();
    let per = |f: fn(&multiclass::ConfusionMatrix, usize) -> f64| {
        (0..n).map(|c| f(&m, c)).collect::<Vec<_>>()
    };
    close_all(
        &per(multiclass::ConfusionMatrix::precision),
        &f64s(&fx["precision"]),
        TOL,
        "precision",
    );
    close_all(
        &per(multiclass::ConfusionMatrix::recall),
        &f64s(&fx["recall"]),
        TOL,
        "recall",
    );
    close_all(
        &per(multiclass::ConfusionMatrix::f1),
        &f64s(&fx["f1"]),
        TOL,
        "f1",
    );
    close(
        m.macro_of(multiclass::ConfusionMatrix::f1),
        fx["macro_f1"].as_f64().unwrap(),
        TOL,
        "macro f1",
    );
    close(
        m.macro_of(multiclass::ConfusionMatrix::precision),
        fx["macro_precision"].as_f64().unwrap(),
        TOL,
        "macro p",
    );
    close(
        m.macro_of(multiclass::ConfusionMatrix::recall),
        fx["macro_recall"].as_f64().unwrap(),
        TOL,
        "macro r",
    );
    close(
        m.accuracy(),
        fx["micro_f1"].as_f64().unwrap(),
        TOL,
        "micro f1",
    );
    close(
        m.accuracy(),
        fx["accuracy"].as_f64().unwrap(),
        TOL,
        "accuracy",
    );
    close(
        m.balanced_accuracy(),
        fx["balanced_accuracy"].as_f64().unwrap(),
        TOL,
        "balanced accuracy",
    );
}

#[test]
fn batched_accumulation_equals_one_shot() {
    let (_, k, y, s) = multilabel_inputs();
    let mut state = MultiLabelState::new(k).unwrap();
    let mut binary = BinaryRankingState::new();
    let mut counts = BinaryCountsState::new(0.5);
    let mut cm = multiclass::ConfusionMatrix::new(2).unwrap();
    let rows = y.len() / k;
    let (yb, sb): (Vec<bool>, Vec<f64>) = (0..rows)
        .filter_map(|i| y[i * k + 1].map(|t| (t, s[i * k + 1])))
        .unzip();
    for (start, size) in [(0usize, 7usize), (7, 50), (57, 1), (58, rows - 58)] {
        state
            .update(
                &y[start * k..(start + size) * k],
                &s[start * k..(start + size) * k],
            )
            .unwrap();
    }
    for chunk in (0..yb.len()).collect::<Vec<_>>().chunks(13) {
        let (a, b) = (chunk[0], chunk[chunk.len() - 1] + 1);
        binary.update(&yb[a..b], &sb[a..b]).unwrap();
        counts.update(&yb[a..b], &sb[a..b]).unwrap();
        let t: Vec<usize> = yb[a..b].iter().map(|&t| usize::from(t)).collect();
        let p: Vec<usize> = sb[a..b].iter().map(|&s| usize::from(s >= 0.5)).collect();
        cm.update(&t, &p).unwrap();
    }
    let view = MultiLabelView::new(k, &y, &s).unwrap();
    assert_eq!(
        state.compute_ranking().unwrap(),
        multilabel_ranking(&view, None)
    );
    assert_eq!(
        state.compute_counts(0.5).unwrap(),
        multilabel_counts(&view, 0.5, None)
    );
    assert_eq!(binary.compute().unwrap(), ranking_scores(&yb, &sb).unwrap());
    let one = BinaryCounts::at_threshold(&yb, &sb, 0.5).unwrap();
    assert_eq!(counts.compute(), one);
    let t: Vec<usize> = yb.iter().map(|&t| usize::from(t)).collect();
    let p: Vec<usize> = sb.iter().map(|&s| usize::from(s >= 0.5)).collect();
    assert_eq!(
        cm,
        multiclass::ConfusionMatrix::from_predictions(2, &t, &p).unwrap()
    );
    assert_eq!(cm.accuracy(), one.accuracy());
}

#[test]
fn bad_inputs_are_typed_errors() {
    assert!(matches!(
        auroc(&[true], &[0.1, 0.2]),
        Err(MetricsError::LengthMismatch { .. })
    ));
    assert!(matches!(
        auroc(&[true, false], &[0.1, f64::NAN]),
        Err(MetricsError::NanScore { index: 1, .. })
    ));
    assert!(matches!(auroc(&[], &[]), Err(MetricsError::Empty { .. })));
    assert!(matches!(
        average_precision(&[true, true], &[0.1, 0.2]),
        Err(MetricsError::SingleClass {
            positives: 2,
            negatives: 0,
            ..
        })
    ));
    assert!(MultiLabelView::new(3, &[Some(true); 4], &[0.0; 4]).is_err());
    assert!(multiclass::ConfusionMatrix::from_predictions(2, &[0, 2], &[0, 1]).is_err());
}

#[test]
fn large_input_uses_radix_path_and_matches_comparison_sort() {
    // above the radix threshold, with ties: compare to a naive O(P*N) Mann-Whitney count
    let n = 6000;
    let mut x = 42u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let y: Vec<bool> = (0..n).map(|_| next() % 3 == 0).collect();
    let s: Vec<f64> = y
        .iter()
        .map(|&t| (next() % 200) as f64 / 100.0 - 1.0 + if t { 0.3 } else { 0.0 })
        .collect();
    let mut wins = 0.0f64;
    let p = y.iter().filter(|&&t| t).count();
    let q = n - p;
    for i in 0..n {
        for j in 0..n {
            if y[i] && !y[j] {
                wins += if s[i] > s[j] {
                    1.0
                } else if s[i] == s[j] {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    close(
        auroc(&y, &s).unwrap(),
        wins / (p * q) as f64,
        1e-12,
        "mann-whitney",
    );
}

#[test]
fn multilabel_best_threshold_is_each_labels_f1_optimum() {
    let (_, k, y, s) = multilabel_inputs();
    let view = MultiLabelView::new(k, &y, &s).unwrap();
    let (best, counts) = multilabel_best_f1(&view, None);
    for (l, b) in best.iter().enumerate() {
        let (t, sc) = view.column(l, None);
        let b = b.unwrap();
        assert_eq!(b, best_f1_threshold(&t, &sc).unwrap());
        close(
            counts.per_label[l].f1(),
            b.f1,
            1e-15,
            "f1 at best threshold",
        );
        // no observed threshold does better
        for &th in &sc {
            assert!(BinaryCounts::at_threshold(&t, &sc, th).unwrap().f1() <= b.f1 + 1e-15);
        }
    }
    assert!(
        counts.macro_of(BinaryCounts::f1).unwrap()
            >= multilabel_counts(&view, 0.5, None)
                .macro_of(BinaryCounts::f1)
                .unwrap()
    );
}
