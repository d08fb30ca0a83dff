//! RAD-DINO-size forward pass (ViT-B/14 at 518×518, random weights), f32 on the CPU.
//!
//! Compare with `benches/forward_pytorch.py`, run in the same session on the same machine.
//! FLOPs per image: 2 · (patch GEMM + 12 · (4 D² N + 2 N² D + 2 · 4 D² N)) ≈ 303 GFLOP at N = 1370.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vit_backbone::{Dinov2Config, Dinov2Model, ForwardOptions};

fn random_model(cfg: &Dinov2Config) -> Dinov2Model {
    // plain tensors (not Vars): the inference path, as a model loaded from safetensors
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in vit_backbone::weights::expected_tensors(cfg) {
        let t = Tensor::randn(0f32, 0.02, shape, &Device::Cpu).expect("randn");
        tensors.insert(name, t);
    }
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    Dinov2Model::new(cfg, vb).expect("model")
}

fn forward(c: &mut Criterion) {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let cfg = Dinov2Config::rad_dino();
    let model = random_model(&cfg);
    let mut group = c.benchmark_group("rad_dino_forward_518");
    group.sample_size(10);
    for batch in [1usize, 4] {
        let x = Tensor::randn(0f32, 1.0, (batch, 3, 518, 518), &Device::Cpu).expect("input");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch{batch}"), |b| {
            b.iter(|| {
                model
                    .forward(&x, &ForwardOptions::default())
                    .expect("forward")
                    .pooler_output
            })
        });
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
