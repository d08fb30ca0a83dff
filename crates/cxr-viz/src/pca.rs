//! Principal component analysis by a symmetric eigen-decomposition of the covariance, and the
//! DINOv2 patch-feature view (PCA, background removal on PC1, refit on the foreground, first
//! three components as RGB).

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::linalg::symmetric_eigen;
use crate::{Error, Result};

/// A fitted PCA, with scikit-learn's attribute meanings.
#[derive(Debug, Clone)]
pub struct Pca {
    /// `[d]` per-feature mean of the training data.
    pub mean: Array1<f64>,
    /// `[k, d]` principal axes (unit rows), by decreasing variance. Sign convention as
    /// sklearn's `svd_flip(u_based_decision=False)`: the largest-magnitude entry of each row is
    /// positive.
    pub components: Array2<f64>,
    /// `[k]` variance along each axis (covariance eigenvalues, `n - 1` denominator).
    pub explained_variance: Array1<f64>,
    /// `[k]` share of the total variance along each axis.
    pub explained_variance_ratio: Array1<f64>,
}

impl Pca {
    /// Fits `k` components to the rows of `x` (`[n, d]`, `n >= 2`, `k <= min(n, d)`).
    pub fn fit(x: ArrayView2<f64>, k: usize) -> Result<Self> {
        let (n, d) = x.dim();
        if n < 2 || d == 0 {
            return Err(Error::shape("PCA input", "[n >= 2, d >= 1]", &[n, d]));
        }
        if k == 0 || k > n.min(d) {
            return Err(Error::bad(
                "PCA components",
                format!("k = {k} must be in 1..={} for a {n}x{d} input", n.min(d)),
            ));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::bad("PCA input", "holds a NaN or an infinity"));
        }
        let mean = x
            .mean_axis(Axis(0))
            .ok_or_else(|| Error::bad("PCA input", "empty"))?;
        let centred = &x - &mean;
        let cov = centred.t().dot(&centred) / (n as f64 - 1.0);
        let total: f64 = cov.diag().sum();
        let eig = symmetric_eigen(cov.view())?;
        let mut components = Array2::zeros((k, d));
        for c in 0..k {
            let col = eig.vectors.column(c);
            let (mut big, mut at) = (0.0f64, 0usize);
            for (j, v) in col.iter().enumerate() {
                if v.abs() > big {
                    big = v.abs();
                    at = j;
                }
            }
            let sign = if col[at] < 0.0 { -1.0 } else { 1.0 };
            components.row_mut(c).assign(&(&col * sign));
        }
        // tiny negative eigenvalues of a rank-deficient covariance are rounding noise
        let explained_variance = eig.values.slice(ndarray::s![..k]).mapv(|v| v.max(0.0));
        let explained_variance_ratio = if total > 0.0 {
            explained_variance.mapv(|v| v / total)
        } else {
            Array1::zeros(k)
        };
        Ok(Self {
            mean,
            components,
            explained_variance,
            explained_variance_ratio,
        })
    }

    /// Projects the rows of `x` (`[n, d]`) onto the components: `[n, k]`.
    pub fn transform(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        if x.ncols() != self.mean.len() {
            return Err(Error::shape(
                "PCA transform input",
                format!("[n, {}]", self.mean.len()),
                &[x.nrows(), x.ncols()],
            ));
        }
        Ok((&x - &self.mean).dot(&self.components.t()))
    }

    /// The number of components.
    pub fn k(&self) -> usize {
        self.components.nrows()
    }
}

/// Which side of the PC1 threshold is background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// Patches whose scaled PC1 is below the threshold.
    Below,
    /// Patches whose scaled PC1 is above the threshold.
    Above,
    /// Whichever side holds fewer patches (a chest radiograph fills most of its frame, so the
    /// smaller side is the border, the outside of the body and burned-in text).
    Smaller,
}

/// Options of [`patch_pca_rgb`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchPcaOptions {
    /// Threshold on PC1 after min-max scaling to `[0, 1]` (over all patches of all images).
    /// `None` skips background removal: one fit, every patch is foreground.
    pub threshold: Option<f64>,
    /// Which side of the threshold is background.
    pub background: Background,
}

impl Default for PatchPcaOptions {
    fn default() -> Self {
        Self {
            threshold: Some(0.5),
            background: Background::Smaller,
        }
    }
}

/// The patch-feature PCA of one image.
#[derive(Debug, Clone)]
pub struct PatchPcaImage {
    /// `(rows, cols)` of the patch grid.
    pub grid: (usize, usize),
    /// Per patch, in `[0, 1]`: the first three foreground components, min-max scaled per
    /// component over all foreground patches of the fit. Background patches are `[0, 0, 0]`.
    pub rgb: Vec<[f64; 3]>,
    /// Per patch: kept as foreground.
    pub foreground: Vec<bool>,
}

/// The result of [`patch_pca_rgb`]: one image per input plus the two fits.
#[derive(Debug, Clone)]
pub struct PatchPca {
    /// One entry per input image, in input order.
    pub images: Vec<PatchPcaImage>,
    /// The fit on all patches (its PC1 separates the background).
    pub first: Pca,
    /// The fit on the foreground patches (its first three components are the colours).
    pub foreground: Pca,
}

