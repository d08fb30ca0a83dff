//! The settings of one training run (written next to the run as `config.json`).

use dual_encoder::TextConfig;
use serde::{Deserialize, Serialize};
use unicl_loss::LossKind;
use vit_backbone::{DavitConfig, Dinov2Config};

use crate::{Error, Result};

/// The image tower of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// untagged: a run's config.json holds the tower's own config, as before there was a choice
#[serde(untagged)]
pub enum ImageTowerConfig {
    /// MI2's DaViT at the UniCL checkpoint root (`image_encoder.*`), for continual
    /// pretraining of MI2 ([`crate::UniclTrainer::from_mi2`]).
    Davit(DavitConfig),
    /// A DINOv2 ViT under `image_encoder.` (the small runs, RAD-DINO).
    Dinov2(Dinov2Config),
}

impl ImageTowerConfig {
    /// The largest stochastic-depth rate.
    pub fn drop_path_rate(&self) -> f64 {
        match self {
            ImageTowerConfig::Davit(c) => c.drop_path_rate,
            ImageTowerConfig::Dinov2(c) => c.drop_path_rate,
        }
    }

    /// Checks the tower's own config.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            ImageTowerConfig::Davit(c) => c.validate(),
            ImageTowerConfig::Dinov2(c) => c.validate(),
        }
    }
}

/// Everything that determines a run's steps (besides the data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The objective: `unicl` (label-aware targets) or `clip` (every image's own text is its
    /// only positive).
    pub objective: LossKind,
    /// The image tower; its `drop_path_rate` must be 0 with GradCache (`micro_batch`).
    pub image: ImageTowerConfig,
    /// The text tower; `vocab_size` must match the tokenizer.
    pub text: TextConfig,
    /// Images (and texts) per optimizer step: the contrastive batch.
    pub batch_size: usize,
    /// GradCache chunk: encode at most this many samples with a live graph at a time.
    /// `None` back-propagates the whole batch at once. The gradient is the same either way.
    pub micro_batch: Option<usize>,
    /// Optimizer steps of the schedule.
    pub steps: u64,
    /// Peak learning rate (after warm-up).
    pub lr: f64,
    /// Final learning rate of the cosine decay.
    pub min_lr: f64,
    /// Linear warm-up steps from 0 to `lr`.
    pub warmup_steps: u64,
    /// AdamW weight decay (not applied to biases, norms, embeddings' position tables and the
    /// logit scale).
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = off).
    pub clip_grad: f64,
    /// Initial `θ` of `scale = exp(θ)`; `None` = the objective's reference init (UniCL 1,
    /// CLIP ln(1/0.07)).
    pub init_log_scale: Option<f64>,
    /// Seed of the data order, the prompt sampling and the initialisation.
    pub seed: u64,
    /// Locked-image tuning (LiT): the image tower is frozen (inference mode, no gradient, no
    /// optimizer state); the image projection, the text tower and the logit scale train.
    /// Meant for a pretrained tower (`UniclTrainer::init_image_tower`).
    #[serde(default)]
    pub lock_image: bool,
}

impl TrainConfig {
    /// A small run: ViT-tiny/14 at `image_size`, a 128-wide 4-layer text tower with context
    /// 32, batch 32, lr 1e-4 with 10% warm-up.
    pub fn small(objective: LossKind, image_size: usize, vocab_size: usize, steps: u64) -> Self {
        let mut image = Dinov2Config::vit_tiny(image_size);
        image.drop_path_rate = 0.0;
        // iBOT's mask token is never used by a contrastive objective
        image.use_mask_token = false;
        Self {
            objective,
            image: ImageTowerConfig::Dinov2(image),
            text: TextConfig {
                vocab_size,
                context_length: 32,
                width: 128,
                layers: 4,
                heads: 4,
                causal: true,
                projection_dim: 128,
                ..TextConfig::unicl_base()
            },
            batch_size: 32,
            micro_batch: None,
            steps,
            lr: 1e-4,
            min_lr: 1e-6,
            warmup_steps: steps / 10,
            weight_decay: 0.05,
            clip_grad: 1.0,
            init_log_scale: None,
            seed: 0,
            lock_image: false,
        }
    }

