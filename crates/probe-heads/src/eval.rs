//! Test-set evaluation of probe scores: AUROC and AUPRC per column with patient-level
//! (clustered) bootstrap CIs, F1 at thresholds chosen on val, and the logistic-regression
//! probe with C tuned on val.

use metrics::bootstrap::{
    bootstrap_many, group_rows, BootstrapConfig, Interval, PairedInterval, Resampling,
};
use metrics::classification::{best_f1_threshold, BinaryCounts, MultiLabelView};

use crate::logreg::{LogReg, LogRegConfig};
use crate::targets::macro_auroc;
use crate::{Error, Matrix, Result, Targets};

/// One column's test metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnResult {
    /// Label or class name.
    pub name: String,
    /// AUROC with its CI.
    pub auroc: Interval,
    /// Average precision with its CI.
    pub auprc: Interval,
    /// Samples with a known label.
    pub n: usize,
    /// Positives among them.
    pub positives: usize,
}

/// AUROC/AUPRC per column, and their macro averages as a last `"macro"` column, with a
/// bootstrap that resamples whole patients (`groups`, one entry per row).
pub fn evaluate(
    targets: &Targets,
    scores: &[f64],
    groups: &[String],
    cfg: &BootstrapConfig,
) -> Result<Vec<ColumnResult>> {
    let n = targets.len();
    let k = targets.width();
    targets.check(n)?;
    if scores.len() != n * k || groups.len() != n {
        return Err(Error::bad(
            "evaluate",
            format!(
                "{} scores and {} groups for {n} samples x {k} columns",
                scores.len(),
                groups.len()
            ),
        ));
    }
    let hot = targets.one_hot();
    let view = MultiLabelView::new(k, &hot, scores)?;
    let stat = |rows: &[usize]| -> metrics::Result<Vec<Option<f64>>> {
        let mut out = Vec::with_capacity(2 * k + 2);
        let (mut sa, mut sp, mut c) = (0.0, 0.0, 0usize);
        for j in 0..k {
            match view.column_ranking(j, Some(rows)) {
                Some(r) => {
                    out.push(Some(r.auroc));
                    out.push(Some(r.average_precision));
                    sa += r.auroc;
                    sp += r.average_precision;
                    c += 1;
                }
                None => {
                    out.push(None);
                    out.push(None);
                }
            }
        }
        // macro over the columns defined in this resample
        if c > 0 {
            out.push(Some(sa / c as f64));
            out.push(Some(sp / c as f64));
        } else {
            out.extend([None, None]);
        }
        Ok(out)
    };
    let clusters = group_rows(groups);
    let iv = bootstrap_many(Resampling::Groups(&clusters), cfg, 2 * k + 2, stat)?;
    let mut out = Vec::with_capacity(k + 1);
    let (mut n_all, mut p_all) = (0, 0);
    for j in 0..=k {
        let (n_j, p_j, name) = if j < k {
            let col: Vec<bool> = (0..n).filter_map(|i| hot[i * k + j]).collect();
            let p = col.iter().filter(|&&v| v).count();
            n_all = n_all.max(col.len());
            p_all += p;
            (col.len(), p, targets.names()[j].clone())
        } else {
            (n_all, p_all, "macro".to_string())
        };
        out.push(ColumnResult {
            name,
            auroc: iv[2 * j].clone(),
            auprc: iv[2 * j + 1].clone(),
            n: n_j,
            positives: p_j,
        });
    }
    Ok(out)
}

/// Paired patient-level bootstrap of test macro AUROC, A − B, for two probes' scores on the
/// same test rows (`n x k` each, e.g. a pretrained encoder's against its random
/// initialisation's). Each resample of patients scores both; the macro averages the columns
/// with both classes in that resample. Pairing removes the variance the two share (which
/// images are hard), so the difference's interval is much tighter than the two marginal
/// intervals side by side.
pub fn paired_macro_auroc(
    targets: &Targets,
    scores_a: &[f64],
    scores_b: &[f64],
    groups: &[String],
    cfg: &BootstrapConfig,
) -> Result<PairedInterval> {
    paired_mean_macro_auroc(targets, &[(scores_a, scores_b)], groups, cfg)
}

