//! 2-D maps of a data set's image embeddings: PCA and exact t-SNE.
//!
//! t-SNE follows van der Maaten & Hinton (2008) as scikit-learn's `TSNE(method="exact")`
//! runs it: squared Euclidean input distances (rounded to f32, as sklearn does), a
//! per-point binary search of the Gaussian precision to the target perplexity, symmetrised
//! joint probabilities, a Student-t (one degree of freedom) output kernel, and gradient descent
//! with momentum and per-parameter gains: 250 steps of early exaggeration at momentum 0.5, then
//! momentum 0.8 up to `max_iter`. Memory and time are `O(n^2)` per step: fine for a few
//! thousand points.

use ndarray::{Array2, ArrayView2, Axis};

use crate::pca::Pca;
use crate::{Error, Result};

/// Projects the rows of `x` (`[n, d]`) onto their first two principal components: `[n, 2]`,
/// with the fitted PCA.
pub fn pca_2d(x: ArrayView2<f64>) -> Result<(Array2<f64>, Pca)> {
    let pca = Pca::fit(x, 2)?;
    Ok((pca.transform(x)?, pca))
}

/// sklearn's floor on probabilities (`np.finfo(np.double).eps`).
const MACHINE_EPSILON: f64 = f64::EPSILON;
/// sklearn `_utils._binary_search_perplexity` constants.
const PERPLEXITY_STEPS: usize = 100;
const PERPLEXITY_TOLERANCE: f64 = 1e-5;
const EPSILON_DBL: f64 = 1e-8;
/// Steps with early exaggeration (sklearn's `_EXPLORATION_MAX_ITER`).
const EXPLORATION_ITER: usize = 250;
/// The error is evaluated every this many steps (sklearn's `_N_ITER_CHECK`).
const CHECK_EVERY: usize = 50;

/// `[n, n]` squared Euclidean distances between the rows of `x`.
pub fn squared_distances(x: ArrayView2<f64>) -> Array2<f64> {
    let n = x.nrows();
    let mut d = Array2::zeros((n, n));
    for i in 0..n {
        for j in (i + 1)..n {
            let s: f64 = x
                .row(i)
                .iter()
                .zip(x.row(j))
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            d[[i, j]] = s;
            d[[j, i]] = s;
        }
    }
    d
}

/// Row-conditional probabilities `p(j|i)` at the given perplexity (sklearn's
/// `_binary_search_perplexity`): per row, a bisection on the precision `beta` until the entropy
/// is within 1e-5 nats of `ln(perplexity)` (at most 100 steps).
pub fn conditional_probabilities(
    sq_distances: ArrayView2<f64>,
    perplexity: f64,
) -> Result<Array2<f64>> {
    let (n, m) = sq_distances.dim();
    if n != m {
        return Err(Error::shape("distance matrix", "square", &[n, m]));
    }
    if !(perplexity > 0.0 && perplexity < n as f64) {
        return Err(Error::bad(
            "perplexity",
            format!("{perplexity} must be positive and below the number of points ({n})"),
        ));
    }
    if sq_distances.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(Error::bad(
            "distance matrix",
            "distances must be finite and non-negative",
        ));
    }
    // sklearn rounds the distances to float32 before the search
    let dist = sq_distances.mapv(|v| f64::from(v as f32));
    let desired_entropy = perplexity.ln();
    let mut p = Array2::zeros((n, n));
    for i in 0..n {
        let (mut beta_min, mut beta_max, mut beta) = (f64::NEG_INFINITY, f64::INFINITY, 1.0f64);
        for _ in 0..PERPLEXITY_STEPS {
            let mut sum_p = 0.0;
            for j in 0..n {
                if j != i {
                    let v = (-dist[[i, j]] * beta).exp();
                    p[[i, j]] = v;
                    sum_p += v;
                }
            }
            if sum_p == 0.0 {
                sum_p = EPSILON_DBL;
            }
            let mut sum_dist_p = 0.0;
            for j in 0..n {
                p[[i, j]] /= sum_p;
                sum_dist_p += dist[[i, j]] * p[[i, j]];
            }
            let entropy = sum_p.ln() + beta * sum_dist_p;
            let diff = entropy - desired_entropy;
            if diff.abs() <= PERPLEXITY_TOLERANCE {
                break;
            }
            if diff > 0.0 {
                beta_min = beta;
                beta = if beta_max == f64::INFINITY {
                    beta * 2.0
                } else {
                    (beta + beta_max) / 2.0
                };
            } else {
                beta_max = beta;
                beta = if beta_min == f64::NEG_INFINITY {
                    beta / 2.0
                } else {
                    (beta + beta_min) / 2.0
                };
            }
        }
    }
    Ok(p)
}

