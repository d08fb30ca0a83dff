//! A cyclic Jacobi eigen-solver for small dense symmetric matrices (no LAPACK).
//!
//! Jacobi is slower than Householder + QL for large matrices but is simple, unconditionally
//! stable and gives orthonormal eigenvectors to working precision, which is what PCA of a few
//! hundred feature channels needs. Cost: about `8 d^3` flops per sweep, 6–10 sweeps.

use ndarray::{Array1, Array2, ArrayView2};

use crate::{Error, Result};

/// Eigenvalues (descending) and eigenvectors (columns, same order) of a symmetric matrix.
#[derive(Debug, Clone)]
pub struct SymmetricEigen {
    /// Eigenvalues, largest first.
    pub values: Array1<f64>,
    /// `[d, d]`: column `i` is the unit eigenvector of `values[i]`.
    pub vectors: Array2<f64>,
}

const MAX_SWEEPS: usize = 100;

/// Decomposes the symmetric matrix `a` (only symmetry up to rounding is assumed; the mean of
/// `a` and its transpose is used).
pub fn symmetric_eigen(a: ArrayView2<f64>) -> Result<SymmetricEigen> {
    let (n, m) = a.dim();
    if n != m {
        return Err(Error::shape("matrix", "a square matrix", &[n, m]));
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(Error::bad("matrix", "holds a NaN or an infinity"));
    }
    // row-major working copy, symmetrised
    let mut w = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            w[i * n + j] = 0.5 * (a[[i, j]] + a[[j, i]]);
        }
    }
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = w.iter().map(|x| x * x).sum();
    let off_norm = |w: &[f64]| -> f64 {
        let mut s = 0.0;
        for i in 0..n {
            for j in (i + 1)..n {
                s += 2.0 * w[i * n + j] * w[i * n + j];
            }
        }
        s
    };
    let mut sweeps = 0;
    loop {
        let off = off_norm(&w);
        if off <= (f64::EPSILON * f64::EPSILON) * total || off == 0.0 {
            break;
        }
        if sweeps == MAX_SWEEPS {
            return Err(Error::NoConvergence {
                dim: n,
                sweeps,
                off: off.sqrt(),
            });
        }
        sweeps += 1;
        for p in 0..n {
            for q in (p + 1)..n {
                let apq = w[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let app = w[p * n + p];
                let aqq = w[q * n + q];
                // skip rotations that cannot change the diagonal any more (NR's threshold rule)
                if sweeps > 4
                    && (app.abs() + 100.0 * apq.abs()) == app.abs()
                    && (aqq.abs() + 100.0 * apq.abs()) == aqq.abs()
                {
                    w[p * n + q] = 0.0;
                    w[q * n + p] = 0.0;
                    continue;
                }
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // columns p and q
                for k in 0..n {
                    let akp = w[k * n + p];
                    let akq = w[k * n + q];
                    w[k * n + p] = c * akp - s * akq;
                    w[k * n + q] = s * akp + c * akq;
                }
                // rows p and q
                for k in 0..n {
                    let apk = w[p * n + k];
                    let aqk = w[q * n + k];
                    w[p * n + k] = c * apk - s * aqk;
                    w[q * n + k] = s * apk + c * aqk;
                }
                w[p * n + q] = 0.0;
                w[q * n + p] = 0.0;
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| w[j * n + j].total_cmp(&w[i * n + i]));
    let values = Array1::from_iter(order.iter().map(|&i| w[i * n + i]));
    let mut vectors = Array2::zeros((n, n));
    for (col, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[[k, col]] = v[k * n + i];
        }
    }
    Ok(SymmetricEigen { values, vectors })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::array;

    fn check_decomposition(a: &Array2<f64>, tol: f64) {
        let e = symmetric_eigen(a.view()).unwrap();
        let n = a.nrows();
        // A V = V diag(values)
        let av = a.dot(&e.vectors);
        for i in 0..n {
            for k in 0..n {
                let d = (av[[k, i]] - e.vectors[[k, i]] * e.values[i]).abs();
                assert!(d < tol, "residual {d} at ({k}, {i})");
            }
        }
        // V^T V = I
        let vtv = e.vectors.t().dot(&e.vectors);
        for i in 0..n {
            for j in 0..n {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((vtv[[i, j]] - want).abs() < tol);
            }
        }
        for w in e.values.windows(2) {
            assert!(w[0] >= w[1]);
        }
    }

    #[test]
    fn two_by_two_closed_form() {
        let a = array![[2.0, 1.0], [1.0, 2.0]];
        let e = symmetric_eigen(a.view()).unwrap();
        assert!((e.values[0] - 3.0).abs() < 1e-14);
        assert!((e.values[1] - 1.0).abs() < 1e-14);
        let r = std::f64::consts::FRAC_1_SQRT_2;
        assert!((e.vectors[[0, 0]].abs() - r).abs() < 1e-14);
        assert!((e.vectors[[0, 0]] - e.vectors[[1, 0]]).abs() < 1e-14);
    }

    #[test]
    fn random_symmetric_and_repeated_eigenvalues() {
        // a deterministic pseudo-random symmetric matrix
        let n = 12;
        let mut a = Array2::zeros((n, n));
        let mut s = 7u64;
        for i in 0..n {
            for j in 0..=i {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let x = ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
                a[[i, j]] = x;
                a[[j, i]] = x;
            }
        }
        check_decomposition(&a, 1e-12);
        // Q diag(3, 3, 1, 0) Q^T with a Householder Q: a repeated eigenvalue
        let u = array![1.0, 2.0, -1.0, 0.5];
        let c = u.clone().insert_axis(ndarray::Axis(1));
        let outer: Array2<f64> = c.dot(&c.t());
        let q: Array2<f64> = Array2::<f64>::eye(4) - outer * (2.0 / u.dot(&u));
        let d = Array2::from_diag(&array![3.0, 3.0, 1.0, 0.0]);
        let m = q.dot(&d).dot(&q.t());
        check_decomposition(&m, 1e-12);
        let e = symmetric_eigen(m.view()).unwrap();
        for (got, want) in e.values.iter().zip([3.0, 3.0, 1.0, 0.0]) {
            assert!((got - want).abs() < 1e-12);
        }
    }

    #[test]
    fn rejects_non_square_and_nan() {
        assert!(symmetric_eigen(Array2::<f64>::zeros((2, 3)).view()).is_err());
        let a = array![[1.0, f64::NAN], [f64::NAN, 1.0]];
        assert!(symmetric_eigen(a.view()).is_err());
    }
}
