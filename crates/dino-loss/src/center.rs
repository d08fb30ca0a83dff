//! The EMA center of the teacher outputs (DINO and iBOT keep one each).

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// Running center `c ← m·c + (1 − m)·mean(teacher outputs)`, `[1, K]`.
///
/// Kept in f32 (f64 when given f64 values), as dinov2's f32 buffer is under PyTorch's type
/// promotion.
///
/// dinov2 records the batch statistic after computing the targets and folds it in lazily at
/// the start of the next `softmax_center_teacher` call. Since the center is read nowhere
/// else, applying the update at once gives the same targets; it also means a checkpoint
/// written between two steps holds the complete center (dinov2's buffer lacks the pending
/// update there).
#[derive(Debug, Clone)]
pub struct Center {
    value: Tensor,
    momentum: f64,
}

impl Center {
    /// A zero center of width `k` (dinov2 starts from zeros).
    pub fn zeros(k: usize, momentum: f64, device: &Device) -> Result<Self> {
        Self::from_tensor(&Tensor::zeros((1, k), DType::F32, device)?, momentum)
    }

    /// A center with the given value (`[K]` or `[1, K]`, e.g. restored from a checkpoint).
    pub fn from_tensor(value: &Tensor, momentum: f64) -> Result<Self> {
        let value = match value.rank() {
            1 => value.unsqueeze(0)?,
            2 if value.dim(0)? == 1 => value.clone(),
            _ => return Err(Error::bad_input("center", "[K] or [1, K]", value.dims())),
        };
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::Config(format!(
                "center momentum must lie in [0, 1], got {momentum}"
            )));
        }
        Ok(Self {
            value: value.to_dtype(center_dtype(value.dtype()))?.detach(),
            momentum,
        })
    }

    /// The current center, `[1, K]`.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The EMA momentum.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }

    /// Folds in the mean of `teacher_output` (`[N, K]`) over its rows.
    pub fn update(&mut self, teacher_output: &Tensor) -> Result<()> {
        let n = teacher_output.dim(0)?;
        let sum = teacher_output
            .detach()
            .to_dtype(center_dtype(teacher_output.dtype()))?
            .sum_keepdim(0)?;
        self.update_from_sum(&sum, n)
    }

    /// Folds in a batch statistic given as its row sum `[1, K]` over `count` rows: the form a
    /// data-parallel trainer uses after all-reducing the sum and the count.
    pub fn update_from_sum(&mut self, sum: &Tensor, count: usize) -> Result<()> {
        if sum.dims() != self.value.dims() {
            return Err(Error::bad_input(
                "teacher output sum",
                format!("{:?}", self.value.dims()),
                sum.dims(),
            ));
        }
        if count == 0 {
            return Err(Error::bad_input("teacher output", "at least one row", &[0]));
        }
        let dtype = match (sum.dtype(), self.value.dtype()) {
            (DType::F64, _) | (_, DType::F64) => DType::F64,
            _ => DType::F32,
        };
        let mean = (sum.to_dtype(dtype)? / count as f64)?;
        let value = self.value.to_dtype(dtype)?;
        self.value = ((value * self.momentum)? + (mean * (1.0 - self.momentum))?)?;
        Ok(())
    }
}

fn center_dtype(input: DType) -> DType {
    if input == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}
