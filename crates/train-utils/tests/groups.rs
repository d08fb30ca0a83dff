//! Parameter-group rules, EMA, accumulation, NaN guard, logs and plots.
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor, Var};
use train_utils::{
    check_finite, ema_update, layer_id, plot_curves, read_jsonl, Error, GradAccumulator, GradSync,
    NamedGrads, NoDecayRule, ParamGroupRules, SingleProcess, StepLog, StepRecord,
};

#[test]
fn layer_ids_follow_dinov2_for_both_key_layouts() {
    let l = 12;
    for (name, id) in [
        ("embeddings.patch_embeddings.projection.weight", 0),
        ("embeddings.cls_token", 0),
        ("pos_embed", 0),
        ("patch_embed.proj.weight", 0),
        ("encoder.layer.0.attention.attention.query.weight", 1),
        ("encoder.layer.11.mlp.fc2.bias", 12),
        ("blocks.3.attn.qkv.weight", 4),
        ("layernorm.weight", 13),
        ("norm.weight", 13),
    ] {
        assert_eq!(layer_id(name, l), id, "{name}");
    }
    let rules = ParamGroupRules::backbone(12, 0.9, 0.2);
    let g = rules.group("embeddings.patch_embeddings.projection.weight");
    assert!((g.lr_multiplier - 0.9f64.powi(13) * 0.2).abs() < 1e-15);
    assert_eq!(g.wd_multiplier, 1.0);
    let g = rules.group("encoder.layer.11.layer_scale1.lambda1");
    assert!((g.lr_multiplier - 0.9).abs() < 1e-15);
    assert_eq!(g.wd_multiplier, 0.0);
    assert_eq!(
        rules.group("encoder.layer.2.norm1.weight").wd_multiplier,
        0.0
    );
    assert_eq!(
        rules.group("encoder.layer.2.mlp.fc1.bias").wd_multiplier,
        0.0
    );
    assert_eq!(
        rules.group("embeddings.position_embeddings").wd_multiplier,
        0.0
    );
    assert_eq!(rules.group("layernorm.weight").lr_multiplier, 1.0);
    let dinov2 = ParamGroupRules {
        no_decay: NoDecayRule::Dinov2,
        ..rules
    };
    // dinov2 itself decays the position embedding and tokens
    assert_eq!(dinov2.group("pos_embed").wd_multiplier, 1.0);
    assert_eq!(dinov2.group("blocks.0.ls1.gamma").wd_multiplier, 0.0);
    let head = ParamGroupRules::head().group("last_layer.weight_v");
    assert!(head.is_last_layer && head.lr_multiplier == 1.0 && head.wd_multiplier == 1.0);
}

#[test]
fn ema_moves_teacher_towards_student() {
    let t = Var::from_tensor(&Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap()).unwrap();
    let s = Var::from_tensor(&Tensor::new(&[3f32, 6.0], &Device::Cpu).unwrap()).unwrap();
    ema_update(&[("w".into(), t.clone())], &[("w".into(), s.clone())], 0.75).unwrap();
    assert_eq!(t.as_tensor().to_vec1::<f32>().unwrap(), [1.5, 3.0]);
    let err = ema_update(&[("x".into(), t)], &[("w".into(), s)], 0.5).unwrap_err();
    assert!(err.to_string().contains("`x`"), "{err}");
}

#[test]
fn accumulation_averages_micro_batches_and_sync_is_identity() {
    let mut acc = GradAccumulator::new();
    for v in [1f32, 3.0] {
        let mut g = NamedGrads::new();
        g.insert("w", Tensor::new(&[v, 2.0 * v], &Device::Cpu).unwrap());
        acc.add(&g).unwrap();
    }
    let mut mean = acc.finish().unwrap();
    SingleProcess.all_reduce_mean(&mut mean).unwrap();
    assert_eq!(mean.get("w").unwrap().to_vec1::<f32>().unwrap(), [2.0, 4.0]);
    assert_eq!(acc.count(), 0);
}

#[test]
fn nan_guard_names_the_term() {
    check_finite(3, &[("dino", 1.0), ("ibot", 2.0)]).unwrap();
    let err = check_finite(7, &[("dino", 1.0), ("ibot", f64::NAN)]).unwrap_err();
    assert!(matches!(err, Error::NonFinite { step: 7, .. }));
    assert!(err.to_string().contains("`ibot` is NaN"), "{err}");
}

#[test]
fn step_log_resumes_without_duplicates_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |step: u64, loss: f64| StepRecord {
        step,
        values: [("loss".to_string(), loss), ("lr".to_string(), 0.1)].into(),
    };
    {
        let mut log = StepLog::open(dir.path(), None).unwrap();
        for s in 0..6 {
            log.append(&rec(s, 10.0 - s as f64)).unwrap();
        }
    }
    let mut log = StepLog::open(dir.path(), Some(4)).unwrap();
    log.append(&rec(4, 5.5)).unwrap();
    let recs = read_jsonl(log.jsonl_path()).unwrap();
    assert_eq!(
        recs.iter().map(|r| r.step).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(recs[4].values["loss"], 5.5);
    let csv = std::fs::read_to_string(dir.path().join("steps.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "step,loss,lr");
    assert_eq!(csv.lines().count(), 6);
    plot_curves(&recs, &["loss"], &dir.path().join("curves"), "loss").unwrap();
    assert!(
        std::fs::metadata(dir.path().join("curves.png"))
            .unwrap()
            .len()
            > 1000
    );
    assert!(std::fs::read_to_string(dir.path().join("curves.svg"))
        .unwrap()
        .contains("<svg"));
}
