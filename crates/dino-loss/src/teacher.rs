//! Teacher targets: centering + sharpening, or Sinkhorn-Knopp.
//!
//! The whole teacher path (centering, temperature, softmax / Sinkhorn iterations) sits in
//! [`teacher_targets`] so that an accelerator kernel can replace it in one place. Nothing here
//! is differentiated: the teacher receives no gradient, and every input is detached.

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the teacher's logits become target distributions (dinov2's `train.centering`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TeacherMode {
    /// `softmax((t − center) / temp)`, with the center an EMA of the teacher outputs.
    #[default]
    Centering,
    /// Sinkhorn-Knopp normalisation of `exp(t / temp)` (dinov2 uses 3 iterations).
    SinkhornKnopp {
        /// Number of row/column normalisation rounds.
        n_iterations: usize,
    },
}

fn check_logits(name: &str, t: &Tensor) -> Result<()> {
    if t.rank() != 2 || t.dim(0)? == 0 {
        return Err(Error::bad_input(name, "[N > 0, K]", t.dims()));
    }
    Ok(())
}

fn check_temp(temp: f64) -> Result<()> {
    if !(temp.is_finite() && temp > 0.0) {
        return Err(Error::Config(format!(
            "teacher temperature must be positive, got {temp}"
        )));
    }
    Ok(())
}

/// Half precision is computed in f32 as dinov2 does (`teacher_output.float()`, f32 center).
fn working(t: &Tensor) -> Result<Tensor> {
    let t = t.detach();
    Ok(match t.dtype() {
        DType::F16 | DType::BF16 => t.to_dtype(DType::F32)?,
        _ => t,
    })
}

/// `softmax((t − center) / temp)` over prototypes; `t` is `[N, K]`, `center` `[1, K]`.
pub fn softmax_center_teacher(t: &Tensor, center: &Tensor, temp: f64) -> Result<Tensor> {
    check_logits("teacher logits", t)?;
    check_temp(temp)?;
    let t = working(t)?;
    let center = center.detach().to_dtype(t.dtype())?;
    if center.dims() != [1, t.dim(1)?] {
        return Err(Error::bad_input(
            "center",
            format!("[1, {}]", t.dim(1)?),
            center.dims(),
        ));
    }
    if t.dtype() == DType::F64 {
        // f64 (exact references) keeps the composed form; the fused op works in f32
        let z = (t.broadcast_sub(&center)? / temp)?;
        return Ok(candle_nn::ops::softmax_last_dim(&z)?);
    }
    Ok(fused_ops::center_softmax(&t, &center, temp)?)
}

/// dinov2's `sinkhorn_knopp_teacher` on `t` (`[N, K]`), returning `[N, K]` assignments whose
/// rows sum to 1.
///
/// `n_samples` is dinov2's `B`: the number of rows across all processes (`N · world_size` for
/// CLS tokens, the all-reduced masked-patch count for iBOT). Each round scales every prototype
/// to total mass `1/K` and then every sample to `1/B`; the result is multiplied by `B`. The
/// global maximum is subtracted before `exp`: the constant factor cancels in the first
/// normalisation and keeps `exp` finite at low temperatures.
pub fn sinkhorn_knopp_teacher(
    t: &Tensor,
    temp: f64,
    n_samples: f64,
    n_iterations: usize,
) -> Result<Tensor> {
    check_logits("teacher logits", t)?;
    check_temp(temp)?;
    if !(n_samples.is_finite() && n_samples > 0.0) {
        return Err(Error::Config(format!(
            "Sinkhorn sample count must be positive, got {n_samples}"
        )));
    }
    let t = working(t)?;
    if t.dtype() != DType::F64 {
        // one fused op (CPU reference or CUDA kernel), in f32
        return Ok(fused_ops::sinkhorn_knopp(
            &t,
            temp,
            n_samples,
            n_iterations,
        )?);
    }
    // f64 (exact references): the same steps composed, kept as [N, K] (dinov2's rows, the
    // prototypes, are our columns)
    let k = t.dim(1)? as f64;
    let max = t.flatten_all()?.max_keepdim(0)?.reshape((1, 1))?;
    let mut q = (t.broadcast_sub(&max)? / temp)?.exp()?;
    q = q.broadcast_div(&q.sum_all()?.reshape((1, 1))?)?;
    for _ in 0..n_iterations {
        q = (q.broadcast_div(&q.sum_keepdim(0)?)? / k)?;
        q = (q.broadcast_div(&q.sum_keepdim(D::Minus1)?)? / n_samples)?;
    }
    Ok((q * n_samples)?)
}

/// The teacher path in one call: targets for `logits` (`[N, K]`) at temperature `temp`.
///
/// `center` is used by [`TeacherMode::Centering`]; `n_samples` by
/// [`TeacherMode::SinkhornKnopp`] (see [`sinkhorn_knopp_teacher`]).
pub fn teacher_targets(
    logits: &Tensor,
    mode: TeacherMode,
    center: &Tensor,
    temp: f64,
    n_samples: f64,
) -> Result<Tensor> {
    match mode {
        TeacherMode::Centering => softmax_center_teacher(logits, center, temp),
        TeacherMode::SinkhornKnopp { n_iterations } => {
            sinkhorn_knopp_teacher(logits, temp, n_samples, n_iterations)
        }
    }
}
