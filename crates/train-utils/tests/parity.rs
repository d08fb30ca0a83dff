//! AdamW, clipping and schedules against PyTorch / dinov2 (`tests/gen.py`).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use train_utils::{
    clip_grad_norm, AdamW, AdamWConfig, CosineSchedule, DinoScheduleConfig, DinoSchedules,
    NamedGrads, ParamGroup,
};

fn fixture_dir() -> String {
    format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"))
}

/// `max |a − b|` in f64; NaN when either holds a NaN (candle's `max` would skip it).
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    d.iter().fold(0f64, |m, x| {
        if m.is_nan() || x.is_nan() {
            f64::NAN
        } else {
            m.max(x.abs())
        }
    })
}

#[test]
fn adamw_with_groups_and_clipping_matches_torch_over_four_steps() {
    let dir = fixture_dir();
    let t =
        candle_core::safetensors::load(format!("{dir}/adamw/tensors.safetensors"), &Device::Cpu)
            .unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/adamw/config.json")).unwrap())
            .unwrap();
    let names: Vec<String> = serde_json::from_value(cfg["names"].clone()).unwrap();
    let lr_mult: Vec<f64> = serde_json::from_value(cfg["lr_mult"].clone()).unwrap();
    let wd_mult: Vec<f64> = serde_json::from_value(cfg["wd_mult"].clone()).unwrap();
    let last: Vec<bool> = serde_json::from_value(cfg["is_last_layer"].clone()).unwrap();
    let lr: Vec<f64> = serde_json::from_value(cfg["lr"].clone()).unwrap();
    let wd: Vec<f64> = serde_json::from_value(cfg["wd"].clone()).unwrap();
    let last_lr: Vec<f64> = serde_json::from_value(cfg["last_layer_lr"].clone()).unwrap();

    let vars: Vec<(String, Var)> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                Var::from_tensor(&t[&format!("init.{n}")]).unwrap(),
            )
        })
        .collect();
    let groups: HashMap<String, ParamGroup> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.clone(),
                ParamGroup {
                    lr_multiplier: lr_mult[i],
                    wd_multiplier: wd_mult[i],
                    is_last_layer: last[i],
                },
            )
        })
        .collect();
    let mut opt = AdamW::new(&vars, |n| groups[n], AdamWConfig::default()).unwrap();
    for step in 0..4 {
        let mut grads = NamedGrads::new();
        for n in &names {
            if let Some(g) = t.get(&format!("grad{step}.{n}")) {
                grads.insert(n.clone(), g.clone());
            }
        }
        let norm = clip_grad_norm(&mut grads, None, 3.0).unwrap();
        let want_norm = t[&format!("norm{step}")].to_scalar::<f32>().unwrap() as f64;
        assert!(
            (norm - want_norm).abs() < 1e-5,
            "step {step}: norm {norm} vs {want_norm}"
        );
        opt.step(&grads, lr[step], wd[step], last_lr[step]).unwrap();
        for (n, v) in &vars {
            let d = max_diff(v.as_tensor(), &t[&format!("param{step}.{n}")]);
            assert!(d < 1e-6, "step {step} {n}: max diff {d:e}");
        }
    }
    // the frozen last layer did not move during its two frozen steps, yet has moments
    let (moments, steps) = opt.state();
    assert_eq!(steps["head.last_layer.weight_v"], 4);
    assert_eq!(
        steps["backbone.norm.weight"], 3,
        "no gradient at step 2: skipped"
    );
    assert!(moments.contains_key("exp_avg_sq.backbone.blocks.0.bias"));
}

#[test]
fn schedules_match_dinov2_cosine_scheduler() {
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/schedules.json", fixture_dir())).unwrap(),
    )
    .unwrap();
    let cfg = DinoScheduleConfig {
        epoch_len: 5,
        epochs: 4,
        lr: 4e-3,
        min_lr: 1e-6,
        warmup_epochs: 2,
        weight_decay: 0.04,
        weight_decay_end: 0.4,
        momentum_teacher: 0.992,
        final_momentum_teacher: 1.0,
        teacher_temp: 0.07,
        warmup_teacher_temp: 0.04,
        warmup_teacher_temp_epochs: 3,
        freeze_last_layer_epochs: 1,
    };
    let sch = DinoSchedules::new(&cfg).unwrap();
    let get = |k: &str| -> Vec<f64> { serde_json::from_value(s[k].clone()).unwrap() };
    let (lr, wd, mom, tt, last) = (
        get("lr"),
        get("wd"),
        get("momentum"),
        get("teacher_temp"),
        get("last_layer_lr"),
    );
    for it in 0..lr.len() {
        let v = sch.at(it);
        for (name, got, want) in [
            ("lr", v.lr, lr[it]),
            ("wd", v.wd, wd[it]),
            ("momentum", v.momentum, mom[it]),
            ("teacher_temp", v.teacher_temp, tt[it]),
            ("last_layer_lr", v.last_layer_lr, last[it]),
        ] {
            assert!((got - want).abs() < 1e-15, "{name}[{it}]: {got} vs {want}");
        }
    }
    let frz = CosineSchedule::new(1.0, 0.5, 12, 3, 0.1, 2).unwrap();
    for (it, want) in get("freeze_warmup").iter().enumerate() {
        assert!((frz.at(it) - want).abs() < 1e-15, "freeze/warm-up [{it}]");
    }
    assert!(CosineSchedule::new(1.0, 0.0, 3, 2, 0.0, 2).is_err());
}
