//! Tables and fits of a finished study: per-cell metrics with patient-clustered bootstrap
//! intervals, a power law per (arch, task) with bootstrap refits, and the extrapolation band.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use metrics::bootstrap::{bootstrap, percentile_sorted, BootstrapConfig, Resampling};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::fit::{band, fit_power_law, FitOptions, PowerLaw, PowerLawFit};
use crate::study::cell::CellState;
use crate::study::tasks::TaskResult;
use crate::{Error, Result};

/// One (cell, task) line of the results table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Model-size label.
    pub arch: String,
    /// Backbone parameters.
    pub params: usize,
    /// Arm (`nested`, `random`, `curated`, `full`, …).
    pub arm: String,
    /// Distinct pretraining images.
    pub n_images: usize,
    /// Images seen in pretraining (`steps × batch`).
    pub images_seen: u64,
    /// Task.
    pub task: String,
    /// Metric name.
    pub metric: String,
    /// The metric on the whole evaluation set.
    pub value: f64,
    /// 95% patient-clustered bootstrap interval.
    pub ci: Option<(f64, f64)>,
    /// Evaluation samples.
    pub n_eval: usize,
}

/// A power law of one (arch, task) with its bootstrap refits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveFit {
    /// Model-size label.
    pub arch: String,
    /// Task.
    pub task: String,
    /// Fit on the full evaluation set.
    pub fit: PowerLawFit,
    /// Refits on bootstrap resamples of the evaluation samples (failed refits dropped).
    pub refits: Vec<PowerLaw>,
    /// 95% interval of the exponent `c` over the refits.
    pub c_ci: Option<(f64, f64)>,
    /// The curve at the extrapolation sizes.
    pub extrapolation: Vec<Extrapolated>,
}

/// The fitted curve at one size, with the band of the bootstrap refits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Extrapolated {
    /// Data size.
    pub n: f64,
    /// The fit's value.
    pub estimate: f64,
    /// 95% pointwise band of the refits.
    pub band: Option<(f64, f64)>,
}

/// Resamples of patient clusters: `B` lists of rows, drawn once and shared by every cell
/// (the evaluation set is the same), so refits see paired resamples.
pub fn cluster_resamples(clusters: &[Vec<usize>], b: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..b)
        .map(|_| {
            let mut rows = Vec::new();
            for _ in 0..clusters.len() {
                rows.extend_from_slice(&clusters[rng.random_range(0..clusters.len())]);
            }
            rows
        })
        .collect()
}

/// Table rows of `cells`.
pub fn rows(cells: &[CellState], boot: &BootstrapConfig) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for c in cells {
        for r in &c.results {
            let clusters = r.clusters();
            let iv = bootstrap(Resampling::Groups(&clusters), boot, |rows| {
                r.metric_on(rows)
            })?;
            out.push(Row {
                arch: c.arch.clone(),
                params: c.params,
                arm: c.arm.clone(),
                n_images: c.n_images,
                images_seen: c.steps * c.batch_size as u64,
                task: r.task.clone(),
                metric: r.metric.clone(),
                value: iv.estimate.unwrap_or(f64::NAN),
                ci: iv.ci,
                n_eval: r.len(),
            });
        }
    }
    Ok(out)
}

fn same_eval_set(a: &TaskResult, b: &TaskResult) -> bool {
    a.ids == b.ids
}

