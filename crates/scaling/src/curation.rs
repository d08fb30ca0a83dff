//! Prototype-driven data curation in the manner of CheXficient: cluster the embeddings of a
//! candidate pool into prototypes and draw training samples with probabilities that favour
//! sparse prototypes and informative samples.
//!
//! # Weighting
//!
//! Embeddings `z_i` are L2-normalised and clustered by k-means++/Lloyd ([`crate::kmeans`])
//! into `K` prototypes `μ_k` with `n_k` members. Each sample gets an informativeness `s_i ≥ 0`:
//! its distance to its own prototype `‖z_i − μ_{k(i)}‖` by default, or a per-sample loss
//! when the training loop reports one. With `r_i = s_i / mean_{j: k(j)=k(i)} s_j` (1 when the
//! cluster's mean is 0), the sampling weight is
//!
//! ```text
//! w_i = n_{k(i)}^(−α) · (ε + r_i)^β,     p_i = w_i / Σ_j w_j
//! ```
//!
//! With the defaults `α = 1, β = 1, ε = 0.1` every prototype carries the same total mass
//! (`Σ_{i∈k} w_i = 1 + ε`), however many near-duplicates it holds, so small (rare)
//! prototypes are over-sampled relative to their share of the pool; within a prototype,
//! samples far from its centre (or with a high loss) are preferred, and `ε` keeps the
//! centre's samples drawable. `α = β = 0` is uniform random selection.
//!
//! A budget of `m` samples is drawn **without replacement** with probabilities `∝ w_i` by the
//! Efraimidis–Spirakis method: key `u_i^(1/w_i)` with `u_i ~ U(0, 1)` seeded, keep the `m`
//! largest keys.

use std::sync::Arc;

use cxr_data::IndexSampler;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::kmeans::{kmeans, KMeans, KMeansConfig};
use crate::{Error, Result};

/// Settings of the prototype weighting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurationConfig {
    /// Number of prototypes `K`.
    pub prototypes: usize,
    /// Sparsity exponent `α` (1: every prototype carries equal mass).
    pub alpha: f64,
    /// Informativeness exponent `β`.
    pub beta: f64,
    /// Floor `ε` added to the relative informativeness.
    pub epsilon: f64,
    /// Seed of k-means++ and of the draw.
    pub seed: u64,
}

impl Default for CurationConfig {
    fn default() -> Self {
        Self {
            prototypes: 16,
            alpha: 1.0,
            beta: 1.0,
            epsilon: 0.1,
            seed: 0,
        }
    }
}

/// The weights of a pool and the prototypes they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weighting {
    /// Sampling probability of every pool sample (sums to 1).
    pub probabilities: Vec<f64>,
    /// The informativeness `s_i` used.
    pub informativeness: Vec<f64>,
    /// The clustering.
    pub kmeans: KMeans,
}

/// L2-normalised copy of the rows of `x` (`n × dim`).
pub fn l2_normalize(x: &[f64], dim: usize) -> Vec<f64> {
    x.chunks(dim.max(1))
        .flat_map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            r.iter().map(move |v| v / n)
        })
        .collect()
}

