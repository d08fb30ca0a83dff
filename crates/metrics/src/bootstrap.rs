//! Percentile bootstrap confidence intervals: plain, clustered and paired.
//!
//! Any metric plugs in as a closure over resampled row indices (`&[usize]`, rows may
//! repeat). Each resample draws, with replacement, either `n` rows out of `n` or, for a
//! clustered bootstrap, `G` groups out of `G` (all rows of a drawn group enter together, so
//! several images of one patient never straddle the resample boundary). Draws come from
//! `ChaCha8Rng::seed_from_u64(seed)`, so a run is deterministic for a given seed and the
//! same resamples are shared by every output of [`bootstrap_many`] and by both systems of
//! [`paired_bootstrap`].
//!
//! A resample on which a metric is undefined (the closure returns `None`, NaN, or an error
//! for which [`MetricsError::is_undefined`] holds, e.g. one class only) is skipped and
//! counted in [`Interval::n_skipped`]; the percentiles use the valid resamples only. Other
//! errors abort. The interval is the `(1 - confidence) / 2` and `(1 + confidence) / 2`
//! percentiles of the valid resample values, with numpy's default linear interpolation.

use std::collections::HashMap;
use std::hash::Hash;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{MetricsError, Result};

/// Settings of a bootstrap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapConfig {
    /// Number of resamples (default 500).
    pub n_resamples: usize,
    /// RNG seed (default 0).
    pub seed: u64,
    /// Coverage of the interval (default 0.95).
    pub confidence: f64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            n_resamples: 500,
            seed: 0,
            confidence: 0.95,
        }
    }
}

/// A point estimate with its percentile interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Interval {
    /// The metric on the full data (`None` when undefined there).
    pub estimate: Option<f64>,
    /// `(lo, hi)`; `None` when no resample was valid.
    pub ci: Option<(f64, f64)>,
    /// Resamples where the metric was defined.
    pub n_valid: usize,
    /// Resamples skipped because the metric was undefined.
    pub n_skipped: usize,
}

/// What is resampled.
#[derive(Debug, Clone, Copy)]
pub enum Resampling<'a> {
    /// Rows `0..n`, independently.
    Rows(usize),
    /// Groups of rows (e.g. one group per patient, from [`group_rows`]).
    Groups(&'a [Vec<usize>]),
}

impl Resampling<'_> {
    fn all_rows(&self) -> Vec<usize> {
        match self {
            Resampling::Rows(n) => (0..*n).collect(),
            Resampling::Groups(g) => g.iter().flatten().copied().collect(),
        }
    }

    fn check(&self) -> Result<()> {
        let units = match self {
            Resampling::Rows(n) => *n,
            Resampling::Groups(g) => g.len(),
        };
        if units == 0 {
            return Err(MetricsError::Empty {
                metric: "bootstrap",
            });
        }
        Ok(())
    }

    fn draw(&self, rng: &mut ChaCha8Rng, out: &mut Vec<usize>) {
        out.clear();
        match self {
            Resampling::Rows(n) => out.extend((0..*n).map(|_| rng.random_range(0..*n))),
            Resampling::Groups(groups) => {
                for _ in 0..groups.len() {
                    out.extend_from_slice(&groups[rng.random_range(0..groups.len())]);
                }
            }
        }
    }
}

/// Row indices per group, groups in order of first appearance.
pub fn group_rows<G: Hash + Eq>(groups: &[G]) -> Vec<Vec<usize>> {
    let mut index: HashMap<&G, usize> = HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (row, g) in groups.iter().enumerate() {
        let k = *index.entry(g).or_insert_with(|| {
            out.push(Vec::new());
            out.len() - 1
        });
        out[k].push(row);
    }
    out
}

/// numpy's default (linear) percentile of sorted values, `q` in `[0, 1]`.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

fn to_defined(r: Result<Option<f64>>) -> Result<Option<f64>> {
    match r {
        Ok(Some(v)) if v.is_nan() => Ok(None),
        Ok(v) => Ok(v),
        Err(e) if e.is_undefined() => Ok(None),
        Err(e) => Err(e),
    }
}

fn check_config(cfg: &BootstrapConfig) -> Result<()> {
    if cfg.n_resamples == 0 || !(cfg.confidence > 0.0 && cfg.confidence < 1.0) {
        return Err(MetricsError::InvalidArgument(format!(
            "bootstrap needs n_resamples > 0 and 0 < confidence < 1, got {cfg:?}"
        )));
    }
    Ok(())
}

