//! The demographics protocol of RAD-DINO: a continuous target (age) binned into quantile
//! classes, and k-fold cross-validation with folds grouped by patient, so no patient is in
//! two folds.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::eval::logreg_probe;
use crate::{Error, Matrix, Result, Targets};

/// Edges of `bins` equal-count bins of `values` (the `bins - 1` inner quantiles, linear
/// interpolation as numpy's default), and each value's bin (`value > edge` moves it up).
pub fn quantile_bins(values: &[f64], bins: usize) -> Result<(Vec<f64>, Vec<usize>)> {
    if bins < 2 || values.len() < bins || values.iter().any(|v| !v.is_finite()) {
        return Err(Error::bad(
            "quantile bins",
            format!("{} finite values into {bins} bins", values.len()),
        ));
    }
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (s.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(s.len() - 1);
        s[lo] + (pos - lo as f64) * (s[hi] - s[lo])
    };
    let edges: Vec<f64> = (1..bins).map(|i| q(i as f64 / bins as f64)).collect();
    let classes = values
        .iter()
        .map(|v| edges.iter().filter(|&&e| *v > e).count())
        .collect();
    Ok((edges, classes))
}

/// Assigns each row to one of `k` folds with all rows of a patient in the same fold;
/// patients are shuffled with `seed` and dealt to the fold with the fewest rows so far.
pub fn grouped_kfold(groups: &[String], k: usize, seed: u64) -> Result<Vec<usize>> {
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        by.entry(g.as_str()).or_default().push(i);
    }
    if k < 2 || by.len() < k {
        return Err(Error::bad(
            "grouped k-fold",
            format!("{} patients into {k} folds", by.len()),
        ));
    }
    let mut patients: Vec<Vec<usize>> = by.into_values().collect();
    patients.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    // larger patients first keeps the folds balanced (as sklearn's GroupKFold)
    patients.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut size = vec![0usize; k];
    let mut fold = vec![0usize; groups.len()];
    for p in patients {
        let f = (0..k).min_by_key(|&f| (size[f], f)).unwrap_or(0);
        size[f] += p.len();
        for i in p {
            fold[i] = f;
        }
    }
    Ok(fold)
}

/// Out-of-fold scores of the logistic-regression probe: for fold `f`, train on the folds
/// other than `f` and `f + 1`, pick C on fold `f + 1`, score fold `f`.
pub fn cross_validated_logreg(
    x: &Matrix,
    y: &Targets,
    folds: &[usize],
    grid: &[f64],
) -> Result<Vec<f64>> {
    y.check(x.rows)?;
    let k = folds.iter().max().map_or(0, |m| m + 1);
    let w = y.width();
    let mut out = vec![0.0; x.rows * w];
    for f in 0..k {
        let v = (f + 1) % k;
        let pick = |p: &dyn Fn(usize) -> bool| -> Vec<usize> {
            (0..x.rows).filter(|&i| p(folds[i])).collect()
        };
        let tr = pick(&|g| g != f && g != v);
        let va = pick(&|g| g == v);
        let te = pick(&|g| g == f);
        let (s, _) = logreg_probe(
            (&x.select(&tr)?, &y.select(&tr)),
            (&x.select(&va)?, &y.select(&va)),
            &x.select(&te)?,
            grid,
        )?;
        for (r, &i) in te.iter().enumerate() {
            out[i * w..(i + 1) * w].copy_from_slice(&s[r * w..(r + 1) * w]);
        }
    }
    Ok(out)
}
