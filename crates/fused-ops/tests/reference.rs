//! The CPU implementations against PyTorch (`gen.py` → `fixtures/reference.safetensors`):
//! `F.layer_norm` and its gradients, `F.interpolate(mode="bilinear")` and its input gradient,
//! dinov2's centring softmax and Sinkhorn-Knopp. Tolerances are absolute, in f32.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use cxr_core::ops::max_abs_diff;

fn fixtures() -> HashMap<String, Tensor> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference.safetensors"
    );
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

#[test]
fn layer_norm_matches_torch_forward_and_gradients() {
    let f = fixtures();
    let (x, w, b) = (
        Var::from_tensor(&f["ln.x"]).unwrap(),
        Var::from_tensor(&f["ln.w"]).unwrap(),
        Var::from_tensor(&f["ln.b"]).unwrap(),
    );
    let y = fused_ops::layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-6).unwrap();
    assert!(max_abs_diff(&y, &f["ln.y"]).unwrap() < 1e-5);
    let grads = (y * &f["ln.r"])
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (var, key, tol) in [
        (&x, "ln.dx", 1e-4),
        (&w, "ln.dw", 1e-4),
        (&b, "ln.db", 1e-4),
    ] {
        let g = grads.get(var.as_tensor()).unwrap();
        let err = max_abs_diff(g, &f[key]).unwrap();
        assert!(err < tol, "{key}: max abs diff {err}");
    }
}

#[test]
fn resize_matches_torch_interpolate_forward_and_gradient() {
    let f = fixtures();
    for (name, size) in [("up", (16, 20)), ("down", (4, 5)), ("mixed", (11, 6))] {
        for align in [false, true] {
            let key = format!("resize.{name}.{}", align as u8);
            let x = Var::from_tensor(&f["resize.x"]).unwrap();
            let y = fused_ops::resize_bilinear(x.as_tensor(), size, align).unwrap();
            let err = max_abs_diff(&y, &f[&format!("{key}.y")]).unwrap();
            assert!(err < 1e-5, "{key}.y: {err}");
            let loss = (y * &f[&format!("{key}.r")]).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let err = max_abs_diff(grads.get(x.as_tensor()).unwrap(), &f[&format!("{key}.dx")]);
            assert!(err.unwrap() < 1e-5, "{key}.dx");
        }
    }
}

#[test]
fn teacher_matches_dinov2() {
    let f = fixtures();
    let y = fused_ops::center_softmax(&f["teacher.t"], &f["teacher.center"], 0.04).unwrap();
    assert!(max_abs_diff(&y, &f["teacher.softmax"]).unwrap() < 1e-5);
    for iters in [0, 1, 3] {
        let q = fused_ops::sinkhorn_knopp(&f["teacher.t"], 0.5, 6.0, iters).unwrap();
        let want = &f[&format!("teacher.sinkhorn.{iters}")];
        let err = max_abs_diff(&q, want).unwrap();
        assert!(err < 1e-6, "sinkhorn {iters} iterations: {err}");
    }
    // rows of the Sinkhorn targets are distributions (logits at the scale of a weight-normed
    // head: far larger spreads underflow exp in f32 here and in dinov2 alike)
    let t = (&f["teacher.t"] * 0.3).unwrap();
    let q = fused_ops::sinkhorn_knopp(&t, 0.05, 6.0, 3).unwrap();
    let sums = q.sum(1).unwrap().to_vec1::<f32>().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
}

#[test]
fn attention_matches_torch_sdpa() {
    let f = fixtures();
    let y = fused_ops::attention(
        &f["attention.qkv"],
        Some(&f["attention.bias"]),
        2,
        8f64.powf(-0.5),
    )
    .unwrap();
    let err = max_abs_diff(&y, &f["attention.out"]).unwrap();
    assert!(
        err < 1e-5,
        "attention vs F.scaled_dot_product_attention: {err}"
    );
}

#[test]
fn epilogues_match_torch() {
    let f = fixtures();
    let (a, b) = (&f["epilogue.a"], &f["epilogue.b"]);
    let gelu = fused_ops::bias_gelu(a, b).unwrap();
    let err = max_abs_diff(&gelu, &f["epilogue.gelu"]).unwrap();
    assert!(err < 1e-5, "bias_gelu vs nn.GELU: {err}");
    let res =
        fused_ops::bias_scale_residual(a, b, &f["epilogue.lambda"], &f["epilogue.r"]).unwrap();
    let err = max_abs_diff(&res, &f["epilogue.residual"]).unwrap();
    assert!(err < 1e-5, "bias_scale_residual: {err}");
}

#[test]
fn bad_inputs_are_errors() {
    let cpu = Device::Cpu;
    let x = Tensor::zeros((2, 8), candle_core::DType::F32, &cpu).unwrap();
    let w = Tensor::ones(7, candle_core::DType::F32, &cpu).unwrap();
    let err = fused_ops::layer_norm(&x, &w, &w, 1e-6)
        .unwrap_err()
        .to_string();
    assert!(err.contains("weight") && err.contains("[7]"), "{err}");
    let wb = Tensor::ones(8, candle_core::DType::BF16, &cpu).unwrap();
    assert!(fused_ops::layer_norm(&x, &wb, &wb, 1e-6).is_err());
    assert!(fused_ops::resize_bilinear(&x, (4, 4), false).is_err());
    let img = Tensor::zeros((1, 1, 4, 4), candle_core::DType::F32, &cpu).unwrap();
    assert!(fused_ops::resize_bilinear(&img, (0, 4), false).is_err());
    assert!(fused_ops::center_softmax(&x, &w, 0.04).is_err());
    assert!(fused_ops::sinkhorn_knopp(&x, 0.0, 2.0, 3).is_err());
    assert!(fused_ops::sinkhorn_knopp(&x, 0.1, -1.0, 3).is_err());
    // attention: width not 3 × heads × d, wrong bias length, and no backward
    let qkv = Tensor::zeros((1, 4, 24), candle_core::DType::F32, &cpu).unwrap();
    assert!(fused_ops::attention(&qkv, None, 5, 0.5).is_err());
    let err = fused_ops::attention(&qkv, Some(&w), 2, 0.5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bias has 7"), "{err}");
    let var = candle_core::Var::from_tensor(&qkv).unwrap();
    let y = fused_ops::attention(var.as_tensor(), None, 2, 0.5).unwrap();
    assert!(
        y.sum_all().unwrap().backward().is_err(),
        "a gradient must not vanish silently"
    );
    assert!(fused_ops::bias_scale_residual(&x, &w, &w, &x).is_err());
    assert!(fused_ops::bias_gelu(&x, &w).is_err());
}