    /// The initial `θ` this run uses.
    pub fn log_scale_init(&self) -> f64 {
        self.init_log_scale.unwrap_or(match self.objective {
            LossKind::Clip => unicl_loss::clip_init_log_scale(),
            LossKind::Siglip => unicl_loss::siglip_init_log_scale(),
            _ => unicl_loss::UNICL_INIT_LOG_SCALE,
        })
    }

    /// Checks the values that would make a run ill-formed.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.batch_size < 2 {
            return bad(format!(
                "batch_size {} gives no negatives: use at least 2",
                self.batch_size
            ));
        }
        cxr_core::ranges::positive(&[("lr", self.lr)])
            .and_then(|()| {
                cxr_core::ranges::non_negative(&[
                    ("min_lr", self.min_lr),
                    ("weight_decay", self.weight_decay),
                    ("clip_grad", self.clip_grad),
                ])
            })
            .map_err(Error::Invalid)?;
        if self.init_log_scale.is_some_and(|t| !t.is_finite()) {
            return bad(format!(
                "init_log_scale {:?} is not finite",
                self.init_log_scale
            ));
        }
        if self.micro_batch == Some(0) {
            return bad("micro_batch must be positive".into());
        }
        if self.image.drop_path_rate() != 0.0 && self.micro_batch.is_some() {
            return bad(format!(
                "GradCache re-runs the forward pass, so it needs a deterministic image tower: \
                 drop_path_rate is {}, set it to 0",
                self.image.drop_path_rate()
            ));
        }
        if self.warmup_steps > self.steps {
            return bad(format!(
                "warmup_steps {} exceed steps {}",
                self.warmup_steps, self.steps
            ));
        }
        if matches!(self.objective, LossKind::Siglip) {
            return bad("objective siglip needs a learned logit bias, which this trainer does not hold: use unicl or clip".into());
        }
        self.image.validate().map_err(Error::Invalid)?;
        self.text.validate().map_err(Error::Invalid)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_tower_reads_back_from_json_as_itself() {
        let vit = TrainConfig::small(LossKind::Unicl, 28, 600, 10);
        let json = serde_json::to_string(&vit).unwrap();
        // the tower's own fields, no tag: a config.json from before the choice reads the same
        assert!(json.contains("\"image\":{\"") && json.contains("hidden_size"));
        let back: TrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vit);
        let davit = TrainConfig {
            image: ImageTowerConfig::Davit(DavitConfig::tiny()),
            ..vit
        };
        let back: TrainConfig =
            serde_json::from_str(&serde_json::to_string(&davit).unwrap()).unwrap();
        assert!(matches!(back.image, ImageTowerConfig::Davit(_)));
        assert_eq!(back, davit);
    }

    #[test]
    fn optimizer_numbers_are_checked() {
        let ok = TrainConfig::small(LossKind::Unicl, 28, 600, 10);
        ok.validate().unwrap();
        for (edit, says) in [
            (
                TrainConfig {
                    lr: -1e-4,
                    ..ok.clone()
                },
                "lr -0.0001 is not a positive number",
            ),
            (
                TrainConfig {
                    lr: 0.0,
                    ..ok.clone()
                },
                "lr 0 is not a positive number",
            ),
            (
                TrainConfig {
                    weight_decay: f64::NAN,
                    ..ok.clone()
                },
                "weight_decay = NaN",
            ),
            (
                TrainConfig {
                    clip_grad: -1.0,
                    ..ok.clone()
                },
                "clip_grad = -1",
            ),
            (
                TrainConfig {
                    init_log_scale: Some(f64::INFINITY),
                    ..ok.clone()
                },
                "init_log_scale",
            ),
        ] {
            let e = edit.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{says}: {e}");
        }
    }
}