fn interval(
    estimate: Option<f64>,
    mut values: Vec<f64>,
    n_resamples: usize,
    confidence: f64,
) -> Interval {
    values.sort_unstable_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let ci = percentile_sorted(&values, tail).zip(percentile_sorted(&values, 1.0 - tail));
    Interval {
        estimate,
        ci,
        n_valid: values.len(),
        n_skipped: n_resamples - values.len(),
    }
}

/// Bootstraps several metrics over the same resamples. `stat` returns one value per
/// metric (`None` = undefined); it must always return `k` values.
pub fn bootstrap_many<F>(
    resampling: Resampling<'_>,
    cfg: &BootstrapConfig,
    k: usize,
    mut stat: F,
) -> Result<Vec<Interval>>
where
    F: FnMut(&[usize]) -> Result<Vec<Option<f64>>>,
{
    check_config(cfg)?;
    resampling.check()?;
    let mut eval = |rows: &[usize]| -> Result<Vec<Option<f64>>> {
        let v = stat(rows)?;
        if v.len() != k {
            return Err(MetricsError::LengthMismatch {
                what: "bootstrap statistic outputs vs k",
                left: v.len(),
                right: k,
            });
        }
        v.into_iter().map(|x| to_defined(Ok(x))).collect()
    };
    let estimates = eval(&resampling.all_rows())?;
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(cfg.n_resamples); k];
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut rows = Vec::new();
    for _ in 0..cfg.n_resamples {
        resampling.draw(&mut rng, &mut rows);
        for (vals, x) in values.iter_mut().zip(eval(&rows)?) {
            if let Some(x) = x {
                vals.push(x);
            }
        }
    }
    Ok(estimates
        .into_iter()
        .zip(values)
        .map(|(e, v)| interval(e, v, cfg.n_resamples, cfg.confidence))
        .collect())
}

/// Bootstraps one metric. `stat` may return an "undefined" error (see the module docs).
pub fn bootstrap<F>(
    resampling: Resampling<'_>,
    cfg: &BootstrapConfig,
    mut stat: F,
) -> Result<Interval>
where
    F: FnMut(&[usize]) -> Result<f64>,
{
    let mut out = bootstrap_many(resampling, cfg, 1, |rows| {
        Ok(vec![to_defined(stat(rows).map(Some))?])
    })?;
    out.pop().ok_or(MetricsError::Empty {
        metric: "bootstrap",
    })
}

/// Result of a paired bootstrap of two systems on the same samples.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairedInterval {
    /// System A.
    pub a: Interval,
    /// System B.
    pub b: Interval,
    /// A − B, computed on each resample from the same rows.
    pub difference: Interval,
    /// Fraction of valid resamples with A − B ≤ 0 (a one-sided bootstrap p-value for
    /// "A is better than B" when higher is better).
    pub fraction_a_not_better: Option<f64>,
}

/// Paired bootstrap: both systems are scored on each resample's rows, and the interval of
/// the difference A − B comes from those paired values. A resample where either system's
/// metric is undefined is skipped for the difference.
pub fn paired_bootstrap<FA, FB>(
    resampling: Resampling<'_>,
    cfg: &BootstrapConfig,
    mut stat_a: FA,
    mut stat_b: FB,
) -> Result<PairedInterval>
where
    FA: FnMut(&[usize]) -> Result<f64>,
    FB: FnMut(&[usize]) -> Result<f64>,
{
    let mut not_better = 0usize;
    let mut valid_diffs = 0usize;
    let mut first = true;
    let out = bootstrap_many(resampling, cfg, 3, |rows| {
        let a = to_defined(stat_a(rows).map(Some))?;
        let b = to_defined(stat_b(rows).map(Some))?;
        let d = a.zip(b).map(|(a, b)| a - b);
        // the first call is the full-data estimate, not a resample
        if !first {
            if let Some(d) = d {
                valid_diffs += 1;
                not_better += usize::from(d <= 0.0);
            }
        }
        first = false;
        Ok(vec![a, b, d])
    })?;
    let mut it = out.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(difference)) => Ok(PairedInterval {
            a,
            b,
            difference,
            fraction_a_not_better: (valid_diffs > 0)
                .then(|| not_better as f64 / valid_diffs as f64),
        }),
        _ => Err(MetricsError::Empty {
            metric: "paired_bootstrap",
        }),
    }
}
