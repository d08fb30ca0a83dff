//! UniCL continual pretraining of image–text dual encoders on chest X-rays.
//!
//! [`UniclTrainer`] trains a [`dual_encoder::DualEncoder`] (a DINOv2 ViT or MI2's DaViT image
//! tower under `image_encoder.`, UniCL's text transformer, both projections and the logit
//! scale, all in one `VarMap`) with `unicl-loss`'s objectives: **UniCL** (images with equal structured
//! label sets are each other's positives) or **CLIP** InfoNCE (every image's own text is its
//! only positive). Optimisation comes from `train-utils`: AdamW with parameter groups (no
//! weight decay on biases, norms, position tables and the logit scale), linear warm-up +
//! cosine learning rate, global gradient clipping, the NaN guard, atomic checkpoints with
//! exact resume, CSV/JSONL step logs and a loss plot ([`run`]). The logit scale is clamped
//! to `[1, 100]` after each step as open_clip does.
//!
//! **Continual pretraining of MI2** ([`UniclTrainer::from_mi2`]): the image tower is then
//! MI2's DaViT and every variable (both towers, both projections, the learned logit scale)
//! starts from the MI2 checkpoint; the text goes through MI2's own tokenizer. The tower's
//! stochastic depth is kept (it is off only with GradCache), and its `(seed, calls)` state
//! travels in the checkpoints, so a resumed run still replays exactly.
//!
//! **Locked-image tuning** ([`TrainConfig::lock_image`], LiT): with a pretrained image tower
//! (`UniclTrainer::init_image_tower`, e.g. RAD-DINO) and little paired data, the tower stays
//! frozen: it runs in inference mode with detached features, and only the image projection,
//! the text tower and the logit scale are trained and hold optimizer state. Checkpoints still
//! hold every variable, so a resumed run needs no second copy of the tower.
//!
//! **Data** ([`PairDataset`], [`PairSource`]): a cxr-data manifest gives images, structured
//! labels (for cxr-findings the 14 findings; the empty set is "no finding") and optionally a
//! report column. Each step draws one text per image from `unicl-loss`'s prompt templates,
//! keyed by `(seed, step, index)`; the UniCL label is the combined multi-label set. Samples
//! with a report use it verbatim as a unique label. Images are decoded and preprocessed once
//! (RAD-DINO normalisation), tokenisation runs on the rayon pool. [`train_clip_bpe`] learns
//! the run's CLIP-style BPE tokenizer from the prompt corpus (no tokenizer can be
//! downloaded) and saves it as `tokenizer.json`.
//!
//! # Larger batches: GradCache, not naive accumulation
//! A contrastive loss is not a mean of per-sample terms: every image is contrasted with
//! every text of the batch. Accumulating the gradients of independent micro-batches (as
//! [`train_utils::GradAccumulator`] does for ordinary losses) would therefore train a
//! different objective, with negatives only inside each micro-batch. With
//! [`TrainConfig::micro_batch`] set, the trainer uses GradCache instead ([`gradcache`]):
//! embed all chunks without keeping their graphs, compute the loss on the full batch of
//! embeddings, then re-encode each chunk and back-propagate its cached embedding gradients.
//! The gradient equals the full-batch gradient (tested to 1e-5), so the effective batch of
//! negatives is the whole batch.
//!
//! | mode | activation memory | compute per step | negatives per sample |
//! |---|---|---|---|
//! | full batch (`micro_batch = None`) | `B` samples | 1 fwd + 1 bwd | `B − 1` |
//! | GradCache (`micro_batch = m`) | `m` samples + `B × P` embeddings + `B × B` logits | 2 fwd + 1 bwd | `B − 1` |
//! | naive accumulation (not offered) | `m` samples | 1 fwd + 1 bwd | `m − 1` |
//!
//! GradCache's second forward must reproduce the first exactly, so the image tower must be
//! deterministic: `drop_path_rate = 0` ([`TrainConfig::validate`] enforces it).
//!
//! # Evaluation
//! [`eval`]: zero-shot per-finding AUROC (dual-encoder's [`dual_encoder::ZeroShotClassifier`]
//! positive-vs-negative prompt ensembles) on the validation split every N steps, and on the
//! test split with patient-level bootstrap intervals and paired comparisons.
#![deny(missing_docs)]

mod config;
mod data;
mod error;
pub mod eval;
pub mod gradcache;
pub mod model;
mod run;
mod tokenizer;
mod trainer;

pub use config::{ImageTowerConfig, TrainConfig};
pub use data::{
    tokenize_parallel, PairBatch, PairDataset, PairSample, PairSource, PIXEL_CACHE_BYTES,
};
pub use error::{Error, Result};
pub use run::{run, RunOptions, RunSummary, Validation};
pub use tokenizer::{train_clip_bpe, untrained_tokens};
/// The loop settings inside [`RunOptions`], from `train-utils`.
pub use train_utils::LoopOptions;
pub use trainer::{StepOutput, UniclTrainer};
