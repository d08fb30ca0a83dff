//! Model-agnostic training utilities, shared by the DINOv2 and UniCL trainers.
//!
//! Everything works on named [`candle_core::Var`]s (as a `candle_nn::VarMap` holds them) and
//! on [`NamedGrads`], gradients keyed by the same names:
//!
//! - [`AdamW`] with dinov2's parameter groups ([`ParamGroupRules`]: lr and weight-decay
//!   multipliers, layer-wise lr decay, patch-embed lr multiplier, last-layer flag), tested
//!   step by step against `torch.optim.AdamW`;
//! - [`clip_grad_norm`], [`GradAccumulator`], and the [`GradSync`] trait for data parallelism;
//! - [`CosineSchedule`] (dinov2's `CosineScheduler`) and [`DinoSchedules`];
//! - [`ema_update`] of teacher variables from student variables;
//! - [`CheckpointDir`]: atomic safetensors + JSON checkpoints, [`RngState`] and [`TrainState`]
//!   for exact resume; [`check_finite`] to stop on NaN/Inf;
//! - [`StepLog`] (CSV + JSONL) and [`plot_curves`] (PNG + SVG);
//! - [`run_loop`]: the loop both trainers run (resume, prefetch, progress bar, step log,
//!   checkpoints, loss plot), driving any [`LoopTrainer`];
//! - [`init`]: seeded truncated-normal and uniform initialisation.
#![deny(missing_docs)]

mod accumulate;
mod adamw;
mod checkpoint;
mod clip;
mod ema;
mod error;
mod grads;
mod guard;
pub mod init;
mod log;
mod param_groups;
mod plot;
mod prefetch;
mod run_inputs;
mod run_loop;
mod schedule;
mod state;
mod sync;

pub use accumulate::GradAccumulator;
pub use adamw::{AdamW, AdamWConfig};
pub use checkpoint::{write_atomic, Checkpoint, CheckpointDir};
pub use clip::clip_grad_norm;
/// Re-exported from `cxr-core`, where inference binaries find it too.
pub use cxr_core::retain_freed_heap_memory;
pub use ema::ema_update;
pub use error::{Error, Result};
pub use grads::{detached_tensors, named_vars, NamedGrads, NamedVars};
pub use guard::check_finite;
pub use log::{read_jsonl, StepLog, StepRecord};
pub use param_groups::{layer_id, NoDecayRule, ParamGroup, ParamGroupRules};
pub use plot::{plot_curves, plot_curves_or_warn};
pub use prefetch::Prefetch;
pub use run_inputs::{fingerprint, record_run_input};
pub use run_loop::{
    run_loop, LoopHooks, LoopOptions, LoopReport, LoopSummary, LoopTrainer, StepReport,
};
pub use schedule::{CosineSchedule, DinoScheduleConfig, DinoSchedules, ScheduleValues};
pub use state::{RngState, TrainState};
pub use sync::{GradSync, SingleProcess};
