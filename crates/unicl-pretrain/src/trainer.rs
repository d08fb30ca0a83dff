//! The training step: contrastive gradient, clipping, AdamW with parameter groups,
//! logit-scale clamp; checkpoints for exact resume.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use dual_encoder::DualEncoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use train_utils::{
    check_finite, clip_grad_norm, named_vars, AdamW, AdamWConfig, Checkpoint, CosineSchedule,
    NamedVars, RngState, TrainState,
};
use unicl_loss::{ContrastiveLoss, MAX_LOGIT_SCALE};

use crate::gradcache::{
    full_batch_gradients, grad_cache_gradients, BatchGradients, BatchInputs, ImageTower,
};
use crate::model::{
    build_dual_encoder, load_all, load_image_tower, param_group, IMAGE_PREFIX, LOGIT_SCALE,
};
use crate::{Error, PairBatch, Result, TrainConfig};

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The step that ran (0-based).
    pub step: u64,
    /// The contrastive loss.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Weight decay used.
    pub wd: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// `exp(θ)` after the step.
    pub logit_scale: f64,
}

impl StepOutput {
    /// Everything as `(name, value)` for the step log.
    pub fn values(&self) -> BTreeMap<String, f64> {
        [
            ("loss", self.loss),
            ("lr", self.lr),
            ("wd", self.wd),
            ("grad_norm", self.grad_norm),
            ("logit_scale", self.logit_scale),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A dual encoder, its objective, optimizer and schedules.
pub struct UniclTrainer {
    cfg: TrainConfig,
    device: Device,
    varmap: VarMap,
    model: DualEncoder,
    loss: Box<dyn ContrastiveLoss>,
    opt: AdamW,
    lr: CosineSchedule,
    wd: CosineSchedule,
    step: u64,
}

impl std::fmt::Debug for UniclTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UniclTrainer")
            .field("objective", &self.cfg.objective)
            .field("step", &self.step)
            .finish()
    }
}

impl UniclTrainer {
    /// A randomly initialised trainer (seeded by `cfg.seed`).
    pub fn new(cfg: TrainConfig, device: &Device) -> Result<Self> {
        Self::build(cfg, device, None)
    }

    /// A trainer that continues pretraining MI2 from `files` (both towers, both projections
    /// and the learned logit scale): `base` gives the objective, the optimisation and the
    /// schedule; the architecture is the checkpoint's. The image tower keeps MI2's stochastic
    /// depth unless `base.micro_batch` asks for GradCache, which needs a deterministic tower
    /// (depth rate 0). Returns the trainer and MI2's tokenizer, which the data must use.
    pub fn from_mi2(
        files: &dual_encoder::Mi2Files,
        base: TrainConfig,
        device: &Device,
    ) -> Result<(Self, dual_encoder::TextTokenizer)> {
        let ck = files.read(device)?;
        let mut image = ck.config.image.clone();
        if base.micro_batch.is_some() {
            image.drop_path_rate = 0.0;
        }
        let cfg = TrainConfig {
            image: crate::ImageTowerConfig::Davit(image),
            text: ck.config.text.clone(),
            ..base
        };
        let trainer = Self::build(cfg, device, Some(&ck.tensors))?;
        Ok((trainer, ck.tokenizer))
    }

