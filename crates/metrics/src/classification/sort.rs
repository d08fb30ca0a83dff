//! Order-preserving integer keys for `f64` scores and an LSD radix sort on them.
//!
//! Ranking metrics spend nearly all their time sorting. Mapping each score to a `u64`
//! whose unsigned order equals the numeric order lets a 6-pass radix sort (11-bit digits, small enough for the counters to stay in L1)
//! replace a comparison sort; passes whose digit is the same for every key (the high bits
//! of scores in `[0, 1]`, say) are skipped.

use crate::error::{MetricsError, Result};

/// Maps a score to a key whose unsigned order is the numeric order; `-0.0` and `0.0`
/// share a key (numpy treats them as one tied score). NaN is rejected before this.
#[inline]
pub(crate) fn key_of(score: f64) -> u64 {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Inverse of [`key_of`].
#[inline]
pub(crate) fn score_of(key: u64) -> f64 {
    let bits = if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    };
    f64::from_bits(bits)
}

/// Splits scores into sorted (ascending) keys of the positives and of the negatives.
pub(crate) fn sorted_keys_by_class(
    metric: &'static str,
    y_true: &[bool],
    y_score: &[f64],
) -> Result<(Vec<u64>, Vec<u64>)> {
    crate::error::check_len("y_true vs y_score", y_true.len(), y_score.len())?;
    let n_pos = y_true.iter().filter(|&&t| t).count();
    let mut pos = Vec::with_capacity(n_pos);
    let mut neg = Vec::with_capacity(y_true.len() - n_pos);
    if let Some(index) = y_score.iter().position(|s| s.is_nan()) {
        return Err(MetricsError::NanScore { metric, index });
    }
    if y_true.len() < RADIX_MIN || y_true.len() > u32::MAX as usize {
        for (&t, &s) in y_true.iter().zip(y_score) {
            if t {
                pos.push(key_of(s))
            } else {
                neg.push(key_of(s))
            }
        }
        pos.sort_unstable();
        neg.sort_unstable();
        return Ok((pos, neg));
    }
    // the digit histograms are counted while partitioning, saving the sort one pass
    let mut hist_pos = Histograms::new();
    let mut hist_neg = Histograms::new();
    for (&t, &s) in y_true.iter().zip(y_score) {
        let k = key_of(s);
        if t {
            pos.push(k);
            hist_pos.add(k);
        } else {
            neg.push(k);
            hist_neg.add(k);
        }
    }
    radix_sort_with(&mut pos, &hist_pos);
    radix_sort_with(&mut neg, &hist_neg);
    Ok((pos, neg))
}

const DIGIT_BITS: u32 = 11;
const BUCKETS: usize = 1 << DIGIT_BITS;
const PASSES: usize = 64_usize.div_ceil(DIGIT_BITS as usize);

const RADIX_MIN: usize = 4096;

/// Per-pass digit counts of a set of keys.
struct Histograms(Vec<Vec<u32>>);

impl Histograms {
    fn new() -> Self {
        Self(vec![vec![0u32; BUCKETS]; PASSES])
    }

    #[inline]
    fn add(&mut self, k: u64) {
        for (p, h) in self.0.iter_mut().enumerate() {
            h[((k >> (p as u32 * DIGIT_BITS)) as usize) & (BUCKETS - 1)] += 1;
        }
    }
}

/// Sorts ascending. Small inputs use the standard library's unstable sort.
#[cfg(test)]
pub(crate) fn radix_sort(keys: &mut Vec<u64>) {
    if keys.len() < RADIX_MIN {
        keys.sort_unstable();
        return;
    }
    let mut hist = Histograms::new();
    keys.iter().for_each(|&k| hist.add(k));
    radix_sort_with(keys, &hist);
}

/// LSD radix sort given the keys' histograms (counts fit `u32`: larger inputs take the
/// comparison sort).
fn radix_sort_with(keys: &mut Vec<u64>, hist: &Histograms) {
    let mut buf = vec![0u64; keys.len()];
    let n = keys.len() as u32;
    for (p, h) in hist.0.iter().enumerate() {
        // a pass where one bucket holds every key leaves the order unchanged
        if h.contains(&n) {
            continue;
        }
        let mut offset = vec![0usize; BUCKETS];
        let mut running = 0usize;
        for (o, &c) in offset.iter_mut().zip(h) {
            *o = running;
            running += c as usize;
        }
        let shift = p as u32 * DIGIT_BITS;
        for &k in keys.iter() {
            let digit = ((k >> shift) as usize) & (BUCKETS - 1);
            buf[offset[digit]] = k;
            offset[digit] += 1;
        }
        std::mem::swap(keys, &mut buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_order_and_round_trip() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -1.0,
            -1e-300,
            -0.0,
            0.0,
            1e-300,
            0.5,
            1.0,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(key_of(w[0]) <= key_of(w[1]));
        }
        assert_eq!(key_of(-0.0), key_of(0.0));
        for &x in &xs {
            assert_eq!(score_of(key_of(x)), if x == 0.0 { 0.0 } else { x });
        }
    }

    #[test]
    fn radix_matches_std_sort() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut keys: Vec<u64> = (0..20_000)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // mix wide keys with many ties
                if i % 3 == 0 {
                    key_of((state % 50) as f64 / 7.0 - 3.0)
                } else {
                    state
                }
            })
            .collect();
        let mut expected = keys.clone();
        expected.sort_unstable();
        radix_sort(&mut keys);
        assert_eq!(keys, expected);
    }
}
