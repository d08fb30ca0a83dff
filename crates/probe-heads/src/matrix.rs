//! A dense row-major feature matrix (one row per image).

use crate::{Error, Result};

/// `rows x cols` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows (samples).
    pub rows: usize,
    /// Number of columns (feature width).
    pub cols: usize,
    /// `rows * cols` values.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Wraps `data`, checking its length.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::bad(
                "matrix",
                format!("{} values do not fill {rows}x{cols}", data.len()),
            ));
        }
        Ok(Self { rows, cols, data })
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Result<Self> {
        let mut data = Vec::with_capacity(idx.len() * self.cols);
        for &i in idx {
            if i >= self.rows {
                return Err(Error::bad(
                    "matrix",
                    format!("row {i} out of range ({} rows)", self.rows),
                ));
            }
            data.extend_from_slice(self.row(i));
        }
        Self::new(idx.len(), self.cols, data)
    }

    /// Columns of `self` followed by those of `other` (same rows).
    pub fn hconcat(&self, other: &Matrix) -> Result<Self> {
        if self.rows != other.rows {
            return Err(Error::bad(
                "matrix",
                format!("cannot concatenate {} rows with {}", self.rows, other.rows),
            ));
        }
        let cols = self.cols + other.cols;
        let mut data = Vec::with_capacity(self.rows * cols);
        for i in 0..self.rows {
            data.extend_from_slice(self.row(i));
            data.extend_from_slice(other.row(i));
        }
        Self::new(self.rows, cols, data)
    }

    /// Per-column mean and standard deviation (population, as sklearn's `StandardScaler`);
    /// a zero deviation is reported as 1 so constant columns map to 0.
    pub fn column_stats(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.rows.max(1) as f64;
        let mut mean = vec![0.0; self.cols];
        for i in 0..self.rows {
            for (m, &x) in mean.iter_mut().zip(self.row(i)) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; self.cols];
        for i in 0..self.rows {
            for ((v, &x), m) in var.iter_mut().zip(self.row(i)).zip(&mean) {
                *v += (f64::from(x) - m).powi(2);
            }
        }
        let std = var
            .iter()
            .map(|v| {
                let s = (v / n).sqrt();
                if s > 0.0 {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        (mean, std)
    }

    /// `(x - mean) / std` per column, in f64.
    pub fn standardized(&self, mean: &[f64], std: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.data.len());
        for i in 0..self.rows {
            for ((&x, m), s) in self.row(i).iter().zip(mean).zip(std) {
                out.push((f64::from(x) - m) / s);
            }
        }
        out
    }
}
