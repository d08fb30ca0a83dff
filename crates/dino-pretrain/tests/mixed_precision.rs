//! bf16 mixed precision (`train.compute_precision = "bf16"`): the student backbone runs in
//! bf16 on casts of its f32 master weights, gradients reach every f32 variable, the losses
//! stay close to the f32 step's, and the weights stay f32.
#![allow(clippy::unwrap_used)]
use crate::common;

use std::path::PathBuf;

use candle_core::{DType, Device};
use cxr_data::Split;
use dino_pretrain::{packs, DinoTrainer, MultiCropSource};
use train_utils::NamedGrads;

fn trainer(precision: &str, drop_path: f64) -> (DinoTrainer, MultiCropSource) {
    let (mut cfg, m) = common::tiny_config(drop_path);
    cfg.train.compute_precision = precision.into();
    let files: Vec<PathBuf> = packs::split_files(&common::pack("cxr-mini"), Split::Train)
        .unwrap()
        .into_iter()
        .take(5)
        .collect();
    let source = MultiCropSource::new(files, &cfg, 4, [0.5; 3], [0.25; 3]).unwrap();
    (
        DinoTrainer::with_backbone(cfg, m, &Device::Cpu).unwrap(),
        source,
    )
}

#[test]
fn bf16_step_reaches_every_f32_variable_and_tracks_the_f32_losses() {
    let (mut t32, source) = trainer("f32", 0.1);
    let (mut t16, _) = trainer("bf16", 0.1);
    // random init is not seeded: start both from the same weights
    for (get, name) in [
        (
            DinoTrainer::student_vars as fn(&DinoTrainer) -> _,
            "student",
        ),
        (DinoTrainer::teacher_vars, "teacher"),
    ] {
        let (vars16, vars32) = (get(&t16), get(&t32));
        assert!(!vars16.is_empty(), "{name}");
        assert_eq!(vars16.len(), vars32.len(), "{name}");
        for ((n, v16), (m, v32)) in vars16.into_iter().zip(vars32) {
            assert_eq!(n, m, "{name}");
            v16.set(v32.as_tensor()).unwrap();
        }
    }
    let batch = source.batch(0, &Device::Cpu).unwrap();
    let (l32, _) = t32.gradients(&batch).unwrap();
    let (l16, store) = t16.gradients(&batch).unwrap();
    let (s32, s16) = (l32.scalars().unwrap(), l16.scalars().unwrap());
    // the same losses and total, in the same order, for both precisions
    let names = |s: &[(&'static str, f64)]| s.iter().map(|(n, _)| *n).collect::<Vec<_>>();
    assert_eq!(
        names(&s32),
        [
            "dino_local_crops_loss",
            "dino_global_crops_loss",
            "koleo_loss",
            "ibot_loss",
            "total_loss"
        ]
    );
    assert_eq!(names(&s16), names(&s32));
    for ((n, a), (_, b)) in s32.iter().zip(&s16) {
        assert!(a.is_finite(), "{n}: {a}");
        assert!(b.is_finite(), "{n}: {b}");
        // same weights, same batch: bf16 rounding only
        assert!(
            (a - b).abs() < 0.05 * a.abs().max(1.0),
            "{n}: f32 {a} vs bf16 {b}"
        );
    }
    let student = t16.student_vars();
    let grads = NamedGrads::from_store(&store, &student);
    for (name, var) in &student {
        assert_eq!(var.dtype(), DType::F32, "{name}: master weights stay f32");
        let g = grads
            .get(name)
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        assert_eq!(g.dtype(), DType::F32, "{name}");
        cxr_testkit::assert_finite_nonzero_gradient(name, g);
    }
    // stochastic depth advanced on the f32 model too (two student forwards per step)
    let out = t16.train_step(&batch).unwrap();
    assert!(out.total().is_finite());
    // the collapse diagnostics are logged with every step
    let v = out.values();
    let entropy = v["teacher_target_entropy"];
    assert!(entropy > 0.0 && entropy <= (32f64).ln() + 1e-4, "{entropy}");
    assert!(v["teacher_logit_spread"] > 0.0);
}

#[test]
fn unknown_precision_is_a_config_error() {
    let (mut cfg, m) = common::tiny_config(0.0);
    cfg.train.compute_precision = "fp8".into();
    let err = DinoTrainer::with_backbone(cfg, m, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("compute_precision"), "{err}");
}
