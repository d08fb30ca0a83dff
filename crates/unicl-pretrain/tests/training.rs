#![allow(clippy::unwrap_used)]
//! One step reaches every parameter; resume is bit-exact; GradCache equals the full batch.

use crate::common;

use common::*;
use train_utils::{read_jsonl, CheckpointDir};
use unicl_pretrain::gradcache::{
    full_batch_gradients, grad_cache_gradients, BatchInputs, ImageTower,
};
use unicl_pretrain::{run, LoopOptions, RunOptions, UniclTrainer, Validation};

#[test]
fn every_parameter_gets_a_finite_nonzero_gradient() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let src = source(tiny_dataset(6), tok.clone(), 6);
    let batch = src.batch(0, &dev()).unwrap();
    // the batch mixes label prompts (some shared) and one report
    assert!(batch
        .texts
        .iter()
        .any(|t| t == "small left pleural effusion"));
    let trainer = UniclTrainer::new(tiny_config(tok.vocab_size(), 6, 4), &dev()).unwrap();
    let g = trainer.gradients(&batch).unwrap();
    assert!(g.loss.is_finite());
    let vars = trainer.vars();
    assert!(vars.iter().any(|(n, _)| n == "logit_scale"));
    assert!(vars.iter().any(|(n, _)| n.starts_with("image_encoder.")));
    assert!(vars.iter().any(|(n, _)| n.starts_with("lang_encoder.")));
    assert_every_gradient(&vars, &g);
}

#[test]
fn a_locked_image_tower_stays_put_while_the_rest_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let src = source(tiny_dataset(6), tok.clone(), 6);
    let mut cfg = tiny_config(tok.vocab_size(), 6, 4);
    cfg.lock_image = true;
    for micro_batch in [None, Some(4)] {
        cfg.micro_batch = micro_batch;
        let mut trainer = UniclTrainer::new(cfg.clone(), &dev()).unwrap();
        let before: Vec<(String, Vec<f32>)> = trainer
            .vars()
            .iter()
            .map(|(n, v)| (n.clone(), v.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        let trainable = trainer.trainable_vars();
        assert!(!trainable
            .iter()
            .any(|(n, _)| n.starts_with("image_encoder.")));
        assert!(trainable.iter().any(|(n, _)| n == "image_projection"));
        assert_eq!(
            trainable.len()
                + before
                    .iter()
                    .filter(|(n, _)| n.starts_with("image_encoder."))
                    .count(),
            before.len()
        );
        let g = trainer.gradients(&src.batch(0, &dev()).unwrap()).unwrap();
        assert_eq!(g.grads.len(), trainable.len(), "{micro_batch:?}");
        assert_every_gradient(&trainable, &g);
        for s in 0..2 {
            trainer.train_step(&src.batch(s, &dev()).unwrap()).unwrap();
        }
        for ((n, a), (m, b)) in before.iter().zip(trainer.vars().iter()) {
            assert_eq!(n, m);
            let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
            let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert_eq!(
                same,
                n.starts_with("image_encoder."),
                "{n} ({micro_batch:?})"
            );
        }
    }
}

#[test]
fn resume_is_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(&tmp.path().join("tok"));
    let src = source(tiny_dataset(8), tok.clone(), 4);
    let cfg = tiny_config(tok.vocab_size(), 4, 4);
    let mut straight = UniclTrainer::new(cfg.clone(), &dev()).unwrap();
    for s in 0..4 {
        straight.train_step(&src.batch(s, &dev()).unwrap()).unwrap();
    }
    let mut first = UniclTrainer::new(cfg.clone(), &dev()).unwrap();
    for s in 0..2 {
        first.train_step(&src.batch(s, &dev()).unwrap()).unwrap();
    }
    let ckdir = CheckpointDir::new(tmp.path().join("ck"), 2).unwrap();
    let (tensors, state) = first.checkpoint().unwrap();
    ckdir.save(&tensors, &state).unwrap();
    drop(first);
    // a fresh trainer with another init seed: everything must come from the checkpoint
    let mut other = cfg.clone();
    other.seed = 99;
    let mut resumed = UniclTrainer::new(other, &dev()).unwrap();
    // the data seed is the source's, the model init is overwritten by the restore
    resumed
        .restore(&ckdir.load_latest(&dev()).unwrap().unwrap())
        .unwrap();
    assert_eq!(resumed.step_index(), 2);
    for s in 2..4 {
        resumed.train_step(&src.batch(s, &dev()).unwrap()).unwrap();
    }
    assert_same_bits(&straight.vars(), &resumed.vars());
}

