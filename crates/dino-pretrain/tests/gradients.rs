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
        cxr_testkit::assert_finite_nonzero_gradient(name, g);
    }
    let teacher = trainer.teacher_vars();
    assert_eq!(teacher.len(), student.len());
    let tg = NamedGrads::from_store(&store, &teacher);
    assert!(tg.is_empty(), "teacher got {} gradients", tg.len());
}

#[test]
fn a_step_moves_the_teacher_towards_the_student_only_by_ema() {
    let (mut trainer, source) = common::tiny(0.0);
    let before: Vec<(String, Vec<f32>)> = trainer
        .teacher_vars()
        .iter()
        .map(|(n, v)| (n.clone(), v.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    let out = trainer
        .train_step(&source.batch(0, &Device::Cpu).unwrap())
        .unwrap();
    let m = out.schedule.momentum;
    assert!((m - 0.992).abs() < 1e-12);
    // teacher' = m·teacher + (1 − m)·student' for every variable, matched by name
    let (teacher, student) = (trainer.teacher_vars(), trainer.student_vars());
    assert!(!teacher.is_empty());
    assert_eq!(
        teacher.len(),
        student.len(),
        "teacher and student variables"
    );
    assert_eq!(
        teacher.len(),
        before.len(),
        "teacher variables before and after"
    );
    for ((name, t), ((s_name, s), (b_name, b))) in teacher.iter().zip(student.iter().zip(&before)) {
        assert_eq!(name, s_name, "teacher vs student variable");
        assert_eq!(name, b_name, "teacher variable after vs before");
        let t: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let s: Vec<f32> = s.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!((t.len(), s.len()), (b.len(), b.len()), "{name}: sizes");
        for ((t, s), b) in t.iter().zip(&s).zip(b) {
            let want = m as f32 * b + (1.0 - m as f32) * s;
            assert!(
                (t - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{name}: {t} vs {want}"
            );
        }
    }
}

#[test]
fn random_init_is_dinov2_s_and_seeded_by_train_seed() {
    use dino_pretrain::DinoTrainer;
    let backbone = |seed: u64| {
        let (mut cfg, m) = common::tiny_config(0.0);
        cfg.train.seed = seed;
        DinoTrainer::with_backbone(cfg, m, &Device::Cpu)
            .unwrap()
            .teacher_backbone_tensors()
    };
    let (a, b, c) = (backbone(5), backbone(5), backbone(6));
    let v = |m: &std::collections::HashMap<String, candle_core::Tensor>, n: &str| -> Vec<f32> {
        m[n].flatten_all().unwrap().to_vec1().unwrap()
    };
    // every backbone tensor is drawn from train.seed: the same seed, the same model
    for name in a.keys() {
        assert_eq!(v(&a, name), v(&b, name), "{name}");
    }
    let fc1 = "encoder.layer.0.mlp.fc1.weight";
    assert_ne!(v(&a, fc1), v(&c, fc1));
    // dinov2's init_weights: tiny CLS token, zero linear biases, std-0.02 linear weights
    assert!(v(&a, "embeddings.cls_token").iter().all(|x| x.abs() < 1e-5));
    assert!(v(&a, "encoder.layer.1.attention.output.dense.bias")
        .iter()
        .all(|&x| x == 0.0));
    let w = v(&a, fc1);
    let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
    assert!((std - 0.02).abs() < 0.004, "fc1 std {std}");
}
