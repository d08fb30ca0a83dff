//! Patient-level splits and nested subsets for scaling studies, deterministic from a seed.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::manifest::{Manifest, Split};
use crate::{Error, Result};

/// Row indices of each split.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Splits {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows.
    pub val: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
}

/// Splits the patients of `manifest` into train/val/test with fractions `(train, val)`
/// (test takes the rest): patients are sorted, shuffled with ChaCha8 seeded by `seed`, and cut
/// at `round(n * train)` and `round(n * (train + val))`. No patient lands in two splits.
pub fn patient_split(manifest: &Manifest, seed: u64, train: f64, val: f64) -> Result<Splits> {
    if !(0.0..=1.0).contains(&train) || !(0.0..=1.0).contains(&val) || train + val > 1.0 {
        return Err(Error::Invalid(format!(
            "split fractions train {train}, val {val}"
        )));
    }
    let patients: BTreeSet<&str> = manifest
        .records
        .iter()
        .map(|r| r.patient.as_str())
        .collect();
    let mut patients: Vec<&str> = patients.into_iter().collect();
    patients.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n = patients.len() as f64;
    let (a, b) = (
        (n * train).round() as usize,
        (n * (train + val)).round() as usize,
    );
    let which: BTreeMap<&str, Split> = patients
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            (
                p,
                if i < a {
                    Split::Train
                } else if i < b {
                    Split::Val
                } else {
                    Split::Test
                },
            )
        })
        .collect();
    let mut s = Splits::default();
    for (i, r) in manifest.records.iter().enumerate() {
        match which[r.patient.as_str()] {
            Split::Train => s.train.push(i),
            Split::Val => s.val.push(i),
            Split::Test => s.test.push(i),
        }
    }
    Ok(s)
}

/// The data set's own `split` column; checks that no patient is in two splits.
pub fn column_split(manifest: &Manifest) -> Result<Splits> {
    let mut seen: BTreeMap<&str, Split> = BTreeMap::new();
    let mut s = Splits::default();
    for (i, r) in manifest.records.iter().enumerate() {
        let split = r.split.ok_or_else(|| Error::Manifest {
            path: manifest.path.clone(),
            line: r.line,
            reason: "no split assignment".into(),
        })?;
        if let Some(&prev) = seen.get(r.patient.as_str()) {
            if prev != split {
                return Err(Error::Manifest {
                    path: manifest.path.clone(),
                    line: r.line,
                    reason: format!("patient {} is in {prev:?} and {split:?}", r.patient),
                });
            }
        }
        seen.insert(&r.patient, split);
        match split {
            Split::Train => s.train.push(i),
            Split::Val => s.val.push(i),
            Split::Test => s.test.push(i),
        }
    }
    Ok(s)
}

/// An ordering of `pool` such that every prefix is a subset for a scaling study: the subset of
/// size `n` is `order[..n]`, so subsets with the same seed are nested (`n ⊂ m` for `n < m`).
///
/// With `strata` (one key per pool element, e.g. a label value), each stratum is shuffled on
/// its own and elements are ordered by their fractional rank `(k + u) / size` in their stratum
/// (`u` uniform in [0, 1) from the same seed), so every prefix holds the strata in proportion,
/// up to one element per stratum.
pub fn nested_order(pool: &[usize], seed: u64, strata: Option<&[i64]>) -> Result<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    match strata {
        None => {
            let mut v = pool.to_vec();
            v.shuffle(&mut rng);
            Ok(v)
        }
        Some(keys) => {
            if keys.len() != pool.len() {
                return Err(Error::Invalid(format!(
                    "{} strata keys for a pool of {}",
                    keys.len(),
                    pool.len()
                )));
            }
            let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
            for (&p, &k) in pool.iter().zip(keys) {
                groups.entry(k).or_default().push(p);
            }
            let mut ranked: Vec<(f64, usize)> = Vec::with_capacity(pool.len());
            for members in groups.values_mut() {
                members.shuffle(&mut rng);
                let size = members.len() as f64;
                for (k, &p) in members.iter().enumerate() {
                    let u: f64 = rng.random();
                    ranked.push(((k as f64 + u) / size, p));
                }
            }
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            Ok(ranked.into_iter().map(|(_, p)| p).collect())
        }
    }
}

/// The nested subset of size `n` (see [`nested_order`]).
pub fn nested_subset(
    pool: &[usize],
    n: usize,
    seed: u64,
    strata: Option<&[i64]>,
) -> Result<Vec<usize>> {
    if n > pool.len() {
        return Err(Error::Invalid(format!(
            "subset of {n} from a pool of {}",
            pool.len()
        )));
    }
    let mut order = nested_order(pool, seed, strata)?;
    order.truncate(n);
    Ok(order)
}
