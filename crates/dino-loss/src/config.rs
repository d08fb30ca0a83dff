//! The training configuration in one TOML file, mirroring the sections of dinov2's
//! `ssl_default_config.yaml` (`student`, `teacher`, `dino`, `ibot`, `crops`, `optim`, `train`)
//! with its key names and defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use train_utils::DinoScheduleConfig;

use crate::{DinoHeadConfig, Error, ObjectiveConfig, Result, TeacherMode};

/// `student`: the backbone being trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudentConfig {
    /// Architecture name (`vit_small`, `vit_base`, `vit_large`, `vit_giant2`).
    pub arch: String,
    /// Patch size.
    pub patch_size: usize,
    /// Stochastic-depth rate.
    pub drop_path_rate: f64,
    /// Layer-scale init value.
    pub layerscale: f64,
    /// Same drop-path rate in every block (dinov2: true).
    pub drop_path_uniform: bool,
    /// Weights to start from (a local file or directory; empty = random init).
    pub pretrained_weights: String,
    /// Number of register tokens.
    pub num_register_tokens: usize,
    /// Position-embedding interpolation offset (0.1 in dinov2).
    pub interpolate_offset: f64,
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self {
            arch: "vit_large".into(),
            patch_size: 16,
            drop_path_rate: 0.3,
            layerscale: 1e-5,
            drop_path_uniform: true,
            pretrained_weights: String::new(),
            num_register_tokens: 0,
            interpolate_offset: 0.1,
        }
    }
}

/// `teacher`: EMA momentum and temperature schedules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherConfig {
    /// Initial EMA momentum.
    pub momentum_teacher: f64,
    /// Final EMA momentum.
    pub final_momentum_teacher: f64,
    /// Teacher temperature at the start of the warm-up.
    pub warmup_teacher_temp: f64,
    /// Teacher temperature after the warm-up.
    pub teacher_temp: f64,
    /// Warm-up epochs of the teacher temperature.
    pub warmup_teacher_temp_epochs: usize,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        Self {
            momentum_teacher: 0.992,
            final_momentum_teacher: 1.0,
            warmup_teacher_temp: 0.04,
            teacher_temp: 0.07,
            warmup_teacher_temp_epochs: 30,
        }
    }
}

/// `dino`: the CLS objective and its head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DinoSection {
    /// Weight of the DINO loss.
    pub loss_weight: f64,
    /// Prototypes.
    pub head_n_prototypes: usize,
    /// Bottleneck width.
    pub head_bottleneck_dim: usize,
    /// MLP depth.
    pub head_nlayers: usize,
    /// MLP hidden width.
    pub head_hidden_dim: usize,
    /// Weight of the KoLeo term.
    pub koleo_loss_weight: f64,
}

impl Default for DinoSection {
    fn default() -> Self {
        Self {
            loss_weight: 1.0,
            head_n_prototypes: 65536,
            head_bottleneck_dim: 256,
            head_nlayers: 3,
            head_hidden_dim: 2048,
            koleo_loss_weight: 0.1,
        }
    }
}

/// `ibot`: the masked-patch objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IbotSection {
    /// Weight of the iBOT loss.
    pub loss_weight: f64,
    /// Fraction of the images that get masked.
    pub mask_sample_probability: f64,
    /// Range of the mask ratios.
    pub mask_ratio_min_max: [f64; 2],
    /// A separate iBOT head (false: the DINO head is shared).
    pub separate_head: bool,
    /// Prototypes of a separate head.
    pub head_n_prototypes: usize,
    /// Bottleneck width of a separate head.
    pub head_bottleneck_dim: usize,
    /// MLP depth of a separate head.
    pub head_nlayers: usize,
    /// MLP hidden width of a separate head.
    pub head_hidden_dim: usize,
}

