//! Values and gradients against the PyTorch re-implementation of dinov2 (`tests/gen.py`).
#![allow(clippy::unwrap_used)]

use crate::common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{assert_close, for_dtypes, load, varmap};
use dino_loss::teacher::sinkhorn_knopp_teacher;
use dino_loss::{
    koleo_loss, masks_weight, Center, DinoHead, DinoHeadConfig, DinoLoss, DinoObjective,
    IbotPatchLoss, ObjectiveConfig, StudentOutputs, TeacherMode, TeacherOutputs,
};

const D: usize = 8;
const H: usize = 16;
const BOT: usize = 6;
const K: usize = 12;

fn head_config(nlayers: usize) -> DinoHeadConfig {
    DinoHeadConfig {
        in_dim: D,
        n_prototypes: K,
        hidden_dim: H,
        bottleneck_dim: BOT,
        nlayers,
        ..DinoHeadConfig::default()
    }
}

fn check_head(case: &str, nlayers: usize) {
    let fx = load(case);
    for_dtypes(|dtype| {
        let vm = varmap(&fx, "param.", dtype);
        let head = DinoHead::new(
            head_config(nlayers),
            VarBuilder::from_varmap(&vm, dtype, &Device::Cpu),
        )
        .unwrap();
        let x = fx.var("x", dtype);
        let out = head.forward(x.as_tensor()).unwrap();
        assert_close("head output", &out, &fx.get("out", dtype));
        let loss = (out * fx.get("r", dtype)).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        assert_close(
            "grad x",
            grads.get(x.as_tensor()).unwrap(),
            &fx.get("grad.x", dtype),
        );
        let data = vm.data().lock().unwrap();
        let grad_keys = fx.keys_with_prefix("grad.");
        // every trainable head parameter has a reference gradient (weight_g is frozen)
        assert_eq!(data.len() + 1, grad_keys.len(), "{grad_keys:?}");
        assert!(!data.contains_key("last_layer.weight_g"));
        for (name, var) in data.iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            assert_close(
                &format!("grad {name}"),
                g,
                &fx.get(&format!("grad.{name}"), dtype),
            );
        }
    });
}

#[test]
fn head_matches_reference() {
    check_head("head", 3);
}

#[test]
fn single_layer_head_matches_reference() {
    check_head("head_nlayers1", 1);
}