    /// The trainer of `cfg`, its variables from `weights` (every one of them) or, without,
    /// drawn afresh from `cfg.seed`.
    fn build(
        cfg: TrainConfig,
        device: &Device,
        weights: Option<&HashMap<String, Tensor>>,
    ) -> Result<Self> {
        cfg.validate()?;
        let varmap = VarMap::new();
        let model = build_dual_encoder(&cfg, &varmap, device)?;
        // stochastic depth draws from (seed, forward calls): a run replays, and its
        // checkpoints carry the call count
        model
            .image_encoder()
            .set_stochastic_depth_state(cfg.seed, 0);
        match weights {
            Some(w) => load_all(&varmap, w, "checkpoint")?,
            None => {
                // candle's CPU generator cannot be seeded: redraw every tensor from `seed`
                // (HF's scheme: std-0.02 truncated normal matrices, zero biases, constants
                // kept)
                let fresh = train_utils::init::hf_vit_reinit(&varmap, cfg.seed, device)?;
                for (name, var) in named_vars(&varmap) {
                    if let Some(t) = fresh.get(&name) {
                        var.set(&t.copy()?)?;
                    }
                }
            }
        }
        let opt = AdamW::new(
            &trainable(named_vars(&varmap), cfg.lock_image),
            param_group,
            AdamWConfig::default(),
        )?;
        let total = cfg.steps as usize;
        let lr = CosineSchedule::new(cfg.lr, cfg.min_lr, total, cfg.warmup_steps as usize, 0.0, 0)?;
        let wd = CosineSchedule::constant(cfg.weight_decay);
        Ok(Self {
            loss: cfg.objective.build(),
            cfg,
            device: device.clone(),
            varmap,
            model,
            opt,
            lr,
            wd,
            step: 0,
        })
    }

