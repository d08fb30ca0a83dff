//! Dense solves for the tiny (≤ 5 unknowns) systems of the fits.

/// Solves `a x = b` (`a` row-major `p × p`) by Gaussian elimination with partial pivoting.
/// `None` when `a` is singular to working precision.
pub(crate) fn solve(a: &[f64], b: &[f64], p: usize) -> Option<Vec<f64>> {
    let mut m = a.to_vec();
    let mut x = b.to_vec();
    let scale = m
        .iter()
        .fold(0.0f64, |s, v| s.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    for col in 0..p {
        let piv =
            (col..p).max_by(|&i, &j| m[i * p + col].abs().total_cmp(&m[j * p + col].abs()))?;
        if m[piv * p + col].abs() <= scale * 1e-300 {
            return None;
        }
        if piv != col {
            for k in 0..p {
                m.swap(col * p + k, piv * p + k);
            }
            x.swap(col, piv);
        }
        for row in col + 1..p {
            let f = m[row * p + col] / m[col * p + col];
            if f != 0.0 {
                for k in col..p {
                    m[row * p + k] -= f * m[col * p + k];
                }
                x[row] -= f * x[col];
            }
        }
    }
    for col in (0..p).rev() {
        let mut s = x[col];
        for k in col + 1..p {
            s -= m[col * p + k] * x[k];
        }
        x[col] = s / m[col * p + col];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The inverse of `a` (`p × p`), column by column.
pub(crate) fn invert(a: &[f64], p: usize) -> Option<Vec<f64>> {
    let mut inv = vec![0.0; p * p];
    for j in 0..p {
        let mut e = vec![0.0; p];
        e[j] = 1.0;
        let col = solve(a, &e, p)?;
        for i in 0..p {
            inv[i * p + j] = col[i];
        }
    }
    Some(inv)
}

/// Weighted linear least squares: minimises `Σ w_i (y_i − Σ_k X_ik β_k)²` over `β` through
/// the normal equations (the designs here are 2–3 well-scaled columns). Returns `β` and the
/// weighted residual sum of squares.
pub(crate) fn weighted_lstsq(x: &[f64], y: &[f64], w: &[f64], p: usize) -> Option<(Vec<f64>, f64)> {
    let n = y.len();
    let mut xtx = vec![0.0; p * p];
    let mut xty = vec![0.0; p];
    for i in 0..n {
        let row = &x[i * p..(i + 1) * p];
        for a in 0..p {
            xty[a] += w[i] * row[a] * y[i];
            for b in 0..p {
                xtx[a * p + b] += w[i] * row[a] * row[b];
            }
        }
    }
    let beta = solve(&xtx, &xty, p)?;
    let rss = (0..n)
        .map(|i| {
            let f: f64 = (0..p).map(|k| x[i * p + k] * beta[k]).sum();
            w[i] * (y[i] - f).powi(2)
        })
        .sum();
    Some((beta, rss))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn solves_and_inverts_a_pivoting_system() {
        let a = [0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 3.0, 0.0, 1.0];
        let x = solve(&a, &[5.0, 3.0, 6.0], 3).unwrap();
        for (g, e) in x.iter().zip([1.4, 1.6, 1.8]) {
            assert!((g - e).abs() < 1e-12, "{x:?}");
        }
        let inv = invert(&a, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        assert!(solve(&[1.0, 2.0, 2.0, 4.0], &[1.0, 2.0], 2).is_none());
    }
}
