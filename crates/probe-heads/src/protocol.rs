//! The probe protocol in one call, for any labelled data set: on frozen features of the
//! train, val and test splits, fit an L2 logistic regression per label (`C` chosen on val),
//! the AdamW linear probe over seeds (early stopping on val) and DINO's weighted kNN, then
//! score test with AUROC, AUPRC and F1, each with a patient-level bootstrap CI.
//!
//! F1 needs a decision threshold. Each probe's threshold per label is the one that maximises
//! F1 on its own val scores, then applied unchanged to test: choosing it on test would
//! flatter the probe, and a fixed 0.5 means little for rare findings, whose probabilities
//! rarely reach it.

use metrics::bootstrap::{BootstrapConfig, Interval};
use metrics::classification::MultiLabelView;

use crate::eval::{evaluate, evaluate_f1, f1_thresholds, logreg_probe_scores};
use crate::eval::{ColumnResult, F1Result};
use crate::knn::{knn_scores, KnnConfig};
use crate::linear::{mean_std, LinearProbe, LinearProbeConfig};
use crate::logreg::default_c_grid;
use crate::results::ResultRow;
use crate::{Error, Matrix, Result, Targets};

/// A probe [`run_probes`] can fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Probe {
    /// L2 logistic regression per label, `C` chosen on val by AUROC.
    LogReg,
    /// Linear layer trained with AdamW and early stopping on val, over seeds.
    Linear,
    /// DINO's weighted kNN (cosine, `exp(sim / T)` votes) over the training features.
    Knn,
}

impl Probe {
    /// Every probe, in the order [`run_probes`] fits them.
    pub const ALL: [Probe; 3] = [Probe::LogReg, Probe::Linear, Probe::Knn];

    /// The probe's name on a command line: `logreg`, `linear`, `knn`.
    pub fn name(self) -> &'static str {
        match self {
            Probe::LogReg => "logreg",
            Probe::Linear => "linear",
            Probe::Knn => "knn",
        }
    }

    /// Parses [`Probe::name`].
    pub fn parse(s: &str) -> Result<Self> {
        Probe::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| {
                Error::bad(
                    "probe",
                    format!("unknown probe {s:?} (logreg, linear, knn)"),
                )
            })
    }
}

/// Settings of [`run_probes`].
#[derive(Debug, Clone)]
pub struct ProtocolConfig {
    /// Probes to fit, in this order.
    pub probes: Vec<Probe>,
    /// Inverse regularisation strengths tried for the logistic regression.
    pub c_grid: Vec<f64>,
    /// The linear probe's training.
    pub linear: LinearProbeConfig,
    /// Linear-probe seeds (`0..seeds`); its scores are the mean over seeds.
    pub seeds: usize,
    /// kNN settings.
    pub knn: KnnConfig,
    /// Bootstrap of every interval (patients are resampled).
    pub bootstrap: BootstrapConfig,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            probes: Probe::ALL.to_vec(),
            c_grid: default_c_grid(),
            linear: LinearProbeConfig::default(),
            seeds: 5,
            knn: KnnConfig::default(),
            bootstrap: BootstrapConfig::default(),
        }
    }
}

/// Features and labels of one split.
#[derive(Debug, Clone, Copy)]
pub struct SplitData<'a> {
    /// Features, one row per image.
    pub x: &'a Matrix,
    /// Labels of the same rows.
    pub y: &'a Targets,
}

/// What [`run_probes`] fits on and scores.
#[derive(Debug, Clone, Copy)]
pub struct ProbeData<'a> {
    /// Training split.
    pub train: SplitData<'a>,
    /// Validation split: `C`, early stopping and F1 thresholds.
    pub val: SplitData<'a>,
    /// Test split.
    pub test: SplitData<'a>,
    /// The patient of each test row; the bootstrap resamples patients.
    pub test_patients: &'a [String],
}

impl<'a> ProbeData<'a> {
    /// The train, val and test splits from their features `x` and labels `y`, in that order,
    /// and the patient of each test row.
    pub fn new(x: [&'a Matrix; 3], y: [&'a Targets; 3], test_patients: &'a [String]) -> Self {
        let split = |i: usize| SplitData { x: x[i], y: y[i] };
        Self {
            train: split(0),
            val: split(1),
            test: split(2),
            test_patients,
        }
    }
}