impl Default for IbotSection {
    fn default() -> Self {
        Self {
            loss_weight: 1.0,
            mask_sample_probability: 0.5,
            mask_ratio_min_max: [0.1, 0.5],
            separate_head: false,
            head_n_prototypes: 65536,
            head_bottleneck_dim: 256,
            head_nlayers: 3,
            head_hidden_dim: 2048,
        }
    }
}

/// `crops`: multi-crop sizes and scales, and the photometric augmentations.
///
/// dinov2 hard-codes the augmentations in `DataAugmentationDINO`; the keys from
/// `horizontal_flip_prob` on are this crate's, defaulting to dinov2's values except the flip,
/// which is off because laterality matters on chest X-rays (dinov2: 0.5). They let a run
/// change or drop an augmentation; `docs/results.md` (DINO runs 9–11) measures what dropping or
/// doubling the brightness and contrast jitter does on chest X-rays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CropsConfig {
    /// Area range of the global crops.
    pub global_crops_scale: [f64; 2],
    /// Number of local crops.
    pub local_crops_number: usize,
    /// Area range of the local crops.
    pub local_crops_scale: [f64; 2],
    /// Global crop side.
    pub global_crops_size: usize,
    /// Local crop side.
    pub local_crops_size: usize,
    /// Horizontal-flip probability of every crop (dinov2: 0.5; here 0, see above).
    pub horizontal_flip_prob: f64,
    /// Probability of the colour jitter on every crop (dinov2: 0.8); on gray images only its
    /// brightness and contrast act.
    pub color_jitter_prob: f64,
    /// Brightness jitter strength: a factor uniform in `[1 − b, 1 + b]` (dinov2: 0.4).
    pub brightness: f64,
    /// Contrast jitter strength: a factor uniform in `[1 − c, 1 + c]` (dinov2: 0.4).
    pub contrast: f64,
    /// Gaussian-blur probability on global crop 1, global crop 2 and each local crop
    /// (dinov2: 1.0, 0.1, 0.5).
    pub blur_prob: [f64; 3],
    /// Solarisation probability on global crop 2 (dinov2: 0.2).
    pub solarize_prob: f64,
}

impl Default for CropsConfig {
    fn default() -> Self {
        Self {
            global_crops_scale: [0.32, 1.0],
            local_crops_number: 8,
            local_crops_scale: [0.05, 0.32],
            global_crops_size: 224,
            local_crops_size: 96,
            horizontal_flip_prob: 0.0,
            color_jitter_prob: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            blur_prob: [1.0, 0.1, 0.5],
            solarize_prob: 0.2,
        }
    }
}

/// `optim`: AdamW and its schedules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Training epochs.
    pub epochs: usize,
    /// Initial weight decay.
    pub weight_decay: f64,
    /// Final weight decay.
    pub weight_decay_end: f64,
    /// Learning rate for a total batch of 1024.
    pub base_lr: f64,
    /// The learning rate after the scaling rule; 0 = computed from `base_lr`.
    pub lr: f64,
    /// Warm-up epochs.
    pub warmup_epochs: usize,
    /// Final learning rate.
    pub min_lr: f64,
    /// Global-norm gradient clipping per sub-model (0 = off).
    pub clip_grad: f64,
    /// Epochs with the last layer frozen.
    pub freeze_last_layer_epochs: usize,
    /// `sqrt_wrt_1024` (lr = base_lr·√(batch/1024)) or `none`.
    pub scaling_rule: String,
    /// Learning-rate multiplier of the patch embedding.
    pub patch_embed_lr_mult: f64,
    /// Layer-wise lr decay.
    pub layerwise_decay: f64,
    /// AdamW β₁.
    pub adamw_beta1: f64,
    /// AdamW β₂.
    pub adamw_beta2: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            weight_decay: 0.04,
            weight_decay_end: 0.4,
            base_lr: 0.004,
            lr: 0.0,
            warmup_epochs: 10,
            min_lr: 1e-6,
            clip_grad: 3.0,
            freeze_last_layer_epochs: 1,
            scaling_rule: "sqrt_wrt_1024".into(),
            patch_embed_lr_mult: 0.2,
            layerwise_decay: 0.9,
            adamw_beta1: 0.9,
            adamw_beta2: 0.999,
        }
    }
}

