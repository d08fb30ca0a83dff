//! Optimizer state must not hold on to the autograd graph of the step that produced it.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor, Var};
use train_utils::{AdamW, AdamWConfig, NamedGrads, ParamGroup};

#[test]
fn gradients_and_moments_carry_no_graph() {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::new(&[[1f32, -2.0], [0.5, 3.0]], &dev).unwrap()).unwrap();
    let vars = vec![("w".to_string(), w.clone())];
    let mut opt = AdamW::new(&vars, |_| ParamGroup::default(), AdamWConfig::default()).unwrap();
    for _ in 0..3 {
        let x = Tensor::new(&[[0.3f32], [0.7]], &dev).unwrap();
        let loss = w
            .as_tensor()
            .matmul(&x)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let store = loss.backward().unwrap();
        let grads = NamedGrads::from_store(&store, &vars);
        assert!(
            !grads.get("w").unwrap().track_op(),
            "gradient keeps its graph"
        );
        opt.step(&grads, 1e-2, 0.04, 1e-2).unwrap();
    }
    let (moments, steps) = opt.state();
    assert_eq!(steps["w"], 3);
    let mut names: Vec<&String> = moments.keys().collect();
    names.sort();
    assert_eq!(names, ["exp_avg.w", "exp_avg_sq.w"]);
    for (name, t) in &moments {
        assert!(!t.track_op(), "{name} keeps the graph of a past step");
        assert_eq!(t.dtype(), DType::F32);
    }
    // a gradient that still tracks ops (e.g. built by hand) must not leak into the moments
    let tracked = (w.as_tensor() * 2.0).unwrap();
    assert!(tracked.track_op());
    let mut grads = NamedGrads::new();
    grads.insert("w", tracked);
    opt.step(&grads, 1e-2, 0.0, 1e-2).unwrap();
    assert!(opt.state().0.values().all(|t| !t.track_op()));
}
