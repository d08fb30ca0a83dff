//! The DINOv2 training step: student, EMA teacher, heads, objective, optimizer, checkpoints.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use dino_loss::{
    Center, DinoHead, DinoObjective, DinoV2Config, ObjectiveLosses, StudentOutputs, TeacherOutputs,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use train_utils::{
    check_finite, clip_grad_norm, detached_tensors, ema_update, named_vars, AdamW, AdamWConfig,
    Checkpoint, DinoSchedules, NamedGrads, NamedVars, ParamGroupRules, RngState, ScheduleValues,
    TrainState,
};
use vit_backbone::{Dinov2Config, Dinov2Model, Dinov2Output, ForwardOptions};

use crate::{backbone_config, Error, Init, MultiCropBatch, Result};

const DINO_HEAD: &str = "dino_head";
const IBOT_HEAD: &str = "ibot_head";

/// What one step produced.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The step that ran (0-based).
    pub step: u64,
    /// Loss terms by dinov2's names, plus `total_loss`.
    pub losses: Vec<(&'static str, f64)>,
    /// The scheduled values used.
    pub schedule: ScheduleValues,
    /// Gradient norms before clipping: backbone, DINO head, iBOT head (if separate).
    pub grad_norms: Vec<(&'static str, f64)>,
    /// Collapse diagnostics: `teacher_target_entropy`, the mean entropy of the DINO teacher
    /// targets (ln K = uniform targets), and `teacher_logit_spread`, the mean standard deviation
    /// across samples of the teacher's DINO logits (0 = a head that scores every image alike).
    pub diagnostics: Vec<(&'static str, f64)>,
}

impl StepOutput {
    /// Everything as `(name, value)` for the step log.
    pub fn values(&self) -> BTreeMap<String, f64> {
        let mut m: BTreeMap<String, f64> = self
            .losses
            .iter()
            .chain(self.grad_norms.iter())
            .chain(self.diagnostics.iter())
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        let s = &self.schedule;
        m.insert("lr".into(), s.lr);
        m.insert("wd".into(), s.wd);
        m.insert("momentum".into(), s.momentum);
        m.insert("teacher_temp".into(), s.teacher_temp);
        m.insert("last_layer_lr".into(), s.last_layer_lr);
        m
    }

    /// The total loss.
    pub fn total(&self) -> f64 {
        self.losses
            .iter()
            .find(|(k, _)| *k == "total_loss")
            .map_or(f64::NAN, |(_, v)| *v)
    }
}

/// Student, EMA teacher and everything else one DINOv2 training run holds.
///
/// Student and teacher live in two `VarMap`s with the same names: the backbone at the root
/// (Hugging Face `Dinov2Model` names), the heads under `dino_head.` and `ibot_head.`. The
/// teacher's variables only change through the EMA update; its forward pass runs on
/// detached copies, so it never joins the autograd graph.
pub struct DinoTrainer {
    cfg: DinoV2Config,
    model_cfg: Dinov2Config,
    device: Device,
    student_vm: VarMap,
    teacher_vm: VarMap,
    student: Dinov2Model,
    dino_head: DinoHead,
    ibot_head: Option<DinoHead>,
    objective: DinoObjective,
    schedules: DinoSchedules,
    opt: AdamW,
    step: u64,
    diagnostics: Vec<(&'static str, f64)>,
}

impl std::fmt::Debug for DinoTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DinoTrainer")
            .field("arch", &self.cfg.student.arch)
            .field("hidden_size", &self.model_cfg.hidden_size)
            .field("step", &self.step)
            .finish()
    }
}

/// Mean over rows of the entropy `−Σ p ln p` of the distributions in `p` (`[N, K]`): ln K for
/// uniform teacher targets, 0 for one-hot ones.
fn mean_row_entropy(p: &Tensor) -> Result<f64> {
    let p = p.to_dtype(DType::F32)?;
    let plogp = (&p * p.clamp(1e-30f32, 1f32)?.log()?)?;
    Ok(-(plogp.sum(1)?.mean_all()?.to_scalar::<f32>()? as f64))
}

/// Scores CLS tokens (one tensor per crop set) and masked patches with one call of the DINO
/// head on everything it scores, as dinov2 concatenates its head inputs: the weight-normalised
/// prototype matrix is built, multiplied and differentiated once. The patches join that call
/// when the iBOT head is shared and go through `ibot` otherwise. Returns the CLS logits in the
/// order given and the patch logits.
fn score_with_heads(
    dino: &DinoHead,
    ibot: Option<&DinoHead>,
    cls: &[&Tensor],
    patches: Option<&Tensor>,
) -> Result<(Vec<Tensor>, Option<Tensor>)> {
    let mut inputs = cls.to_vec();
    inputs.extend(patches.filter(|_| ibot.is_none()));
    let mut logits = dino.forward_many(&inputs)?;
    let patch_logits = match (patches, ibot) {
        (Some(p), Some(head)) => Some(head.forward(p)?),
        (Some(_), None) => logits.pop(),
        (None, _) => None,
    };
    Ok((logits, patch_logits))
}

/// The first CLS logits of [`score_with_heads`] (the global crops').
fn first(cls_logits: Vec<Tensor>) -> Result<Tensor> {
    cls_logits
        .into_iter()
        .next()
        .ok_or_else(|| Error::Invalid("the DINO head returned no CLS logits".into()))
}

/// Mean over prototypes of the standard deviation across samples of `logits` (`[N, K]`): 0 when
/// the head gives every sample the same scores (a collapsed head), whatever the backbone does.
fn spread_over_samples(logits: &Tensor) -> Result<f64> {
    let l = logits.to_dtype(DType::F32)?;
    let centred = l.broadcast_sub(&l.mean_keepdim(0)?)?;
    let std = centred.sqr()?.mean(0)?.sqrt()?;
    Ok(std.mean_all()?.to_scalar::<f32>()? as f64)
}

/// The dtype of the student backbone's arithmetic (`train.compute_precision`).
fn compute_dtype(cfg: &DinoV2Config) -> Result<DType> {
    match cfg.train.compute_precision.as_str() {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        other => Err(Error::Invalid(format!(
            "train.compute_precision `{other}` (f32 or bf16)"
        ))),
    }
}

/// Keeps the heads' initial draws apart from the backbone's (both derive from `train.seed`).
const HEAD_INIT_STREAM: u64 = 0x6865_6164_5f69_6e69;

fn is_head(name: &str) -> bool {
    name.starts_with("dino_head.") || name.starts_with("ibot_head.")
}

fn build_student(
    cfg: &DinoV2Config,
    init: &Init,
    vm: &VarMap,
    device: &Device,
) -> Result<(Dinov2Config, Dinov2Model)> {
    match init {
        Init::Random => {
            let m = backbone_config(cfg)?;
            let model = Dinov2Model::new(&m, VarBuilder::from_varmap(vm, DType::F32, device))?;
            Ok((m, model))
        }
        Init::Dir(dir) => {
            let files = vit_backbone::ModelFiles::in_dir(dir)?;
            let mut ck = vit_backbone::Checkpoint::read(&files)?;
            ck.config.drop_path_rate = cfg.student.drop_path_rate;
            let m = ck.config.clone();
            if m.patch_size != cfg.student.patch_size {
                return Err(Error::Invalid(format!(
                    "{}: patch size {} but student.patch_size is {}",
                    dir.display(),
                    m.patch_size,
                    cfg.student.patch_size
                )));
            }
            let model = ck.into_trainable(vm, DType::F32, device)?;
            Ok((m, model))
        }
    }
}

fn build_heads(
    cfg: &DinoV2Config,
    dim: usize,
    vb: &VarBuilder,
) -> Result<(DinoHead, Option<DinoHead>)> {
    let dino = DinoHead::new(cfg.dino_head(dim), vb.pp(DINO_HEAD))?;
    let ibot = match cfg.ibot_head(dim) {
        Some(h) if cfg.ibot.loss_weight > 0.0 => Some(DinoHead::new(h, vb.pp(IBOT_HEAD))?),
        _ => None,
    };
    Ok((dino, ibot))
}

/// Copies `dino_head.safetensors` (dinov2 key names, optionally prefixed) into the head.
fn load_dino_head(init: &Init, vm: &VarMap, device: &Device) -> Result<()> {
    let Init::Dir(dir) = init else {
        return Ok(());
    };
    let path = dir.join("dino_head.safetensors");
    if !path.exists() {
        return Ok(());
    }
    let tensors = candle_core::safetensors::load(&path, device).map_err(|e| e.with_path(&path))?;
    let data = vm
        .data()
        .lock()
        .map_err(|_| Error::Invalid("VarMap lock poisoned".into()))?;
    for (name, var) in data.iter() {
        let Some(key) = name.strip_prefix("dino_head.") else {
            continue;
        };
        let found = tensors
            .get(key)
            .or_else(|| tensors.get(&format!("dino_head.{key}")))
            .or_else(|| tensors.get(name));
        if let Some(t) = found {
            if t.dims() != var.dims() {
                return Err(Error::Checkpoint {
                    name: format!("{}: {key}", path.display()),
                    reason: format!("shape {:?}, head expects {:?}", t.dims(), var.dims()),
                });
            }
            var.set(&t.to_dtype(DType::F32)?)?;
        }
    }
    Ok(())
}

impl DinoTrainer {
    /// A trainer for `cfg` starting from `init`; the teacher starts equal to the student.
    /// The backbone is [`backbone_config`]`(cfg)` (random init) or the directory's own.
    pub fn new(cfg: DinoV2Config, init: &Init, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let student_vm = VarMap::new();
        let (model_cfg, student) = build_student(&cfg, init, &student_vm, device)?;
        Self::assemble(cfg, init, student_vm, model_cfg, student, device)
    }

    /// A randomly initialised trainer with an explicit backbone configuration (any width and
    /// depth, e.g. tiny models for tests).
    pub fn with_backbone(
        cfg: DinoV2Config,
        model_cfg: Dinov2Config,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        model_cfg.validate().map_err(Error::Invalid)?;
        let student_vm = VarMap::new();
        let student = Dinov2Model::new(
            &model_cfg,
            VarBuilder::from_varmap(&student_vm, DType::F32, device),
        )?;
        Self::assemble(cfg, &Init::Random, student_vm, model_cfg, student, device)
    }

    fn assemble(
        cfg: DinoV2Config,
        init: &Init,
        student_vm: VarMap,
        model_cfg: Dinov2Config,
        student: Dinov2Model,
        device: &Device,
    ) -> Result<Self> {
        compute_dtype(&cfg)?;
        if matches!(init, Init::Random) {
            // dinov2's from-scratch init, seeded by train.seed (the module defaults the
            // backbone was built with are PyTorch's, and candle draws them unseeded)
            train_utils::init::dinov2_vit_init(&student_vm, cfg.train.seed, device)?;
        }
        // heads drawn from their own seeded stream (candle's draws are unseeded), so a run
        // from scratch is the same run every time, not only after a resume
        let vb = train_utils::init::seeded_var_builder(
            &student_vm,
            cfg.train.seed ^ HEAD_INIT_STREAM,
            DType::F32,
            device,
        );
        let (dino_head, ibot_head) = build_heads(&cfg, model_cfg.hidden_size, &vb)?;
        load_dino_head(init, &student_vm, device)?;
        student.set_drop_path_state(cfg.train.seed, 0);

        // the teacher: same names, then a copy of the student
        let teacher_vm = VarMap::new();
        let tvb = VarBuilder::from_varmap(&teacher_vm, DType::F32, device);
        Dinov2Model::new(&model_cfg, tvb.clone())?;
        build_heads(&cfg, model_cfg.hidden_size, &tvb)?;
        ema_update(&named_vars(&teacher_vm), &named_vars(&student_vm), 0.0)?;

        let objective = DinoObjective::new(cfg.objective()?, device)?;
        let schedules = DinoSchedules::new(&cfg.schedules(1))?;
        let backbone_rules = ParamGroupRules::backbone(
            model_cfg.num_hidden_layers,
            cfg.optim.layerwise_decay,
            cfg.optim.patch_embed_lr_mult,
        );
        let head_rules = ParamGroupRules::head();
        let opt = AdamW::new(
            &named_vars(&student_vm),
            |n| {
                if is_head(n) {
                    head_rules.group(n)
                } else {
                    backbone_rules.group(n)
                }
            },
            AdamWConfig {
                beta1: cfg.optim.adamw_beta1,
                beta2: cfg.optim.adamw_beta2,
                ..AdamWConfig::default()
            },
        )?;
        Ok(Self {
            cfg,
            model_cfg,
            device: device.clone(),
            student_vm,
            teacher_vm,
            student,
            dino_head,
            ibot_head,
            objective,
            schedules,
            opt,
            step: 0,
            diagnostics: Vec::new(),
        })
    }

    /// The training configuration.
    pub fn config(&self) -> &DinoV2Config {
        &self.cfg
    }

    /// The backbone configuration.
    pub fn model_config(&self) -> &Dinov2Config {
        &self.model_cfg
    }

    /// Steps completed.
    pub fn step_index(&self) -> u64 {
        self.step
    }

    /// Student variables (backbone and heads), sorted by name.
    pub fn student_vars(&self) -> NamedVars {
        named_vars(&self.student_vm)
    }

    /// Teacher variables, sorted by name.
    pub fn teacher_vars(&self) -> NamedVars {
        named_vars(&self.teacher_vm)
    }

    /// The teacher's backbone weights (Hugging Face names), for export.
    pub fn teacher_backbone_tensors(&self) -> HashMap<String, Tensor> {
        let backbone: NamedVars = self
            .teacher_vars()
            .into_iter()
            .filter(|(n, _)| !is_head(n))
            .collect();
        detached_tensors(&backbone)
    }

    /// The teacher as plain (detached) tensors: an inference model and heads on them.
    fn teacher(&self) -> Result<(Dinov2Model, DinoHead, Option<DinoHead>)> {
        let vb = VarBuilder::from_tensors(
            detached_tensors(&self.teacher_vars()),
            DType::F32,
            &self.device,
        );
        let model = Dinov2Model::new(&self.model_cfg, vb.clone())?;
        let (dino, ibot) = build_heads(&self.cfg, self.model_cfg.hidden_size, &vb)?;
        Ok((model, dino, ibot))
    }

    /// A bf16 student backbone on casts of the f32 master variables, with the f32 model's
    /// stochastic-depth state.
    fn bf16_student(&self) -> Result<Dinov2Model> {
        let tensors: HashMap<String, Tensor> = self
            .student_vars()
            .into_iter()
            .filter(|(n, _)| !is_head(n))
            .map(|(n, v)| Ok((n, v.as_tensor().to_dtype(DType::BF16)?)))
            .collect::<Result<_>>()?;
        let vb = VarBuilder::from_tensors(tensors, DType::BF16, &self.device);
        let model = Dinov2Model::new(&self.model_cfg, vb)?;
        let (seed, calls) = self.student.drop_path_state();
        model.set_drop_path_state(seed, calls);
        Ok(model)
    }

    /// Row indices of the masked patches in `[2B·N]` order, and the f32 masks.
    fn mask_index(masks: &Tensor) -> Result<(Tensor, Tensor, usize)> {
        let flat: Vec<u8> = masks.flatten_all()?.to_vec1()?;
        let idx: Vec<u32> = flat
            .iter()
            .enumerate()
            .filter(|(_, &m)| m != 0)
            .map(|(i, _)| i as u32)
            .collect();
        let m = idx.len();
        Ok((
            Tensor::from_vec(idx, m, masks.device())?,
            masks.to_dtype(DType::F32)?,
            m,
        ))
    }

    fn masked_rows(tokens: &Tensor, prefix: usize, idx: &Tensor) -> Result<Tensor> {
        let (b, t, d) = tokens.dims3()?;
        let patches = tokens
            .narrow(1, prefix, t - prefix)?
            .reshape((b * (t - prefix), d))?;
        Ok(patches.index_select(idx, 0)?)
    }

    /// Forward passes and losses of the current step (teacher targets update the centers).
    fn losses(&mut self, batch: &MultiCropBatch, s: &ScheduleValues) -> Result<ObjectiveLosses> {
        let ibot_on = self.cfg.ibot.loss_weight > 0.0;
        let (idx, masks_f, n_masked) = Self::mask_index(&batch.masks)?;
        if ibot_on && n_masked == 0 {
            return Err(Error::Invalid(
                "iBOT is on but no patch of the batch is masked: use larger global crops \
                 (a bigger patch grid) or a higher ibot.mask_sample_probability"
                    .into(),
            ));
        }
        let prefix = self.student.prefix_tokens();

        // teacher: global crops, no masks, no gradient
        let (t_model, t_dino, t_ibot) = self.teacher()?;
        let t_out = t_model.forward(&batch.global, &ForwardOptions::default())?;
        let t_rows = if ibot_on {
            Some(Self::masked_rows(&t_out.last_hidden_state, prefix, &idx)?)
        } else {
            None
        };
        let (t_cls, t_patch_logits) = score_with_heads(
            &t_dino,
            t_ibot.as_ref(),
            &[&t_out.pooler_output],
            t_rows.as_ref(),
        )?;
        let t_cls_logits = first(t_cls)?.detach();
        let t_patch_logits = t_patch_logits.map(|t| t.detach());
        let logit_spread = spread_over_samples(&t_cls_logits)?;
        let targets = self.objective.teacher_targets(
            &TeacherOutputs {
                cls_logits: t_cls_logits,
                masked_patch_logits: t_patch_logits,
            },
            s.teacher_temp,
            1,
            None,
        )?;
        self.diagnostics = vec![
            ("teacher_target_entropy", mean_row_entropy(&targets.cls)?),
            ("teacher_logit_spread", logit_spread),
        ];

        // student: masked global crops and local crops, with stochastic depth; in bf16 mixed
        // precision through a bf16 copy of the f32 master weights (the casts are
        // differentiable, so the gradients land on the f32 variables)
        let mixed = compute_dtype(&self.cfg)? == DType::BF16;
        let bf16_student = if mixed {
            Some(self.bf16_student()?)
        } else {
            None
        };
        let student = bf16_student.as_ref().unwrap_or(&self.student);
        let dt = student.dtype();
        // global and local crops through the blocks together, as dinov2's
        // forward_features_list does (one GEMM per linear layer and one graph node per op)
        let global = batch.global.to_dtype(dt)?;
        let global_opts = ForwardOptions {
            bool_masked_pos: ibot_on.then_some(&batch.masks),
            train: true,
            ..ForwardOptions::default()
        };
        let local_opts = ForwardOptions {
            train: true,
            ..ForwardOptions::default()
        };
        let (g, local_cls) = match &batch.local {
            Some(local) => {
                let local = local.to_dtype(dt)?;
                let mut outs = student
                    .forward_list(&[(&global, &global_opts), (&local, &local_opts)])?
                    .into_iter();
                let (Some(g), Some(l)) = (outs.next(), outs.next()) else {
                    return Err(Error::Invalid(
                        "the student returned no local output".into(),
                    ));
                };
                (g, Some(l.pooler_output.to_dtype(DType::F32)?))
            }
            None => (student.forward(&global, &global_opts)?, None),
        };
        if let Some(b) = &bf16_student {
            // the copy drew the stochastic-depth masks: carry its counter back
            let (seed, calls) = b.drop_path_state();
            self.student.set_drop_path_state(seed, calls);
        }
        let g = Dinov2Output {
            last_hidden_state: g.last_hidden_state.to_dtype(DType::F32)?,
            pooler_output: g.pooler_output.to_dtype(DType::F32)?,
            ..g
        };
        let rows = if ibot_on {
            Some(Self::masked_rows(&g.last_hidden_state, prefix, &idx)?)
        } else {
            None
        };
        let mut cls = vec![&g.pooler_output];
        cls.extend(local_cls.as_ref());
        let (cls_logits, masked_patch_logits) = score_with_heads(
            &self.dino_head,
            self.ibot_head.as_ref(),
            &cls,
            rows.as_ref(),
        )?;
        let local_cls_logits = cls_logits.get(1).cloned();
        let global_cls_logits = first(cls_logits)?;
        let student = StudentOutputs {
            global_cls_logits,
            local_cls_logits,
            global_cls_tokens: g.pooler_output.clone(),
            masked_patch_logits,
            masks: ibot_on.then_some(masks_f),
        };
        Ok(self.objective.losses(&student, &targets)?)
    }

    /// Losses and the full gradient store of `batch` without changing any weight (the
    /// centers do move, as in a real step): for checking which variables get gradients.
    pub fn gradients(&mut self, batch: &MultiCropBatch) -> Result<(ObjectiveLosses, GradStore)> {
        let s = self.schedules.at(self.step as usize);
        let losses = self.losses(batch, &s)?;
        let store = losses.total.backward()?;
        Ok((losses, store))
    }

    /// One training step: forward, backward, clipping per sub-model, AdamW, EMA update.
    /// A NaN/Inf loss stops with an error before any weight changes.
    pub fn train_step(&mut self, batch: &MultiCropBatch) -> Result<StepOutput> {
        self.train_step_marked(batch, |_| Ok(()))
    }

    /// [`Self::train_step`] calling `mark(phase)` as each phase ends: `"forward"` (student,
    /// teacher and losses), `"backward"`, `"optimizer"` (clipping, AdamW and the EMA update).
    /// Benchmarks synchronise the device and read a clock there.
    pub fn train_step_marked(
        &mut self,
        batch: &MultiCropBatch,
        mark: impl FnMut(&'static str) -> Result<()> + Send,
    ) -> Result<StepOutput> {
        // on the CPU, candle's own pinned, warm thread pool for the GEMMs and parallel ops of
        // the whole step instead of the global one: 0.92-0.94x wall time on the ViT-S step
        let device = self.device.clone();
        device.with_context(|| self.train_step_in_context(batch, mark))
    }

    fn train_step_in_context(
        &mut self,
        batch: &MultiCropBatch,
        mut mark: impl FnMut(&'static str) -> Result<()>,
    ) -> Result<StepOutput> {
        let step = self.step;
        let s = self.schedules.at(step as usize);
        let losses = self.losses(batch, &s)?;
        let scalars = losses.scalars()?;
        check_finite(step, &scalars)?;
        mark("forward")?;
        let vars = self.student_vars();
        let mut grads = NamedGrads::from_store(&losses.total.backward()?, &vars);
        drop(losses);
        mark("backward")?;
        let mut grad_norms = Vec::new();
        let clip = self.cfg.optim.clip_grad;
        for (label, pick) in [
            ("grad_norm_backbone", None),
            ("grad_norm_dino_head", Some(DINO_HEAD)),
            ("grad_norm_ibot_head", Some(IBOT_HEAD)),
        ] {
            let names: Vec<String> = vars
                .iter()
                .map(|(n, _)| n)
                .filter(|n| match pick {
                    None => !is_head(n),
                    Some(p) => n.starts_with(p) && n[p.len()..].starts_with('.'),
                })
                .cloned()
                .collect();
            if names.is_empty() {
                continue;
            }
            let norm = if clip > 0.0 {
                clip_grad_norm(&mut grads, Some(&names), clip)?
            } else {
                clip_grad_norm(&mut grads, Some(&names), f64::INFINITY)?
            };
            grad_norms.push((label, norm));
        }
        self.opt.step(&grads, s.lr, s.wd, s.last_layer_lr)?;
        ema_update(&self.teacher_vars(), &vars, s.momentum)?;
        mark("optimizer")?;
        self.step += 1;
        Ok(StepOutput {
            step,
            losses: scalars,
            schedule: s,
            grad_norms,
            diagnostics: self.diagnostics.clone(),
        })
    }

    /// Everything an exact resume needs: student, teacher, optimizer moments and centers as
    /// tensors; step, loader position, optimizer step counts and stochastic-depth state as
    /// JSON.
    pub fn checkpoint(&self) -> Result<(HashMap<String, Tensor>, TrainState)> {
        let mut tensors = HashMap::new();
        for (n, v) in self.student_vars() {
            tensors.insert(format!("student.{n}"), v.as_tensor().detach());
        }
        for (n, v) in self.teacher_vars() {
            tensors.insert(format!("teacher.{n}"), v.as_tensor().detach());
        }
        let (moments, steps) = self.opt.state();
        for (n, t) in moments {
            tensors.insert(format!("optim.{n}"), t);
        }
        tensors.insert(
            "center.dino".into(),
            self.objective.dino().center().value().clone(),
        );
        tensors.insert(
            "center.ibot".into(),
            self.objective.ibot().center().value().clone(),
        );
        let (dp_seed, dp_calls) = self.student.drop_path_state();
        // nothing draws from a sequential generator (all randomness is keyed by seed and
        // step); the seed's generator is recorded for completeness
        let rng = ChaCha8Rng::seed_from_u64(self.cfg.train.seed);
        let state = TrainState {
            step: self.step,
            data_position: self.step * self.cfg.train.batch_size_per_gpu as u64,
            rng: RngState::capture(&rng),
            optimizer_steps: steps,
            extra: serde_json::json!({
                "drop_path_seed": dp_seed,
                "drop_path_calls": dp_calls,
                "batch_size": self.cfg.train.batch_size_per_gpu,
                "seed": self.cfg.train.seed,
            }),
        };
        Ok((tensors, state))
    }

    /// Restores a checkpoint written by [`Self::checkpoint`].
    pub fn restore(&mut self, ck: &Checkpoint) -> Result<()> {
        let get = |key: &str| -> Result<&Tensor> {
            ck.tensors.get(key).ok_or_else(|| Error::Checkpoint {
                name: key.into(),
                reason: "missing".into(),
            })
        };
        for (prefix, vars) in [
            ("student", self.student_vars()),
            ("teacher", self.teacher_vars()),
        ] {
            for (n, v) in vars {
                let key = format!("{prefix}.{n}");
                let t = get(&key)?;
                if t.dims() != v.dims() {
                    return Err(Error::Checkpoint {
                        name: key,
                        reason: format!("shape {:?}, model has {:?}", t.dims(), v.dims()),
                    });
                }
                v.set(&t.to_dtype(v.dtype())?.to_device(&self.device)?)?;
            }
        }
        let moments: HashMap<String, Tensor> = ck
            .tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix("optim.").map(|n| (n.to_string(), t.clone())))
            .collect();
        self.opt.load_state(&moments, &ck.state.optimizer_steps)?;
        let m = self.objective.config().center_momentum;
        self.objective
            .dino_mut()
            .set_center(Center::from_tensor(get("center.dino")?, m)?);
        self.objective
            .ibot_mut()
            .set_center(Center::from_tensor(get("center.ibot")?, m)?);
        let extra = &ck.state.extra;
        let field = |k: &str| {
            extra
                .get(k)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| Error::Checkpoint {
                    name: k.into(),
                    reason: "missing from the JSON state".into(),
                })
        };
        self.student
            .set_drop_path_state(field("drop_path_seed")?, field("drop_path_calls")?);
        let batch = field("batch_size")?;
        if batch != self.cfg.train.batch_size_per_gpu as u64 {
            return Err(Error::Checkpoint {
                name: "batch_size".into(),
                reason: format!(
                    "checkpoint was trained with batch {batch}, config has {}: the loader \
                     position would not match",
                    self.cfg.train.batch_size_per_gpu
                ),
            });
        }
        self.step = ck.state.step;
        Ok(())
    }
}
