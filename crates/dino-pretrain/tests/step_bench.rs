//! The step benchmark runs real training steps: timings are positive and weights move.
#![allow(clippy::unwrap_used)]

use candle_core::Device;
use dino_pretrain::step_bench::{time_steps, time_train_steps, StepBenchOptions};

/// ViT-tiny at 56 px (4×4 patches of 14), 2 images with 2 local crops of 28 px, K = 64.
fn tiny() -> StepBenchOptions {
    StepBenchOptions {
        arch: "vit_tiny".into(),
        global_size: 56,
        local_size: 28,
        n_local: 2,
        batch_size: 2,
        prototypes: 64,
        head_hidden_dim: 32,
        head_bottleneck_dim: 16,
        warmup: 1,
        steps: 1,
        ..StepBenchOptions::default()
    }
}

#[test]
fn timed_steps_train_the_student() {
    let opts = tiny();
    let dev = Device::Cpu;
    let mut trainer = opts.trainer(&dev).unwrap();
    let batch = opts.batch(&dev).unwrap();
    assert_eq!(batch.global.dims(), &[4, 3, 56, 56]);
    assert_eq!(batch.local.as_ref().unwrap().dims(), &[4, 3, 28, 28]);
    assert_eq!(batch.masks.dims(), &[4, 16]);
    let before: Vec<(String, Vec<f32>)> = trainer
        .student_vars()
        .iter()
        .map(|(n, v)| (n.clone(), v.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    let t = time_steps(&mut trainer, &batch, opts.warmup, opts.steps, &dev).unwrap();
    assert_eq!(trainer.step_index(), 2);
    assert_eq!(t.step_seconds.len(), 1);
    assert!(t.median_s.is_finite() && t.median_s > 0.0, "{t:?}");
    assert!(t.min_s > 0.0 && t.images_per_second > 0.0, "{t:?}");
    assert!(t.masked_patches > 0);
    assert!(t.last_total_loss.is_finite());
    for name in [
        "dino_local_crops_loss",
        "dino_global_crops_loss",
        "koleo_loss",
        "ibot_loss",
        "total_loss",
    ] {
        assert!(
            t.first_step_losses
                .iter()
                .any(|(k, v)| k == name && v.is_finite()),
            "{name}: {:?}",
            t.first_step_losses
        );
    }
    // every student tensor moved (backbone, mask token and the head's prototypes included)
    let after = trainer.student_vars();
    assert!(!before.is_empty());
    assert_eq!(
        before.len(),
        after.len(),
        "student variables before and after"
    );
    for ((name, b), (a_name, v)) in before.iter().zip(after.iter()) {
        assert_eq!(name, a_name, "student variable before vs after");
        let a: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a.len(), b.len(), "{name}: size");
        assert!(a.iter().all(|x| x.is_finite()), "{name}");
        assert!(
            a.iter().zip(b).any(|(x, y)| x != y),
            "{name} did not change"
        );
    }
}

#[test]
fn time_train_steps_reports_the_batch() {
    let t = time_train_steps(&tiny(), &Device::Cpu).unwrap();
    assert_eq!(t.batch_size, 2);
    assert!(t.student_parameters > 5_000_000, "{}", t.student_parameters);
    assert!(t.median_s > 0.0 && t.median_s.is_finite());
}

#[test]
fn crop_sizes_must_be_patch_multiples() {
    let opts = StepBenchOptions {
        local_size: 96,
        ..tiny()
    };
    let err = opts.config().unwrap_err().to_string();
    assert!(err.contains("96") && err.contains("14"), "{err}");
}

#[test]
fn phase_steps_time_forward_backward_and_optimizer() {
    let opts = StepBenchOptions {
        phase_steps: 1,
        ..tiny()
    };
    let t = time_train_steps(&opts, &Device::Cpu).unwrap();
    let names: Vec<&str> = t.phase_seconds.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["forward", "backward", "optimizer"]);
    assert!(
        t.phase_seconds
            .iter()
            .all(|(_, s)| s.is_finite() && *s > 0.0),
        "{:?}",
        t.phase_seconds
    );
    // without phase steps there is no breakdown
    let t = time_train_steps(&tiny(), &Device::Cpu).unwrap();
    assert!(t.phase_seconds.is_empty());
}
