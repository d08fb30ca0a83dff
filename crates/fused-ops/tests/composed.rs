//! The fused operations against the composed, differentiable forms the workspace trained
//! through before (`cxr_core::ops`): same outputs and same gradients, in f32 and bf16, and
//! every input receives a finite, non-zero gradient.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor, Var};
use cxr_core::ops::max_abs_diff;
use cxr_testkit::seeded_randn;

fn grads_of(
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> candle_core::Result<Tensor>,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    r: &Tensor,
) -> (Tensor, Vec<Tensor>) {
    let vars = [x, w, b].map(|t| Var::from_tensor(t).unwrap());
    let y = f(
        vars[0].as_tensor(),
        vars[1].as_tensor(),
        vars[2].as_tensor(),
    )
    .unwrap();
    let loss = (y.to_dtype(DType::F32).unwrap() * r)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = loss.backward().unwrap();
    let grads = vars
        .iter()
        .map(|v| g.get(v.as_tensor()).unwrap().clone())
        .collect();
    (y, grads)
}

/// Largest `|a − b|` over the largest `|want|`: an error relative to the reference's size.
fn rel_diff(got: &Tensor, want: &Tensor) -> f32 {
    max_abs_diff(got, want).unwrap() / cxr_core::ops::max_abs(want).unwrap()
}

#[test]
fn layer_norm_equals_composed_form_with_gradients() {
    // seeded, so the relative bf16 bounds below are met by the same numbers every run
    let x = seeded_randn(1f32, 1.15, (2, 9, 64), 210).unwrap();
    let w = seeded_randn(1f32, 0.3, 64, 211).unwrap();
    let b = seeded_randn(0f32, 0.3, 64, 212).unwrap();
    let r = seeded_randn(0f32, 0.6, (2, 9, 64), 213).unwrap();
    let names = ["dx", "dw", "db"];
    for dtype in [DType::F32, DType::BF16] {
        let [x, w, b] = [&x, &w, &b].map(|t| t.to_dtype(dtype).unwrap());
        let (y1, g1) = grads_of(
            |x, w, b| fused_ops::layer_norm(x, w, b, 1e-6),
            &x,
            &w,
            &b,
            &r,
        );
        let (y2, g2) = grads_of(
            |x, w, b| cxr_core::ops::layer_norm(x, w, b, 1e-6),
            &x,
            &w,
            &b,
            &r,
        );
        assert_eq!(y1.dtype(), dtype);
        for (i, a) in g1.iter().enumerate() {
            assert_eq!(a.dtype(), dtype, "{} keeps the parameter dtype", names[i]);
            assert_eq!(a.dims(), [&x, &w, &b][i].dims(), "{}", names[i]);
            cxr_testkit::assert_finite_nonzero_gradient(names[i], a);
        }
        if dtype == DType::F32 {
            assert!(max_abs_diff(&y1, &y2).unwrap() < 1e-4, "{dtype:?} forward");
            for (i, (a, c)) in g1.iter().zip(&g2).enumerate() {
                let err = max_abs_diff(a, c).unwrap();
                assert!(err < 1e-3, "{dtype:?} {}: {err}", names[i]);
            }
            continue;
        }
        // bf16: against the composed form in f32 on the same (rounded) inputs, relative to the
        // reference's size (|dx| is about 1, so an absolute bound would pass a wrong dx); the
        // fused op is no further from it than a small multiple of the composed bf16 form
        let [x32, w32, b32] = [&x, &w, &b].map(|t| t.to_dtype(DType::F32).unwrap());
        let (want_y, want_g) = grads_of(
            |x, w, b| cxr_core::ops::layer_norm(x, w, b, 1e-6),
            &x32,
            &w32,
            &b32,
            &r,
        );
        let (ey, ec) = (rel_diff(&y1, &want_y), rel_diff(&y2, &want_y));
        eprintln!("bf16 layer norm: y {ey:e} (composed {ec:e})");
        assert!(ey <= 2f32.powi(-7), "bf16 forward: relative {ey:e}");
        assert!(
            ey <= 2.0 * ec.max(2e-3),
            "bf16 forward: fused {ey:e}, composed {ec:e}"
        );
        for (i, ((a, c), want)) in g1.iter().zip(&g2).zip(&want_g).enumerate() {
            let (dg, dc) = (rel_diff(a, want), rel_diff(c, want));
            eprintln!("bf16 layer norm: {} {dg:e} (composed {dc:e})", names[i]);
            assert!(dg <= 1e-2, "bf16 {}: relative {dg:e}", names[i]);
            assert!(
                dg <= 2.0 * dc.max(5e-3),
                "bf16 {}: fused {dg:e}, composed {dc:e}",
                names[i]
            );
        }
    }
}