#[test]
fn grad_cache_matches_the_full_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let src = source(tiny_dataset(7), tok.clone(), 7);
    let batch = src.batch(3, &dev()).unwrap();
    // shared labels make the UniCL targets non-diagonal
    assert_eq!(batch.targets.len(), 7);
    assert!(
        !batch.targets.all_unique(),
        "the batch must repeat a label: {:?}",
        (0..7)
            .map(|i| batch.targets.n_positives(i).unwrap())
            .collect::<Vec<_>>()
    );
    let trainer = UniclTrainer::new(tiny_config(tok.vocab_size(), 7, 4), &dev()).unwrap();
    let model = trainer.model();
    let loss = unicl_loss::LossKind::Unicl.build();
    let vars = trainer.vars();
    let inputs = BatchInputs {
        pixels: &batch.pixels,
        tokens: &batch.tokens,
        targets: &batch.targets,
    };
    // the locked tower's GradCache runs the tower once per chunk: the same gradient too
    for tower in [ImageTower::Trained, ImageTower::Locked] {
        let full = full_batch_gradients(model, tower, loss.as_ref(), &vars, inputs).unwrap();
        let tower_grads = full
            .grads
            .iter()
            .filter(|(n, _)| n.starts_with("image_encoder."))
            .count();
        assert_eq!(tower_grads == 0, tower == ImageTower::Locked, "{tower:?}");
        for chunk in [2, 3] {
            let gc =
                grad_cache_gradients(model, tower, loss.as_ref(), &vars, inputs, chunk).unwrap();
            assert!((full.loss - gc.loss).abs() < 1e-6);
            assert_eq!(full.grads.len(), gc.grads.len());
            for (name, g) in full.grads.iter() {
                let h = gc.grads.get(name).unwrap();
                let d = cxr_core::ops::max_abs_diff(g, h).unwrap();
                let scale = cxr_core::ops::max_abs(g).unwrap();
                assert!(
                    d < 1e-5_f32.max(1e-5 * scale),
                    "{name}: GradCache differs by {d} (chunk {chunk}, {tower:?})"
                );
            }
        }
    }
    let full =
        full_batch_gradients(model, ImageTower::Trained, loss.as_ref(), &vars, inputs).unwrap();
    // naive per-micro-batch accumulation is a different objective: its gradient differs
    let half = |s: usize, l: usize| {
        let px = batch.pixels.narrow(0, s, l).unwrap();
        let tb = dual_encoder::TokenBatch {
            input_ids: batch.tokens.input_ids.narrow(0, s, l).unwrap(),
            attention_mask: batch.tokens.attention_mask.narrow(0, s, l).unwrap(),
        };
        let t = unicl_loss::BatchTargets::from_label_ids(
            &batch.targets.groups()[s..s + l]
                .iter()
                .map(|&g| g as u64)
                .collect::<Vec<_>>(),
        );
        let inputs = BatchInputs {
            pixels: &px,
            tokens: &tb,
            targets: &t,
        };
        full_batch_gradients(model, ImageTower::Trained, loss.as_ref(), &vars, inputs).unwrap()
    };
    let (a, b) = (half(0, 4), half(4, 3));
    let name = "logit_scale";
    let naive = ((a.grads.get(name).unwrap() * (4.0 / 7.0)).unwrap()
        + (b.grads.get(name).unwrap() * (3.0 / 7.0)).unwrap())
    .unwrap();
    let d = cxr_core::ops::max_abs_diff(&naive, full.grads.get(name).unwrap()).unwrap();
    assert!(d > 1e-4, "naive accumulation unexpectedly matched ({d})");
}

