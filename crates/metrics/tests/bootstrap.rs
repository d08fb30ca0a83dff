//! Bootstrap: numpy percentiles, determinism, skipping, clustering and pairing.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use crate::common;
use common::*;
use metrics::bootstrap::*;
use metrics::classification::auroc;

#[test]
fn percentiles_match_numpy() {
    let fx = fixture("percentiles.json");
    let mut v = f64s(&fx["values"]);
    v.sort_by(f64::total_cmp);
    for (q, e) in f64s(&fx["q"]).into_iter().zip(f64s(&fx["expected"])) {
        close(percentile_sorted(&v, q).unwrap(), e, 1e-12, "percentile");
    }
}

fn toy(n: usize) -> (Vec<bool>, Vec<f64>, Vec<f64>) {
    let mut x = 7u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let y: Vec<bool> = (0..n).map(|_| next() < 0.3).collect();
    let good: Vec<f64> = y
        .iter()
        .map(|&t| next() + if t { 0.6 } else { 0.0 })
        .collect();
    let weak: Vec<f64> = y
        .iter()
        .map(|&t| next() + if t { 0.1 } else { 0.0 })
        .collect();
    (y, good, weak)
}

fn pick<T: Copy>(v: &[T], rows: &[usize]) -> Vec<T> {
    rows.iter().map(|&i| v[i]).collect()
}

#[test]
fn deterministic_contains_estimate_and_skips_undefined() {
    let (y, s, _) = toy(60);
    let cfg = BootstrapConfig::default();
    let stat = |rows: &[usize]| auroc(&pick(&y, rows), &pick(&s, rows));
    let a = bootstrap(Resampling::Rows(y.len()), &cfg, stat).unwrap();
    let b = bootstrap(Resampling::Rows(y.len()), &cfg, stat).unwrap();
    assert_eq!(a, b);
    let (lo, hi) = a.ci.unwrap();
    let est = a.estimate.unwrap();
    assert!(lo < est && est < hi && hi - lo < 0.5, "{a:?}");
    assert_eq!(a.n_valid + a.n_skipped, 500);
    let c = bootstrap(
        Resampling::Rows(y.len()),
        &BootstrapConfig { seed: 1, ..cfg },
        stat,
    )
    .unwrap();
    assert_ne!(a.ci, c.ci);

    // 2 positives in 40 rows: some resamples hold no positive and are skipped, counted
    let mut y2 = vec![false; 40];
    y2[3] = true;
    y2[17] = true;
    let s2: Vec<f64> = (0..40).map(|i| i as f64).collect();
    let r = bootstrap(Resampling::Rows(40), &cfg, |rows| {
        auroc(&pick(&y2, rows), &pick(&s2, rows))
    })
    .unwrap();
    assert!(
        r.n_skipped > 0 && r.n_valid > 0 && r.n_valid + r.n_skipped == 500,
        "{r:?}"
    );
    // a non-"undefined" error aborts
    let e = bootstrap(Resampling::Rows(40), &cfg, |_| auroc(&[true], &[0.1, 0.2]));
    assert!(e.is_err());
}

#[test]
fn clustered_resamples_whole_groups() {
    // each patient contributes 3 identical rows; a clustered resample keeps rows of a
    // patient together, so every resample's row count is a multiple of 3
    let groups: Vec<u32> = (0..30).map(|i| i / 3).collect();
    let g = group_rows(&groups);
    assert_eq!(g.len(), 10);
    assert_eq!(g[2], vec![6, 7, 8]);
    let mut sizes_ok = true;
    let r = bootstrap(
        Resampling::Groups(&g),
        &BootstrapConfig::default(),
        |rows| {
            sizes_ok &= rows.len() == 30;
            let ids: Vec<u32> = rows.iter().map(|&i| groups[i]).collect();
            sizes_ok &= ids.chunks(3).all(|c| c[0] == c[1] && c[1] == c[2]);
            Ok(rows.iter().map(|&i| groups[i] as f64).sum::<f64>() / rows.len() as f64)
        },
    )
    .unwrap();
    assert!(sizes_ok);
    close(r.estimate.unwrap(), 4.5, 1e-12, "mean id");
    // clustering widens the interval compared to treating the 30 rows as independent
    let flat = bootstrap(Resampling::Rows(30), &BootstrapConfig::default(), |rows| {
        Ok(rows.iter().map(|&i| groups[i] as f64).sum::<f64>() / rows.len() as f64)
    })
    .unwrap();
    let w = |i: &Interval| i.ci.map(|(l, h)| h - l).unwrap();
    assert!(w(&r) > w(&flat), "{r:?} vs {flat:?}");
}

