//! The DINOv2 objective: DINO + KoLeo + iBOT, combined as `SSLMetaArch.forward_backward`.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{koleo_loss, DinoLoss, Error, IbotPatchLoss, Result, TeacherMode};

/// Loss weights and temperatures (dinov2's `dino`, `ibot` and `train.centering` settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectiveConfig {
    /// Weight of the DINO CLS loss (`dino.loss_weight`, 1.0).
    pub dino_loss_weight: f64,
    /// Weight of the KoLeo term (`dino.koleo_loss_weight`, 0.1).
    pub koleo_loss_weight: f64,
    /// Weight of the iBOT loss (`ibot.loss_weight`, 1.0).
    pub ibot_loss_weight: f64,
    /// Student temperature (0.1).
    pub student_temp: f64,
    /// EMA momentum of both centers (0.9).
    pub center_momentum: f64,
    /// Centering or Sinkhorn-Knopp (`train.centering`).
    pub teacher_mode: TeacherMode,
    /// Number of global crops (dinov2 requires 2).
    pub n_global_crops: usize,
    /// Prototypes of the DINO head.
    pub dino_prototypes: usize,
    /// Prototypes of the iBOT head (equal to `dino_prototypes` when the head is shared).
    pub ibot_prototypes: usize,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            dino_loss_weight: 1.0,
            koleo_loss_weight: 0.1,
            ibot_loss_weight: 1.0,
            student_temp: 0.1,
            center_momentum: 0.9,
            teacher_mode: TeacherMode::Centering,
            n_global_crops: 2,
            dino_prototypes: 65536,
            ibot_prototypes: 65536,
        }
    }
}

/// What the teacher produced on the global crops (no gradient needed).
#[derive(Debug, Clone)]
pub struct TeacherOutputs {
    /// Teacher DINO-head logits of the global CLS tokens, `[n_global · B, K]`, crop order.
    pub cls_logits: Tensor,
    /// Teacher iBOT-head logits of the masked patches, `[M, K_ibot]` (row-major mask order).
    pub masked_patch_logits: Option<Tensor>,
}

/// Targets computed from [`TeacherOutputs`].
#[derive(Debug, Clone)]
pub struct TeacherTargets {
    /// DINO targets, `[n_global · B, K]`.
    pub cls: Tensor,
    /// iBOT targets, `[M, K_ibot]`.
    pub masked_patches: Option<Tensor>,
}

/// What the student produced (these carry the gradient).
#[derive(Debug, Clone)]
pub struct StudentOutputs {
    /// Student DINO-head logits of the global CLS tokens, `[n_global · B, K]`.
    pub global_cls_logits: Tensor,
    /// Student DINO-head logits of the local CLS tokens, `[n_local · B, K]`.
    pub local_cls_logits: Option<Tensor>,
    /// Backbone CLS tokens of the global crops (before the head), `[n_global · B, D]`: KoLeo's
    /// input.
    pub global_cls_tokens: Tensor,
    /// Student iBOT-head logits of the masked patches, `[M, K_ibot]`.
    pub masked_patch_logits: Option<Tensor>,
    /// The masks of the global crops, `[n_global · B, N]`, non-zero = masked.
    pub masks: Option<Tensor>,
}

/// The loss terms; `total` is what is back-propagated.
#[derive(Debug, Clone)]
pub struct ObjectiveLosses {
    /// `dino_local_crops_loss` (unweighted, as dinov2 logs it).
    pub dino_local: Option<Tensor>,
    /// `dino_global_crops_loss` (unweighted).
    pub dino_global: Option<Tensor>,
    /// KoLeo, weighted and summed over the global crops (the amount added to `total`;
    /// dinov2 logs half of it).
    pub koleo: Option<Tensor>,
    /// iBOT, scaled by `2 / n_global` as dinov2 does, unweighted (dinov2 logs half of it).
    pub ibot: Option<Tensor>,
    /// The weighted sum.
    pub total: Tensor,
}

impl ObjectiveLosses {
    /// `(name, value)` of every present term, in dinov2's loss-dict names, plus `total_loss`.
    pub fn scalars(&self) -> Result<Vec<(&'static str, f64)>> {
        let mut out = Vec::new();
        let named = [
            ("dino_local_crops_loss", &self.dino_local),
            ("dino_global_crops_loss", &self.dino_global),
            ("koleo_loss", &self.koleo),
            ("ibot_loss", &self.ibot),
        ];
        for (name, t) in named {
            if let Some(t) = t {
                out.push((
                    name,
                    t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?,
                ));
            }
        }
        out.push((
            "total_loss",
            self.total
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?,
        ));
        Ok(out)
    }
}

/// DINO + KoLeo + iBOT with their centers: the stateful part of a DINOv2 training step.
#[derive(Debug, Clone)]
pub struct DinoObjective {
    config: ObjectiveConfig,
    dino: DinoLoss,
    ibot: IbotPatchLoss,
}

