//! Stage-1 training (projector only) lowers the report loss; checkpoints resume exactly.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use crate::common;

use candle_core::{DType, Device};
use candle_nn::VarMap;
use common::load;
use llava_bridge::train::{TrainConfig, Trainer};
use llava_bridge::{Projector, ReportGenerator};
use rand::SeedableRng;
use train_utils::CheckpointDir;

#[test]
fn stage1_lowers_the_loss_and_resumes_from_a_checkpoint() {
    let f = load();
    let examples = [f.example(0, true), f.example(1, true)];
    let feats = f.t("image_features");
    let vm = VarMap::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let proj =
        Projector::init(24, 32, &vm, "multi_modal_projector", &mut rng, &Device::Cpu).unwrap();
    let gen = ReportGenerator::new(proj, f.generator.lm.clone()).unwrap();
    let cfg = TrainConfig {
        lr: 1e-2,
        min_lr: 1e-3,
        weight_decay: 0.0,
        warmup_steps: 2,
        total_steps: 40,
        clip_grad: Some(1.0),
    };
    let vars = gen.projector.named_vars("multi_modal_projector");
    for bad in [
        TrainConfig { lr: -1e-2, ..cfg },
        TrainConfig {
            weight_decay: f64::NAN,
            ..cfg
        },
        TrainConfig {
            clip_grad: Some(-1.0),
            ..cfg
        },
    ] {
        let e = Trainer::new(vars.clone(), bad).unwrap_err().to_string();
        assert!(e.contains("is not a finite number >= 0"), "{e}");
    }
    let mut trainer = Trainer::new(vars.clone(), cfg).unwrap();
    let first = gen
        .loss(feats, &examples)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = CheckpointDir::new(dir.path(), 2).unwrap();
    for step in 0..20 {
        let loss = gen.loss(feats, &examples).unwrap();
        let stats = trainer.step(&loss).unwrap();
        assert!(stats.loss.is_finite() && stats.grad_norm > 0.0);
        if step == 9 {
            trainer.save(&ckpt, &rng, 10).unwrap();
        }
    }
    let last = gen
        .loss(feats, &examples)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(last < 0.5 * first, "loss {first} -> {last}");

    // resume at step 10 and replay the last 10 steps: same projector as the uninterrupted run
    let end: Vec<_> = vars
        .iter()
        .map(|(_, v)| v.as_tensor().copy().unwrap())
        .collect();
    let mut resumed = Trainer::new(vars.clone(), cfg).unwrap();
    let (_rng, pos) = resumed.resume(&ckpt).unwrap().unwrap();
    assert_eq!((resumed.step_count(), pos), (10, 10));
    for _ in 10..20 {
        let loss = gen.loss(feats, &examples).unwrap();
        resumed.step(&loss).unwrap();
    }
    for ((name, v), e) in vars.iter().zip(&end) {
        let d = common::max_diff(v.as_tensor(), e);
        assert!(d < 1e-6, "{name}: resumed run differs by {d}");
    }
    assert_eq!(vars[0].1.as_tensor().dtype(), DType::F32);
}
