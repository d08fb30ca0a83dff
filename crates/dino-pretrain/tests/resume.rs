//! A run stopped after k steps and resumed gives the same losses, to the bit, as an
//! uninterrupted run; the run writes its resolved config, logs and loss plot.
#![allow(clippy::unwrap_used)]
use crate::common;

use candle_core::Device;
use dino_pretrain::{run, RunOptions};
use train_utils::CheckpointDir;

/// Random init is seeded by `train.seed`, backbone and heads alike: two trainers built from
/// one config start from the same weights and take the same steps.
#[test]
fn a_run_from_scratch_is_the_same_run_every_time() {
    let dev = Device::Cpu;
    let (mut a, source) = common::tiny(0.1);
    let (mut b, _) = common::tiny(0.1);
    let flat = |v: &candle_core::Var| {
        v.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (va, vb) = (a.student_vars(), b.student_vars());
    assert_eq!(va.len(), vb.len());
    assert!(va.iter().any(|(n, _)| n.starts_with("dino_head.")));
    for ((na, x), (nb, y)) in va.iter().zip(&vb) {
        assert_eq!(na, nb);
        assert_eq!(flat(x), flat(y), "{na} differs between two builds");
    }
    for step in 0..2 {
        let batch = source.batch(step, &dev).unwrap();
        let (la, lb) = (a.train_step(&batch).unwrap(), b.train_step(&batch).unwrap());
        assert_eq!(la.total().to_bits(), lb.total().to_bits(), "step {step}");
    }
}

#[test]
fn resume_after_one_step_is_bit_identical() {
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    // a common starting point, saved as a checkpoint
    let (mut a, source) = common::tiny(0.1);
    let (t0, s0) = a.checkpoint().unwrap();
    let start = CheckpointDir::new(tmp.path().join("start"), 1).unwrap();
    start.save(&t0, &s0).unwrap();
    let ck0 = start.load(0, &dev).unwrap();

    // uninterrupted: 3 steps
    let straight: Vec<f64> = (0..3)
        .map(|s| {
            a.train_step(&source.batch(s, &dev).unwrap())
                .unwrap()
                .total()
        })
        .collect();

    // 1 step, checkpoint, fresh trainer, resume to 3 steps
    let out = tmp.path().join("run");
    let opts = |steps, resume| RunOptions {
        out: out.clone(),
        steps,
        checkpoint_every: 1,
        keep: 2,
        resume,
        progress: false,
    };
    let (mut b, _) = common::tiny(0.1);
    b.restore(&ck0).unwrap();
    let first = run(&mut b, &source, &dev, &opts(1, false)).unwrap();
    drop(b);
    let (mut c, _) = common::tiny(0.1);
    let rest = run(&mut c, &source, &dev, &opts(3, true)).unwrap();
    assert_eq!(rest.start_step, 1);
    let resumed: Vec<f64> = first.losses.iter().chain(&rest.losses).copied().collect();
    assert_eq!(resumed.len(), 3);
    for (i, (x, y)) in straight.iter().zip(&resumed).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "step {i}: {x} vs {y}");
    }
    // the loss is not constant (the comparison means something)
    assert_ne!(straight[0].to_bits(), straight[2].to_bits());
    for f in [
        "config.resolved.toml",
        "steps.csv",
        "steps.jsonl",
        "loss_curve.png",
        "loss_curve.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let log = train_utils::read_jsonl(&out.join("steps.jsonl")).unwrap();
    assert_eq!(
        log.iter().map(|r| r.step).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}

#[test]
fn nan_input_stops_with_a_clear_error_and_keeps_the_checkpoint() {
    let dev = Device::Cpu;
    let (mut t, source) = common::tiny(0.0);
    let mut batch = source.batch(0, &dev).unwrap();
    batch.global = (batch.global * f64::NAN).unwrap();
    let before = t.step_index();
    let err = t.train_step(&batch).unwrap_err().to_string();
    assert!(
        err.contains("step 0") || err.to_lowercase().contains("nan"),
        "{err}"
    );
    assert_eq!(t.step_index(), before);
}
