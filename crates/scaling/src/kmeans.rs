//! k-means with k-means++ seeding and Lloyd iterations, as scikit-learn's `KMeans`
//! (`algorithm="lloyd"`, one initialisation) defines them.
//!
//! - Seeding is sklearn's greedy k-means++ (`_kmeans_plusplus`): the first centre uniform,
//!   then `2 + ⌊ln k⌋` candidates per step drawn with probability ∝ the squared distance to
//!   the nearest chosen centre, keeping the candidate that lowers the potential most.
//!   The random stream is this crate's (ChaCha8), not numpy's, so the seeds differ from
//!   sklearn's for the same integer seed; [`lloyd`] takes explicit centres for that reason.
//! - Lloyd stops on unchanged labels ("strict convergence") or when the squared centre shift
//!   is at most `tol × mean per-feature variance`; labels are then recomputed for the final
//!   centres. An empty cluster takes the point farthest from its centre.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Settings of [`kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansConfig {
    /// Number of clusters.
    pub k: usize,
    /// Most Lloyd iterations (sklearn: 300).
    pub max_iter: usize,
    /// Relative tolerance on the centre shift (sklearn: 1e-4).
    pub tol: f64,
    /// Seed of the k-means++ draw.
    pub seed: u64,
}

impl KMeansConfig {
    /// sklearn's defaults for `k` clusters.
    pub fn new(k: usize, seed: u64) -> Self {
        Self {
            k,
            max_iter: 300,
            tol: 1e-4,
            seed,
        }
    }
}

/// A clustering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeans {
    /// `k × d` centres, row-major.
    pub centers: Vec<f64>,
    /// Feature dimension.
    pub dim: usize,
    /// Cluster of each point.
    pub labels: Vec<usize>,
    /// Sum of squared distances of the points to their centres.
    pub inertia: f64,
    /// Lloyd iterations run (sklearn's `n_iter_`).
    pub n_iter: usize,
}

impl KMeans {
    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.centers.len() / self.dim.max(1)
    }

    /// Points per cluster.
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![0; self.k()];
        for &l in &self.labels {
            s[l] += 1;
        }
        s
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn check(x: &[f64], dim: usize, k: usize) -> Result<usize> {
    if dim == 0 || x.len() % dim != 0 {
        return Err(Error::invalid(
            "k-means",
            format!("{} values do not form rows of dimension {dim}", x.len()),
        ));
    }
    let n = x.len() / dim;
    if k == 0 || k > n {
        return Err(Error::invalid(
            "k-means",
            format!("{k} clusters for {n} points"),
        ));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid("k-means", "non-finite feature value"));
    }
    Ok(n)
}

/// k-means++ seeding of `k` centres from the rows of `x` (`n × dim`, row-major): returns the
/// indices of the chosen rows.
pub fn kmeans_plusplus(x: &[f64], dim: usize, k: usize, seed: u64) -> Result<Vec<usize>> {
    let n = check(x, dim, k)?;
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let trials = 2 + (k as f64).ln() as usize;
    let first = rng.random_range(0..n);
    let mut chosen = vec![first];
    let mut closest: Vec<f64> = (0..n).map(|i| sq_dist(row(i), row(first))).collect();
    let mut pot: f64 = closest.iter().sum();
    while chosen.len() < k {
        let mut cum = Vec::with_capacity(n);
        let mut acc = 0.0;
        for &d in &closest {
            acc += d;
            cum.push(acc);
        }
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let r = rng.random::<f64>() * pot;
            // numpy's searchsorted(side="left"), clipped to the last row
            let cand = cum.partition_point(|&c| c < r).min(n - 1);
            let d: Vec<f64> = (0..n)
                .map(|i| closest[i].min(sq_dist(row(i), row(cand))))
                .collect();
            let p: f64 = d.iter().sum();
            if best.as_ref().is_none_or(|b| p < b.0) {
                best = Some((p, cand, d));
            }
        }
        let (p, cand, d) = best.ok_or_else(|| Error::invalid("k-means++", "no candidate"))?;
        chosen.push(cand);
        closest = d;
        pot = p;
    }
    Ok(chosen)
}

