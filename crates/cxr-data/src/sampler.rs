//! Which dataset positions a training loop visits, epoch by epoch.
//!
//! A pretraining loop maps its step to positions in a stream of epochs; an
//! [`IndexSampler`] says which dataset indices make up epoch `e`. The loop never learns how
//! they were chosen, so data curation (or any other selection) plugs in from outside. An
//! epoch's indices must be a pure function of `epoch` and the sampler's state, so that a
//! resumed run sees the same stream.

use std::fmt::Debug;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The dataset indices of each epoch.
pub trait IndexSampler: Send + Sync + Debug {
    /// Samples in every epoch over a dataset of `len` items (must not change with the epoch
    /// and must be at least 1).
    fn epoch_len(&self, len: usize) -> usize {
        len
    }

    /// The indices (each `< len`) of epoch `epoch`, in visiting order; exactly
    /// [`epoch_len`](Self::epoch_len) of them.
    fn indices(&self, epoch: u64, len: usize) -> Vec<usize>;
}

/// Every index once per epoch, in a seeded permutation per epoch (the default order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeededShuffle {
    /// Seed of the permutations.
    pub seed: u64,
}

impl IndexSampler for SeededShuffle {
    fn indices(&self, epoch: u64, len: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9));
        order.shuffle(&mut rng);
        order
    }
}
