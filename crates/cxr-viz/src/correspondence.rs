//! Patch correspondences between two scans: mutual nearest neighbours by cosine similarity.

use ndarray::{Array2, ArrayView2, Axis};

use crate::{Error, Result};

/// One mutual nearest-neighbour pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// Patch index in the first image (row-major over its grid).
    pub a: usize,
    /// Patch index in the second image.
    pub b: usize,
    /// Cosine similarity of the two patch features.
    pub similarity: f64,
}

fn unit_rows(x: ArrayView2<f64>, name: &str) -> Result<Array2<f64>> {
    let mut out = x.to_owned();
    for (i, mut row) in out.axis_iter_mut(Axis(0)).enumerate() {
        let norm = row.dot(&row).sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err(Error::bad(
                name,
                format!("row {i} has norm {norm}: cosine similarity is undefined"),
            ));
        }
        row /= norm;
    }
    Ok(out)
}

/// `[Na, Nb]` cosine similarities between the rows of `a` (`[Na, D]`) and `b` (`[Nb, D]`).
pub fn cosine_similarity(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<Array2<f64>> {
    if a.ncols() != b.ncols() {
        return Err(Error::shape(
            "second feature matrix",
            format!("[N, {}] like the first", a.ncols()),
            &[b.nrows(), b.ncols()],
        ));
    }
    let a = unit_rows(a, "first feature matrix")?;
    let b = unit_rows(b, "second feature matrix")?;
    Ok(a.dot(&b.t()))
}

fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Pairs `(i, j)` where patch `j` of `b` is the nearest (by cosine similarity) to patch `i` of
/// `a` and `i` is the nearest to `j`, strongest first; at most `k` of them (`None`: all).
/// Ties go to the lower index.
pub fn mutual_nearest_neighbours(
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
    k: Option<usize>,
) -> Result<Vec<Match>> {
    if a.nrows() == 0 || b.nrows() == 0 {
        return Err(Error::shape(
            "patch features",
            "at least one patch each",
            &[a.nrows(), b.nrows()],
        ));
    }
    let sim = cosine_similarity(a, b)?;
    let a_to_b: Vec<usize> = sim
        .rows()
        .into_iter()
        .map(|r| argmax(r.iter().copied()))
        .collect();
    let b_to_a: Vec<usize> = sim
        .columns()
        .into_iter()
        .map(|c| argmax(c.iter().copied()))
        .collect();
    let mut matches: Vec<Match> = a_to_b
        .iter()
        .enumerate()
        .filter(|&(i, &j)| b_to_a[j] == i)
        .map(|(i, &j)| Match {
            a: i,
            b: j,
            similarity: sim[[i, j]],
        })
        .collect();
    matches.sort_by(|x, y| y.similarity.total_cmp(&x.similarity).then(x.a.cmp(&y.a)));
    if let Some(k) = k {
        matches.truncate(k);
    }
    Ok(matches)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::array;

    #[test]
    fn permuted_copy_is_matched_back() {
        // b is a permutation of a, scaled (cosine ignores scale) with a little noise
        let a = array![
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0, 1.0, 0.0],
            [0.0, 1.0, 1.0]
        ];
        let perm = [3, 0, 4, 1, 2]; // b[j] = a[perm[j]]
        let mut b = Array2::zeros((5, 3));
        for (j, &i) in perm.iter().enumerate() {
            b.row_mut(j).assign(&(&a.row(i) * (2.0 + j as f64)));
        }
        b[[0, 2]] += 0.01;
        let m = mutual_nearest_neighbours(a.view(), b.view(), None).unwrap();
        assert_eq!(m.len(), 5);
        for x in &m {
            assert_eq!(perm[x.b], x.a);
        }
        // the perturbed pair is the weakest
        assert_eq!(m.last().unwrap().b, 0);
        assert!(m.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        let top2 = mutual_nearest_neighbours(a.view(), b.view(), Some(2)).unwrap();
        assert_eq!(top2.len(), 2);
    }

    #[test]
    fn one_sided_neighbours_are_dropped() {
        // both a-patches are nearest to b0, but b0 prefers a0: only (0, 0) is mutual;
        // b1 is nearest to a1 but a1 prefers b0
        let a = array![[1.0, 0.0], [1.0, 0.3]];
        let b = array![[1.0, 0.05], [0.0, 1.0]];
        let m = mutual_nearest_neighbours(a.view(), b.view(), None).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].a, m[0].b), (0, 0));
    }

    #[test]
    fn zero_vectors_and_width_mismatch_are_errors() {
        let a = array![[0.0, 0.0]];
        let b = array![[1.0, 0.0]];
        assert!(mutual_nearest_neighbours(a.view(), b.view(), None).is_err());
        let c = array![[1.0, 0.0, 0.0]];
        assert!(mutual_nearest_neighbours(b.view(), c.view(), None).is_err());
    }
}