#[test]
fn fused_inference_layer_norm_of_candle_agrees() {
    // candle_nn's fused (no-backward) kernel is what inference paths use
    let cpu = Device::Cpu;
    let x = Tensor::rand(-2f32, 2., (5, 768), &cpu).unwrap();
    let w = Tensor::rand(0.5f32, 1.5, 768, &cpu).unwrap();
    let b = Tensor::rand(-0.5f32, 0.5, 768, &cpu).unwrap();
    let ours = fused_ops::layer_norm(&x, &w, &b, 1e-6).unwrap();
    let composed = cxr_core::ops::layer_norm(&x, &w, &b, 1e-6).unwrap();
    assert!(max_abs_diff(&ours, &composed).unwrap() < 1e-5);
}

#[test]
fn resize_gradient_is_the_adjoint() {
    // <resize(x), r> = <x, resize_backward(r)> for any x, r: the backward is the exact adjoint
    let cpu = Device::Cpu;
    let x = Tensor::rand(-1f32, 1., (2, 3, 10, 13), &cpu).unwrap();
    for (size, align) in [((37, 29), false), ((4, 6), true), ((10, 26), false)] {
        let r = Tensor::rand(-1f32, 1., (2, 3, size.0, size.1), &cpu).unwrap();
        let y = fused_ops::resize_bilinear(&x, size, align).unwrap();
        let lhs = (y * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let back = fused_ops::ResizeBilinearBackward {
            input: (10, 13),
            align_corners: align,
        };
        let xt = r.apply_op1_no_bwd(&back).unwrap();
        let rhs = (x.clone() * xt)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
            "{size:?}: {lhs} vs {rhs}"
        );
    }
}

/// The parity harness the GPU test (`tests/gpu.rs`) and the GPU benchmark run, end to end on
/// the CPU against itself: it checks every operation of the suite, each check once, and the
/// CPU code is deterministic, so every error is exactly 0. (That the measure fails a wrong
/// result is shown by `the_parity_measure_fails_wrong_results`: here it is 0 by construction.)
#[test]
fn device_check_harness_runs_end_to_end_on_cpu() {
    let checks = fused_ops::parity::device_vs_cpu(&Device::Cpu, 7).unwrap();
    // every family of the suite, with its number of checks (dtypes × outputs and gradients)
    let kernels = fused_ops::attention::Bf16Kernel::ALL.len();
    let families = [
        ("layer_norm ", 2 * 4 + 1 + 2),
        ("bias_add ", 2 * 3),
        ("scale_columns ", 2 * 3),
        ("conv2d 3x3 ", 3),
        ("conv_transpose2d 2x2 ", 3),
        ("batch_norm_train relu ", 4),
        ("channel_affine relu ", 4),
        ("channel_bias ", 3),
        ("softmax ", 2 * 2),
        ("log_softmax ", 2 * 2),
        ("resize ", 4 * 2),
        ("center_softmax", 1),
        ("sinkhorn_knopp ", 2),
        ("attention ", 2 * (1 + kernels) + 2),
        ("adamw ", 2 * 2),
        ("ema ", 2),
        ("bias_scale_residual ", 2 * 2 + 2),
        ("bias_gelu ", 2 * 2 + 2),
    ];
    for (prefix, want) in families {
        let n = checks.iter().filter(|c| c.name.starts_with(prefix)).count();
        assert_eq!(n, want, "checks of {prefix:?}");
    }
    let total: usize = families.iter().map(|(_, n)| n).sum();
    assert_eq!(checks.len(), total, "a check outside the families above");
    let mut names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names.len(),
        checks.len(),
        "every check has a name of its own"
    );
    for c in &checks {
        assert!(
            c.tolerance > 0.0 && c.tolerance < 0.1,
            "{}: tolerance {}",
            c.name,
            c.tolerance
        );
        assert_eq!(c.rel_err, 0.0, "{}", c.name);
        assert!(c.passed(), "{}", c.name);
    }
}

