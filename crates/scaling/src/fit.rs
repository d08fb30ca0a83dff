//! Saturating power laws of a metric against data size: `metric(n) = a − b·n^(−c)`.
//!
//! For a metric that grows with data (AUROC, Dice) `b > 0` and `a` is the asymptote; the
//! error form `error(n) = e + b·n^(−c)` is the same curve with `metric = 1 − error`
//! (`a = 1 − e`). The fit minimises the (optionally `1/σ²`-weighted) squared residuals:
//!
//! 1. **Variable projection.** For a fixed exponent `c` the model is linear in `(a, b)`, so
//!    the residual sum of squares profile `RSS(c)` has a closed form. It is evaluated on a
//!    log-spaced grid of `c` and the best grid point is refined by golden-section search.
//! 2. **Polish.** Levenberg–Marquardt on `(a, b, c)` from there, to the joint optimum, where
//!    the covariance is taken as `scipy.optimize.curve_fit` does (`absolute_sigma=False`).
//!
//! The grid makes the fit independent of a starting guess (the one weakness of plain
//! Gauss–Newton on power laws); the tests compare it with `curve_fit` on fixed data.

use serde::{Deserialize, Serialize};

use crate::linalg::weighted_lstsq;
use crate::lm::{covariance, levenberg_marquardt, Model};
use crate::{Error, Result};

/// `metric(n) = a − b·n^(−c)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerLaw {
    /// Asymptote (the metric with unlimited data).
    pub a: f64,
    /// Scale of the gap to the asymptote.
    pub b: f64,
    /// Exponent of the gap's decay.
    pub c: f64,
}

impl PowerLaw {
    /// The curve at data size `n`.
    pub fn eval(&self, n: f64) -> f64 {
        self.a - self.b * n.powf(-self.c)
    }
}

/// A fitted [`PowerLaw`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerLawFit {
    /// The parameters.
    pub law: PowerLaw,
    /// Weighted residual sum of squares.
    pub rss: f64,
    /// `3 × 3` covariance of `(a, b, c)` (row-major) as `curve_fit` reports it; `None` with
    /// three points or fewer, or a singular Jacobian.
    pub covariance: Option<Vec<f64>>,
    /// The exponent search hit the end of its range (the data do not pin `c` down).
    pub c_at_bound: bool,
}

impl PowerLawFit {
    /// Standard errors of `(a, b, c)` from the covariance.
    pub fn std_errors(&self) -> Option<[f64; 3]> {
        let c = self.covariance.as_ref()?;
        Some([c[0].sqrt(), c[4].sqrt(), c[8].sqrt()])
    }
}

/// Settings of [`fit_power_law`].
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// Smallest exponent searched.
    pub c_min: f64,
    /// Largest exponent searched.
    pub c_max: f64,
    /// Grid points (log-spaced) of the profile search.
    pub grid: usize,
    /// Relative tolerance of the polish.
    pub tol: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            c_min: 1e-3,
            c_max: 4.0,
            grid: 400,
            tol: 1e-15,
        }
    }
}

struct Curve<'a> {
    n: &'a [f64],
}

impl Model for Curve<'_> {
    fn n_params(&self) -> usize {
        3
    }
    fn n_points(&self) -> usize {
        self.n.len()
    }
    fn eval(&self, t: &[f64], i: usize, g: &mut [f64]) -> f64 {
        let p = self.n[i].powf(-t[2]);
        g[0] = 1.0;
        g[1] = -p;
        g[2] = t[1] * self.n[i].ln() * p;
        t[0] - t[1] * p
    }
}

pub(crate) fn check_xy(
    what: &'static str,
    x: &[f64],
    y: &[f64],
    sigma: Option<&[f64]>,
    min_points: usize,
) -> Result<Vec<f64>> {
    if x.len() != y.len() {
        return Err(Error::invalid(
            what,
            format!("{} sizes but {} metric values", x.len(), y.len()),
        ));
    }
    if x.len() < min_points {
        return Err(Error::invalid(
            what,
            format!("{} points; at least {min_points} are needed", x.len()),
        ));
    }
    if let Some(i) = x.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(Error::invalid(
            what,
            format!("size {} at point {i} is not positive", x[i]),
        ));
    }
    if let Some(i) = y.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            what,
            format!("metric {} at point {i} is not finite", y[i]),
        ));
    }
    match sigma {
        None => Ok(vec![1.0; y.len()]),
        Some(s) if s.len() != y.len() => Err(Error::invalid(
            what,
            format!("{} sigmas for {} points", s.len(), y.len()),
        )),
        Some(s) => s
            .iter()
            .map(|&v| {
                if v.is_finite() && v > 0.0 {
                    Ok(1.0 / (v * v))
                } else {
                    Err(Error::invalid(what, format!("sigma {v} is not positive")))
                }
            })
            .collect(),
    }
}

