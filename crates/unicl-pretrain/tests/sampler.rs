//! The UniCL loop reads its samples through a `cxr_data::IndexSampler`, as the DINO loop does:
//! a curated subset restricts every batch to it, without the loop knowing how it was chosen.
#![allow(clippy::unwrap_used)]
use crate::common;

use std::sync::Arc;

use cxr_data::{IndexSampler, SeededShuffle};

/// The first `keep` samples only, in a seeded order per epoch.
#[derive(Debug)]
struct FirstK {
    keep: usize,
}

impl IndexSampler for FirstK {
    fn epoch_len(&self, _len: usize) -> usize {
        self.keep
    }
    fn indices(&self, epoch: u64, _len: usize) -> Vec<usize> {
        SeededShuffle { seed: 3 }.indices(epoch, self.keep)
    }
}

/// Claims more samples per epoch than it draws.
#[derive(Debug)]
struct Short;

impl IndexSampler for Short {
    fn epoch_len(&self, _len: usize) -> usize {
        4
    }
    fn indices(&self, _epoch: u64, _len: usize) -> Vec<usize> {
        vec![0]
    }
}

#[test]
fn batches_come_from_the_sampler_subset_only() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = common::tokenizer(tmp.path());
    let data = common::tiny_dataset(8);
    let src = common::source(data, tok, 2).with_sampler(Arc::new(FirstK { keep: 3 }));
    let mut seen = std::collections::BTreeSet::new();
    for step in 0..6 {
        let b = src.batch(step, &common::dev()).unwrap();
        assert_eq!(b.indices.len(), 2);
        seen.extend(b.indices);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
}

#[test]
fn a_sampler_that_draws_too_few_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = common::tokenizer(tmp.path());
    let src = common::source(common::tiny_dataset(8), tok, 2).with_sampler(Arc::new(Short));
    let err = src.batch(0, &common::dev()).unwrap_err().to_string();
    assert!(err.contains("sampler"), "{err}");
}