/// `train`: batch, epoch length, seed and teacher mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSection {
    /// Images per process and step.
    pub batch_size_per_gpu: usize,
    /// Iterations per epoch (dinov2's `OFFICIAL_EPOCH_LENGTH`).
    #[serde(rename = "OFFICIAL_EPOCH_LENGTH")]
    pub official_epoch_length: usize,
    /// Seed of the training RNG.
    pub seed: u64,
    /// Checkpoint every this many epochs.
    pub saveckp_freq: usize,
    /// `centering` or `sinkhorn_knopp`.
    pub centering: String,
    /// Gradient-accumulation micro-batches per step (not in dinov2; 1 = off).
    pub grad_accumulation: usize,
    /// Arithmetic of the student backbone's forward and backward: `f32`, or `bf16` (mixed
    /// precision as dinov2's `compute_precision`: bf16 copies of the f32 master weights each
    /// step, heads, losses and the optimizer in f32). Not in dinov2's yaml under this name.
    pub compute_precision: String,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            batch_size_per_gpu: 64,
            official_epoch_length: 1250,
            seed: 0,
            saveckp_freq: 20,
            centering: "centering".into(),
            grad_accumulation: 1,
            compute_precision: "f32".into(),
        }
    }
}

/// The whole training configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DinoV2Config {
    /// `student`.
    pub student: StudentConfig,
    /// `teacher`.
    pub teacher: TeacherConfig,
    /// `dino`.
    pub dino: DinoSection,
    /// `ibot`.
    pub ibot: IbotSection,
    /// `crops`.
    pub crops: CropsConfig,
    /// `optim`.
    pub optim: OptimConfig,
    /// `train`.
    pub train: TrainSection,
}

fn cfg_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Config(format!("{}: {reason}", path.display()))
}

impl DinoV2Config {
    /// dinov2's `ssl_default_config.yaml`.
    pub fn dinov2_default() -> Self {
        Self::default()
    }

    /// Continual pretraining of RAD-DINO: a ViT-B/14 (`vit_base`, patch 14, no registers, as
    /// `microsoft/rad-dino`) started from `student.pretrained_weights`. Everything the public
    /// RAD-DINO material does not state keeps dinov2's default; the released encoder takes
    /// 518×518 inputs, so set `crops.global_crops_size = 518` to train at that resolution.
    pub fn rad_dino() -> Self {
        let mut c = Self::default();
        c.student.arch = "vit_base".into();
        c.student.patch_size = 14;
        c.student.num_register_tokens = 0;
        c
    }