#[test]
fn paired_difference_separates_systems() {
    let (y, good, weak) = toy(200);
    let cfg = BootstrapConfig {
        n_resamples: 300,
        ..Default::default()
    };
    let p = paired_bootstrap(
        Resampling::Rows(y.len()),
        &cfg,
        |rows| auroc(&pick(&y, rows), &pick(&good, rows)),
        |rows| auroc(&pick(&y, rows), &pick(&weak, rows)),
    )
    .unwrap();
    let (lo, _) = p.difference.ci.unwrap();
    assert!(lo > 0.0, "{p:?}");
    close(
        p.difference.estimate.unwrap(),
        p.a.estimate.unwrap() - p.b.estimate.unwrap(),
        1e-15,
        "diff",
    );
    assert_eq!(p.fraction_a_not_better, Some(0.0));
    // a system against itself: the difference is exactly 0 on every resample
    let same = paired_bootstrap(
        Resampling::Rows(y.len()),
        &cfg,
        |rows| auroc(&pick(&y, rows), &pick(&good, rows)),
        |rows| auroc(&pick(&y, rows), &pick(&good, rows)),
    )
    .unwrap();
    assert_eq!(same.difference.ci, Some((0.0, 0.0)));
}

#[test]
fn paired_mean_macro_auroc_shares_each_resample_across_pairs() {
    use metrics::classification::{
        multilabel_macro_auroc, paired_mean_macro_auroc, MultiLabelView,
    };
    let (y, good, weak) = toy(200);
    // two labels: the toy truth and its complement, scored by the same columns
    let truth: Vec<Option<bool>> = y.iter().flat_map(|&t| [Some(t), Some(!t)]).collect();
    let both = |s: &[f64]| -> Vec<f64> { s.iter().flat_map(|&v| [v, -v]).collect() };
    let (good2, weak2) = (both(&good), both(&weak));
    let view = |s| MultiLabelView::new(2, &truth, s).unwrap();
    let (g, w) = (view(&good2), view(&weak2));
    let clusters = group_rows(&(0..y.len()).map(|i| i / 2).collect::<Vec<_>>());
    let cfg = BootstrapConfig {
        n_resamples: 300,
        ..Default::default()
    };
    let groups = || Resampling::Groups(&clusters);
    // one pair is the plain paired bootstrap of the two macro AUROCs
    let one = paired_mean_macro_auroc(&[(g, w)], groups(), &cfg).unwrap();
    let macro_of = |v: &MultiLabelView<'_>, rows: &[usize]| {
        multilabel_macro_auroc(v, Some(rows)).ok_or(metrics::MetricsError::Empty { metric: "m" })
    };
    let plain = paired_bootstrap(groups(), &cfg, |r| macro_of(&g, r), |r| macro_of(&w, r)).unwrap();
    assert_eq!(one, plain);
    assert!(one.difference.ci.unwrap().0 > 0.0, "{one:?}");
    // the same pair twice: the mean of two equal differences is that difference
    let twice = paired_mean_macro_auroc(&[(g, w), (g, w)], groups(), &cfg).unwrap();
    close(
        twice.difference.ci.unwrap().0,
        one.difference.ci.unwrap().0,
        1e-12,
        "lower bound",
    );
    // (good, weak) and (weak, good) cancel on every resample only if both see the same rows
    let cancel = paired_mean_macro_auroc(&[(g, w), (w, g)], groups(), &cfg).unwrap();
    let (lo, hi) = cancel.difference.ci.unwrap();
    assert!(lo.abs() < 1e-12 && hi.abs() < 1e-12, "{cancel:?}");
    // (good, weak) and (weak, weak): half the difference, resample by resample
    let half = paired_mean_macro_auroc(&[(g, w), (w, w)], groups(), &cfg).unwrap();
    let ((lo1, hi1), (lo2, hi2)) = (one.difference.ci.unwrap(), half.difference.ci.unwrap());
    close(lo2, lo1 / 2.0, 1e-12, "half lower");
    close(hi2, hi1 / 2.0, 1e-12, "half upper");
    // no pair, or a system scored against other truth, is an error
    assert!(paired_mean_macro_auroc(&[], groups(), &cfg).is_err());
    let other: Vec<Option<bool>> = truth.iter().map(|t| t.map(|t| !t)).collect();
    let o = MultiLabelView::new(2, &other, &good2).unwrap();
    assert!(paired_mean_macro_auroc(&[(g, w), (o, w)], groups(), &cfg).is_err());
}
