//! AdamW with per-parameter groups, matching `torch.optim.AdamW` step for step.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, NamedGrads, ParamGroup, Result};

/// AdamW hyper-parameters that do not follow a schedule (dinov2: β = (0.9, 0.999)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε added to the denominator.
    pub eps: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

#[derive(Debug)]
struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: u64,
}

#[derive(Debug)]
struct Param {
    name: String,
    var: Var,
    group: ParamGroup,
    state: Option<Moments>,
}

/// AdamW over named variables, each with its [`ParamGroup`].
///
/// Each step takes the scheduled `lr`, `wd` and `last_layer_lr`, and a parameter uses
/// `(is_last_layer ? last_layer_lr : lr) · lr_multiplier` and `wd · wd_multiplier`
/// (dinov2's `apply_optim_scheduler`). The update is PyTorch's: decoupled decay
/// `p ← p·(1 − lr·wd)`, moments, bias corrections. Parameters without a gradient are skipped,
/// moments and step count included, as PyTorch does; a frozen last layer (lr 0) still updates
/// its moments, as in dinov2.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<Param>,
}

impl AdamW {
    /// An optimizer over `vars`, grouping each by `group(name)`.
    pub fn new(
        vars: &[(String, Var)],
        group: impl Fn(&str) -> ParamGroup,
        config: AdamWConfig,
    ) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        let mut params = Vec::new();
        for (name, var) in vars {
            if !seen.insert(name.clone()) {
                return Err(Error::mismatch(name, "appears twice in the optimizer"));
            }
            params.push(Param {
                name: name.clone(),
                var: var.clone(),
                group: group(name),
                state: None,
            });
        }
        Ok(Self { config, params })
    }

    /// `(name, group)` of every parameter.
    pub fn groups(&self) -> Vec<(String, ParamGroup)> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.group))
            .collect()
    }

    /// One optimizer step with the scheduled values.
    pub fn step(&mut self, grads: &NamedGrads, lr: f64, wd: f64, last_layer_lr: f64) -> Result<()> {
        let AdamWConfig { beta1, beta2, eps } = self.config;
        for p in &mut self.params {
            let Some(g) = grads.get(&p.name) else {
                continue;
            };
            let param = p.var.as_tensor();
            if g.dims() != param.dims() {
                return Err(Error::mismatch(
                    &p.name,
                    format!(
                        "gradient shape {:?}, parameter {:?}",
                        g.dims(),
                        param.dims()
                    ),
                ));
            }
            // backward's gradients still reference the step's graph; moments built from them
            // would keep every step's graph alive, so the update works on detached values
            let g = g.detach().to_dtype(param.dtype())?;
            let param = param.detach();
            let lr = if p.group.is_last_layer {
                last_layer_lr
            } else {
                lr
            } * p.group.lr_multiplier;
            let wd = wd * p.group.wd_multiplier;
            if p.state.is_none() {
                p.state = Some(Moments {
                    exp_avg: param.zeros_like()?,
                    exp_avg_sq: param.zeros_like()?,
                    step: 0,
                });
            }
            let Some(state) = p.state.as_mut() else {
                continue;
            };
            state.step += 1;
            if fused_ops::optim::supports(&[&param, &g, &state.exp_avg, &state.exp_avg_sq]) {
                // one in-place pass per tensor (the formulas below, in the same order)
                fused_ops::optim::adamw_update(
                    p.var.as_tensor(),
                    &g,
                    &state.exp_avg,
                    &state.exp_avg_sq,
                    &fused_ops::optim::AdamWStep {
                        lr,
                        weight_decay: wd,
                        beta1,
                        beta2,
                        eps,
                        step: state.step,
                    },
                )?;
                continue;
            }
            let mut new = if wd != 0.0 {
                (&param * (1.0 - lr * wd))?
            } else {
                param.clone()
            };
            // torch's lerp_(grad, 1 − β₁) and mul_(β₂).addcmul_(grad, grad, 1 − β₂)
            state.exp_avg = (&state.exp_avg + ((&g - &state.exp_avg)? * (1.0 - beta1))?)?;
            state.exp_avg_sq = ((&state.exp_avg_sq * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let step = state.step as i32;
            let bias1 = 1.0 - beta1.powi(step);
            let bias2_sqrt = (1.0 - beta2.powi(step)).sqrt();
            let step_size = lr / bias1;
            let denom = ((state.exp_avg_sq.sqrt()? / bias2_sqrt)? + eps)?;
            new = (new - ((&state.exp_avg / denom)? * step_size)?)?;
            p.var.set(&new)?;
        }
        Ok(())
    }

    /// The moments as tensors (`exp_avg.{name}`, `exp_avg_sq.{name}`) and the per-parameter
    /// step counts, for checkpoints. The tensors share storage with the moments, which the
    /// next step updates in place (as it does the parameters): write or copy them first.
    pub fn state(&self) -> (HashMap<String, Tensor>, BTreeMap<String, u64>) {
        let mut tensors = HashMap::new();
        let mut steps = BTreeMap::new();
        for p in &self.params {
            if let Some(s) = &p.state {
                tensors.insert(format!("exp_avg.{}", p.name), s.exp_avg.clone());
                tensors.insert(format!("exp_avg_sq.{}", p.name), s.exp_avg_sq.clone());
                steps.insert(p.name.clone(), s.step);
            }
        }
        (tensors, steps)
    }

    /// Restores what [`AdamW::state`] returned. `tensors` may hold other entries; names are
    /// looked up as `exp_avg.{name}` / `exp_avg_sq.{name}`.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        steps: &BTreeMap<String, u64>,
    ) -> Result<()> {
        for p in &mut self.params {
            let Some(&step) = steps.get(&p.name) else {
                p.state = None;
                continue;
            };
            let get = |key: String| -> Result<Tensor> {
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| Error::mismatch(&key, "missing from the optimizer state"))?;
                if t.dims() != p.var.dims() {
                    return Err(Error::mismatch(
                        &key,
                        format!("shape {:?}, parameter {:?}", t.dims(), p.var.dims()),
                    ));
                }
                // a copy of its own: the moments are updated in place
                Ok(t.to_dtype(p.var.dtype())?
                    .to_device(p.var.device())?
                    .force_contiguous()?)
            };
            p.state = Some(Moments {
                exp_avg: get(format!("exp_avg.{}", p.name))?,
                exp_avg_sq: get(format!("exp_avg_sq.{}", p.name))?,
                step,
            });
        }
        Ok(())
    }
}