fn add(acc: Option<Tensor>, term: Tensor) -> Result<Option<Tensor>> {
    Ok(Some(match acc {
        None => term,
        Some(a) => (a + term)?,
    }))
}

impl DinoObjective {
    /// Builds the losses with zero centers on `device`.
    pub fn new(config: ObjectiveConfig, device: &Device) -> Result<Self> {
        if config.n_global_crops < 1 {
            return Err(Error::Config("need at least one global crop".into()));
        }
        let dino = DinoLoss::new(
            config.dino_prototypes,
            config.student_temp,
            config.center_momentum,
            device,
        )?;
        let ibot = IbotPatchLoss::new(
            config.ibot_prototypes,
            config.student_temp,
            config.center_momentum,
            device,
        )?;
        Ok(Self { config, dino, ibot })
    }

    /// The configuration.
    pub fn config(&self) -> &ObjectiveConfig {
        &self.config
    }

    /// The DINO loss and its center.
    pub fn dino(&self) -> &DinoLoss {
        &self.dino
    }

    /// The DINO loss, mutably (to restore its center).
    pub fn dino_mut(&mut self) -> &mut DinoLoss {
        &mut self.dino
    }

    /// The iBOT loss and its center.
    pub fn ibot(&self) -> &IbotPatchLoss {
        &self.ibot
    }

    /// The iBOT loss, mutably (to restore its center).
    pub fn ibot_mut(&mut self) -> &mut IbotPatchLoss {
        &mut self.ibot
    }

    /// Teacher targets at temperature `teacher_temp`; with centering, both centers then take
    /// this batch. `world_size` and `n_masked_total` size the Sinkhorn-Knopp marginals (1 and
    /// the local masked count in a single process).
    pub fn teacher_targets(
        &mut self,
        teacher: &TeacherOutputs,
        teacher_temp: f64,
        world_size: usize,
        n_masked_total: Option<usize>,
    ) -> Result<TeacherTargets> {
        let mode = self.config.teacher_mode;
        let cls = self
            .dino
            .teacher_targets(&teacher.cls_logits, teacher_temp, mode, world_size)?;
        let masked_patches = match &teacher.masked_patch_logits {
            Some(t) if self.config.ibot_loss_weight > 0.0 => {
                let n = n_masked_total.unwrap_or(t.dim(0)?);
                Some(self.ibot.teacher_targets(t, teacher_temp, mode, n)?)
            }
            _ => None,
        };
        Ok(TeacherTargets {
            cls,
            masked_patches,
        })
    }

    /// The loss terms for `student` against `targets`, weighted and summed as dinov2 does.
    pub fn losses(
        &self,
        student: &StudentOutputs,
        targets: &TeacherTargets,
    ) -> Result<ObjectiveLosses> {
        let cfg = &self.config;
        let n_global = cfg.n_global_crops;
        let mut total = None;
        let mut out = ObjectiveLosses {
            dino_local: None,
            dino_global: None,
            koleo: None,
            ibot: None,
            total: Tensor::new(0f32, student.global_cls_logits.device())?,
        };
        if cfg.dino_loss_weight > 0.0 {
            let parts = self.dino.forward(
                &student.global_cls_logits,
                student.local_cls_logits.as_ref(),
                &targets.cls,
                n_global,
            )?;
            if let Some(local) = parts.local {
                total = add(total, (&local * cfg.dino_loss_weight)?)?;
                out.dino_local = Some(local);
            }
            total = add(total, (&parts.global * cfg.dino_loss_weight)?)?;
            out.dino_global = Some(parts.global);
            if cfg.koleo_loss_weight > 0.0 {
                // never between the CLS tokens of one image: one KoLeo per global crop
                let mut koleo = None;
                for chunk in student.global_cls_tokens.chunk(n_global, 0)? {
                    koleo = add(koleo, koleo_loss(&chunk)?)?;
                }
                if let Some(k) = koleo {
                    let k = (k * cfg.koleo_loss_weight)?;
                    total = add(total, k.clone())?;
                    out.koleo = Some(k);
                }
            }
        }
        if cfg.ibot_loss_weight > 0.0 {
            match (
                &student.masked_patch_logits,
                &targets.masked_patches,
                &student.masks,
            ) {
                (Some(s), Some(t), Some(masks)) => {
                    let loss = self.ibot.forward_masked(s, t, masks, None)?;
                    // dinov2: loss_scales (2) · ibot_loss_scale (1 / n_global)
                    let ibot = (loss * (2.0 / n_global as f64))?;
                    total = add(total, (&ibot * cfg.ibot_loss_weight)?)?;
                    out.ibot = Some(ibot);
                }
                _ => {
                    return Err(Error::Config(
                        "iBOT is enabled (ibot_loss_weight > 0) but the student masked-patch \
                         logits, the teacher targets or the masks are missing"
                            .into(),
                    ))
                }
            }
        }
        if let Some(t) = total {
            out.total = t;
        }
        Ok(out)
    }
}
