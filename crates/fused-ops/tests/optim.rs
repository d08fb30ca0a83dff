//! The in-place optimizer updates against the composed tensor formulas they replace.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor};
use cxr_testkit::seeded_normal;
use cxr_testkit::seeded_randn;
use fused_ops::optim::{adamw_update, ema_update, supports, AdamWStep};

/// Largest |t| as f32; NaN when `t` holds one.
fn max_abs(t: &Tensor) -> f32 {
    cxr_core::ops::max_abs(t).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap())
}

/// torch.optim.AdamW's single-tensor step, written with candle ops.
fn composed_step(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, h: &AdamWStep) -> [Tensor; 3] {
    let m = (m + ((g - m).unwrap() * (1.0 - h.beta1)).unwrap()).unwrap();
    let v = ((v * h.beta2).unwrap() + (g.sqr().unwrap() * (1.0 - h.beta2)).unwrap()).unwrap();
    [composed_param(p, &m, &v, h), m, v]
}

/// The parameter update of [`composed_step`] from the moments already updated.
fn composed_param(p: &Tensor, m: &Tensor, v: &Tensor, h: &AdamWStep) -> Tensor {
    let p = (p * (1.0 - h.lr * h.weight_decay)).unwrap();
    let t = h.step as i32;
    let denom = ((v.sqrt().unwrap() / (1.0 - h.beta2.powi(t)).sqrt()).unwrap() + h.eps).unwrap();
    let step_size = h.lr / (1.0 - h.beta1.powi(t));
    (p - ((m / denom).unwrap() * step_size).unwrap()).unwrap()
}

/// Four steps on seeded draws of an odd length (not a multiple of the CPU chunk). Each step
/// starts the composed formula, in f32, from the fused op's own state, so the check is per
/// step: in f32 to float summation order (relative to the largest value), in bf16 to half a
/// bf16 unit in the last place of each element: the fused op computes in f32 and rounds once,
/// to nearest.
#[test]
fn adamw_in_place_equals_the_composed_step() {
    let n = 40_003;
    for dtype in [DType::F32, DType::BF16] {
        let p = seeded_normal(&[n], 1).to_dtype(dtype).unwrap();
        let (m, v) = (p.zeros_like().unwrap(), p.zeros_like().unwrap());
        for step in 1..=4u64 {
            let g = (seeded_normal(&[n], 1 + step) * 0.5)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let h = AdamWStep {
                lr: 1e-2 * step as f64,
                weight_decay: 0.04,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                step,
            };
            // copies: the update writes in place, and an f32 cast shares the storage
            let f32_of = |t: &Tensor| t.to_dtype(DType::F32).unwrap().copy().unwrap();
            let p_before = f32_of(&p);
            let mut want = composed_step(&p_before, &f32_of(&g), &f32_of(&m), &f32_of(&v), &h);
            adamw_update(&p, &g, &m, &v, &h).unwrap();
            // the fused op reads the moments it has just stored, rounded to bf16
            want[0] = composed_param(&p_before, &f32_of(&m), &f32_of(&v), &h);
            for (name, got, w) in [
                ("param", &p, &want[0]),
                ("exp_avg", &m, &want[1]),
                ("exp_avg_sq", &v, &want[2]),
            ] {
                let d = if dtype == DType::F32 {
                    max_diff(got, w) / max_abs(w).max(1e-12)
                } else {
                    max_ulps_bf16(got, w)
                };
                let bound = if dtype == DType::F32 { 1e-6 } else { 0.51 };
                assert!(
                    d <= bound,
                    "{dtype:?} step {step} {name}: difference {d:e} > {bound:e}"
                );
            }
        }
    }
}