/// Fits a power law per (arch, task) across the cells of `arm`, refitting on `boot.n_resamples`
/// shared cluster resamples, and extrapolates to `extrapolate_to` sizes.
pub fn fits(
    cells: &[CellState],
    arm: &str,
    boot: &BootstrapConfig,
    extrapolate_to: &[f64],
) -> Result<Vec<CurveFit>> {
    let mut groups: BTreeMap<(String, String), Vec<(f64, &TaskResult)>> = BTreeMap::new();
    for c in cells.iter().filter(|c| c.arm == arm) {
        for r in &c.results {
            groups
                .entry((c.arch.clone(), r.task.clone()))
                .or_default()
                .push((c.n_images as f64, r));
        }
    }
    let opts = FitOptions::default();
    let mut out = Vec::new();
    for ((arch, task), mut pts) in groups {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if pts.len() < 3 {
            continue;
        }
        if pts.iter().any(|(_, r)| !same_eval_set(r, pts[0].1)) {
            return Err(Error::invalid(
                "fit",
                format!("{task}: cells were evaluated on different samples"),
            ));
        }
        let n: Vec<f64> = pts.iter().map(|p| p.0).collect();
        let y: Vec<f64> = pts
            .iter()
            .map(|p| p.1.metric())
            .collect::<metrics::Result<_>>()?;
        // a curve the law cannot describe (e.g. flat noise) is left out of the fits table
        // rather than failing the study; its points stay in the results table
        let Ok(fit) = fit_power_law(&n, &y, None, &opts) else {
            continue;
        };
        let resamples = cluster_resamples(&pts[0].1.clusters(), boot.n_resamples, boot.seed);
        let mut refits = Vec::new();
        for rows in &resamples {
            let yb: Option<Vec<f64>> = pts.iter().map(|p| p.1.metric_on(rows).ok()).collect();
            if let Some(yb) = yb {
                if let Ok(f) = fit_power_law(&n, &yb, None, &opts) {
                    refits.push(f.law);
                }
            }
        }
        let mut cs: Vec<f64> = refits.iter().map(|l| l.c).collect();
        cs.sort_unstable_by(f64::total_cmp);
        let tail = (1.0 - boot.confidence) / 2.0;
        let c_ci = percentile_sorted(&cs, tail).zip(percentile_sorted(&cs, 1.0 - tail));
        let bands = band(&refits, extrapolate_to, boot.confidence);
        let extrapolation = extrapolate_to
            .iter()
            .zip(bands)
            .map(|(&x, b)| Extrapolated {
                n: x,
                estimate: fit.law.eval(x),
                band: b,
            })
            .collect();
        out.push(CurveFit {
            arch,
            task,
            fit,
            refits,
            c_ci,
            extrapolation,
        });
    }
    Ok(out)
}

fn ci(c: Option<(f64, f64)>) -> String {
    c.map_or("-".into(), |(a, b)| format!("[{a:.3}, {b:.3}]"))
}

/// The results table as markdown.
pub fn rows_markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| arch | params | arm | images | images seen | task | metric | value | 95% CI | n eval |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.1}M | {} | {} | {} | {} | {} | {:.3} | {} | {} |",
            r.arch,
            r.params as f64 / 1e6,
            r.arm,
            r.n_images,
            r.images_seen,
            r.task,
            r.metric,
            r.value,
            ci(r.ci),
            r.n_eval
        );
    }
    s
}

/// The results table as CSV.
pub fn rows_csv(rows: &[Row]) -> String {
    let mut s =
        String::from("arch,params,arm,n_images,images_seen,task,metric,value,ci_lo,ci_hi,n_eval\n");
    for r in rows {
        let (lo, hi) = r.ci.map_or((String::new(), String::new()), |(a, b)| {
            (a.to_string(), b.to_string())
        });
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{lo},{hi},{}",
            r.arch, r.params, r.arm, r.n_images, r.images_seen, r.task, r.metric, r.value, r.n_eval
        );
    }
    s
}

/// The fits as markdown: parameters, exponent interval, extrapolations with bands.
pub fn fits_markdown(fits: &[CurveFit]) -> String {
    let mut s = String::from(
        "| arch | task | a (asymptote) | b | c (exponent) | c 95% CI (bootstrap refits) | extrapolation (95% band) |\n|---|---|---|---|---|---|---|\n",
    );
    for f in fits {
        let ex: Vec<String> = f
            .extrapolation
            .iter()
            .map(|e| format!("n={:.0}: {:.3} {}", e.n, e.estimate, ci(e.band)))
            .collect();
        let l = &f.fit.law;
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {:.3} | {:.3}{} | {} | {} |",
            f.arch,
            f.task,
            l.a,
            l.b,
            l.c,
            if f.fit.c_at_bound {
                " (at search bound)"
            } else {
                ""
            },
            ci(f.c_ci),
            ex.join("; ")
        );
    }
    s
}

/// Writes `stem.md`, `stem.csv` and `stem.fits.json` atomically.
pub fn write_tables(stem: &Path, rows: &[Row], fits: &[CurveFit]) -> Result<()> {
    let md = format!("{}\n{}", rows_markdown(rows), fits_markdown(fits));
    let with = |ext: &str| stem.with_extension(ext);
    train_utils::write_atomic(&with("md"), md.as_bytes())?;
    train_utils::write_atomic(&with("csv"), rows_csv(rows).as_bytes())?;
    let json = serde_json::to_vec_pretty(fits).map_err(|e| Error::io(with("fits.json"), e))?;
    train_utils::write_atomic(&with("fits.json"), &json)?;
    Ok(())
}
