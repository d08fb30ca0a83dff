//! The workspace's candle backward (`vendor/candle-core`, see its `PATCHED.md`): a node's
//! first gradient is stored as it is, later ones are added to it. These tests hold the
//! patch in place (a build against stock candle 0.11.1 fails the first) and check that the
//! gradients it accumulates are still the right ones.
#![allow(clippy::unwrap_used)]

use cxr_testkit::seeded_randn;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, TensorId, Var};

/// The identity, whose backward hands back a fresh copy of the incoming gradient and records
/// that copy's id.
struct RecordingIdentity {
    returned: Arc<Mutex<Option<TensorId>>>,
}

impl CustomOp1 for RecordingIdentity {
    fn name(&self) -> &'static str {
        "recording-identity"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        match s {
            CpuStorage::F32(v) => Ok((
                CpuStorage::F32(v[l.start_offset()..][..l.shape().elem_count()].to_vec()),
                l.shape().clone(),
            )),
            _ => candle_core::bail!("recording-identity: f32 only"),
        }
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dx = dy.copy()?;
        *self.returned.lock().unwrap() = Some(dx.id());
        Ok(Some(dx))
    }
}

#[test]
fn a_single_gradient_is_stored_without_a_zero_filled_copy() {
    let x = seeded_randn(0f32, 1.0, (4, 5), 200)
        .and_then(|t| Var::from_tensor(&t))
        .unwrap();
    let returned = Arc::new(Mutex::new(None));
    let y = x
        .as_tensor()
        .apply_op1(RecordingIdentity {
            returned: returned.clone(),
        })
        .unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let stored = grads.get(x.as_tensor()).unwrap();
    let id = returned.lock().unwrap().unwrap();
    // stock candle stores `zeros + dx`, a new tensor; the patched backward stores `dx` itself
    assert_eq!(stored.id(), id, "the backward added the gradient to zeros");
    let ones = Tensor::ones((4, 5), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        stored.to_vec2::<f32>().unwrap(),
        ones.to_vec2::<f32>().unwrap()
    );
}

/// `x` reaches the loss four ways: directly, transposed (a strided first gradient), through a
/// broadcast (a gradient summed back) and through a product with itself (two contributions
/// from one node). The gradient is their sum, and it comes back contiguous.
#[test]
fn gradients_from_several_uses_add_up_and_come_back_contiguous() {
    let x0 = seeded_randn(0., 1.0, (3, 3), 201)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let a = seeded_randn(0., 1.0, (3, 3), 202)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let b = seeded_randn(0., 1.0, (3, 3), 203)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let c = seeded_randn(0., 1.0, (2, 3, 3), 204)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let x = Var::from_tensor(&x0).unwrap();
    let xt = x.as_tensor();
    let loss = ((xt * &a).unwrap().sum_all().unwrap()
        + (xt.t().unwrap() * &b).unwrap().sum_all().unwrap()
        + xt.broadcast_as((2, 3, 3))
            .unwrap()
            .mul(&c)
            .unwrap()
            .sum_all()
            .unwrap()
        + xt.mul(xt).unwrap().sum_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let got = grads.get(xt).unwrap();
    assert!(got.is_contiguous());
    // d/dx: a + bᵀ + Σ_batch c + 2x
    let want = (((&a + b.t().unwrap()).unwrap() + c.sum(0).unwrap()).unwrap()
        + (&x0 * 2.0).unwrap())
    .unwrap();
    // in f64: cxr_core::ops::max_abs_diff compares in f32, too coarse for this bound
    let diff = (got - want)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    // every entry, so that a NaN anywhere fails (candle's max keeps it only in front)
    assert!(diff.iter().all(|d| d.abs() < 1e-12), "{diff:?}");
}

/// The patched backward walks the graph with its own stack, and a dropped graph frees its
/// tensors in a loop: a chain far deeper than any model runs on a 2 MB thread stack, where
/// stock candle overflows it (at about 10 000 levels) and aborts the process.
#[test]
fn deep_graphs_neither_overflow_backward_nor_drop() {
    use candle_core::{Device, Var};
    let depth = 100_000;
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let v = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
            let mut t = v.as_tensor().clone();
            for _ in 0..depth {
                t = (t * 1.000_001).unwrap();
            }
            let grads = t.sum_all().unwrap().backward().unwrap();
            let g = grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
            // d/dv of sum(v * c^n) = c^n, summed in f32 one factor at a time
            let expected = (0..depth).fold(1f32, |acc, _| acc * 1.000_001);
            assert_eq!(g, [expected, expected]);
            drop(grads);
            drop(t);
        })
        .unwrap()
        .join()
        .unwrap();
}

/// The walk visits inputs in the published order (depth first, inputs left to right, each
/// node after its inputs), which fixes the order gradients are accumulated in.
#[test]
fn sorted_nodes_keep_the_published_order() {
    use candle_core::{Device, Var};
    let a = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    let b = Var::new(&[3f32, 4.0], &Device::Cpu).unwrap();
    let c = a.as_tensor().mul(b.as_tensor()).unwrap();
    let d = c.add(a.as_tensor()).unwrap();
    let k = d.to_dtype(candle_core::DType::U32).unwrap(); // integer: no gradient
    let e = d
        .exp()
        .unwrap()
        .add(&k.to_dtype(candle_core::DType::F32).unwrap())
        .unwrap();
    let order: Vec<_> = e.sorted_nodes().iter().map(|t| t.id()).collect();
    let expected_tail = [d.id(), c.id(), b.id(), a.id()];
    assert_eq!(order[0], e.id());
    assert_eq!(&order[order.len() - 4..], &expected_tail);
    assert_eq!(
        order.len(),
        6,
        "e, exp(d), d, c, b, a: the integer branch tracks nothing"
    );
}