/// Symmetric joint probabilities `P` (`[n, n]`, zero diagonal, off-diagonal entries floored at
/// machine epsilon): sklearn's `_joint_probabilities` in square form.
pub fn joint_probabilities(sq_distances: ArrayView2<f64>, perplexity: f64) -> Result<Array2<f64>> {
    let cond = conditional_probabilities(sq_distances, perplexity)?;
    let mut p = &cond + &cond.t();
    let total = p.sum().max(MACHINE_EPSILON);
    let n = p.nrows();
    for i in 0..n {
        for j in 0..n {
            p[[i, j]] = if i == j {
                0.0
            } else {
                (p[[i, j]] / total).max(MACHINE_EPSILON)
            };
        }
    }
    Ok(p)
}

/// The t-SNE objective at embedding `y` (`[n, 2]` or any width): `KL(P || Q)` and its gradient
/// `[n, c]`, with a Student-t kernel of `max(c - 1, 1)` degrees of freedom (sklearn's
/// `_kl_divergence`, Q floored at machine epsilon).
pub fn kl_divergence(p: ArrayView2<f64>, y: ArrayView2<f64>) -> Result<(f64, Array2<f64>)> {
    let (n, c) = y.dim();
    if p.dim() != (n, n) {
        return Err(Error::shape(
            "P",
            format!("[{n}, {n}] for {n} points"),
            &[p.nrows(), p.ncols()],
        ));
    }
    let dof = (c.saturating_sub(1)).max(1) as f64;
    let exponent = (dof + 1.0) / -2.0;
    // w_ij = (1 + |y_i - y_j|^2 / dof)^(-(dof + 1) / 2)
    let mut w = Array2::zeros((n, n));
    let mut sum_w = 0.0;
    for i in 0..n {
        for j in (i + 1)..n {
            let d2: f64 = (0..c).map(|k| (y[[i, k]] - y[[j, k]]).powi(2)).sum();
            let v = (d2 / dof + 1.0).powf(exponent);
            w[[i, j]] = v;
            w[[j, i]] = v;
            sum_w += v;
        }
    }
    // sklearn sums the condensed (i < j) kernel and normalises by twice that
    let norm = 2.0 * sum_w;
    let mut kl = 0.0;
    let mut grad = Array2::zeros((n, c));
    let coef = 2.0 * (dof + 1.0) / dof;
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let q = (w[[i, j]] / norm).max(MACHINE_EPSILON);
            let pij = p[[i, j]];
            if j > i {
                kl += 2.0 * pij * (pij.max(MACHINE_EPSILON) / q).ln();
            }
            let f = (pij - q) * w[[i, j]];
            for k in 0..c {
                grad[[i, k]] += f * (y[[i, k]] - y[[j, k]]);
            }
        }
    }
    grad *= coef;
    Ok((kl, grad))
}

/// How the t-SNE embedding starts.
#[derive(Debug, Clone, PartialEq)]
pub enum TsneInit {
    /// The first two principal components, scaled so that PC1 has standard deviation 1e-4
    /// (sklearn's default).
    Pca,
    /// A given `[n, 2]` start.
    Given(Array2<f64>),
}

/// t-SNE settings; defaults as sklearn's `TSNE(method="exact")`.
#[derive(Debug, Clone, PartialEq)]
pub struct TsneOptions {
    /// Target perplexity (must be below the number of points).
    pub perplexity: f64,
    /// Factor on `P` during the first 250 steps.
    pub early_exaggeration: f64,
    /// Step size; `None`: sklearn's `"auto"`, `max(n / early_exaggeration / 4, 50)`.
    pub learning_rate: Option<f64>,
    /// Total steps (at least 250).
    pub max_iter: usize,
    /// Stop when the gain-scaled gradient norm falls below this.
    pub min_grad_norm: f64,
    /// Stop after this many steps without a lower error (checked every 50 steps).
    pub n_iter_without_progress: usize,
    /// The start.
    pub init: TsneInit,
}

impl Default for TsneOptions {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            early_exaggeration: 12.0,
            learning_rate: None,
            max_iter: 1000,
            min_grad_norm: 1e-7,
            n_iter_without_progress: 300,
            init: TsneInit::Pca,
        }
    }
}

/// A finished t-SNE run.
#[derive(Debug, Clone)]
pub struct Tsne {
    /// `[n, 2]` embedding.
    pub embedding: Array2<f64>,
    /// The final KL divergence.
    pub kl_divergence: f64,
    /// The index of the last step (sklearn's `n_iter_`).
    pub n_iter: usize,
}