#[test]
fn tokenizer_is_deterministic_and_pools_at_end_of_text() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tokenizer(&tmp.path().join("a"));
    let b = tokenizer(&tmp.path().join("b"));
    let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
    assert!(
        read("a/merges.txt") == read("b/merges.txt"),
        "merges differ"
    );
    let va: std::collections::BTreeMap<String, u32> =
        serde_json::from_str(&read("a/vocab.json")).unwrap();
    let vb: std::collections::BTreeMap<String, u32> =
        serde_json::from_str(&read("b/vocab.json")).unwrap();
    let diff: Vec<_> = va
        .iter()
        .filter(|(k, v)| vb.get(*k) != Some(v))
        .take(5)
        .collect();
    assert!(
        diff.is_empty(),
        "vocab ids differ: {diff:?} of {}",
        va.len()
    );
    let eos = a.token_to_id("<|endoftext|>").unwrap() as usize;
    assert_eq!(eos + 1, a.vocab_size());
    let ids = b
        .encode_unpadded("chest x-ray with an enlarged heart")
        .unwrap();
    // whole words were learned: far fewer tokens than characters
    assert!(ids.len() <= 11, "{ids:?}");
    assert_eq!(*ids.last().unwrap() as usize, eos);
    let reloaded =
        dual_encoder::TextTokenizer::from_file(&tmp.path().join("a/tokenizer.json"), 16).unwrap();
    assert_eq!(
        reloaded.encode_unpadded("no acute findings").unwrap(),
        a.encode_unpadded("no acute findings").unwrap()
    );
}

#[test]
fn run_validates_every_n_steps_and_resumes_with_its_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(&tmp.path().join("tok"));
    let data = tiny_dataset(8);
    let src = source(data.clone(), tok.clone(), 4);
    let cfg = tiny_config(tok.vocab_size(), 4, 4);
    let out = tmp.path().join("run");
    let opts = |steps, resume| RunOptions {
        run: LoopOptions {
            out: out.clone(),
            steps,
            checkpoint_every: 1,
            keep: 2,
            resume,
            progress: false,
        },
        validation: Some(Validation {
            data: data.clone(),
            tokenizer: tok.clone(),
            every: 2,
        }),
    };
    let mut straight = UniclTrainer::new(cfg.clone(), &dev()).unwrap();
    let want = run(&mut straight, &src, &dev(), &opts(3, false)).unwrap();
    std::fs::remove_dir_all(&out).unwrap();

    let mut first = UniclTrainer::new(cfg.clone(), &dev()).unwrap();
    let a = run(&mut first, &src, &dev(), &opts(1, false)).unwrap();
    // validated after its last step only
    assert_eq!(a.val_macro_auroc.len(), 1);
    assert_eq!(a.val_macro_auroc[0].0, 1);
    let mut other = cfg.clone();
    other.seed = 99;
    let mut second = UniclTrainer::new(other, &dev()).unwrap();
    let b = run(&mut second, &src, &dev(), &opts(3, true)).unwrap();
    assert_eq!((b.start_step, b.end_step), (1, 3));
    let steps: Vec<u64> = b.val_macro_auroc.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, [2, 3], "every 2 steps and after the last");

    let resumed: Vec<u64> = a
        .losses
        .iter()
        .chain(&b.losses)
        .map(|l| l.to_bits())
        .collect();
    let straight_bits: Vec<u64> = want.losses.iter().map(|l| l.to_bits()).collect();
    assert_eq!(resumed, straight_bits);
    // the same weights give the same validation
    let (last, want_last) = (b.val_macro_auroc[1], want.val_macro_auroc[1]);
    assert_eq!(last.1.to_bits(), want_last.1.to_bits());

    let val = read_jsonl(&out.join("val/steps.jsonl")).unwrap();
    let logged: Vec<u64> = val.iter().map(|r| r.step).collect();
    assert_eq!(logged, [0, 1, 2], "0-based steps, kept across the resume");
    for f in ["config.json", "steps.csv", "loss_curve.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // validating every 0 steps is refused, not read as every step
    let mut never = opts(3, false);
    if let Some(v) = never.validation.as_mut() {
        v.every = 0;
    }
    let mut third = UniclTrainer::new(cfg, &dev()).unwrap();
    let err = run(&mut third, &src, &dev(), &never).unwrap_err();
    assert!(err.to_string().contains("every 0 steps"), "{err}");
}

/// A damaged `--init-image` checkpoint is an error that names its file (candle's own message,
/// "invalid header length", does not).
#[test]
fn damaged_image_tower_checkpoint_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("model.safetensors");
    std::fs::write(&file, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\"").unwrap();
    let e = unicl_pretrain::model::load_image_tower(&candle_nn::VarMap::new(), tmp.path(), &dev())
        .unwrap_err()
        .to_string();
    assert!(e.contains(&file.display().to_string()), "{e}");
}