/// One probe's test results.
#[derive(Debug, Clone)]
pub struct ProbeOutcome {
    /// Which probe.
    pub probe: Probe,
    /// Its label in tables, with its settings (e.g. `kNN k=20 T=0.07`).
    pub label: String,
    /// Seeds behind the scores (1 for the deterministic probes).
    pub seeds: usize,
    /// Test scores, `n_test x k` row-major (the seed mean for the linear probe).
    pub test_scores: Vec<f64>,
    /// AUROC and AUPRC per label, then the macro row.
    pub columns: Vec<ColumnResult>,
    /// F1 at the val-chosen threshold per label, then the macro row.
    pub f1: Vec<F1Result>,
    /// Standard deviation of each label's and the macro test AUROC over seeds (linear
    /// probe with several seeds only).
    pub auroc_std: Option<Vec<Option<f64>>>,
    /// The `C` chosen on val for each label (logistic regression only).
    pub chosen_c: Option<Vec<f64>>,
}

fn check(data: &ProbeData<'_>) -> Result<()> {
    let splits = [
        ("train", data.train),
        ("val", data.val),
        ("test", data.test),
    ];
    for (name, s) in splits {
        s.y.check(s.x.rows)
            .map_err(|e| Error::bad("probe data", format!("{name}: {e}")))?;
        if s.x.cols != data.train.x.cols || s.y.names() != data.train.y.names() {
            return Err(Error::bad(
                "probe data",
                format!(
                    "{name} has {} features and labels {:?}; train has {} and {:?}",
                    s.x.cols,
                    s.y.names(),
                    data.train.x.cols,
                    data.train.y.names()
                ),
            ));
        }
    }
    if data.test_patients.len() != data.test.x.rows {
        return Err(Error::bad(
            "probe data",
            format!(
                "{} test patients for {} test rows",
                data.test_patients.len(),
                data.test.x.rows
            ),
        ));
    }
    Ok(())
}

/// AUROC of every label and their mean over the defined ones, on all rows.
fn aurocs(targets: &Targets, scores: &[f64]) -> Result<Vec<Option<f64>>> {
    let hot = targets.one_hot();
    let view = MultiLabelView::new(targets.width(), &hot, scores)?;
    let mut out: Vec<Option<f64>> = (0..targets.width())
        .map(|j| view.column_ranking(j, None).map(|r| r.auroc))
        .collect();
    let defined: Vec<f64> = out.iter().flatten().copied().collect();
    out.push((!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64));
    Ok(out)
}

fn mean_of(runs: &[Vec<f64>]) -> Vec<f64> {
    let len = runs.first().map_or(0, Vec::len);
    (0..len)
        .map(|i| runs.iter().map(|r| r[i]).sum::<f64>() / runs.len() as f64)
        .collect()
}

/// What one probe gave before evaluation.
struct Scored {
    val: Vec<f64>,
    test: Vec<f64>,
    seeds: usize,
    auroc_std: Option<Vec<Option<f64>>>,
    chosen_c: Option<Vec<f64>>,
}