/// The weighting of the module docs for pool embeddings `x` (`n × dim`); `informativeness`
/// overrides the distance to the prototype (e.g. per-sample losses, one per row).
pub fn weigh(
    x: &[f64],
    dim: usize,
    cfg: &CurationConfig,
    informativeness: Option<&[f64]>,
) -> Result<Weighting> {
    let z = l2_normalize(x, dim);
    let n = z.len() / dim.max(1);
    let km = kmeans(&z, dim, &KMeansConfig::new(cfg.prototypes.min(n), cfg.seed))?;
    let s: Vec<f64> = match informativeness {
        Some(v) if v.len() != n => {
            return Err(Error::invalid(
                "curation",
                format!("{} informativeness values for {n} samples", v.len()),
            ))
        }
        Some(v) if v.iter().any(|x| !(x.is_finite() && *x >= 0.0)) => {
            return Err(Error::invalid(
                "curation",
                "informativeness must be finite and ≥ 0",
            ))
        }
        Some(v) => v.to_vec(),
        None => (0..n)
            .map(|i| {
                let c = km.labels[i];
                let (p, m) = (
                    &z[i * dim..(i + 1) * dim],
                    &km.centers[c * dim..(c + 1) * dim],
                );
                p.iter()
                    .zip(m)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect(),
    };
    let sizes = km.sizes();
    let mut mean_s = vec![0.0; sizes.len()];
    for (i, &c) in km.labels.iter().enumerate() {
        mean_s[c] += s[i] / sizes[c] as f64;
    }
    let w: Vec<f64> = km
        .labels
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let r = if mean_s[c] > 0.0 {
                s[i] / mean_s[c]
            } else {
                1.0
            };
            (sizes[c] as f64).powf(-cfg.alpha) * (cfg.epsilon + r).powf(cfg.beta)
        })
        .collect();
    let total: f64 = w.iter().sum();
    if !(total.is_finite() && total > 0.0) {
        return Err(Error::invalid(
            "curation",
            format!("weights sum to {total}"),
        ));
    }
    Ok(Weighting {
        probabilities: w.iter().map(|v| v / total).collect(),
        informativeness: s,
        kmeans: km,
    })
}

/// Draws `m` distinct indices with probabilities `∝ weights` (Efraimidis–Spirakis), in
/// decreasing key order. Zero-weight items are drawn only after all positive ones.
pub fn draw_without_replacement(weights: &[f64], m: usize, seed: u64) -> Result<Vec<usize>> {
    if m > weights.len() {
        return Err(Error::invalid(
            "curation",
            format!("budget {m} exceeds the pool of {}", weights.len()),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // ln(u)/w orders like u^(1/w) and does not underflow
    let mut keys: Vec<(f64, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            let k = if w > 0.0 {
                u.ln() / w
            } else {
                f64::NEG_INFINITY
            };
            (k, i)
        })
        .collect();
    keys.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(keys.into_iter().take(m).map(|(_, i)| i).collect())
}

/// A static, one-shot curated subset of `budget` pool samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Chosen pool indices (distinct).
    pub indices: Vec<usize>,
    /// The weighting they were drawn with.
    pub weighting: Weighting,
}

/// Weigh the pool embeddings and draw `budget` samples.
pub fn select(
    x: &[f64],
    dim: usize,
    budget: usize,
    cfg: &CurationConfig,
    informativeness: Option<&[f64]>,
) -> Result<Selection> {
    let weighting = weigh(x, dim, cfg, informativeness)?;
    let indices = draw_without_replacement(&weighting.probabilities, budget, cfg.seed)?;
    Ok(Selection { indices, weighting })
}

/// Epochs over a fixed list of pool indices, reshuffled (seeded) every epoch: a random,
/// nested or curated subset of a pool, seen by the training loop through
/// [`cxr_data::IndexSampler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsetSampler {
    indices: Vec<usize>,
    seed: u64,
}

impl SubsetSampler {
    /// A sampler over `indices` (must be non-empty).
    pub fn new(indices: Vec<usize>, seed: u64) -> Result<Self> {
        if indices.is_empty() {
            return Err(Error::invalid("subset sampler", "no indices"));
        }
        Ok(Self { indices, seed })
    }

    /// As an `Arc<dyn IndexSampler>` for `MultiCropSource::with_sampler`.
    pub fn shared(self) -> Arc<dyn IndexSampler> {
        Arc::new(self)
    }
}

impl IndexSampler for SubsetSampler {
    fn epoch_len(&self, _len: usize) -> usize {
        self.indices.len()
    }

    fn indices(&self, epoch: u64, _len: usize) -> Vec<usize> {
        let mut v = self.indices.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9));
        v.shuffle(&mut rng);
        v
    }
}
