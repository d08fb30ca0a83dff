//! Gradient synchronisation for data-parallel training.

use candle_core::Tensor;

use crate::{NamedGrads, Result};

/// What a data-parallel trainer needs from its process group. A single process uses
/// [`SingleProcess`]; an NCCL implementation (behind the `cuda` feature of a later crate)
/// all-reduces over the devices. Trainers call [`GradSync::all_reduce_mean`] after backward
/// (and after gradient accumulation) and before clipping, and reduce the DINO/iBOT center
/// statistics and the Sinkhorn marginals with [`GradSync::all_reduce_sum`].
pub trait GradSync: Send + Sync {
    /// Number of processes.
    fn world_size(&self) -> usize;
    /// This process's rank.
    fn rank(&self) -> usize;
    /// Replaces every gradient by its mean over the processes.
    fn all_reduce_mean(&self, grads: &mut NamedGrads) -> Result<()>;
    /// The sum of `t` over the processes.
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor>;
}

/// The single-process group: every reduction is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl GradSync for SingleProcess {
    fn world_size(&self) -> usize {
        1
    }
    fn rank(&self) -> usize {
        0
    }
    fn all_reduce_mean(&self, _grads: &mut NamedGrads) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
}
