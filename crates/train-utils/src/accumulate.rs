//! Gradient accumulation over micro-batches.

use crate::{NamedGrads, Result};

/// Sums the gradients of several micro-batches and returns their mean, so that `n`
/// micro-batches of size `b` give the gradient of one batch of size `n·b` for a mean loss.
#[derive(Debug, Default)]
pub struct GradAccumulator {
    sum: NamedGrads,
    count: usize,
}

impl GradAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one micro-batch's gradients.
    pub fn add(&mut self, grads: &NamedGrads) -> Result<()> {
        for (name, g) in grads.iter() {
            let total = match self.sum.get(name) {
                Some(acc) => (acc + g)?,
                None => g.clone(),
            };
            self.sum.insert(name.clone(), total);
        }
        self.count += 1;
        Ok(())
    }

    /// Number of micro-batches added since the last [`GradAccumulator::finish`].
    pub fn count(&self) -> usize {
        self.count
    }

    /// The mean gradient over the micro-batches; resets the accumulator.
    pub fn finish(&mut self) -> Result<NamedGrads> {
        let mut out = std::mem::take(&mut self.sum);
        if self.count > 1 {
            out.scale(1.0 / self.count as f64)?;
        }
        self.count = 0;
        Ok(out)
    }
}