fn score(probe: Probe, data: &ProbeData<'_>, cfg: &ProtocolConfig) -> Result<Scored> {
    let (tr, va, te) = (data.train, data.val, data.test);
    match probe {
        Probe::LogReg => {
            let (mut s, chosen) =
                logreg_probe_scores((tr.x, tr.y), (va.x, va.y), &[va.x, te.x], &cfg.c_grid)?;
            let test = s.pop().unwrap_or_default();
            let val = s.pop().unwrap_or_default();
            Ok(Scored {
                val,
                test,
                seeds: 1,
                auroc_std: None,
                chosen_c: Some(chosen),
            })
        }
        Probe::Linear => {
            if cfg.seeds == 0 {
                return Err(Error::bad("linear probe", "needs at least one seed"));
            }
            let mut val_runs = Vec::with_capacity(cfg.seeds);
            let mut test_runs = Vec::with_capacity(cfg.seeds);
            for seed in 0..cfg.seeds as u64 {
                let p = LinearProbe::fit(tr.x, tr.y, va.x, va.y, &cfg.linear, seed)?;
                val_runs.push(p.predict(va.x)?);
                test_runs.push(p.predict(te.x)?);
            }
            let std = if cfg.seeds > 1 {
                let per_seed = test_runs
                    .iter()
                    .map(|s| aurocs(te.y, s))
                    .collect::<Result<Vec<_>>>()?;
                let columns = per_seed.first().map_or(0, Vec::len);
                Some(
                    (0..columns)
                        .map(|j| {
                            let v: Vec<f64> = per_seed.iter().filter_map(|s| s[j]).collect();
                            (v.len() == per_seed.len()).then(|| mean_std(&v).1)
                        })
                        .collect(),
                )
            } else {
                None
            };
            Ok(Scored {
                val: mean_of(&val_runs),
                test: mean_of(&test_runs),
                seeds: cfg.seeds,
                auroc_std: std,
                chosen_c: None,
            })
        }
        Probe::Knn => {
            // val and test query the same bank (train), so the threshold chosen on val
            // meets test scores of the same distribution
            Ok(Scored {
                val: knn_scores(tr.x, tr.y, va.x, &cfg.knn)?,
                test: knn_scores(tr.x, tr.y, te.x, &cfg.knn)?,
                seeds: 1,
                auroc_std: None,
                chosen_c: None,
            })
        }
    }
}

fn label_of(probe: Probe, cfg: &ProtocolConfig) -> String {
    match probe {
        Probe::LogReg => "logreg (C on val)".into(),
        Probe::Linear => format!("linear AdamW lr={}", cfg.linear.lr),
        Probe::Knn => format!("kNN k={} T={}", cfg.knn.k, cfg.knn.temperature),
    }
}

/// Fits every probe of `cfg` on `data` and scores test: AUROC, AUPRC and F1 (threshold
/// chosen on val) per label and macro, with patient-level bootstrap CIs.
pub fn run_probes(data: &ProbeData<'_>, cfg: &ProtocolConfig) -> Result<Vec<ProbeOutcome>> {
    check(data)?;
    cfg.probes
        .iter()
        .map(|&probe| {
            let s = score(probe, data, cfg)?;
            let thresholds = f1_thresholds(data.val.y, &s.val)?;
            Ok(ProbeOutcome {
                probe,
                label: label_of(probe, cfg),
                seeds: s.seeds,
                columns: evaluate(data.test.y, &s.test, data.test_patients, &cfg.bootstrap)?,
                f1: evaluate_f1(
                    data.test.y,
                    &s.test,
                    &thresholds,
                    data.test_patients,
                    &cfg.bootstrap,
                )?,
                test_scores: s.test,
                auroc_std: s.auroc_std,
                chosen_c: s.chosen_c,
            })
        })
        .collect()
}

/// Table rows of `outcomes` (AUROC, AUPRC and F1 per label and macro) for
/// [`crate::results::write_tables`]; tasks read `<task_prefix>/<label>`.
pub fn result_rows(encoder: &str, task_prefix: &str, outcomes: &[ProbeOutcome]) -> Vec<ResultRow> {
    let mut rows = Vec::new();
    for o in outcomes {
        for (j, c) in o.columns.iter().enumerate() {
            let f1 = o.f1.get(j).map(|f| &f.f1);
            let metrics: [(&str, Option<&Interval>); 3] = [
                ("AUROC", Some(&c.auroc)),
                ("AUPRC", Some(&c.auprc)),
                ("F1", f1),
            ];
            for (metric, iv) in metrics {
                let Some(value) = iv.and_then(|iv| iv.estimate) else {
                    continue;
                };
                rows.push(ResultRow {
                    encoder: encoder.into(),
                    task: format!("{task_prefix}/{}", c.name),
                    probe: o.label.clone(),
                    metric: metric.into(),
                    value,
                    ci: iv.and_then(|iv| iv.ci),
                    std: o
                        .auroc_std
                        .as_ref()
                        .filter(|_| metric == "AUROC")
                        .and_then(|s| s.get(j).copied().flatten()),
                    n: c.n,
                    seeds: o.seeds,
                });
            }
        }
    }
    rows
}
