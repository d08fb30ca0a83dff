//! LLaVA's two training stages over named variables, with train-utils' AdamW, cosine
//! schedule, clipping, NaN guard and atomic checkpoints.
//!
//! - Stage 1 (feature alignment): only the projector trains; encoder and decoder are frozen.
//! - Stage 2 (fine-tuning): the projector and, optionally, LoRA adapters on the decoder's
//!   q/v projections ([`crate::lora::add_lora`]).

use std::collections::HashMap;

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use train_utils::{
    check_finite, clip_grad_norm, AdamW, AdamWConfig, CheckpointDir, CosineSchedule, NamedGrads,
    NamedVars, NoDecayRule, ParamGroup, RngState, TrainState,
};

use crate::{Error, Result};

/// Optimisation settings (LLaVA-1.5: stage 1 lr 1e-3, stage 2 lr 2e-5, warm-up ratio 0.03,
/// cosine decay, no weight decay).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine.
    pub min_lr: f64,
    /// Decoupled weight decay (not applied to biases).
    pub weight_decay: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Total steps of the schedule.
    pub total_steps: usize,
    /// Global gradient-norm clip.
    pub clip_grad: Option<f64>,
}

impl TrainConfig {
    /// LLaVA-1.5 stage-1 settings for `total_steps`.
    pub fn stage1(total_steps: usize) -> Self {
        Self {
            lr: 1e-3,
            min_lr: 0.0,
            weight_decay: 0.0,
            warmup_steps: (total_steps as f64 * 0.03).ceil() as usize,
            total_steps,
            clip_grad: Some(1.0),
        }
    }
}

/// One optimizer over the trainable variables.
#[derive(Debug)]
pub struct Trainer {
    vars: NamedVars,
    opt: AdamW,
    schedule: CosineSchedule,
    cfg: TrainConfig,
    step: u64,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The loss.
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

impl Trainer {
    /// An optimizer over `vars` (projector, and LoRA variables in stage 2).
    pub fn new(mut vars: NamedVars, cfg: TrainConfig) -> Result<Self> {
        if vars.is_empty() {
            return Err(Error::bad_input("vars", "nothing to train"));
        }
        cxr_core::ranges::non_negative(&[
            ("lr", cfg.lr),
            ("min_lr", cfg.min_lr),
            ("weight_decay", cfg.weight_decay),
            ("clip_grad", cfg.clip_grad.unwrap_or(0.0)),
        ])
        .map_err(|reason| Error::bad_input("TrainConfig", reason))?;
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let rule = NoDecayRule::Dinov2;
        let opt = AdamW::new(
            &vars,
            |name| ParamGroup {
                wd_multiplier: if rule.exempt(name) { 0.0 } else { 1.0 },
                ..ParamGroup::default()
            },
            AdamWConfig::default(),
        )?;
        let schedule = CosineSchedule::new(
            cfg.lr,
            cfg.min_lr,
            cfg.total_steps.max(cfg.warmup_steps),
            cfg.warmup_steps,
            0.0,
            0,
        )?;
        Ok(Self {
            vars,
            opt,
            schedule,
            cfg,
            step: 0,
        })
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The trained variables.
    pub fn vars(&self) -> &NamedVars {
        &self.vars
    }

    /// Backward pass of `loss`, clipping, NaN guard and one AdamW update.
    pub fn step(&mut self, loss: &Tensor) -> Result<StepStats> {
        let value = f64::from(loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?);
        check_finite(self.step, &[("loss", value)])?;
        let store = loss.backward()?;
        let mut grads = NamedGrads::from_store(&store, &self.vars);
        let grad_norm = match self.cfg.clip_grad {
            Some(max) => clip_grad_norm(&mut grads, None, max)?,
            None => clip_grad_norm(&mut grads, None, f64::INFINITY)?,
        };
        check_finite(self.step, &[("grad_norm", grad_norm)])?;
        let lr = self.schedule.at(self.step as usize);
        self.opt.step(&grads, lr, self.cfg.weight_decay, lr)?;
        self.step += 1;
        Ok(StepStats {
            loss: value,
            grad_norm,
            lr,
        })
    }

    /// Writes the variables and the optimizer state as a checkpoint.
    pub fn save(&self, dir: &CheckpointDir, rng: &ChaCha8Rng, data_position: u64) -> Result<()> {
        let (mut tensors, optimizer_steps) = self.opt.state();
        for (name, var) in &self.vars {
            tensors.insert(name.clone(), var.as_tensor().clone());
        }
        let state = TrainState {
            step: self.step,
            data_position,
            rng: RngState::capture(rng),
            optimizer_steps,
            extra: serde_json::to_value(self.cfg).unwrap_or_default(),
        };
        dir.save(&tensors, &state)?;
        Ok(())
    }

    /// Restores the latest checkpoint of `dir`, if any; returns its RNG and data position.
    pub fn resume(&mut self, dir: &CheckpointDir) -> Result<Option<(ChaCha8Rng, u64)>> {
        let device = match self.vars.first() {
            Some((_, v)) => v.as_tensor().device().clone(),
            None => return Ok(None),
        };
        let Some(ck) = dir.load_latest(&device)? else {
            return Ok(None);
        };
        load_vars(&self.vars, &ck.tensors, &dir.path().display().to_string())?;
        self.opt
            .load_state(&ck.tensors, &ck.state.optimizer_steps)?;
        self.step = ck.state.step;
        let rng = ck
            .state
            .rng
            .restore()
            .ok_or_else(|| Error::config(dir.path(), "checkpoint RNG state is malformed"))?;
        Ok(Some((rng, ck.state.data_position)))
    }
}

/// Minibatch indices that visit every example once per pass, in an order reshuffled with the
/// run's RNG as each pass starts; a batch that runs past the end of a pass goes on in the
/// next pass's order.
#[derive(Debug, Clone)]
pub struct ShuffledBatches {
    order: Vec<usize>,
    pos: usize,
}

impl ShuffledBatches {
    /// Over `len` examples.
    pub fn new(len: usize) -> Self {
        Self {
            order: (0..len).collect(),
            pos: 0,
        }
    }

