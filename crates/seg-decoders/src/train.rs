//! The training loop, decoupled from data loading: an encoder, a head configuration and
//! in-memory batches of `(images, masks)` in, a trained head and its history out.

use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use cxr_core::{Encoder, Features};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::augment::PairedAugment;
use crate::eval::{detached, evaluate};
use crate::heads::{Head, HeadConfig, SegmentationHead};
use crate::layers::Mode;
use crate::loss::LossConfig;
use crate::schedule::{Decay, LrSchedule};
use crate::{Error, Result};

/// One batch: preprocessed images `[B, 3, H, W]` and binary masks `[B, K, H, W]` (f32 0/1).
#[derive(Debug, Clone)]
pub struct SegBatch {
    /// Encoder-ready pixels.
    pub images: Tensor,
    /// One channel per class.
    pub masks: Tensor,
}

/// What happens to the backbone during training.
#[derive(Debug, Clone)]
pub enum Backbone {
    /// The encoder runs in inference mode with its outputs detached. With `cache` (and no
    /// augmentation, which would change the inputs) the features of each batch are computed
    /// once and reused every epoch.
    Frozen {
        /// Reuse the features across epochs.
        cache: bool,
    },
    /// The encoder runs in training mode and its parameters `vars` are optimised too, with
    /// the head's schedule scaled by `lr_scale`.
    FineTune {
        /// The encoder's parameters (e.g. its `VarMap::all_vars()`).
        vars: Vec<Var>,
        /// Multiplier of the backbone learning rate relative to the head's.
        lr_scale: f64,
    },
}

/// Options of [`train_segmentation`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Passes over the training batches.
    pub epochs: usize,
    /// Peak learning rate of Adam (RAD-DINO: 5e-4).
    pub lr: f64,
    /// Warm-up steps (linear from `lr / warmup_steps`).
    pub warmup_steps: usize,
    /// Decay after warm-up, down to 0.
    pub decay: Decay,
    /// Adam's decoupled weight decay (0: plain Adam).
    pub weight_decay: f64,
    /// The loss.
    pub loss: LossConfig,
    /// Paired augmentation of the training batches (none: use them as given).
    pub augment: Option<PairedAugment>,
    /// Frozen or fine-tuned backbone.
    pub backbone: Backbone,
    /// Seed of augmentation and dropout.
    pub seed: u64,
    /// Print one line per epoch to stderr.
    pub verbose: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            lr: 5e-4,
            warmup_steps: 10,
            decay: Decay::Cosine,
            weight_decay: 0.0,
            loss: LossConfig::default(),
            augment: None,
            backbone: Backbone::Frozen { cache: true },
            seed: 0,
            verbose: false,
        }
    }
}

/// The numbers of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Mean per-image Dice on the validation batches (`None` without validation data).
    pub val_dice: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
}

/// Per-epoch history of a training run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One record per epoch.
    pub epochs: Vec<EpochRecord>,
}

/// A trained head with the variables that hold its weights.
pub struct TrainedHead {
    /// The head.
    pub head: Head,
    /// Its parameters and BatchNorm statistics, under mmsegmentation-style names
    /// (`varmap.save(path)` writes them as safetensors).
    pub varmap: VarMap,
    /// The configuration it was built from.
    pub config: HeadConfig,
}

impl std::fmt::Debug for TrainedHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainedHead")
            .field("head", &self.head)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The trainable variables of a head's `VarMap` (BatchNorm running statistics excluded).
