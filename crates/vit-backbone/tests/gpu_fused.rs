//! The fused CUDA inference path of the blocks (flash-style attention and fused epilogues)
//! against the composed path on the same GPU and against the CPU. Needs the `cuda` feature and
//! a GPU; skipped with a message otherwise.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use vit_backbone::{Dinov2Config, Dinov2Model, ForwardOptions};

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap().max(1e-12)
}

#[test]
fn fused_gpu_blocks_match_composed_and_cpu() {
    let device = match fused_ops::cuda_device() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED fused_gpu_blocks_match_composed_and_cpu: {why}");
            return;
        }
    };
    // ViT-Ti/14 (head dim 64, the fused kernels' size), 2 blocks, 98 px: 50 tokens
    let mut cfg = Dinov2Config::vit_tiny(98);
    cfg.num_hidden_layers = 2;
    cfg.layerscale_value = 1.0;
    let weights: HashMap<String, Tensor> = vit_backbone::weights::expected_tensors(&cfg)
        .into_iter()
        .map(|(k, shape)| {
            let t = Tensor::randn(0f32, 0.05, shape, &Device::Cpu).unwrap();
            (k, t)
        })
        .collect();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 98, 98), &Device::Cpu).unwrap();
    let run = |dev: &Device, dtype: DType, fused: bool| {
        let ts = weights
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.to_dtype(dtype).unwrap().to_device(dev).unwrap(),
                )
            })
            .collect();
        let model = Dinov2Model::new(&cfg, VarBuilder::from_tensors(ts, dtype, dev)).unwrap();
        vit_backbone::set_fused_gpu_inference(fused);
        let y = model
            .forward(
                &x.to_dtype(dtype).unwrap().to_device(dev).unwrap(),
                &ForwardOptions::default(),
            )
            .unwrap()
            .last_hidden_state;
        vit_backbone::set_fused_gpu_inference(true);
        y.to_device(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    };
    let cpu = run(&Device::Cpu, DType::F32, true);
    let fused = run(&device, DType::F32, true);
    let composed = run(&device, DType::F32, false);
    assert!(
        max_rel(&fused, &cpu) < 1e-4,
        "f32 fused vs CPU: {}",
        max_rel(&fused, &cpu)
    );
    assert!(max_rel(&composed, &cpu) < 1e-4);
    let fused_bf16 = run(&device, DType::BF16, true);
    assert!(
        max_rel(&fused_bf16, &cpu) < 5e-2,
        "bf16 fused vs CPU: {}",
        max_rel(&fused_bf16, &cpu)
    );
}