/// The measure of every parity check: a result off by more than its tolerance relative to the
/// reference, or holding a NaN anywhere, is reported as failing.
#[test]
fn the_parity_measure_fails_wrong_results() {
    use fused_ops::parity::compare;
    let want = seeded_randn(0f32, 1., (3, 50), 214).unwrap();
    let check = |got: &Tensor| compare("t".into(), got, &want, 1e-4).unwrap();
    assert!(check(&want).passed());
    assert_eq!(check(&want).rel_err, 0.0);
    // one element moved by 1e-3 of the largest magnitude
    let scale = cxr_core::ops::max_abs(&want).unwrap();
    let mut v = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[77] += 1e-3 * scale;
    let moved = Tensor::from_vec(v.clone(), (3, 50), &Device::Cpu).unwrap();
    let c = check(&moved);
    assert!(
        !c.passed() && (c.rel_err - 1e-3).abs() < 1e-5,
        "{}",
        c.rel_err
    );
    // a NaN past the first element (where candle's `max` would drop it), on either side
    v[77] = f32::NAN;
    let nan = Tensor::from_vec(v, (3, 50), &Device::Cpu).unwrap();
    assert!(!check(&nan).passed());
    assert!(!compare("t".into(), &want, &nan, 1e-4).unwrap().passed());
}

/// The composed attention the ViT ran before: permute q/k/v out of the projection, scores,
/// softmax, weighted sum, heads back together.
fn composed_attention(qkv: &Tensor, bias: &Tensor, heads: usize) -> Tensor {
    let (b, n, w) = qkv.dims3().unwrap();
    let d = w / (3 * heads);
    let x = qkv
        .broadcast_add(bias)
        .unwrap()
        .reshape((b, n, 3, heads, d))
        .unwrap()
        .permute((2, 0, 3, 1, 4))
        .unwrap();
    let q = (x.get(0).unwrap() * (d as f64).powf(-0.5)).unwrap();
    let (k, v) = (x.get(1).unwrap(), x.get(2).unwrap());
    let s = q
        .contiguous()
        .unwrap()
        .matmul(&k.t().unwrap().contiguous().unwrap())
        .unwrap();
    let p = cxr_core::ops::softmax_last_dim(&s).unwrap();
    p.matmul(&v.contiguous().unwrap())
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((b, n, heads * d))
        .unwrap()
}

#[test]
fn attention_equals_composed_form() {
    // head dim 64 and a sequence that is not a multiple of the kernels' 64-row tiles
    let (heads, d) = (3, 64);
    let qkv = seeded_randn(0f32, 1., (2, 70, 3 * heads * d), 200).unwrap();
    let bias = seeded_randn(0f32, 0.3, 3 * heads * d, 201).unwrap();
    let want = composed_attention(&qkv, &bias, heads);
    let got = fused_ops::attention(&qkv, Some(&bias), heads, (d as f64).powf(-0.5)).unwrap();
    assert_eq!(got.dims(), &[2, 70, heads * d]);
    let err = max_abs_diff(&got, &want).unwrap();
    assert!(err < 1e-5, "f32: {err}");
    // bf16 in and out, f32 inside: within bf16 rounding of the f32 result
    let got = fused_ops::attention(
        &qkv.to_dtype(DType::BF16).unwrap(),
        Some(&bias.to_dtype(DType::BF16).unwrap()),
        heads,
        (d as f64).powf(-0.5),
    )
    .unwrap();
    assert_eq!(got.dtype(), DType::BF16);
    let err = max_abs_diff(&got.to_dtype(DType::F32).unwrap(), &want).unwrap();
    assert!(err < 3e-2, "bf16: {err}");
}

#[test]
fn epilogues_equal_composed_forms() {
    let a = seeded_randn(0f32, 2., (4, 9, 48), 202).unwrap();
    let b = seeded_randn(0f32, 1., 48, 203).unwrap();
    let lambda = seeded_randn(0f32, 0.1, 48, 204).unwrap();
    let r = seeded_randn(0f32, 1., (4, 9, 48), 205).unwrap();
    let want = a.broadcast_add(&b).unwrap().gelu_erf().unwrap();
    let err = max_abs_diff(&fused_ops::bias_gelu(&a, &b).unwrap(), &want).unwrap();
    assert!(err < 1e-5, "bias_gelu: {err}");
    let want = (&r + a.broadcast_add(&b).unwrap().broadcast_mul(&lambda).unwrap()).unwrap();
    let got = fused_ops::bias_scale_residual(&a, &b, &lambda, &r).unwrap();
    assert!(max_abs_diff(&got, &want).unwrap() < 1e-5);
}

/// Output and input gradient of `sum(softmax(x) · r)` for a softmax implementation.
fn softmax_and_grad(
    f: fn(&Tensor) -> candle_core::Result<Tensor>,
    x: &Tensor,
    r: &Tensor,
) -> (Tensor, Tensor) {
    let v = Var::from_tensor(x).unwrap();
    let y = f(v.as_tensor()).unwrap();
    let loss = (y.to_dtype(DType::F32).unwrap() * r)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = loss.backward().unwrap();
    (y, g.get(v.as_tensor()).unwrap().clone())
}