    /// Replaces the image tower's weights with a DINOv2 checkpoint directory's.
    pub fn init_image_tower(&mut self, dir: &std::path::Path) -> Result<usize> {
        load_image_tower(&self.varmap, dir, &self.device)
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The model being trained.
    pub fn model(&self) -> &DualEncoder {
        &self.model
    }

    /// Steps completed.
    pub fn step_index(&self) -> u64 {
        self.step
    }

    /// Every variable of the model (both towers, projections, logit scale), sorted by name:
    /// what a checkpoint holds.
    pub fn vars(&self) -> NamedVars {
        named_vars(&self.varmap)
    }

    /// The variables the optimizer updates: [`Self::vars`] without the image tower when it
    /// is locked (`TrainConfig::lock_image`).
    pub fn trainable_vars(&self) -> NamedVars {
        trainable(self.vars(), self.cfg.lock_image)
    }

    fn image_tower(&self) -> ImageTower {
        if self.cfg.lock_image {
            ImageTower::Locked
        } else {
            ImageTower::Trained
        }
    }

    /// The loss and gradients of `batch` (whole or GradCache, as configured), without
    /// changing any weight.
    pub fn gradients(&self, batch: &PairBatch) -> Result<BatchGradients> {
        let vars = self.trainable_vars();
        let inputs = BatchInputs {
            pixels: &batch.pixels,
            tokens: &batch.tokens,
            targets: &batch.targets,
        };
        let (model, tower, loss) = (&self.model, self.image_tower(), self.loss.as_ref());
        match self.cfg.micro_batch {
            Some(chunk) if chunk < batch.indices.len() => {
                grad_cache_gradients(model, tower, loss, &vars, inputs, chunk)
            }
            _ => full_batch_gradients(model, tower, loss, &vars, inputs),
        }
    }

    /// One optimizer step. A NaN/Inf loss stops with an error before any weight changes.
    pub fn train_step(&mut self, batch: &PairBatch) -> Result<StepOutput> {
        let step = self.step;
        // NamedGrads::from_store hands out detached gradients, so the optimizer's moments
        // keep no graph of this step alive
        let BatchGradients { loss, mut grads } = self.gradients(batch)?;
        check_finite(step, &[("loss", loss)])?;
        let clip = if self.cfg.clip_grad > 0.0 {
            self.cfg.clip_grad
        } else {
            f64::INFINITY
        };
        let grad_norm = clip_grad_norm(&mut grads, None, clip)?;
        check_finite(step, &[("grad_norm", grad_norm)])?;
        let (lr, wd) = (self.lr.at(step as usize), self.wd.at(step as usize));
        self.opt.step(&grads, lr, wd, lr)?;
        let logit_scale = self.clamp_logit_scale()?;
        self.step += 1;
        Ok(StepOutput {
            step,
            loss,
            lr,
            wd,
            grad_norm,
            logit_scale,
        })
    }

    /// open_clip's clamp `θ ∈ [0, ln 100]` after every update; returns `exp(θ)`.
    fn clamp_logit_scale(&self) -> Result<f64> {
        let vars = self.vars();
        let (_, v) = vars
            .iter()
            .find(|(n, _)| n == LOGIT_SCALE)
            .ok_or_else(|| Error::Invalid("the model has no logit_scale".into()))?;
        let clamped = v.as_tensor().detach().clamp(0.0, MAX_LOGIT_SCALE.ln())?;
        v.set(&clamped)?;
        Ok(f64::from(clamped.exp()?.to_scalar::<f32>()?))
    }

    /// Model weights, optimizer moments (tensors) and step / optimizer counts (JSON).
    pub fn checkpoint(&self) -> Result<(HashMap<String, Tensor>, TrainState)> {
        let mut tensors = HashMap::new();
        for (n, v) in self.vars() {
            tensors.insert(format!("model.{n}"), v.as_tensor().detach());
        }
        let (moments, steps) = self.opt.state();
        for (n, t) in moments {
            tensors.insert(format!("optim.{n}"), t);
        }
        // nothing draws from a sequential generator: data, prompts and init are keyed by
        // (seed, step); the seed's generator is recorded for completeness
        let rng = ChaCha8Rng::seed_from_u64(self.cfg.seed);
        let state = TrainState {
            step: self.step,
            data_position: self.step * self.cfg.batch_size as u64,
            rng: RngState::capture(&rng),
            optimizer_steps: steps,
            extra: serde_json::json!({
                "batch_size": self.cfg.batch_size,
                "seed": self.cfg.seed,
                "objective": self.cfg.objective,
                "drop_path": self.model.image_encoder().stochastic_depth_state(),
            }),
        };
        Ok((tensors, state))
    }

    /// Restores a checkpoint written by [`Self::checkpoint`].
    pub fn restore(&mut self, ck: &Checkpoint) -> Result<()> {
        for (n, v) in self.vars() {
            let key = format!("model.{n}");
            let t = ck.tensors.get(&key).ok_or_else(|| Error::Checkpoint {
                name: key.clone(),
                reason: "missing".into(),
            })?;
            if t.dims() != v.dims() {
                return Err(Error::Checkpoint {
                    name: key,
                    reason: format!("shape {:?}, model has {:?}", t.dims(), v.dims()),
                });
            }
            v.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        }
        let moments: HashMap<String, Tensor> = ck
            .tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix("optim.").map(|n| (n.to_string(), t.clone())))
            .collect();
        self.opt.load_state(&moments, &ck.state.optimizer_steps)?;
        // absent from checkpoints written before it was kept
        if let Some((seed, calls)) = ck
            .state
            .extra
            .get("drop_path")
            .and_then(|v| serde_json::from_value::<(u64, u64)>(v.clone()).ok())
        {
            self.model
                .image_encoder()
                .set_stochastic_depth_state(seed, calls);
        }
        let batch = ck.state.extra.get("batch_size").and_then(|v| v.as_u64());
        if batch != Some(self.cfg.batch_size as u64) {
            return Err(Error::Checkpoint {
                name: "batch_size".into(),
                reason: format!(
                    "checkpoint was trained with batch {batch:?}, config has {}: the data \
                     position would not match",
                    self.cfg.batch_size
                ),
            });
        }
        self.step = ck.state.step;
        Ok(())
    }
}

/// `vars` without the image tower's when `lock_image`.
fn trainable(vars: NamedVars, lock_image: bool) -> NamedVars {
    let tower = format!("{IMAGE_PREFIX}.");
    vars.into_iter()
        .filter(|(n, _)| !(lock_image && n.starts_with(&tower)))
        .collect()
}