/// DINOv2's patch-feature picture, fitted jointly over `features` (one `[N_i, D]` matrix per
/// image with its grid): fit PCA on every patch, min-max scale PC1 and drop the background
/// side of `threshold`, refit three components on the foreground patches and map them to RGB.
pub fn patch_pca_rgb(
    features: &[(ArrayView2<f64>, (usize, usize))],
    opts: &PatchPcaOptions,
) -> Result<PatchPca> {
    let Some(first) = features.first() else {
        return Err(Error::bad("patch features", "no images"));
    };
    let d = first.0.ncols();
    for (i, (f, (r, c))) in features.iter().enumerate() {
        if f.ncols() != d || f.nrows() != r * c {
            return Err(Error::shape(
                format!("patch features of image {i}"),
                format!("[{r} x {c} patches, {d}]"),
                &[f.nrows(), f.ncols()],
            ));
        }
    }
    let views: Vec<ArrayView2<f64>> = features.iter().map(|(f, _)| f.view()).collect();
    let all = ndarray::concatenate(Axis(0), &views)
        .map_err(|e| Error::bad("patch features", e.to_string()))?;
    let n = all.nrows();
    let first_fit = Pca::fit(all.view(), 1)?;
    let mut keep = vec![true; n];
    if let Some(t) = opts.threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::bad("PCA threshold", format!("{t} is not in [0, 1]")));
        }
        let pc1: Vec<f64> = first_fit.transform(all.view())?.column(0).to_vec();
        let scaled = min_max(&pc1);
        let above: Vec<bool> = scaled.iter().map(|&v| v > t).collect();
        let n_above = above.iter().filter(|&&a| a).count();
        let background_above = match opts.background {
            Background::Above => true,
            Background::Below => false,
            Background::Smaller => n_above * 2 < n,
        };
        for (k, a) in keep.iter_mut().zip(&above) {
            *k = *a != background_above;
        }
    }
    let fg_rows: Vec<usize> = (0..n).filter(|&i| keep[i]).collect();
    if fg_rows.len() < 4 {
        return Err(Error::bad(
            "PCA foreground",
            format!(
                "only {} of {n} patches are foreground; lower the threshold or flip the side",
                fg_rows.len()
            ),
        ));
    }
    let fg = all.select(Axis(0), &fg_rows);
    let k = 3.min(d).min(fg.nrows());
    let fg_fit = Pca::fit(fg.view(), k)?;
    let proj = fg_fit.transform(fg.view())?;
    let mut colours = vec![[0f64; 3]; n];
    for (c, col) in proj.columns().into_iter().enumerate() {
        for (&row, v) in fg_rows.iter().zip(min_max(&col.to_vec())) {
            colours[row][c] = v;
        }
    }
    let mut images = Vec::with_capacity(features.len());
    let mut at = 0;
    for (f, grid) in features {
        let m = f.nrows();
        images.push(PatchPcaImage {
            grid: *grid,
            rgb: colours[at..at + m].to_vec(),
            foreground: keep[at..at + m].to_vec(),
        });
        at += m;
    }
    Ok(PatchPca {
        images,
        first: first_fit,
        foreground: fg_fit,
    })
}

/// Scales values to `[0, 1]` (a constant input maps to 0).
pub fn min_max(values: &[f64]) -> Vec<f64> {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    values
        .iter()
        .map(|&v| if span > 0.0 { (v - lo) / span } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn background_split_on_two_clusters() {
        // 2x4 grid: the left column pair is "background" (feature near 0), the rest is "body"
        // with a second direction that varies; the smaller side must be dropped.
        let mut x = Array2::zeros((8, 4));
        for i in 0..8 {
            let body = i % 4 >= 1;
            x[[i, 0]] = if body { 10.0 } else { 0.0 };
            x[[i, 1]] = i as f64 * 0.5;
            x[[i, 2]] = (i as f64).sin();
            x[[i, 3]] = (i as f64 * 0.3).cos();
        }
        let out = patch_pca_rgb(&[(x.view(), (2, 4))], &PatchPcaOptions::default()).unwrap();
        let fg = &out.images[0].foreground;
        assert_eq!(fg, &[false, true, true, true, false, true, true, true]);
        assert_eq!(out.images[0].rgb.len(), fg.len(), "one colour per patch");
        for (rgb, &f) in out.images[0].rgb.iter().zip(fg) {
            if !f {
                assert_eq!(rgb, &[0.0; 3]);
            }
            assert!(rgb.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        // each colour channel spans [0, 1] over the foreground
        for c in 0..3 {
            let vals: Vec<f64> = out.images[0]
                .rgb
                .iter()
                .zip(fg)
                .filter(|(_, &f)| f)
                .map(|(r, _)| r[c])
                .collect();
            assert!(vals.contains(&0.0) && vals.contains(&1.0));
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = Array2::<f64>::zeros((1, 3));
        assert!(Pca::fit(x.view(), 1).is_err());
        let x = Array2::<f64>::zeros((5, 3));
        assert!(Pca::fit(x.view(), 4).is_err());
        assert!(patch_pca_rgb(&[(x.view(), (2, 2))], &PatchPcaOptions::default()).is_err());
    }
}