/// Largest `|got − want|` in units in the last place of a bf16 at each `want` (7 stored
/// mantissa bits: an ulp is at most 2⁻⁷ of the value), with values below 2⁻¹⁰ of the largest
/// held to the ulp there: where the step cancels the parameter, f32 summation order alone
/// moves the result by more than a bf16 ulp of what is left. NaN when either side holds a NaN
/// (`f32::max` would drop it), so a NaN never passes a bound on it.
fn max_ulps_bf16(got: &Tensor, want: &Tensor) -> f32 {
    let (g, w): (Vec<f32>, Vec<f32>) = (
        got.to_dtype(DType::F32).unwrap().to_vec1().unwrap(),
        want.to_vec1().unwrap(),
    );
    assert_eq!(g.len(), w.len(), "got and want differ in length");
    let nan_max = |m: f32, x: f32| {
        if m.is_nan() || x.is_nan() {
            f32::NAN
        } else {
            m.max(x)
        }
    };
    let floor = w.iter().map(|v| v.abs()).fold(0f32, nan_max) * 2f32.powi(-10);
    g.iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs() / (b.abs().max(floor) * 2f32.powi(-7)))
        .fold(0f32, nan_max)
}

#[test]
fn ema_in_place_equals_the_composed_update() {
    let t = seeded_randn(0f32, 1.0, (7, 33), 200).unwrap();
    let s = seeded_randn(0f32, 1.0, (7, 33), 201).unwrap();
    let want = ((&t * 0.996).unwrap() + (&s * (1.0 - 0.996)).unwrap()).unwrap();
    ema_update(&t, &s, 0.996).unwrap();
    assert!(max_diff(&t, &want) < 1e-6);
    // momentum 0 copies the student (the teacher's initialisation)
    ema_update(&t, &s, 0.0).unwrap();
    assert_eq!(max_diff(&t, &s), 0.0);
}

#[test]
fn unsupported_operands_are_refused_with_their_shapes() {
    let dev = Device::Cpu;
    let a = Tensor::zeros((4, 6), DType::F32, &dev).unwrap();
    let b = Tensor::zeros((4, 5), DType::F32, &dev).unwrap();
    let c = Tensor::zeros((6, 4), DType::F32, &dev)
        .unwrap()
        .t()
        .unwrap();
    let d = Tensor::zeros((4, 6), DType::F64, &dev).unwrap();
    assert!(supports(&[&a, &a]));
    assert!(!supports(&[&a, &b]), "sizes differ");
    assert!(!supports(&[&a, &c]), "not contiguous");
    assert!(!supports(&[&d, &d]), "f64");
    let err = ema_update(&a, &b, 0.5).unwrap_err().to_string();
    assert!(err.contains("[4, 6]") && err.contains("[4, 5]"), "{err}");
    let h = AdamWStep {
        lr: 1e-3,
        weight_decay: 0.0,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        step: 0,
    };
    let err = adamw_update(
        &a,
        &a,
        &a.zeros_like().unwrap(),
        &a.zeros_like().unwrap(),
        &h,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("starts at 1"), "{err}");
}

#[test]
fn sum_of_squares_matches_the_f64_reduction() {
    // odd sizes around the chunk widths, an offset view, and the empty tensor
    for n in [0usize, 1, 7, 8, 9, 65_535, 65_536, 200_001] {
        let x = seeded_randn(0f32, 1.0, n + 3, 202)
            .unwrap()
            .narrow(0, 3, n)
            .unwrap();
        let got: f64 = fused_ops::optim::sum_of_squares(&x)
            .unwrap()
            .to_scalar()
            .unwrap();
        let want: f64 = x
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .map(|v| v * v)
            .sum();
        assert!(
            (got - want).abs() <= 1e-12 * want.max(1.0),
            "n = {n}: {got} vs {want}"
        );
    }
    let m = seeded_randn(0f32, 1.0, (33, 70), 203).unwrap();
    let got: f64 = fused_ops::optim::sum_of_squares(&m)
        .unwrap()
        .to_scalar()
        .unwrap();
    let want: f64 = m
        .to_dtype(DType::F64)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((got - want).abs() <= 1e-12 * want);
}
