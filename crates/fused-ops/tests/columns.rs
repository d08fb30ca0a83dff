//! The per-channel training ops against candle's broadcast forms: same outputs, same
//! gradients.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor, Var};
use cxr_testkit::seeded_randn;

/// Largest |t| as f32; NaN when `t` holds one.
fn max_abs(t: &Tensor) -> f32 {
    cxr_core::ops::max_abs(t).unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    let diff = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap();
    max_abs(&diff) / max_abs(b).max(1e-12)
}

/// Output and the gradients of `sum(f(x, p) · r)` for x and p.
fn run(f: &dyn Fn(&Tensor, &Tensor) -> Tensor, x: &Tensor, p: &Tensor, r: &Tensor) -> [Tensor; 3] {
    let (xv, pv) = (Var::from_tensor(x).unwrap(), Var::from_tensor(p).unwrap());
    let y = f(xv.as_tensor(), pv.as_tensor());
    let g = (y.to_dtype(DType::F32).unwrap() * r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    [
        y,
        g.get(xv.as_tensor()).unwrap().clone(),
        g.get(pv.as_tensor()).unwrap().clone(),
    ]
}

type Op<'a> = &'a dyn Fn(&Tensor, &Tensor) -> Tensor;

#[test]
fn bias_add_and_scale_match_the_broadcast_forms_with_gradients() {
    // 3 × 300 rows: more than one CPU task of 256 rows
    let x = seeded_randn(0f32, 1.0, (3, 300, 40), 200).unwrap();
    let p = seeded_randn(0f32, 1.0, 40, 201).unwrap();
    let r = seeded_randn(0f32, 1.0, (3, 300, 40), 202).unwrap();
    let cases: [(&str, Op, Op); 2] = [
        (
            "bias_add",
            &|x, p| fused_ops::bias_add(x, p).unwrap(),
            &|x, p| x.broadcast_add(p).unwrap(),
        ),
        (
            "scale_columns",
            &|x, p| fused_ops::scale_columns(x, p).unwrap(),
            &|x, p| x.broadcast_mul(p).unwrap(),
        ),
    ];
    for (dtype, tol) in [(DType::F32, 1e-5f32), (DType::BF16, 2e-2)] {
        let (x, p) = (x.to_dtype(dtype).unwrap(), p.to_dtype(dtype).unwrap());
        // the reference in f32 from the same (rounded) values: candle's bf16 broadcast
        // backward accumulates its column sums in bf16, the fused op in f32
        let (x32, p32) = (
            x.to_dtype(DType::F32).unwrap(),
            p.to_dtype(DType::F32).unwrap(),
        );
        for (name, fused, composed) in cases {
            let got = run(fused, &x, &p, &r);
            let want = run(composed, &x32, &p32, &r);
            for (i, what) in ["y", "dx", "dparam"].iter().enumerate() {
                let d = max_rel(&got[i], &want[i]);
                assert!(
                    d <= tol,
                    "{name} {dtype:?} {what}: relative difference {d:e}"
                );
                assert_eq!(got[i].dims(), want[i].dims(), "{name} {what}");
                assert_eq!(got[i].dtype(), dtype, "{name} {what}");
            }
        }
    }
}

#[test]
fn column_sum_sums_every_leading_row() {
    let x = Tensor::arange(0f32, 24.0, &Device::Cpu)
        .unwrap()
        .reshape((2, 3, 4))
        .unwrap();
    let s = fused_ops::column_sum(&x).unwrap();
    assert_eq!(s.to_vec1::<f32>().unwrap(), [60.0, 66.0, 72.0, 78.0]);
}

#[test]
fn mismatched_channels_are_refused_with_both_shapes() {
    let x = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    let err = fused_ops::bias_add(&x, &b).unwrap_err().to_string();
    assert!(err.contains("[4]") && err.contains("[2, 5]"), "{err}");
}
