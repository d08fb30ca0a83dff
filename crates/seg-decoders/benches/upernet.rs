//! UPerNet forward + backward at RAD-DINO size: four 768-d 37×37 maps (ViT-B/14 at 518),
//! 518×518 logits, batch 1, 512 channels, one class. BatchNorm in eval mode: with batch 1 the
//! 1×1 pooling branch has a single value per channel, which training-mode BatchNorm rejects
//! (as PyTorch does). The PyTorch counterpart is `benches/upernet_torch.py`.

#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion};
use cxr_core::{Features, Intermediate};
use seg_decoders::heads::{UperNetConfig, UperNetInput};
use seg_decoders::layers::BnConfig;
use seg_decoders::{AlignCorners, Head, HeadConfig, Mode, SegmentationHead};

fn bench(c: &mut Criterion) {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let dev = Device::Cpu;
    let cfg = HeadConfig::UperNet(UperNetConfig {
        layers: vec![2, 5, 8, 11],
        input: UperNetInput::VitNeck { channels: 768 },
        channels: 512,
        pool_scales: vec![1, 2, 3, 6],
        num_classes: 1,
        dropout: 0.1,
        bn: BnConfig::default(),
        align_corners: AlignCorners::False,
    });
    let varmap = VarMap::new();
    let head = Head::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    let tokens = || Tensor::randn(0f32, 1f32, (1, 37 * 37, 768), &dev).unwrap();
    let intermediates = [2, 5, 8, 11]
        .iter()
        .map(|&layer| Intermediate {
            layer,
            tokens: tokens(),
            grid: (37, 37),
            cls: None,
        })
        .collect();
    let feats = Features {
        pooled: Tensor::zeros((1, 768), DType::F32, &dev).unwrap(),
        patch_tokens: tokens(),
        grid: (37, 37),
        intermediates,
    };
    let mut group = c.benchmark_group("seg-decoders");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(10));
    group.bench_function("upernet_fwd_bwd_768x37x37_to_518_c512", |b| {
        b.iter(|| {
            let out = head.forward(&feats, (518, 518), &mut Mode::Eval).unwrap();
            let grads = out.mean_all().unwrap().backward().unwrap();
            std::hint::black_box(grads);
        })
    });
    group.finish();
}

/// One 3×3 `fpn_convs` layer (512 → 512 at 74×74, the ×2 level) forward + backward: candle's
/// conv2d and its autograd, against `fused_ops::conv2d` (im2col GEMMs both ways).
fn conv_layer(c: &mut Criterion) {
    let dev = Device::Cpu;
    let x = candle_core::Var::randn(0f32, 1., (1, 512, 74, 74), &dev).unwrap();
    let w = candle_core::Var::randn(0f32, 0.02, (512, 512, 3, 3), &dev).unwrap();
    let mut group = c.benchmark_group("seg-decoders");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(10));
    group.bench_function("conv3x3_512_74x74_fwd_bwd/candle", |b| {
        b.iter(|| {
            let y = x.conv2d(&w, 1, 1, 1, 1).unwrap();
            std::hint::black_box(y.sum_all().unwrap().backward().unwrap());
        })
    });
    group.bench_function("conv3x3_512_74x74_fwd_bwd/im2col_gemm", |b| {
        b.iter(|| {
            let y = fused_ops::conv2d(&x, &w, 1, 1, 1, 1).unwrap();
            std::hint::black_box(y.sum_all().unwrap().backward().unwrap());
        })
    });
    group.finish();
}

/// A `ConvModule`'s training-mode BatchNorm + ReLU on the largest FPN level (batch 2, 512
/// channels at 148×148) forward + backward: composed from candle's tensor ops, against
/// `fused_ops::batch_norm_train` (one op, a closed-form backward).
fn batch_norm_layer(c: &mut Criterion) {
    let dev = Device::Cpu;
    let x = candle_core::Var::randn(0f32, 1., (2, 512, 148, 148), &dev).unwrap();
    let gamma = candle_core::Var::ones(512, DType::F32, &dev).unwrap();
    let beta = candle_core::Var::zeros(512, DType::F32, &dev).unwrap();
    let mut group = c.benchmark_group("seg-decoders");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(10));
    type Norm =
        fn(&Tensor, &Tensor, &Tensor, f64, bool) -> candle_core::Result<fused_ops::BatchNormOutput>;
    let variants: [(&str, Norm); 2] = [
        ("composed", fused_ops::batch_norm_train_composed),
        ("fused", fused_ops::batch_norm_train),
    ];
    for (name, norm) in variants {
        group.bench_function(format!("bn_relu_train_2x512x148x148_fwd_bwd/{name}"), |b| {
            b.iter(|| {
                let y = norm(&x, &gamma, &beta, 1e-5, true).unwrap().y;
                std::hint::black_box(y.sum_all().unwrap().backward().unwrap());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, conv_layer, batch_norm_layer);
criterion_main!(benches);
