//! The joint model-size × data-size law of Chinchilla (Hoffmann et al. 2022, approach 3):
//! `L(N, D) = E + A·N^(−α) + B·D^(−β)` for a loss-like quantity (lower is better; for a
//! metric pass `1 − metric`).
//!
//! As in [`crate::fit`], the exponents are searched on a log grid with `(E, A, B)` solved in
//! closed form at every grid point (the model is linear in them), and the best point is
//! polished by Levenberg–Marquardt on all five parameters. Chinchilla fits a Huber loss on
//! `log L` with L-BFGS from a grid of starts; plain least squares is used here because the
//! study grids are small and noise is estimated by the bootstrap instead.

use serde::{Deserialize, Serialize};

use crate::fit::check_xy;
use crate::linalg::weighted_lstsq;
use crate::lm::{covariance, levenberg_marquardt, Model};
use crate::{Error, Result};

/// `L(N, D) = E + A·N^(−α) + B·D^(−β)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JointLaw {
    /// Irreducible loss.
    pub e: f64,
    /// Model-size scale.
    pub a: f64,
    /// Model-size exponent.
    pub alpha: f64,
    /// Data-size scale.
    pub b: f64,
    /// Data-size exponent.
    pub beta: f64,
}

impl JointLaw {
    /// The law at `n` parameters and `d` samples.
    pub fn eval(&self, n: f64, d: f64) -> f64 {
        self.e + self.a * n.powf(-self.alpha) + self.b * d.powf(-self.beta)
    }
}

/// A fitted [`JointLaw`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointFit {
    /// The parameters.
    pub law: JointLaw,
    /// Residual sum of squares.
    pub rss: f64,
    /// `5 × 5` covariance of `(E, A, α, B, β)`, row-major, when there are more than five
    /// points and the Jacobian has full rank.
    pub covariance: Option<Vec<f64>>,
}

struct Surface<'a> {
    n: &'a [f64],
    d: &'a [f64],
}

impl Model for Surface<'_> {
    fn n_params(&self) -> usize {
        5
    }
    fn n_points(&self) -> usize {
        self.n.len()
    }
    fn eval(&self, t: &[f64], i: usize, g: &mut [f64]) -> f64 {
        let pn = self.n[i].powf(-t[2]);
        let pd = self.d[i].powf(-t[4]);
        g[0] = 1.0;
        g[1] = pn;
        g[2] = -t[1] * self.n[i].ln() * pn;
        g[3] = pd;
        g[4] = -t[3] * self.d[i].ln() * pd;
        t[0] + t[1] * pn + t[3] * pd
    }
}

/// Fits [`JointLaw`] to losses `l` at model sizes `n` and data sizes `d` (same length, at
/// least six points, at least two distinct values of each size). The exponents are searched
/// in `[exp_min, exp_max]` on a `grid × grid` log grid.
pub fn fit_joint(
    n: &[f64],
    d: &[f64],
    l: &[f64],
    exp_range: (f64, f64),
    grid: usize,
) -> Result<JointFit> {
    let w = check_xy("joint fit", n, l, None, 6)?;
    check_xy("joint fit", d, l, None, 6)?;
    let distinct = |v: &[f64]| {
        let mut s: Vec<f64> = v.to_vec();
        s.sort_unstable_by(f64::total_cmp);
        s.dedup();
        s.len()
    };
    if distinct(n) < 2 || distinct(d) < 2 {
        return Err(Error::invalid(
            "joint fit",
            "needs at least two model sizes and two data sizes",
        ));
    }
    let (lo, hi) = exp_range;
    if !(lo > 0.0 && hi > lo && grid >= 3) {
        return Err(Error::invalid(
            "joint fit",
            format!("exponent range ({lo}, {hi}), grid {grid}"),
        ));
    }
    let g: Vec<f64> = (0..grid)
        .map(|k| (lo.ln() + (hi.ln() - lo.ln()) * k as f64 / (grid - 1) as f64).exp())
        .collect();
    let mut best: Option<(f64, [f64; 5])> = None;
    for &alpha in &g {
        for &beta in &g {
            let x: Vec<f64> = n
                .iter()
                .zip(d)
                .flat_map(|(&ni, &di)| [1.0, ni.powf(-alpha), di.powf(-beta)])
                .collect();
            if let Some((c, rss)) = weighted_lstsq(&x, l, &w, 3) {
                if best.as_ref().is_none_or(|b| rss < b.0) {
                    best = Some((rss, [c[0], c[1], alpha, c[2], beta]));
                }
            }
        }
    }
    let (_, start) = best.ok_or_else(|| Error::Fit {
        what: "joint law",
        reason: "singular design at every exponent pair".into(),
    })?;
    let model = Surface { n, d };
    let r = levenberg_marquardt(&model, &start, l, &w, 1e-15, 1000, &|t| {
        t[2] > 0.0 && t[4] > 0.0
    })
    .ok_or_else(|| Error::Fit {
        what: "joint law",
        reason: "Levenberg–Marquardt produced non-finite parameters".into(),
    })?;
    let t = &r.theta;
    Ok(JointFit {
        law: JointLaw {
            e: t[0],
            a: t[1],
            alpha: t[2],
            b: t[3],
            beta: t[4],
        },
        rss: r.rss,
        covariance: covariance(&r, n.len()),
    })
}