fn assign(x: &[f64], dim: usize, centers: &[f64], labels: &mut [usize]) -> Vec<f64> {
    let k = centers.len() / dim;
    labels
        .iter_mut()
        .enumerate()
        .map(|(i, l)| {
            let p = &x[i * dim..(i + 1) * dim];
            let (best, d) = (0..k)
                .map(|c| (c, sq_dist(p, &centers[c * dim..(c + 1) * dim])))
                .fold((0, f64::INFINITY), |b, c| if c.1 < b.1 { c } else { b });
            *l = best;
            d
        })
        .collect()
}

/// Lloyd iterations from explicit `init` centres (`k × dim`), as sklearn's
/// `KMeans(init=centres, n_init=1, algorithm="lloyd")`.
pub fn lloyd(x: &[f64], dim: usize, init: &[f64], max_iter: usize, tol: f64) -> Result<KMeans> {
    if init.len() % dim.max(1) != 0 {
        return Err(Error::invalid(
            "k-means",
            "initial centres are not k rows of the data dimension",
        ));
    }
    let k = init.len() / dim.max(1);
    let n = check(x, dim, k)?;
    // sklearn's _tolerance: tol times the mean per-feature variance
    let mut var_sum = 0.0;
    for j in 0..dim {
        let m = (0..n).map(|i| x[i * dim + j]).sum::<f64>() / n as f64;
        var_sum += (0..n).map(|i| (x[i * dim + j] - m).powi(2)).sum::<f64>() / n as f64;
    }
    let tol = tol * var_sum / dim as f64;
    let mut centers = init.to_vec();
    let mut labels = vec![usize::MAX; n];
    let mut labels_old = labels.clone();
    let mut strict = false;
    let mut n_iter = 0;
    for it in 0..max_iter.max(1) {
        n_iter = it + 1;
        let dists = assign(x, dim, &centers, &mut labels);
        let mut new = vec![0.0; k * dim];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            counts[labels[i]] += 1;
            for j in 0..dim {
                new[labels[i] * dim + j] += x[i * dim + j];
            }
        }
        let empty: Vec<usize> = (0..k).filter(|&c| counts[c] == 0).collect();
        if !empty.is_empty() {
            let mut far: Vec<usize> = (0..n).collect();
            far.sort_by(|&a, &b| dists[b].total_cmp(&dists[a]));
            for (&c, &i) in empty.iter().zip(&far) {
                let old = labels[i];
                counts[old] -= 1;
                for j in 0..dim {
                    new[old * dim + j] -= x[i * dim + j];
                    new[c * dim + j] = x[i * dim + j];
                }
                counts[c] = 1;
                labels[i] = c;
            }
        }
        for c in 0..k {
            for j in 0..dim {
                new[c * dim + j] /= counts[c].max(1) as f64;
            }
        }
        let shift: f64 = new.iter().zip(&centers).map(|(a, b)| (a - b).powi(2)).sum();
        centers = new;
        if labels == labels_old {
            strict = true;
            break;
        }
        if shift <= tol {
            break;
        }
        labels_old.clone_from(&labels);
    }
    let dists = if strict {
        (0..n)
            .map(|i| {
                sq_dist(
                    &x[i * dim..(i + 1) * dim],
                    &centers[labels[i] * dim..(labels[i] + 1) * dim],
                )
            })
            .collect()
    } else {
        assign(x, dim, &centers, &mut labels)
    };
    Ok(KMeans {
        centers,
        dim,
        labels,
        inertia: dists.iter().sum(),
        n_iter,
    })
}

/// k-means++ seeding, then Lloyd.
pub fn kmeans(x: &[f64], dim: usize, cfg: &KMeansConfig) -> Result<KMeans> {
    let seeds = kmeans_plusplus(x, dim, cfg.k, cfg.seed)?;
    let init: Vec<f64> = seeds
        .iter()
        .flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    lloyd(x, dim, &init, cfg.max_iter, cfg.tol)
}
