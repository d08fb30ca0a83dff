//! The fused GPU inference path of the blocks against the composed path on the same device and
//! against the CPU, for the GPU test (`tests/gpu_fused.rs`) and `gpu_suite parity`, so what is
//! tested is what the GPU session reports.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::{set_fused_gpu_inference, Dinov2Config, Dinov2Model, ForwardOptions};

/// A 2-block ViT-B/14 (RAD-DINO widths) at 224 px, batch 2, random weights: the fused GPU path
/// against the composed GPU path and the CPU, `(check, relative error, tolerance)`.
pub fn fused_blocks_vs_composed(dev: &Device) -> Result<Vec<(String, f32, f32)>> {
    let mut cfg = Dinov2Config::rad_dino();
    cfg.num_hidden_layers = 2;
    let mut tensors = HashMap::new();
    for (key, shape) in crate::weights::expected_tensors(&cfg) {
        // layer scale at 1 so the blocks change the residual stream visibly
        let t = if key.contains("lambda1") {
            Tensor::ones(shape, DType::F32, &Device::Cpu)?
        } else {
            Tensor::randn(0f32, 0.05, shape, &Device::Cpu)?
        };
        tensors.insert(key, t);
    }
    let x = Tensor::randn(0f32, 1.0, (2, 3, 224, 224), &Device::Cpu)?;
    let opts = ForwardOptions::default();
    let run = |device: &Device, dtype: DType, fused: bool| -> Result<Tensor> {
        let ts = tensors
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.to_dtype(dtype)?.to_device(device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let model = Dinov2Model::new(&cfg, VarBuilder::from_tensors(ts, dtype, device))?;
        set_fused_gpu_inference(fused);
        let y = model
            .forward(&x.to_dtype(dtype)?.to_device(device)?, &opts)?
            .last_hidden_state;
        set_fused_gpu_inference(true);
        y.to_device(&Device::Cpu)?.to_dtype(DType::F32)
    };
    // NaN when either side holds a NaN (candle's `max` keeps one only as the first element),
    // so a NaN never meets its tolerance
    let rel = |a: &Tensor, b: &Tensor| -> Result<f32> {
        let diff = cxr_core::ops::max_abs_diff(a, b)?;
        let scale = cxr_core::ops::max_abs(b)?;
        if scale.is_nan() {
            return Ok(f32::NAN);
        }
        Ok(diff / scale.max(1e-12))
    };
    let cpu = run(&Device::Cpu, DType::F32, false)?;
    let fused = run(dev, DType::F32, true)?;
    let composed = run(dev, DType::F32, false)?;
    let fused_bf16 = run(dev, DType::BF16, true)?;
    let composed_bf16 = run(dev, DType::BF16, false)?;
    Ok(vec![
        (
            "ViT-B 2 blocks f32: fused GPU vs CPU".into(),
            rel(&fused, &cpu)?,
            1e-4,
        ),
        (
            "ViT-B 2 blocks f32: composed GPU vs CPU".into(),
            rel(&composed, &cpu)?,
            1e-4,
        ),
        (
            "ViT-B 2 blocks bf16: fused GPU vs CPU f32".into(),
            rel(&fused_bf16, &cpu)?,
            5e-2,
        ),
        (
            "ViT-B 2 blocks bf16: composed GPU vs CPU f32".into(),
            rel(&composed_bf16, &cpu)?,
            5e-2,
        ),
    ])
}
