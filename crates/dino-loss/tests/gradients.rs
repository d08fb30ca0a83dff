//! Freshly initialised heads train: every parameter gets a finite, non-zero gradient.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use dino_loss::{DinoHead, DinoHeadConfig, DinoLoss, Error, TeacherMode};

fn cfg(train_weight_g: bool) -> DinoHeadConfig {
    DinoHeadConfig {
        in_dim: 8,
        n_prototypes: 16,
        hidden_dim: 32,
        bottleneck_dim: 8,
        nlayers: 3,
        mlp_bias: true,
        train_weight_g,
    }
}

fn grads_of_fresh_head(train_weight_g: bool) -> Vec<String> {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let head = DinoHead::new(
        cfg(train_weight_g),
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .unwrap();
    let mut loss = DinoLoss::new(16, 0.1, 0.9, &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (4, 8), &dev).unwrap();
    let t = Tensor::randn(0f32, 1.0, (4, 16), &dev).unwrap();
    let targets = loss
        .teacher_targets(&t, 0.04, TeacherMode::Centering, 1)
        .unwrap();
    let l = loss
        .forward(&head.forward(&x).unwrap(), None, &targets, 2)
        .unwrap();
    let grads = l.global.backward().unwrap();
    let data = vm.data().lock().unwrap();
    let mut names = Vec::new();
    for (name, var) in data.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        cxr_testkit::assert_finite_nonzero_gradient(name, g);
        names.push(name.clone());
    }
    names.sort();
    names
}

#[test]
fn every_head_parameter_gets_a_gradient_and_weight_g_stays_frozen() {
    let names = grads_of_fresh_head(false);
    assert_eq!(
        names,
        [
            "last_layer.weight_v",
            "mlp.0.bias",
            "mlp.0.weight",
            "mlp.2.bias",
            "mlp.2.weight",
            "mlp.4.bias",
            "mlp.4.weight"
        ]
    );
    // dinov2's own behaviour: a trainable gain
    assert!(grads_of_fresh_head(true).contains(&"last_layer.weight_g".to_string()));
}

#[test]
fn bad_shapes_are_clear_errors() {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let head = DinoHead::new(cfg(false), VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let err = head
        .forward(&Tensor::zeros((2, 5), DType::F32, &dev).unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::BadInput { .. }), "{err}");
    let loss = DinoLoss::new(16, 0.1, 0.9, &dev).unwrap();
    let s = Tensor::zeros((5, 16), DType::F32, &dev).unwrap();
    let err = loss.forward(&s, None, &s, 2).unwrap_err();
    assert!(err.to_string().contains("2 crops"), "{err}");
    // a 3-D head input works like dinov2's (batch of token sequences)
    let out = head
        .forward(&Tensor::zeros((2, 3, 8), DType::F32, &dev).unwrap())
        .unwrap();
    assert_eq!(out.dims(), [2, 3, 16]);
}

#[test]
fn seeded_init_is_reproducible_and_follows_dinov2() {
    use rand::SeedableRng;
    let dev = Device::Cpu;
    let make = || {
        let vm = VarMap::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let head = DinoHead::init_seeded(cfg(false), &vm, "dino_head.", &mut rng, &dev).unwrap();
        (vm, head)
    };
    let (vm, a) = make();
    let (_, b) = make();
    for ((n, x), (_, y)) in a.named_tensors().iter().zip(b.named_tensors()) {
        let d: f32 = (x - &y)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0, "{n}");
    }
    let data = vm.data().lock().unwrap();
    assert!(data.contains_key("dino_head.mlp.0.weight"));
    assert!(!data.contains_key("dino_head.last_layer.weight_g"));
    let w: Vec<f32> = data["dino_head.mlp.2.weight"]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
    assert!((std - 0.02).abs() < 0.003, "std {std}");
    let bias: Vec<f32> = data["dino_head.mlp.0.bias"].as_tensor().to_vec1().unwrap();
    assert!(bias.iter().all(|&v| v == 0.0));
}

#[test]
fn one_call_on_stacked_inputs_equals_one_call_per_input() {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let head = DinoHead::new(cfg(true), VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let a = Tensor::randn(0f32, 1.0, (4, 8), &dev).unwrap();
    let b = Tensor::randn(0f32, 1.0, (6, 8), &dev).unwrap();
    let many = head.forward_many(&[&a, &b]).unwrap();
    assert_eq!(many.len(), 2);
    for (got, x) in many.iter().zip([&a, &b]) {
        let want = head.forward(x).unwrap();
        assert_eq!(got.dims(), want.dims());
        assert!(cxr_core::ops::max_abs_diff(got, &want).unwrap() < 1e-6);
    }
    let err = head
        .forward_many(&[&a, &Tensor::zeros((2, 5), DType::F32, &dev).unwrap()])
        .unwrap_err();
    assert!(matches!(err, Error::BadInput { .. }), "{err}");
}