/// [`paired_macro_auroc`] for several pairs of probe scores on the same test rows (e.g. five
/// seeds of one pretraining recipe, each encoder against its own initialisation): A and B are
/// the mean macro AUROCs over the pairs, so the difference is the mean paired difference, and
/// each resample of patients scores every pair on the same rows.
pub fn paired_mean_macro_auroc(
    targets: &Targets,
    pairs: &[(&[f64], &[f64])],
    groups: &[String],
    cfg: &BootstrapConfig,
) -> Result<PairedInterval> {
    let n = targets.len();
    let k = targets.width();
    targets.check(n)?;
    if groups.len() != n {
        return Err(Error::bad(
            "paired macro AUROC",
            format!("{} groups for {n} samples", groups.len()),
        ));
    }
    let hot = targets.one_hot();
    let mut views = Vec::with_capacity(pairs.len());
    for (i, (a, b)) in pairs.iter().enumerate() {
        if a.len() != n * k || b.len() != n * k {
            return Err(Error::bad(
                "paired macro AUROC",
                format!(
                    "pair {i}: {} and {} scores for {n} samples x {k} columns",
                    a.len(),
                    b.len()
                ),
            ));
        }
        views.push((
            MultiLabelView::new(k, &hot, a)?,
            MultiLabelView::new(k, &hot, b)?,
        ));
    }
    let clusters = group_rows(groups);
    Ok(metrics::classification::paired_mean_macro_auroc(
        &views,
        Resampling::Groups(&clusters),
        cfg,
    )?)
}

/// Fits an L2 logistic regression per column on train for every `C` in `grid`, keeps the
/// `C` with the best validation AUROC per column, and returns test scores (`n_test x k`)
/// and the chosen `C` per column. Columns where val has one class use the grid's middle.
pub fn logreg_probe(
    train: (&Matrix, &Targets),
    val: (&Matrix, &Targets),
    test: &Matrix,
    grid: &[f64],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut scores, chosen) = logreg_probe_scores(train, val, &[test], grid)?;
    Ok((scores.pop().unwrap_or_default(), chosen))
}

/// [`logreg_probe`] scoring each of `inputs` (e.g. val, for choosing F1 thresholds, and
/// test) with the kept model of every column: one `n_i x k` score vector per input, and
/// the chosen `C` per column.
pub fn logreg_probe_scores(
    train: (&Matrix, &Targets),
    val: (&Matrix, &Targets),
    inputs: &[&Matrix],
    grid: &[f64],
) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let k = train.1.width();
    if grid.is_empty() {
        return Err(Error::bad("logreg probe", "empty C grid"));
    }
    let mut scores: Vec<Vec<f64>> = inputs.iter().map(|x| vec![0.0; x.rows * k]).collect();
    let mut chosen = Vec::with_capacity(k);
    for j in 0..k {
        let col = train.1.column(j);
        let rows: Vec<usize> = (0..col.len()).filter(|&i| col[i].is_some()).collect();
        let y: Vec<bool> = rows.iter().map(|&i| col[i] == Some(true)).collect();
        let xj = train.0.select(&rows)?;
        let vcol = val.1.column(j);
        let vrows: Vec<usize> = (0..vcol.len()).filter(|&i| vcol[i].is_some()).collect();
        let vt = Targets::MultiLabel {
            names: vec![String::new()],
            y: vrows.iter().map(|&i| vcol[i]).collect(),
        };
        let vx = val.0.select(&vrows)?;
        let mut best: Option<(f64, f64, LogReg)> = None;
        for &c in grid {
            let m = LogReg::fit(
                &xj,
                &y,
                // probe-grade convergence (sklearn's own default is tol 1e-4, 100
                // iterations); the tight default is for parity with sklearn's optimum
                &LogRegConfig {
                    c,
                    tol: 1e-5,
                    max_iter: 300,
                    ..Default::default()
                },
            )?;
            let a = macro_auroc(&vt, &m.predict_proba(&vx)?).unwrap_or(f64::NEG_INFINITY);
            if best.as_ref().is_none_or(|b| a > b.0) {
                best = Some((a, c, m));
            }
        }
        let (a, mut c, mut m) = best.ok_or_else(|| Error::bad("logreg probe", "no fit"))?;
        if a == f64::NEG_INFINITY {
            c = grid[grid.len() / 2];
            m = LogReg::fit(
                &xj,
                &y,
                // probe-grade convergence (sklearn's own default is tol 1e-4, 100
                // iterations); the tight default is for parity with sklearn's optimum
                &LogRegConfig {
                    c,
                    tol: 1e-5,
                    max_iter: 300,
                    ..Default::default()
                },
            )?;
        }
        for (x, out) in inputs.iter().zip(&mut scores) {
            for (i, p) in m.predict_proba(x)?.into_iter().enumerate() {
                out[i * k + j] = p;
            }
        }
        chosen.push(c);
    }
    Ok((scores, chosen))
}

