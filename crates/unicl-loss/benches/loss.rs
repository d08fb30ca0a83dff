//! Loss forward + backward at batch 256 × dim 1024 (f32, CPU), for UniCL, CLIP and SigLIP.
//! Counterpart: `benches/loss_torch.py` (same sizes and label pattern, PyTorch).
#![allow(clippy::unwrap_used, missing_docs)]

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use unicl_loss::{l2_normalize, BatchTargets, LossKind};

const N: usize = 256;
const D: usize = 1024;

/// Half the batch carries one of 16 labels, the other half are reports (unique).
pub fn targets() -> BatchTargets {
    let mut b = BatchTargets::builder();
    for i in 0..N {
        if i % 2 == 0 {
            b.push_label_id((i / 2 % 16) as u64);
        } else {
            b.push_report();
        }
    }
    b.build()
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let img =
        Var::from_tensor(&l2_normalize(&Tensor::randn(0f32, 1.0, (N, D), &dev).unwrap()).unwrap())
            .unwrap();
    let txt =
        Var::from_tensor(&l2_normalize(&Tensor::randn(0f32, 1.0, (N, D), &dev).unwrap()).unwrap())
            .unwrap();
    let targets = targets();
    let mut group = c.benchmark_group("contrastive_loss_256x1024");
    group.sample_size(30);
    for kind in [LossKind::Unicl, LossKind::Clip, LossKind::Siglip] {
        let loss_fn = kind.build();
        let params = kind.init_params(DType::F32, &dev).unwrap();
        group.bench_function(format!("{}_fwd_bwd", loss_fn.name()), |bench| {
            bench.iter(|| {
                let scale = params.scale().unwrap();
                let loss = loss_fn
                    .loss(
                        img.as_tensor(),
                        txt.as_tensor(),
                        &targets,
                        &scale,
                        params.bias(),
                    )
                    .unwrap();
                let grads = loss.backward().unwrap();
                std::hint::black_box(grads.get(img.as_tensor()).unwrap());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
