//! Binary logistic regression with an L2 penalty, as scikit-learn's `LogisticRegression`
//! (`penalty="l2"`, intercept not penalised) after a `StandardScaler`:
//! it minimises `C * sum_i logloss_i + ||w||^2 / 2`.
//!
//! The solver is full-batch L-BFGS on the objective divided by `C * n` (same minimiser,
//! better-scaled gradients) with a backtracking Armijo line search, in f64, run to a much
//! tighter gradient tolerance than sklearn's default so the fit is the optimum rather than
//! an artefact of early stopping. Cost per iteration is `O(n d)`, so wide raw-pixel features
//! stay cheap.

use crate::{Error, Matrix, Result};

/// Solver settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogRegConfig {
    /// Inverse regularisation strength (sklearn's `C`).
    pub c: f64,
    /// Stop when the largest gradient component of the scaled objective is below this.
    pub tol: f64,
    /// Iteration cap.
    pub max_iter: usize,
    /// L-BFGS history length.
    pub memory: usize,
}

impl Default for LogRegConfig {
    fn default() -> Self {
        Self {
            c: 1.0,
            tol: 1e-9,
            max_iter: 2000,
            memory: 10,
        }
    }
}

/// A fitted model on standardized features.
#[derive(Debug, Clone, PartialEq)]
pub struct LogReg {
    /// Feature means used for standardization.
    pub mean: Vec<f64>,
    /// Feature deviations used for standardization.
    pub std: Vec<f64>,
    /// Weights on standardized features.
    pub coef: Vec<f64>,
    /// Intercept.
    pub intercept: f64,
    /// L-BFGS iterations run.
    pub iterations: usize,
    /// Whether the tolerance was reached.
    pub converged: bool,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(z))` without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

struct Problem<'a> {
    x: &'a [f64],
    y: &'a [f64],
    n: usize,
    d: usize,
    lambda: f64,
}

impl Problem<'_> {
    /// Objective and gradient at `theta = [w; b]`.
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let (w, b) = (&theta[..self.d], theta[self.d]);
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut loss = 0.0;
        for i in 0..self.n {
            let row = &self.x[i * self.d..(i + 1) * self.d];
            let z: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + b;
            // logloss = softplus(z) - y z
            loss += softplus(z) - self.y[i] * z;
            let r = sigmoid(z) - self.y[i];
            for (g, &a) in grad[..self.d].iter_mut().zip(row) {
                *g += r * a;
            }
            grad[self.d] += r;
        }
        let inv_n = 1.0 / self.n as f64;
        grad.iter_mut().for_each(|g| *g *= inv_n);
        let mut reg = 0.0;
        for (g, &wj) in grad[..self.d].iter_mut().zip(w) {
            *g += self.lambda * wj;
            reg += wj * wj;
        }
        loss * inv_n + 0.5 * self.lambda * reg
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl LogReg {
    /// Fits on `x` (standardized internally with its own statistics) and binary `y`.
    pub fn fit(x: &Matrix, y: &[bool], cfg: &LogRegConfig) -> Result<Self> {
        if x.rows != y.len() || x.rows == 0 {
            return Err(Error::bad(
                "logistic regression",
                format!("{} rows of features vs {} labels", x.rows, y.len()),
            ));
        }
        if !(cfg.c > 0.0 && cfg.c.is_finite()) {
            return Err(Error::bad("logistic regression", format!("C = {}", cfg.c)));
        }
        let (mean, std) = x.column_stats();
        let xs = x.standardized(&mean, &std);
        let yf: Vec<f64> = y.iter().map(|&v| f64::from(u8::from(v))).collect();
        let (n, d) = (x.rows, x.cols);
        let p = Problem {
            x: &xs,
            y: &yf,
            n,
            d,
            lambda: 1.0 / (cfg.c * n as f64),
        };
        let (theta, iterations, converged) = lbfgs(&p, d + 1, cfg);
        Ok(Self {
            mean,
            std,
            coef: theta[..d].to_vec(),
            intercept: theta[d],
            iterations,
            converged,
        })
    }

    /// Probability of the positive class for each row of `x`.
    pub fn predict_proba(&self, x: &Matrix) -> Result<Vec<f64>> {
        if x.cols != self.coef.len() {
            return Err(Error::bad(
                "logistic regression",
                format!("{} features, model has {}", x.cols, self.coef.len()),
            ));
        }
        Ok((0..x.rows)
            .map(|i| {
                let z: f64 = x
                    .row(i)
                    .iter()
                    .zip(&self.mean)
                    .zip(&self.std)
                    .zip(&self.coef)
                    .map(|(((&v, m), s), w)| (f64::from(v) - m) / s * w)
                    .sum::<f64>()
                    + self.intercept;
                sigmoid(z)
            })
            .collect())
    }
}

fn lbfgs(p: &Problem<'_>, dim: usize, cfg: &LogRegConfig) -> (Vec<f64>, usize, bool) {
    let mut theta = vec![0.0; dim];
    let mut g = vec![0.0; dim];
    let mut f = p.eval(&theta, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut g_new = vec![0.0; dim];
    for it in 0..cfg.max_iter {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < cfg.tol {
            return (theta, it, true);
        }
        // two-loop recursion
        let mut q = g.clone();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        for j in (0..k).rev() {
            let rho = 1.0 / dot(&y_hist[j], &s_hist[j]);
            alpha[j] = rho * dot(&s_hist[j], &q);
            q.iter_mut()
                .zip(&y_hist[j])
                .for_each(|(a, b)| *a -= alpha[j] * b);
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12)
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for j in 0..k {
            let rho = 1.0 / dot(&y_hist[j], &s_hist[j]);
            let beta = rho * dot(&y_hist[j], &q);
            q.iter_mut()
                .zip(&s_hist[j])
                .for_each(|(a, b)| *a += (alpha[j] - beta) * b);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        if slope >= 0.0 {
            // not a descent direction: restart from steepest descent
            s_hist.clear();
            y_hist.clear();
            dir = g.iter().map(|v| -v).collect();
            slope = dot(&g, &dir);
        }
        let mut step = 1.0;
        let mut next = vec![0.0; dim];
        let mut f_new;
        loop {
            next.iter_mut()
                .zip(&theta)
                .zip(&dir)
                .for_each(|((n, t), d)| *n = t + step * d);
            f_new = p.eval(&next, &mut g_new);
            if f_new <= f + 1e-4 * step * slope || step < 1e-20 {
                break;
            }
            step *= 0.5;
        }
        let s: Vec<f64> = next.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        if f_new >= f && step < 1e-20 {
            // no progress possible in floating point: we are at the optimum's noise floor
            return (theta, it, false);
        }
        if dot(&s, &yv) > 1e-16 * dot(&yv, &yv) {
            if s_hist.len() == cfg.memory {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(yv);
        }
        theta = next;
        std::mem::swap(&mut g, &mut g_new);
        f = f_new;
    }
    (theta, cfg.max_iter, false)
}

/// The usual C grid: `10^-4 .. 10^2` in half-decade steps.
pub fn default_c_grid() -> Vec<f64> {
    (0..13).map(|i| 10f64.powf(-4.0 + 0.5 * i as f64)).collect()
}