/// One column's test F1 at a threshold chosen on val.
#[derive(Debug, Clone, PartialEq)]
pub struct F1Result {
    /// Label or class name (`"macro"` for the mean over columns).
    pub name: String,
    /// Decision threshold (`score >= threshold` is positive); `NaN` for the macro row.
    pub threshold: f64,
    /// Whether the threshold came from val (false: val had no positive, 0.5 was used; for
    /// the macro row, whether every column's did).
    pub from_val: bool,
    /// F1 with its CI.
    pub f1: Interval,
}

/// Per column, the threshold that maximises F1 on the validation scores (over the observed
/// scores, as [`metrics::classification::best_f1_threshold`]); 0.5, marked `false`, where
/// val has no known positive for that column.
pub fn f1_thresholds(val: &Targets, val_scores: &[f64]) -> Result<Vec<(f64, bool)>> {
    let n = val.len();
    let k = val.width();
    val.check(n)?;
    if val_scores.len() != n * k {
        return Err(Error::bad(
            "F1 thresholds",
            format!(
                "{} val scores for {n} samples x {k} columns",
                val_scores.len()
            ),
        ));
    }
    (0..k)
        .map(|j| {
            let col = val.column(j);
            let (truth, score): (Vec<bool>, Vec<f64>) = (0..n)
                .filter_map(|i| col[i].map(|t| (t, val_scores[i * k + j])))
                .unzip();
            if !truth.contains(&true) {
                return Ok((0.5, false));
            }
            Ok((best_f1_threshold(&truth, &score)?.threshold, true))
        })
        .collect()
}

/// Test F1 per column at `thresholds` (one per column, e.g. from [`f1_thresholds`]) and
/// their mean as a last `"macro"` row, with a bootstrap that resamples whole patients
/// (`groups`, one entry per row). A column's F1 is undefined in a (re)sample without a
/// known positive, and the macro averages the columns defined in it, as [`evaluate`] does
/// for AUROC.
pub fn evaluate_f1(
    targets: &Targets,
    scores: &[f64],
    thresholds: &[(f64, bool)],
    groups: &[String],
    cfg: &BootstrapConfig,
) -> Result<Vec<F1Result>> {
    let n = targets.len();
    let k = targets.width();
    targets.check(n)?;
    if scores.len() != n * k || groups.len() != n || thresholds.len() != k {
        return Err(Error::bad(
            "evaluate F1",
            format!(
                "{} scores, {} groups and {} thresholds for {n} samples x {k} columns",
                scores.len(),
                groups.len(),
                thresholds.len()
            ),
        ));
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::bad("evaluate F1", format!("score {i} is NaN")));
    }
    let hot = targets.one_hot();
    let stat = |rows: &[usize]| -> metrics::Result<Vec<Option<f64>>> {
        let mut out: Vec<Option<f64>> = (0..k)
            .map(|j| {
                let mut c = BinaryCounts::default();
                for &i in rows {
                    if let Some(t) = hot[i * k + j] {
                        c.add(t, scores[i * k + j] >= thresholds[j].0);
                    }
                }
                (c.tp + c.fn_ > 0).then(|| c.f1())
            })
            .collect();
        let defined: Vec<f64> = out.iter().flatten().copied().collect();
        out.push((!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64));
        Ok(out)
    };
    let clusters = group_rows(groups);
    let iv = bootstrap_many(Resampling::Groups(&clusters), cfg, k + 1, stat)?;
    Ok(iv
        .into_iter()
        .enumerate()
        .map(|(j, f1)| {
            let (name, (threshold, from_val)) = match thresholds.get(j) {
                Some(&t) => (targets.names()[j].clone(), t),
                None => (
                    "macro".to_string(),
                    (f64::NAN, thresholds.iter().all(|t| t.1)),
                ),
            };
            F1Result {
                name,
                threshold,
                from_val,
                f1,
            }
        })
        .collect())
}
