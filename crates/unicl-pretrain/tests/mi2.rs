#![allow(clippy::unwrap_used)]
//! Continual pretraining of MI2: the trainer starts exactly where the released model is (the
//! tiny MI2 fixture of the dual-encoder crate, itself checked against the PyTorch UniCL
//! model), every variable of both towers learns, and a resume is bit-exact.

use crate::common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use common::*;
use dual_encoder::{Mi2, Mi2Files, TokenizerFiles};
use train_utils::CheckpointDir;
use unicl_loss::LossKind;
use unicl_pretrain::{ImageTowerConfig, TrainConfig, UniclTrainer};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dual-encoder/tests/fixtures")
        .join(rel)
}

fn mi2_files() -> Mi2Files {
    let tokenizer = TokenizerFiles::VocabMerges {
        vocab: fixture("tokenizer/vocab.json"),
        merges: fixture("tokenizer/merges.txt"),
    };
    Mi2Files {
        config: Some(fixture("mi2_tiny/config.json")),
        ..Mi2Files::single(&fixture("mi2_tiny/model.safetensors"), tokenizer)
    }
}

/// Optimisation settings of a short run; the architecture comes from the checkpoint.
fn base(batch: usize, steps: u64) -> TrainConfig {
    TrainConfig {
        batch_size: batch,
        lr: 1e-3,
        warmup_steps: 1,
        ..TrainConfig::small(LossKind::Unicl, 64, 674, steps)
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    cxr_core::ops::max_abs_diff(a, b).unwrap()
}

#[test]
fn continual_pretraining_starts_from_the_released_model() {
    let (trainer, tok) = UniclTrainer::from_mi2(&mi2_files(), base(4, 4), &dev()).unwrap();
    assert!(matches!(trainer.config().image, ImageTowerConfig::Davit(_)));
    let reference = Mi2::load(&mi2_files(), DType::F32, &dev()).unwrap();
    let expected =
        candle_core::safetensors::load(fixture("mi2_tiny/expected.safetensors"), &dev()).unwrap();
    let images = &expected["images"];
    let (ours, theirs) = (trainer.model(), reference.model());
    // the same weights; the trainable path composes some ops the inference path fuses
    let d = max_diff(
        &ours.encode_image(images, false).unwrap(),
        &theirs.encode_image(images, false).unwrap(),
    );
    assert!(
        d < 1e-6,
        "image embeddings differ from the inference model by {d}"
    );
    // and so at parity with the PyTorch reference the fixture was written from
    let d = max_diff(
        &ours.encode_image(images, false).unwrap(),
        &expected["image_embeddings"],
    );
    assert!(d < 1e-5, "image embeddings differ from PyTorch by {d}");
    let texts = ["chest x-ray with effusion", "no acute findings"];
    let batch = tok.encode_batch(&texts, &dev()).unwrap();
    let d = max_diff(
        &ours.encode_text(&batch).unwrap(),
        &theirs.encode_text(&batch).unwrap(),
    );
    assert!(
        d < 1e-6,
        "text embeddings differ from the inference model by {d}"
    );
    // the learned temperature is the checkpoint's, not the objective's initial one
    assert_eq!(
        max_diff(&ours.scale().unwrap(), &theirs.scale().unwrap()),
        0.0
    );
}

#[test]
fn every_mi2_variable_learns_and_a_resume_is_bit_exact() {
    let (probe, tok) = UniclTrainer::from_mi2(&mi2_files(), base(4, 4), &dev()).unwrap();
    let src = source(tiny_dataset_at(8, 64), tok, 4);
    let g = probe.gradients(&src.batch(0, &dev()).unwrap()).unwrap();
    assert!(g.loss.is_finite());
    let vars = probe.vars();
    assert!(vars.iter().any(|(n, _)| n.starts_with("image_encoder.")));
    assert!(vars.iter().any(|(n, _)| n.starts_with("lang_encoder.")));
    assert!(vars.iter().any(|(n, _)| n == "logit_scale"));
    assert_every_gradient(&vars, &g);
    // MI2's tower has stochastic depth (rate 0.1 here): its masks must replay after a resume
    let (mut straight, _) = UniclTrainer::from_mi2(&mi2_files(), base(4, 4), &dev()).unwrap();
    assert!(straight
        .model()
        .image_encoder()
        .stochastic_depth_state()
        .is_some());
    for s in 0..3 {
        straight.train_step(&src.batch(s, &dev()).unwrap()).unwrap();
    }
    let (mut first, _) = UniclTrainer::from_mi2(&mi2_files(), base(4, 4), &dev()).unwrap();
    first.train_step(&src.batch(0, &dev()).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ckdir = CheckpointDir::new(tmp.path().join("ck"), 2).unwrap();
    let (tensors, state) = first.checkpoint().unwrap();
    ckdir.save(&tensors, &state).unwrap();
    drop(first);
    let (mut resumed, _) = UniclTrainer::from_mi2(&mi2_files(), base(4, 4), &dev()).unwrap();
    resumed
        .restore(&ckdir.load_latest(&dev()).unwrap().unwrap())
        .unwrap();
    for s in 1..3 {
        resumed.train_step(&src.batch(s, &dev()).unwrap()).unwrap();
    }
    assert_same_bits(&straight.vars(), &resumed.vars());
}