    /// A preset by name: `dinov2` or `rad-dino`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "dinov2" => Ok(Self::dinov2_default()),
            "rad-dino" | "rad_dino" => Ok(Self::rad_dino()),
            _ => Err(Error::Config(format!(
                "unknown preset `{name}` (known: dinov2, rad-dino)"
            ))),
        }
    }

    /// Parses TOML; missing keys take dinov2's defaults, unknown keys are errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self> {
        let c: Self = toml::from_str(text).map_err(|e| cfg_err(origin, e))?;
        c.validate().map_err(|e| match e {
            Error::Config(reason) => cfg_err(origin, reason),
            other => other,
        })?;
        Ok(c)
    }

    /// Reads a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| cfg_err(path, e))?;
        Self::from_toml_str(&text, path)
    }

    /// The configuration as TOML.
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Config(e.to_string()))
    }

    /// Writes the resolved configuration (with the scaled lr filled in for `world_size`
    /// processes) to `dir/config.resolved.toml`, atomically; returns the path.
    pub fn write_resolved(&self, dir: &Path, world_size: usize) -> Result<PathBuf> {
        let mut resolved = self.clone();
        resolved.optim.lr = self.lr(world_size);
        let path = dir.join("config.resolved.toml");
        std::fs::create_dir_all(dir).map_err(|e| cfg_err(dir, e))?;
        train_utils::write_atomic(&path, resolved.to_toml_string()?.as_bytes())
            .map_err(|e| cfg_err(&path, e))?;
        Ok(path)
    }

    /// Checks the values dinov2 asserts or that would make training meaningless.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let t = &self.teacher;
        if !(t.teacher_temp > 0.0 && t.warmup_teacher_temp > 0.0) {
            return bad("teacher temperatures must be positive".into());
        }
        if !(0.0..=1.0).contains(&t.momentum_teacher)
            || !(0.0..=1.0).contains(&t.final_momentum_teacher)
        {
            return bad("teacher momenta must lie in [0, 1]".into());
        }
        let [lo, hi] = self.ibot.mask_ratio_min_max;
        if self.ibot.loss_weight > 0.0 && !(0.0 <= lo && lo <= hi && hi > 0.0 && hi <= 1.0) {
            return bad(format!(
                "ibot.mask_ratio_min_max must satisfy 0 ≤ min ≤ max ≤ 1 and max > 0, got {:?}",
                self.ibot.mask_ratio_min_max
            ));
        }
        if self.ibot.loss_weight > 0.0 && self.ibot.mask_sample_probability <= 0.0 {
            return bad("ibot.mask_sample_probability must be positive when iBOT is on".into());
        }
        let o = &self.optim;
        cxr_core::ranges::non_negative(&[
            ("optim.lr", o.lr),
            ("optim.base_lr", o.base_lr),
            ("optim.min_lr", o.min_lr),
            ("optim.weight_decay", o.weight_decay),
            ("optim.weight_decay_end", o.weight_decay_end),
            ("optim.clip_grad", o.clip_grad),
            ("optim.patch_embed_lr_mult", o.patch_embed_lr_mult),
        ])
        .map_err(Error::Config)?;
        if !(o.layerwise_decay > 0.0 && o.layerwise_decay <= 1.0) {
            return bad(format!(
                "optim.layerwise_decay = {} is not in (0, 1]",
                o.layerwise_decay
            ));
        }
        if !((0.0..1.0).contains(&o.adamw_beta1) && (0.0..1.0).contains(&o.adamw_beta2)) {
            return bad(format!(
                "optim.adamw_beta1 = {} and optim.adamw_beta2 = {} must lie in [0, 1)",
                o.adamw_beta1, o.adamw_beta2
            ));
        }
        match self.optim.scaling_rule.as_str() {
            "sqrt_wrt_1024" | "none" => {}
            other => {
                return bad(format!(
                    "optim.scaling_rule `{other}` (known: sqrt_wrt_1024, none)"
                ))
            }
        }
        self.teacher_mode()?;
        if self.train.batch_size_per_gpu == 0 || self.train.official_epoch_length == 0 {
            return bad(
                "train.batch_size_per_gpu and OFFICIAL_EPOCH_LENGTH must be positive".into(),
            );
        }
        if self.optim.warmup_epochs > self.optim.epochs {
            return bad("optim.warmup_epochs exceeds optim.epochs".into());
        }
        let c = &self.crops;
        cxr_core::ranges::probabilities(&[
            ("crops.horizontal_flip_prob", c.horizontal_flip_prob),
            ("crops.color_jitter_prob", c.color_jitter_prob),
            ("crops.blur_prob[0]", c.blur_prob[0]),
            ("crops.blur_prob[1]", c.blur_prob[1]),
            ("crops.blur_prob[2]", c.blur_prob[2]),
            ("crops.solarize_prob", c.solarize_prob),
        ])
        .map_err(Error::Config)?;
        let [g0, g1] = c.global_crops_scale;
        let [l0, l1] = c.local_crops_scale;
        cxr_core::ranges::area_fractions(&[
            ("crops.global_crops_scale", (g0, g1)),
            ("crops.local_crops_scale", (l0, l1)),
        ])
        .map_err(Error::Config)?;
        cxr_core::ranges::non_negative(&[
            ("crops.brightness", c.brightness),
            ("crops.contrast", c.contrast),
        ])
        .map_err(Error::Config)?;
        Ok(())
    }

    /// `train.centering` as a [`TeacherMode`] (3 Sinkhorn iterations, as dinov2).
    pub fn teacher_mode(&self) -> Result<TeacherMode> {
        match self.train.centering.as_str() {
            "centering" => Ok(TeacherMode::Centering),
            "sinkhorn_knopp" => Ok(TeacherMode::SinkhornKnopp { n_iterations: 3 }),
            other => Err(Error::Config(format!(
                "train.centering `{other}` (known: centering, sinkhorn_knopp)"
            ))),
        }
    }

    /// The peak learning rate: `optim.lr` when set, else `base_lr` scaled by the rule for the
    /// total batch `batch_size_per_gpu · world_size`.
    pub fn lr(&self, world_size: usize) -> f64 {
        if self.optim.lr > 0.0 {
            return self.optim.lr;
        }
        let batch = (self.train.batch_size_per_gpu * world_size.max(1)) as f64;
        match self.optim.scaling_rule.as_str() {
            "sqrt_wrt_1024" => self.optim.base_lr * (batch / 1024.0).sqrt(),
            _ => self.optim.base_lr,
        }
    }

    /// The DINO head for a backbone of width `embed_dim`.
    pub fn dino_head(&self, embed_dim: usize) -> DinoHeadConfig {
        DinoHeadConfig {
            in_dim: embed_dim,
            n_prototypes: self.dino.head_n_prototypes,
            hidden_dim: self.dino.head_hidden_dim,
            bottleneck_dim: self.dino.head_bottleneck_dim,
            nlayers: self.dino.head_nlayers,
            ..DinoHeadConfig::default()
        }
    }

    /// The separate iBOT head, when `ibot.separate_head`.
    pub fn ibot_head(&self, embed_dim: usize) -> Option<DinoHeadConfig> {
        self.ibot.separate_head.then(|| DinoHeadConfig {
            in_dim: embed_dim,
            n_prototypes: self.ibot.head_n_prototypes,
            hidden_dim: self.ibot.head_hidden_dim,
            bottleneck_dim: self.ibot.head_bottleneck_dim,
            nlayers: self.ibot.head_nlayers,
            ..DinoHeadConfig::default()
        })
    }

    /// The loss settings.
    pub fn objective(&self) -> Result<ObjectiveConfig> {
        Ok(ObjectiveConfig {
            dino_loss_weight: self.dino.loss_weight,
            koleo_loss_weight: self.dino.koleo_loss_weight,
            ibot_loss_weight: self.ibot.loss_weight,
            teacher_mode: self.teacher_mode()?,
            dino_prototypes: self.dino.head_n_prototypes,
            ibot_prototypes: if self.ibot.separate_head {
                self.ibot.head_n_prototypes
            } else {
                self.dino.head_n_prototypes
            },
            ..ObjectiveConfig::default()
        })
    }

    /// The schedule settings for `world_size` processes.
    pub fn schedules(&self, world_size: usize) -> DinoScheduleConfig {
        DinoScheduleConfig {
            epoch_len: self.train.official_epoch_length,
            epochs: self.optim.epochs,
            lr: self.lr(world_size),
            min_lr: self.optim.min_lr,
            warmup_epochs: self.optim.warmup_epochs,
            weight_decay: self.optim.weight_decay,
            weight_decay_end: self.optim.weight_decay_end,
            momentum_teacher: self.teacher.momentum_teacher,
            final_momentum_teacher: self.teacher.final_momentum_teacher,
            teacher_temp: self.teacher.teacher_temp,
            warmup_teacher_temp: self.teacher.warmup_teacher_temp,
            warmup_teacher_temp_epochs: self.teacher.warmup_teacher_temp_epochs,
            freeze_last_layer_epochs: self.optim.freeze_last_layer_epochs,
        }
    }
}
