//! Weighted kNN classifier on frozen features as in DINO (Caron et al. 2021, `eval_knn.py`):
//! cosine similarity between L2-normalized features, the `k` nearest training samples vote
//! with weight `exp(sim / T)`, and a column's score is its share of the vote.

use crate::{Error, Matrix, Result, Targets};

/// kNN settings (DINO's defaults: k = 20, T = 0.07).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnConfig {
    /// Neighbours.
    pub k: usize,
    /// Temperature of the vote weights.
    pub temperature: f64,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            k: 20,
            temperature: 0.07,
        }
    }
}

fn normalized(x: &Matrix) -> Vec<Vec<f64>> {
    (0..x.rows)
        .map(|i| {
            let r: Vec<f64> = x.row(i).iter().map(|&v| f64::from(v)).collect();
            let n = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            r.into_iter().map(|v| v / n).collect()
        })
        .collect()
}

/// Per-column scores (`queries x width`, row-major): for a class, its weighted vote share;
/// for a label, the weighted share of positive neighbours among those where it is known.
pub fn knn_scores(
    train: &Matrix,
    train_y: &Targets,
    queries: &Matrix,
    cfg: &KnnConfig,
) -> Result<Vec<f64>> {
    train_y.check(train.rows)?;
    if train.cols != queries.cols {
        return Err(Error::bad(
            "knn",
            format!(
                "train has {} features, queries {}",
                train.cols, queries.cols
            ),
        ));
    }
    if cfg.k == 0 || cfg.temperature.is_nan() || cfg.temperature <= 0.0 {
        return Err(Error::bad("knn", "k and temperature must be > 0"));
    }
    let width = train_y.width();
    let hot = train_y.one_hot();
    let tr = normalized(train);
    let q = normalized(queries);
    let k = cfg.k.min(train.rows);
    let mut out = Vec::with_capacity(q.len() * width);
    for qi in &q {
        let mut sims: Vec<(f64, usize)> = tr
            .iter()
            .enumerate()
            .map(|(j, t)| (qi.iter().zip(t).map(|(a, b)| a * b).sum(), j))
            .collect();
        // ties broken by index, so results do not depend on the sort's stability
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut num = vec![0.0; width];
        let mut den = vec![0.0; width];
        for &(s, j) in &sims[..k] {
            let w = (s / cfg.temperature).exp();
            for c in 0..width {
                if let Some(v) = hot[j * width + c] {
                    den[c] += w;
                    if v {
                        num[c] += w;
                    }
                }
            }
        }
        out.extend(
            num.iter()
                .zip(&den)
                .map(|(n, d)| if *d > 0.0 { n / d } else { 0.0 }),
        );
    }
    Ok(out)
}
