//! MI2 image tower forward (DaViT, 480×480, batch 4, random weights), f32 on the CPU.
//!
//! Compare with `benches/davit_forward_pytorch.py`, run in the same session on the same
//! machine. ≈ 2.3 TFLOP per batch of 4; on a 2-core machine one forward takes tens of
//! seconds, so run it with a short measurement, e.g.
//! `cargo bench -p vit-backbone --bench davit_forward -- --warm-up-time 1 --measurement-time 1`
//! (criterion still takes its minimum of 10 samples).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vit_backbone::davit::weights::expected_tensors;
use vit_backbone::davit::{DavitConfig, DavitModel};

fn random_model(cfg: &DavitConfig) -> DavitModel {
    // plain tensors (not Vars): the inference path, as a model loaded from safetensors
    let tensors = expected_tensors(cfg)
        .into_iter()
        .map(|(name, shape)| {
            let t = Tensor::randn(0f32, 0.02, shape, &Device::Cpu).expect("randn");
            (name, t)
        })
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    DavitModel::new(cfg, vb).expect("model")
}

fn forward(c: &mut Criterion) {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let cfg = DavitConfig::mi2();
    let model = random_model(&cfg);
    let batch = 4;
    let x = Tensor::randn(0f32, 1.0, (batch, 3, 480, 480), &Device::Cpu).expect("input");
    let mut group = c.benchmark_group("mi2_davit_forward_480");
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(format!("batch{batch}"), |b| {
        b.iter(|| model.encode_image(&x).expect("forward"))
    });
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
