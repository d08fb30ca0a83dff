//! One backward pass reaches every student and head variable, and never the teacher.
#![allow(clippy::unwrap_used)]
use crate::common;

use candle_core::Device;
use train_utils::NamedGrads;

#[test]
fn every_student_variable_gets_a_gradient_and_the_teacher_none() {
    let (mut trainer, source) = common::tiny(0.0);
    let batch = source.batch(0, &Device::Cpu).unwrap();
    let masked: u32 = batch
        .masks
        .to_dtype(candle_core::DType::U32)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(masked > 0, "the batch must mask some patches");
    let (losses, store) = trainer.gradients(&batch).unwrap();
    let scalars = losses.scalars().unwrap();
    for name in [
        "dino_local_crops_loss",
        "dino_global_crops_loss",
        "koleo_loss",
        "ibot_loss",
    ] {
        assert!(
            scalars.iter().any(|(n, v)| *n == name && v.is_finite()),
            "{name}: {scalars:?}"
        );
    }
    let student = trainer.student_vars();
    assert!(student.iter().any(|(n, _)| n.starts_with("dino_head.")));
    assert!(student.iter().any(|(n, _)| n == "embeddings.mask_token"));
    let grads = NamedGrads::from_store(&store, &student);
    for (name, _) in &student {
        let g = grads
            .get(name)
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{name}: non-finite gradient"
        );
        assert!(v.iter().any(|&x| x != 0.0), "{name}: zero gradient");
    }
    let teacher = trainer.teacher_vars();
    assert_eq!(teacher.len(), student.len());
    let tg = NamedGrads::from_store(&store, &teacher);
    assert!(tg.is_empty(), "teacher got {} gradients", tg.len());
}

#[test]
fn a_step_moves_the_teacher_towards_the_student_only_by_ema() {
    let (mut trainer, source) = common::tiny(0.0);
    let before: Vec<Vec<f32>> = trainer
        .teacher_vars()
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let out = trainer
        .train_step(&source.batch(0, &Device::Cpu).unwrap())
        .unwrap();
    let m = out.schedule.momentum;
    assert!((m - 0.992).abs() < 1e-12);
    // teacher' = m·teacher + (1 − m)·student' for every variable
    for ((name, t), ((_, s), b)) in trainer
        .teacher_vars()
        .iter()
        .zip(trainer.student_vars().iter().zip(&before))
    {
        let t: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let s: Vec<f32> = s.flatten_all().unwrap().to_vec1().unwrap();
        for ((t, s), b) in t.iter().zip(&s).zip(b) {
            let want = m as f32 * b + (1.0 - m as f32) * s;
            assert!(
                (t - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{name}: {t} vs {want}"
            );
        }
    }
}
