//! Test-set evaluation of probe scores: AUROC and AUPRC per column with patient-level
//! (clustered) bootstrap CIs, and the logistic-regression probe with C tuned on val.

use metrics::bootstrap::{
    bootstrap_many, group_rows, paired_bootstrap, BootstrapConfig, Interval, PairedInterval,
    Resampling,
};
use metrics::classification::{multilabel_macro_auroc, MultiLabelView};

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
    let n = targets.len();
    let k = targets.width();
    targets.check(n)?;
    if scores_a.len() != n * k || scores_b.len() != n * k || groups.len() != n {
        return Err(Error::bad(
            "paired macro AUROC",
            format!(
                "{} and {} scores and {} groups for {n} samples x {k} columns",
                scores_a.len(),
                scores_b.len(),
                groups.len()
            ),
        ));
    }
    let hot = targets.one_hot();
    let (a, b) = (
        MultiLabelView::new(k, &hot, scores_a)?,
        MultiLabelView::new(k, &hot, scores_b)?,
    );
    let macro_of = |view: &MultiLabelView<'_>, rows: &[usize]| {
        multilabel_macro_auroc(view, Some(rows)).ok_or(metrics::MetricsError::Empty {
            metric: "macro AUROC",
        })
    };
    let clusters = group_rows(groups);
    Ok(paired_bootstrap(
        Resampling::Groups(&clusters),
        cfg,
        |rows| macro_of(&a, rows),
        |rows| macro_of(&b, rows),
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
    let k = train.1.width();
    if grid.is_empty() {
        return Err(Error::bad("logreg probe", "empty C grid"));
    }
    let mut scores = vec![0.0; test.rows * k];
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
        for (i, p) in m.predict_proba(test)?.into_iter().enumerate() {
            scores[i * k + j] = p;
        }
        chosen.push(c);
    }
    Ok((scores, chosen))
}