    /// The next `batch` indices (every example once when `batch` is larger than the data).
    pub fn next_batch(&mut self, batch: usize, rng: &mut impl rand::Rng) -> Vec<usize> {
        use rand::seq::SliceRandom;
        let n = batch.min(self.order.len());
        let mut idx = Vec::with_capacity(n);
        while idx.len() < n {
            if self.pos == 0 {
                self.order.shuffle(rng);
            }
            idx.push(self.order[self.pos]);
            self.pos = (self.pos + 1) % self.order.len();
        }
        idx
    }
}

/// Sets every variable of `vars` from `tensors` (same names and shapes).
pub fn load_vars(vars: &NamedVars, tensors: &HashMap<String, Tensor>, source: &str) -> Result<()> {
    for (name, var) in vars {
        let t = tensors.get(name).ok_or_else(|| Error::MissingTensor {
            file: source.to_owned(),
            tensor: name.clone(),
            expected: var.as_tensor().dims().to_vec(),
        })?;
        if t.dims() != var.as_tensor().dims() {
            return Err(Error::ShapeMismatch {
                file: source.to_owned(),
                tensor: name.clone(),
                expected: var.as_tensor().dims().to_vec(),
                found: t.dims().to_vec(),
            });
        }
        var.set(&t.to_dtype(var.as_tensor().dtype())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn every_pass_visits_each_example_once_in_a_new_order() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut b = ShuffledBatches::new(10);
        // 4 batches of 5 = two passes; the third batch starts the second pass
        let seen: Vec<usize> = (0..4).flat_map(|_| b.next_batch(5, &mut rng)).collect();
        let (first, second) = seen.split_at(10);
        for pass in [first, second] {
            let mut p = pass.to_vec();
            p.sort_unstable();
            assert_eq!(p, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(first, second, "reshuffled between passes");
        // a batch across the end of a pass: 3 + 3 + 3 + 3 from 10 examples
        let mut c = ShuffledBatches::new(10);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let spanning: Vec<usize> = (0..4).flat_map(|_| c.next_batch(3, &mut rng)).collect();
        assert_eq!(&spanning[..10], first, "the same seed gives the same order");
        assert_eq!(b.next_batch(50, &mut rng).len(), 10, "at most the data");
        assert!(ShuffledBatches::new(0).next_batch(4, &mut rng).is_empty());
    }
}
