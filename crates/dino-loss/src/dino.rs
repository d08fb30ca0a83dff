//! The DINO CLS-token loss: student/teacher cross-entropy over crop pairs.

use candle_core::{Device, Tensor, D};
use fused_ops::log_softmax_last_dim;

use crate::teacher::TeacherMode;
use crate::teacher_state::TeacherState;
use crate::{Center, Error, Result};

/// The two DINO terms of dinov2's loss dict, already divided by the number of pair terms.
#[derive(Debug, Clone)]
pub struct DinoLossParts {
    /// Student global crops against the teacher's other global crops.
    pub global: Tensor,
    /// Student local crops against every teacher global crop (`None` without local crops).
    pub local: Option<Tensor>,
}

/// dinov2's `DINOLoss`: student temperature, EMA center, and the crop-pair cross-entropy.
#[derive(Debug, Clone)]
pub struct DinoLoss {
    state: TeacherState,
}

/// `−Σ_rows mean(Σ_k t·log_softmax(s/temp))` for every pair of a student chunk and the summed
/// teacher chunks it is matched with: `pairs[i]` lists the teacher chunks for student chunk
/// `i`. Summing the teacher distributions first gives the same value as summing the
/// per-pair cross-entropies (the log-softmax is shared), with one product per student chunk.
pub fn cross_entropy_pairs(
    students: &[Tensor],
    teachers: &[Tensor],
    pairs: &[Vec<usize>],
    student_temp: f64,
) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (s, matched) in students.iter().zip(pairs) {
        if matched.is_empty() {
            continue;
        }
        let mut t_sum = teachers[matched[0]].clone();
        for &j in &matched[1..] {
            t_sum = (t_sum + &teachers[j])?;
        }
        let lsm = log_softmax_last_dim(&(s / student_temp)?)?;
        let term = (t_sum.to_dtype(lsm.dtype())? * lsm)?
            .sum(D::Minus1)?
            .mean_all()?;
        total = Some(match total {
            None => term,
            Some(acc) => (acc + term)?,
        });
    }
    match total {
        Some(t) => Ok(t.neg()?),
        None => {
            let device = students.first().map_or(Device::Cpu, |s| s.device().clone());
            Ok(Tensor::new(0f32, &device)?)
        }
    }
}

fn chunks(t: &Tensor, n: usize, name: &str) -> Result<Vec<Tensor>> {
    let rows = t.dim(0)?;
    if t.rank() != 2 || n == 0 || rows % n != 0 || rows == 0 {
        return Err(Error::bad_input(
            name,
            format!("[n_crops · B, K] with {n} crops"),
            t.dims(),
        ));
    }
    Ok(t.chunk(n, 0)?)
}

impl DinoLoss {
    /// A loss over `k` prototypes (dinov2: student temperature 0.1, center momentum 0.9).
    pub fn new(k: usize, student_temp: f64, center_momentum: f64, device: &Device) -> Result<Self> {
        Ok(Self {
            state: TeacherState::new(k, student_temp, center_momentum, device)?,
        })
    }

    /// The EMA center (for checkpoints).
    pub fn center(&self) -> &Center {
        &self.state.center
    }

    /// Replaces the center (when resuming).
    pub fn set_center(&mut self, center: Center) {
        self.state.center = center;
    }

    /// The student temperature.
    pub fn student_temp(&self) -> f64 {
        self.state.student_temp
    }

    /// Teacher targets for the teacher head's outputs on the global crops, `[n_global · B, K]`
    /// in crop order. With centering, the targets use the current center and the center then
    /// takes this batch's mean (dinov2's order); Sinkhorn-Knopp leaves the center alone and
    /// uses `N · world_size` samples.
    pub fn teacher_targets(
        &mut self,
        teacher_logits: &Tensor,
        temp: f64,
        mode: TeacherMode,
        world_size: usize,
    ) -> Result<Tensor> {
        let n = teacher_logits.dim(0)? * world_size.max(1);
        self.state.targets(teacher_logits, temp, mode, n)
    }

    /// The DINO loss as dinov2's `forward_backward` forms it.
    ///
    /// `student_global` is `[n_global · B, K]` and `teacher_probs` `[n_global · B, K]`, both in
    /// crop order; `student_local` `[n_local · B, K]`. Global crop `i` is matched with every
    /// teacher crop `j ≠ i`, each local crop with every teacher crop; both sums are divided by
    /// `n_global·(n_global−1) + max(n_local·n_global, 1)`, dinov2's number of loss terms.
    pub fn forward(
        &self,
        student_global: &Tensor,
        student_local: Option<&Tensor>,
        teacher_probs: &Tensor,
        n_global: usize,
    ) -> Result<DinoLossParts> {
        if student_global.dims() != teacher_probs.dims() {
            return Err(Error::bad_input(
                "student global logits",
                format!("the teacher targets' shape {:?}", teacher_probs.dims()),
                student_global.dims(),
            ));
        }
        let teachers = chunks(teacher_probs, n_global, "teacher targets")?;
        let batch = teachers[0].dim(0)?;
        let globals = chunks(student_global, n_global, "student global logits")?;
        let n_local = match student_local {
            Some(l) => {
                if l.rank() != 2 || l.dim(1)? != teacher_probs.dim(1)? || l.dim(0)? % batch != 0 {
                    return Err(Error::bad_input(
                        "student local logits",
                        format!("[n_local · {batch}, {}]", teacher_probs.dim(1)?),
                        l.dims(),
                    ));
                }
                l.dim(0)? / batch
            }
            None => 0,
        };
        let terms = (n_global * (n_global - 1) + (n_local * n_global).max(1)) as f64;
        let pairs: Vec<Vec<usize>> = (0..n_global)
            .map(|i| (0..n_global).filter(|&j| j != i).collect())
            .collect();
        let global =
            (cross_entropy_pairs(&globals, &teachers, &pairs, self.state.student_temp)? / terms)?;
        let local = match student_local {
            Some(l) if n_local > 0 => {
                let locals = l.chunk(n_local, 0)?;
                let all: Vec<usize> = (0..n_global).collect();
                let pairs = vec![all; n_local];
                Some(
                    (cross_entropy_pairs(&locals, &teachers, &pairs, self.state.student_temp)?
                        / terms)?,
                )
            }
            _ => None,
        };
        Ok(DinoLossParts { global, local })
    }
}