pub fn trainable_vars(varmap: &VarMap) -> Vec<Var> {
    let Ok(data) = varmap.data().lock() else {
        return Vec::new();
    };
    let mut named: Vec<(&String, &Var)> = data
        .iter()
        .filter(|(k, _)| !k.contains("running_"))
        .collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// Trains a new head of `head_cfg` on `encoder`'s features of `train` and reports the
/// validation Dice of `val` after every epoch.
pub fn train_segmentation<E: Encoder + ?Sized>(
    encoder: &E,
    head_cfg: &HeadConfig,
    train: &[SegBatch],
    val: &[SegBatch],
    opts: &TrainOptions,
) -> Result<(TrainedHead, History)> {
    if train.is_empty() {
        return Err(Error::Config("no training batches".into()));
    }
    // candle's Adam takes any rate: a negative one would climb the loss
    cxr_core::ranges::positive(&[("lr", opts.lr)])
        .and_then(|()| cxr_core::ranges::non_negative(&[("weight_decay", opts.weight_decay)]))
        .map_err(Error::Config)?;
    let device = encoder.device().clone();
    let varmap = VarMap::new();
    // drawn from `opts.seed`, so a run is the same run again (candle's own draws are not)
    let head = Head::new(
        head_cfg,
        train_utils::init::seeded_var_builder(&varmap, opts.seed, DType::F32, &device),
    )?;
    let adam = |vars: Vec<Var>, lr: f64| {
        AdamW::new(
            vars,
            ParamsAdamW {
                lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: opts.weight_decay,
            },
        )
    };
    let mut head_opt = adam(trainable_vars(&varmap), opts.lr)?;
    let (mut backbone_opt, lr_scale, frozen, cache) = match &opts.backbone {
        Backbone::Frozen { cache } => (None, 0.0, true, *cache && opts.augment.is_none()),
        Backbone::FineTune { vars, lr_scale } => (
            Some(adam(vars.clone(), opts.lr * lr_scale)?),
            *lr_scale,
            false,
            false,
        ),
    };
    let schedule = LrSchedule {
        base_lr: opts.lr,
        min_lr: 0.0,
        warmup_steps: opts.warmup_steps,
        total_steps: opts.epochs * train.len(),
        decay: opts.decay,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut cached: Vec<Option<Features>> = vec![None; train.len()];
    let mut history = History::default();
    let mut step = 0;
    for epoch in 0..opts.epochs {
        let mut total = 0.0;
        let mut lr = opts.lr;
        for (bi, batch) in train.iter().enumerate() {
            let (images, masks) = match &opts.augment {
                Some(aug) => aug.apply(&batch.images, &batch.masks, &mut rng)?,
                None => (batch.images.clone(), batch.masks.clone()),
            };
            let request = head.feature_request(!frozen);
            let feats = match (&cached[bi], frozen) {
                (Some(f), _) => f.clone(),
                (None, true) => {
                    let f = detached(&encoder.forward_features(&images, &request)?)?;
                    if cache {
                        cached[bi] = Some(f.clone());
                    }
                    f
                }
                (None, false) => encoder.forward_features(&images, &request)?,
            };
            let size = (images.dim(2)?, images.dim(3)?);
            let logits = head.forward(&feats, size, &mut Mode::Train(&mut rng))?;
            let loss = opts.loss.loss(&logits, &masks)?;
            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(Error::Config(format!(
                    "loss became {value} at epoch {epoch}, batch {bi}; lower the learning rate"
                )));
            }
            total += value;
            lr = schedule.lr(step);
            let grads = loss.backward()?;
            head_opt.set_learning_rate(lr);
            head_opt.step(&grads)?;
            if let Some(opt) = backbone_opt.as_mut() {
                opt.set_learning_rate(lr * lr_scale);
                opt.step(&grads)?;
            }
            step += 1;
        }
        let val_dice = if val.is_empty() {
            None
        } else {
            let scores = evaluate(encoder, &head, val, opts.loss.activation)?;
            Some(scores.iter().map(|s| s.mean).sum::<f64>() / scores.len().max(1) as f64)
        };
        let record = EpochRecord {
            epoch,
            train_loss: total / train.len() as f64,
            val_dice,
            lr,
        };
        if opts.verbose {
            eprintln!(
                "epoch {epoch}: loss {:.4}, val Dice {}, lr {lr:.2e}",
                record.train_loss,
                val_dice.map_or("-".into(), |d| format!("{d:.4}"))
            );
        }
        history.epochs.push(record);
    }
    Ok((
        TrainedHead {
            head,
            varmap,
            config: head_cfg.clone(),
        },
        history,
    ))
}