/// sklearn's `_gradient_descent`: momentum plus per-parameter gains (+0.2 when the gradient
/// changes sign against the last update, x0.8 otherwise, floored at 0.01).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientDescent {
    /// Step size.
    pub learning_rate: f64,
    /// Weight of the previous update.
    pub momentum: f64,
    /// Stop when the gain-scaled gradient norm (at a check) falls to this.
    pub min_grad_norm: f64,
    /// Stop when this many steps passed since the best error (at a check).
    pub n_iter_without_progress: usize,
    /// The error is evaluated, and the stopping rules applied, every this many steps.
    pub check_every: usize,
}

impl GradientDescent {
    /// Runs steps `start..max_iter` on `y` with joint probabilities `p`; returns the last
    /// evaluated error and the index of the last step taken. Updates and gains start afresh,
    /// as in each of sklearn's two phases.
    pub fn run(
        &self,
        p: ArrayView2<f64>,
        y: &mut Array2<f64>,
        start: usize,
        max_iter: usize,
    ) -> Result<(f64, usize)> {
        if self.check_every == 0 {
            return Err(Error::bad(
                "gradient descent",
                "check_every must be at least 1",
            ));
        }
        let mut update = Array2::<f64>::zeros(y.dim());
        let mut gains = Array2::<f64>::ones(y.dim());
        let mut error = f64::MAX;
        let mut best_error = f64::MAX;
        let mut best_iter = start;
        let mut i = start;
        for step in start..max_iter {
            i = step;
            let check = (step + 1) % self.check_every == 0;
            let (kl, mut grad) = kl_divergence(p, y.view())?;
            if check || step + 1 == max_iter {
                error = kl;
            }
            ndarray::Zip::from(&mut gains)
                .and(&update)
                .and(&grad)
                .for_each(|g, &u, &d| {
                    *g = if u * d < 0.0 { *g + 0.2 } else { *g * 0.8 };
                    *g = g.max(0.01);
                });
            grad *= &gains;
            update = &update * self.momentum - &grad * self.learning_rate;
            *y += &update;
            if check {
                let grad_norm = grad.iter().map(|v| v * v).sum::<f64>().sqrt();
                if error < best_error {
                    best_error = error;
                    best_iter = step;
                } else if step - best_iter > self.n_iter_without_progress {
                    break;
                }
                if grad_norm <= self.min_grad_norm {
                    break;
                }
            }
        }
        Ok((error, i))
    }
}

/// Exact t-SNE of the rows of `x` (`[n, d]`) to two dimensions.
pub fn tsne(x: ArrayView2<f64>, opts: &TsneOptions) -> Result<Tsne> {
    let n = x.nrows();
    if n < 3 {
        return Err(Error::shape("t-SNE input", "[n >= 3, d]", &[n, x.ncols()]));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::bad("t-SNE input", "holds a NaN or an infinity"));
    }
    if opts.max_iter < EXPLORATION_ITER {
        return Err(Error::bad(
            "t-SNE max_iter",
            format!(
                "{} is below the {EXPLORATION_ITER} early-exaggeration steps",
                opts.max_iter
            ),
        ));
    }
    let mut p = joint_probabilities(squared_distances(x).view(), opts.perplexity)?;
    let mut y = match &opts.init {
        TsneInit::Given(y0) => {
            if y0.dim() != (n, 2) {
                return Err(Error::shape(
                    "t-SNE init",
                    format!("[{n}, 2]"),
                    &[y0.nrows(), y0.ncols()],
                ));
            }
            y0.clone()
        }
        TsneInit::Pca => {
            let (mut y0, _) = pca_2d(x)?;
            let col = y0.column(0);
            let mean = col.mean().unwrap_or(0.0);
            let std = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            if std > 0.0 {
                y0 *= 1e-4 / std;
            }
            y0
        }
    };
    let learning_rate = opts
        .learning_rate
        .unwrap_or_else(|| (n as f64 / opts.early_exaggeration / 4.0).max(50.0));
    let mut descent = GradientDescent {
        learning_rate,
        momentum: 0.5,
        min_grad_norm: opts.min_grad_norm,
        n_iter_without_progress: EXPLORATION_ITER,
        check_every: CHECK_EVERY,
    };
    p *= opts.early_exaggeration;
    let (mut kl, mut it) = descent.run(p.view(), &mut y, 0, EXPLORATION_ITER)?;
    p /= opts.early_exaggeration;
    if it < EXPLORATION_ITER || opts.max_iter > EXPLORATION_ITER {
        descent.momentum = 0.8;
        descent.n_iter_without_progress = opts.n_iter_without_progress;
        (kl, it) = descent.run(p.view(), &mut y, it + 1, opts.max_iter)?;
    }
    Ok(Tsne {
        embedding: y,
        kl_divergence: kl,
        n_iter: it,
    })
}

/// Centres each column of `y` (for display; t-SNE is translation invariant).
pub fn centre(y: &mut Array2<f64>) {
    if let Some(mean) = y.mean_axis(Axis(0)) {
        *y -= &mean;
    }
}
