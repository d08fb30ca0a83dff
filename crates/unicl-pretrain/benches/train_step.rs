//! One UniCL training step (both towers forward + backward, loss, clipping, AdamW) at the
//! size of the cxr-findings run: ViT-tiny/14 with 6 blocks at 42 px, text tower 128 × 4
//! layers, context 24, batch 32, f32 on the CPU; and the same step with a small DaViT (MI2's
//! structure, widths 64–512, depths 1-1-3-1, window 7, 112 px), as continual pretraining of
//! MI2 runs it. Counterpart: `benches/train_step.py` (`--tower vit|davit`).
#![allow(clippy::unwrap_used, missing_docs)]

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use dual_encoder::TokenBatch;
use unicl_loss::{BatchTargets, LossKind};
use unicl_pretrain::{ImageTowerConfig, PairBatch, TrainConfig, UniclTrainer};
use vit_backbone::DavitConfig;

const B: usize = 32;
const VOCAB: usize = 469;
const CTX: usize = 24;

fn batch(dev: &Device, side: usize) -> PairBatch {
    let pixels = Tensor::randn(0f32, 1.0, (B, 3, side, side), dev).unwrap();
    // prompts of 6–13 tokens, end-of-text (the highest id) last, then padding with it
    let ids: Vec<Vec<u32>> = (0..B)
        .map(|i| {
            let len = 6 + i % 8;
            (0..CTX)
                .map(|j| {
                    if j == 0 {
                        (VOCAB - 2) as u32
                    } else if j < len - 1 {
                        ((i * 31 + j * 7) % (VOCAB - 2)) as u32
                    } else {
                        (VOCAB - 1) as u32
                    }
                })
                .collect()
        })
        .collect();
    // 8 label groups of 4, as shared finding sets give
    let labels: Vec<u64> = (0..B as u64).map(|i| i % 8).collect();
    PairBatch {
        pixels,
        tokens: TokenBatch::from_rows(&ids, None, dev).unwrap(),
        targets: BatchTargets::from_label_ids(&labels),
        texts: Vec::new(),
        indices: (0..B).collect(),
    }
}

/// MI2's DaViT structure at a CPU-benchmark size; no stochastic depth, as the PyTorch side.
fn small_davit() -> DavitConfig {
    DavitConfig {
        image_size: 112,
        embed_dims: vec![64, 128, 256, 512],
        depths: vec![1, 1, 3, 1],
        num_heads: vec![2, 4, 8, 16],
        num_groups: vec![2, 4, 8, 16],
        window_size: 7,
        drop_path_rate: 0.0,
        projection_dim: None,
        ..DavitConfig::mi2()
    }
}

fn bench(c: &mut Criterion) {
    // as pretrain_unicl does: freed step tensors are reused, not faulted in afresh
    train_utils::retain_freed_heap_memory();
    let dev = Device::Cpu;
    let mut cfg = TrainConfig::small(LossKind::Unicl, 42, VOCAB, 1_000_000);
    if let ImageTowerConfig::Dinov2(image) = &mut cfg.image {
        image.num_hidden_layers = 6;
    }
    cfg.text.context_length = CTX;
    cfg.warmup_steps = 0;
    let mut trainer = UniclTrainer::new(cfg.clone(), &dev).unwrap();
    let b = batch(&dev, 42);
    let mut group = c.benchmark_group("unicl_train_step");
    group.sample_size(10);
    group.bench_function("vit6_42px_text128x4_b32", |bench| {
        bench.iter(|| trainer.train_step(&b).unwrap())
    });
    let davit = TrainConfig {
        image: ImageTowerConfig::Davit(small_davit()),
        ..cfg
    };
    let mut trainer = UniclTrainer::new(davit, &dev).unwrap();
    let b = batch(&dev, 112);
    group.bench_function("davit64-512_112px_text128x4_b32", |bench| {
        bench.iter(|| trainer.train_step(&b).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
