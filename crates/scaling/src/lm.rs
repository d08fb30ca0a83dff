//! Levenberg–Marquardt for small weighted nonlinear least-squares problems, with the
//! parameter covariance as `scipy.optimize.curve_fit` reports it.

use crate::linalg::{invert, solve};

/// A model: residual-free prediction and its Jacobian row at one point.
pub(crate) trait Model {
    /// Number of parameters.
    fn n_params(&self) -> usize;
    /// Prediction at point `i` and `∂f/∂θ` written into `grad`.
    fn eval(&self, theta: &[f64], i: usize, grad: &mut [f64]) -> f64;
    /// Number of points.
    fn n_points(&self) -> usize;
}

/// Outcome of [`levenberg_marquardt`].
#[derive(Debug, Clone)]
pub(crate) struct LmResult {
    pub theta: Vec<f64>,
    /// Weighted residual sum of squares `Σ w_i (y_i − f_i)²`.
    pub rss: f64,
    /// `JᵀWJ` at the solution (row-major).
    pub jtj: Vec<f64>,
}

fn system(m: &dyn Model, theta: &[f64], y: &[f64], w: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
    let p = m.n_params();
    let mut jtj = vec![0.0; p * p];
    let mut jtr = vec![0.0; p];
    let mut g = vec![0.0; p];
    let mut rss = 0.0;
    for i in 0..m.n_points() {
        let f = m.eval(theta, i, &mut g);
        let r = y[i] - f;
        rss += w[i] * r * r;
        for a in 0..p {
            jtr[a] += w[i] * g[a] * r;
            for b in 0..p {
                jtj[a * p + b] += w[i] * g[a] * g[b];
            }
        }
    }
    (rss, jtj, jtr)
}

fn rss_at(m: &dyn Model, theta: &[f64], y: &[f64], w: &[f64]) -> f64 {
    let mut g = vec![0.0; m.n_params()];
    (0..m.n_points())
        .map(|i| w[i] * (y[i] - m.eval(theta, i, &mut g)).powi(2))
        .sum()
}

/// Minimises `Σ w_i (y_i − f(θ)_i)²` from `theta0` with Marquardt's diagonal scaling
/// (`JᵀWJ + λ·diag(JᵀWJ)`), stopping when a step changes the RSS and every parameter by
/// less than `tol` relative. Invalid parameter values (`valid` false) are rejected like an
/// uphill step.
pub(crate) fn levenberg_marquardt(
    m: &dyn Model,
    theta0: &[f64],
    y: &[f64],
    w: &[f64],
    tol: f64,
    max_iter: usize,
    valid: &dyn Fn(&[f64]) -> bool,
) -> Option<LmResult> {
    let p = m.n_params();
    let mut theta = theta0.to_vec();
    let (mut rss, mut jtj, mut jtr) = system(m, &theta, y, w);
    let mut lambda = 1e-3;
    let mut iterations = 0;
    while iterations < max_iter {
        iterations += 1;
        let mut a = jtj.clone();
        for k in 0..p {
            a[k * p + k] += lambda * jtj[k * p + k].max(1e-300);
        }
        let Some(step) = solve(&a, &jtr, p) else {
            lambda *= 10.0;
            if lambda > 1e20 {
                break;
            }
            continue;
        };
        let cand: Vec<f64> = theta.iter().zip(&step).map(|(t, s)| t + s).collect();
        let new_rss = if valid(&cand) {
            rss_at(m, &cand, y, w)
        } else {
            f64::INFINITY
        };
        if new_rss.is_finite() && new_rss <= rss {
            let small_step = step
                .iter()
                .zip(&cand)
                .all(|(s, t)| s.abs() <= tol * (t.abs() + tol));
            let small_gain = rss - new_rss <= tol * rss.max(f64::MIN_POSITIVE);
            theta = cand;
            (rss, jtj, jtr) = system(m, &theta, y, w);
            lambda = (lambda / 10.0).max(1e-15);
            if small_step && small_gain {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e20 {
                break;
            }
        }
    }
    theta
        .iter()
        .all(|v| v.is_finite())
        .then_some(LmResult { theta, rss, jtj })
}

/// `curve_fit`'s covariance with `absolute_sigma=False`: `(JᵀWJ)⁻¹ · RSS / (n − p)`;
/// `None` without residual degrees of freedom or for a singular `JᵀWJ`.
pub(crate) fn covariance(r: &LmResult, n: usize) -> Option<Vec<f64>> {
    let p = r.theta.len();
    if n <= p {
        return None;
    }
    let inv = invert(&r.jtj, p)?;
    let s2 = r.rss / (n - p) as f64;
    Some(inv.into_iter().map(|v| v * s2).collect())
}