/// Best `(a, b)` and the RSS for a fixed exponent `c`.
fn profile(n: &[f64], y: &[f64], w: &[f64], c: f64) -> Option<(f64, f64, f64)> {
    let x: Vec<f64> = n.iter().flat_map(|&v| [1.0, -v.powf(-c)]).collect();
    let (beta, rss) = weighted_lstsq(&x, y, w, 2)?;
    Some((beta[0], beta[1], rss))
}

/// Fits `metric(n) = a − b·n^(−c)` to sizes `n` and metric values `y` (optionally with
/// standard deviations `sigma`, weighting by `1/σ²`). Needs at least three points.
pub fn fit_power_law(
    n: &[f64],
    y: &[f64],
    sigma: Option<&[f64]>,
    opts: &FitOptions,
) -> Result<PowerLawFit> {
    let w = check_xy("power-law fit", n, y, sigma, 3)?;
    if !(opts.c_min > 0.0 && opts.c_max > opts.c_min && opts.grid >= 3) {
        return Err(Error::invalid(
            "power-law fit",
            format!(
                "exponent range [{}, {}] with {} grid points",
                opts.c_min, opts.c_max, opts.grid
            ),
        ));
    }
    let (l0, l1) = (opts.c_min.ln(), opts.c_max.ln());
    let grid: Vec<f64> = (0..opts.grid)
        .map(|k| (l0 + (l1 - l0) * k as f64 / (opts.grid - 1) as f64).exp())
        .collect();
    let rss = |c: f64| profile(n, y, &w, c).map_or(f64::INFINITY, |p| p.2);
    let values: Vec<f64> = grid.iter().map(|&c| rss(c)).collect();
    let best = (0..grid.len())
        .min_by(|&i, &j| values[i].total_cmp(&values[j]))
        .filter(|&k| values[k].is_finite())
        .ok_or_else(|| Error::Fit {
            what: "power law",
            reason: "the profile is singular at every exponent (all sizes equal?)".into(),
        })?;
    let c_at_bound = best == 0 || best == grid.len() - 1;
    // golden-section search on ln c inside the neighbouring grid cells
    let (mut lo, mut hi) = (
        grid[best.saturating_sub(1)].ln(),
        grid[(best + 1).min(grid.len() - 1)].ln(),
    );
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut x1, mut x2) = (hi - g * (hi - lo), lo + g * (hi - lo));
    let (mut f1, mut f2) = (rss(x1.exp()), rss(x2.exp()));
    for _ in 0..200 {
        if hi - lo < 1e-13 {
            break;
        }
        if f1 <= f2 {
            hi = x2;
            (x2, f2) = (x1, f1);
            x1 = hi - g * (hi - lo);
            f1 = rss(x1.exp());
        } else {
            lo = x1;
            (x1, f1) = (x2, f2);
            x2 = lo + g * (hi - lo);
            f2 = rss(x2.exp());
        }
    }
    let c0 = (0.5 * (lo + hi)).exp();
    let (a0, b0, _) = profile(n, y, &w, c0).ok_or_else(|| Error::Fit {
        what: "power law",
        reason: format!("singular profile at c = {c0}"),
    })?;
    let model = Curve { n };
    // the polish stays inside the searched exponent range, so that data which do not pin
    // `c` down report a bound (flagged) instead of drifting to absurd exponents
    let (c_lo, c_hi) = (opts.c_min, opts.c_max);
    let r = levenberg_marquardt(&model, &[a0, b0, c0], y, &w, opts.tol, 500, &|t| {
        t[2] >= c_lo && t[2] <= c_hi
    })
    .ok_or_else(|| Error::Fit {
        what: "power law",
        reason: "Levenberg–Marquardt produced non-finite parameters".into(),
    })?;
    let c_at_bound =
        c_at_bound || r.theta[2] <= c_lo * (1.0 + 1e-9) || r.theta[2] >= c_hi * (1.0 - 1e-9);
    Ok(PowerLawFit {
        law: PowerLaw {
            a: r.theta[0],
            b: r.theta[1],
            c: r.theta[2],
        },
        rss: r.rss,
        covariance: covariance(&r, n.len()),
        c_at_bound,
    })
}

/// Pointwise percentile band of a family of curves (e.g. bootstrap refits) at sizes `at`:
/// `(lo, hi)` per size at the given coverage.
pub fn band(curves: &[PowerLaw], at: &[f64], confidence: f64) -> Vec<Option<(f64, f64)>> {
    let tail = (1.0 - confidence) / 2.0;
    at.iter()
        .map(|&n| {
            let mut v: Vec<f64> = curves
                .iter()
                .map(|c| c.eval(n))
                .filter(|v| v.is_finite())
                .collect();
            v.sort_unstable_by(f64::total_cmp);
            metrics::bootstrap::percentile_sorted(&v, tail)
                .zip(metrics::bootstrap::percentile_sorted(&v, 1.0 - tail))
        })
        .collect()
}