#[test]
fn softmax_with_backward_equals_composed_form() {
    // attention-score shaped: [B, H, N, N] with N = 37, large logits in places
    let x = seeded_randn(0f32, 3.0, (2, 3, 37, 37), 206).unwrap();
    let r = seeded_randn(0f32, 1.0, (2, 3, 37, 37), 207).unwrap();
    // bf16: the probabilities are computed in f32 and rounded once (≤ 2⁻⁹ for values ≤ 1);
    // the gradient also meets the bf16 rounding of dy and of the result
    for (dtype, tol_y, tol_g) in [(DType::F32, 1e-6f32, 1e-5f32), (DType::BF16, 2.5e-3, 2e-2)] {
        let xd = x.to_dtype(dtype).unwrap();
        // the reference in f32 from the same (rounded) input
        let x32 = xd.to_dtype(DType::F32).unwrap();
        let (want_y, want_g) = softmax_and_grad(cxr_core::ops::softmax_last_dim, &x32, &r);
        let (y, g) = softmax_and_grad(fused_ops::softmax_last_dim, &xd, &r);
        assert_eq!((y.dtype(), g.dtype()), (dtype, dtype));
        let dy = max_abs_diff(&y, &want_y).unwrap();
        let scale = max_abs_diff(&want_g, &want_g.zeros_like().unwrap()).unwrap();
        let dg = max_abs_diff(&g, &want_g).unwrap() / scale;
        assert!(dy <= tol_y, "{dtype:?} softmax: {dy:e}");
        assert!(dg <= tol_g, "{dtype:?} softmax gradient: relative {dg:e}");
        eprintln!("{dtype:?}: softmax {dy:e}, gradient relative {dg:e}");
        if dtype == DType::BF16 {
            let (composed, _) = softmax_and_grad(cxr_core::ops::softmax_last_dim, &xd, &r);
            let dc = max_abs_diff(&composed, &want_y).unwrap();
            assert!(
                dy <= 2.0 * dc.max(4e-3),
                "bf16: fused {dy:e}, composed {dc:e}"
            );
        }
    }
    // a non-contiguous input (a transposed view) is made contiguous first
    let xt = x.transpose(2, 3).unwrap();
    let (y, _) = softmax_and_grad(fused_ops::softmax_last_dim, &xt, &r);
    let (want, _) = softmax_and_grad(cxr_core::ops::softmax_last_dim, &xt, &r);
    assert!(max_abs_diff(&y, &want).unwrap() <= 1e-6);
}

#[test]
fn log_softmax_with_backward_equals_composed_form() {
    // DINO-head shaped logits: [rows, K], spread wide enough that some probabilities underflow
    let x = seeded_randn(0f32, 8.0, (6, 4099), 208).unwrap();
    let r = seeded_randn(0f32, 1.0, (6, 4099), 209).unwrap();
    for (dtype, tol_y, tol_g) in [(DType::F32, 1e-5f32, 1e-5f32), (DType::BF16, 5e-2, 5e-2)] {
        let xd = x.to_dtype(dtype).unwrap();
        let x32 = xd.to_dtype(DType::F32).unwrap();
        let (want_y, want_g) = softmax_and_grad(cxr_core::ops::log_softmax_last_dim, &x32, &r);
        let (y, g) = softmax_and_grad(fused_ops::log_softmax_last_dim, &xd, &r);
        assert_eq!((y.dtype(), g.dtype()), (dtype, dtype));
        let scale_y = max_abs_diff(&want_y, &want_y.zeros_like().unwrap()).unwrap();
        let dy = max_abs_diff(&y, &want_y).unwrap() / scale_y;
        let scale_g = max_abs_diff(&want_g, &want_g.zeros_like().unwrap()).unwrap();
        let dg = max_abs_diff(&g, &want_g).unwrap() / scale_g;
        assert!(dy <= tol_y, "{dtype:?} log_softmax: relative {dy:e}");
        if dtype == DType::BF16 {
            // candle's CPU bf16 ops round every intermediate (the row sums included): the
            // fused gradient must be no further from the f32 reference than the composed one
            let (_, composed_g) = softmax_and_grad(cxr_core::ops::log_softmax_last_dim, &xd, &r);
            let dc = max_abs_diff(&composed_g, &want_g).unwrap() / scale_g;
            assert!(
                dg <= 2.0 * dc.max(tol_g),
                "bf16 gradient: fused {dg:e}, composed {dc:e}"
            );
        } else {
            assert!(
                dg <= tol_g,
                "{dtype:?} log_softmax gradient: relative {dg:e}"
            );
        }
        assert!(
            y.to_dtype(DType::F32)
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                <= 0.0
        );
    }
}