#[test]
fn head_loads_dinov2_checkpoint_layout() {
    let fx = load("head");
    let mut tensors = std::collections::HashMap::new();
    for k in fx.keys_with_prefix("param.") {
        tensors.insert(k.clone(), fx.get(&format!("param.{k}"), DType::F32));
    }
    assert!(tensors.contains_key("last_layer.weight_g"));
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    let head = DinoHead::new(head_config(3), vb).unwrap();
    let out = head.forward(&fx.get("x", DType::F32)).unwrap();
    assert_close("loaded head output", &out, &fx.get("out", DType::F64));
    let names: Vec<String> = head.named_tensors().into_iter().map(|(n, _)| n).collect();
    let mut want: Vec<String> = tensors.keys().cloned().collect();
    want.sort();
    let mut names_sorted = names.clone();
    names_sorted.sort();
    assert_eq!(names_sorted, want);

    // a wrong shape is a clear error naming the tensor
    tensors.insert(
        "mlp.2.weight".into(),
        Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let err = DinoHead::new(head_config(3), vb).unwrap_err().to_string();
    assert!(err.contains("mlp.2.weight"), "{err}");
}

#[test]
fn dino_loss_with_centering_matches_reference_over_two_steps() {
    let fx = load("dino_centering");
    for_dtypes(|dtype| {
        let mut loss = DinoLoss::new(K, 0.1, 0.9, &Device::Cpu).unwrap();
        loss.set_center(Center::from_tensor(&fx.get("center0", dtype), 0.9).unwrap());
        for step in 0..2 {
            let p = |k: &str| format!("s{step}.{k}");
            let t = fx.get(&p("teacher"), dtype);
            let probs = loss
                .teacher_targets(&t, 0.05, TeacherMode::Centering, 1)
                .unwrap();
            assert_close("teacher probs", &probs, &fx.get(&p("teacher_probs"), dtype));
            assert_close(
                "center after",
                loss.center().value(),
                &fx.get(&p("center_after"), dtype),
            );
            let sg = fx.var(&p("student_global"), dtype);
            let sl = fx.var(&p("student_local"), dtype);
            let parts = loss
                .forward(sg.as_tensor(), Some(sl.as_tensor()), &probs, 2)
                .unwrap();
            let local = parts.local.unwrap();
            assert_close(
                "global loss",
                &parts.global,
                &fx.get(&p("global_loss"), dtype),
            );
            assert_close("local loss", &local, &fx.get(&p("local_loss"), dtype));
            let grads = (parts.global + local).unwrap().backward().unwrap();
            assert_close(
                "grad student global",
                grads.get(sg.as_tensor()).unwrap(),
                &fx.get(&p("grad.student_global"), dtype),
            );
            assert_close(
                "grad student local",
                grads.get(sl.as_tensor()).unwrap(),
                &fx.get(&p("grad.student_local"), dtype),
            );
        }
    });
}

#[test]
fn sinkhorn_knopp_matches_reference() {
    let fx = load("sinkhorn");
    for_dtypes(|dtype| {
        let t = fx.get("teacher", dtype);
        let q = sinkhorn_knopp_teacher(&t, 0.05, t.dim(0).unwrap() as f64, 3).unwrap();
        assert_close("sinkhorn", &q, &fx.get("probs", dtype));
        let sums: Vec<f64> = q
            .to_dtype(DType::F64)
            .unwrap()
            .sum(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        for s in sums {
            assert!((s - 1.0).abs() < 1e-5, "row sum {s}");
        }
    });
}

#[test]
fn ibot_loss_matches_reference() {
    let fx = load("ibot");
    for_dtypes(|dtype| {
        let masks = fx.get("masks", dtype);
        let m = fx.get("teacher", dtype).dim(0).unwrap();
        let t = fx.get("teacher", dtype);
        let mut loss = IbotPatchLoss::new(K, 0.1, 0.9, &Device::Cpu).unwrap();
        loss.set_center(Center::from_tensor(&fx.get("center0", dtype), 0.9).unwrap());
        let probs = loss
            .teacher_targets(&t, 0.05, TeacherMode::Centering, m)
            .unwrap();
        assert_close(
            "ibot teacher probs",
            &probs,
            &fx.get("teacher_probs", dtype),
        );
        assert_close(
            "ibot center",
            loss.center().value(),
            &fx.get("center_after", dtype),
        );
        let s = fx.var("student", dtype);
        let l = loss
            .forward_masked(s.as_tensor(), &probs, &masks, None)
            .unwrap();
        assert_close("ibot loss", &l, &fx.get("loss", dtype));
        let grads = l.backward().unwrap();
        assert_close(
            "ibot grad",
            grads.get(s.as_tensor()).unwrap(),
            &fx.get("grad.student", dtype),
        );

        let sk = loss
            .teacher_targets(&t, 0.05, TeacherMode::SinkhornKnopp { n_iterations: 3 }, m)
            .unwrap();
        assert_close("ibot sinkhorn", &sk, &fx.get("sinkhorn_probs", dtype));
        let s2 = fx.var("student", dtype);
        let w = masks_weight(&masks).unwrap();
        let l2 = loss
            .forward_masked(s2.as_tensor(), &sk, &masks, Some(&w))
            .unwrap();
        assert_close("ibot sinkhorn loss", &l2, &fx.get("loss_sinkhorn", dtype));
        let grads = l2.backward().unwrap();
        assert_close(
            "ibot sinkhorn grad",
            grads.get(s2.as_tensor()).unwrap(),
            &fx.get("grad_sinkhorn.student", dtype),
        );
    });
}

#[test]
fn koleo_matches_reference() {
    let fx = load("koleo");
    for_dtypes(|dtype| {
        let x = fx.var("x", dtype);
        let l = koleo_loss(x.as_tensor()).unwrap();
        assert_close("koleo", &l, &fx.get("loss", dtype));
        let grads = l.backward().unwrap();
        assert_close(
            "koleo grad",
            grads.get(x.as_tensor()).unwrap(),
            &fx.get("grad.x", dtype),
        );
    });
}

#[test]
fn full_objective_matches_reference() {
    let fx = load("objective");
    for_dtypes(|dtype| {
        let dev = Device::Cpu;
        let svm = varmap(&fx, "student.", dtype);
        let student =
            DinoHead::new(head_config(3), VarBuilder::from_varmap(&svm, dtype, &dev)).unwrap();
        let mut tt = std::collections::HashMap::new();
        for k in fx.keys_with_prefix("teacher.") {
            tt.insert(k.clone(), fx.get(&format!("teacher.{k}"), dtype));
        }
        let teacher =
            DinoHead::new(head_config(3), VarBuilder::from_tensors(tt, dtype, &dev)).unwrap();
        let cfg = ObjectiveConfig {
            dino_prototypes: K,
            ibot_prototypes: K,
            ..ObjectiveConfig::default()
        };
        let mut obj = DinoObjective::new(cfg, &dev).unwrap();
        obj.dino_mut()
            .set_center(Center::from_tensor(&fx.get("dino_center0", dtype), 0.9).unwrap());
        obj.ibot_mut()
            .set_center(Center::from_tensor(&fx.get("ibot_center0", dtype), 0.9).unwrap());

        let teacher_out = TeacherOutputs {
            cls_logits: teacher.forward(&fx.get("teacher_global", dtype)).unwrap(),
            masked_patch_logits: Some(teacher.forward(&fx.get("teacher_patches", dtype)).unwrap()),
        };
        let targets = obj.teacher_targets(&teacher_out, 0.04, 1, None).unwrap();
        assert_close(
            "dino center",
            obj.dino().center().value(),
            &fx.get("dino_center_after", dtype),
        );
        assert_close(
            "ibot center",
            obj.ibot().center().value(),
            &fx.get("ibot_center_after", dtype),
        );

        let sg = fx.var("student_global", dtype);
        let sl = fx.var("student_local", dtype);
        let sp = fx.var("student_patches", dtype);
        let student_out = StudentOutputs {
            global_cls_logits: student.forward(sg.as_tensor()).unwrap(),
            local_cls_logits: Some(student.forward(sl.as_tensor()).unwrap()),
            global_cls_tokens: sg.as_tensor().clone(),
            masked_patch_logits: Some(student.forward(sp.as_tensor()).unwrap()),
            masks: Some(fx.get("masks", dtype)),
        };
        let losses = obj.losses(&student_out, &targets).unwrap();
        assert_close(
            "dino local",
            losses.dino_local.as_ref().unwrap(),
            &fx.get("dino_local_loss", dtype),
        );
        assert_close(
            "dino global",
            losses.dino_global.as_ref().unwrap(),
            &fx.get("dino_global_loss", dtype),
        );
        assert_close(
            "koleo",
            losses.koleo.as_ref().unwrap(),
            &fx.get("koleo_loss", dtype),
        );
        assert_close(
            "ibot",
            losses.ibot.as_ref().unwrap(),
            &fx.get("ibot_loss", dtype),
        );
        assert_close("total", &losses.total, &fx.get("total", dtype));

        let grads = losses.total.backward().unwrap();
        for (name, var) in [
            ("student_global", &sg),
            ("student_local", &sl),
            ("student_patches", &sp),
        ] {
            assert_close(
                &format!("grad {name}"),
                grads.get(var.as_tensor()).unwrap(),
                &fx.get(&format!("grad.{name}"), dtype),
            );
        }
        let data = svm.data().lock().unwrap();
        assert_eq!(data.len(), 7);
        for (name, var) in data.iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no grad for {name}"));
            assert_close(
                &format!("grad {name}"),
                g,
                &fx.get(&format!("grad.{name}"), dtype),
            );
            let max = g
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(max.is_finite() && max > 0.0, "{name}: gradient max {max}");
        }
        // the teacher head is built from plain tensors: nothing of it can receive a gradient
        for (name, t) in teacher.named_tensors() {
            assert!(grads.get(&t).is_none(), "teacher {name} got a gradient");
        }
    });
}
