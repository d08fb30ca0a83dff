#![allow(dead_code, clippy::unwrap_used)]
//! Helpers shared by the integration tests: fixture loading and comparisons.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

pub fn fixture(case: &str, name: &str) -> HashMap<String, Tensor> {
    let path = format!(
        "{}/tests/fixtures/{case}/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    cxr_core::ops::max_abs_diff(a, b).unwrap()
}

pub fn assert_close(what: &str, ours: &Tensor, reference: &Tensor, tol: f32) {
    let d = max_abs_diff(ours, reference);
    assert!(d < tol, "{what}: max abs diff {d} exceeds {tol}");
}

use candle_core::{DType, Module};
use candle_nn::{Conv2dConfig, VarBuilder, VarMap};
use cxr_core::{
    Encoder, FeatureInfo, FeatureRequest, Features, Intermediate, LayerInfo, Preprocessing,
};

/// A small deterministic encoder for tests: a stride-`patch` patchify conv, then `depth`
/// residual blocks `x + GELU(W x)` over the tokens.
pub struct TestEncoder {
    patchify: candle_nn::Conv2d,
    blocks: Vec<candle_nn::Linear>,
    dim: usize,
    patch: usize,
    device: Device,
}

impl TestEncoder {
    pub fn new(dim: usize, depth: usize, patch: usize, vb: VarBuilder) -> Self {
        let cfg = Conv2dConfig {
            stride: patch,
            ..Default::default()
        };
        let patchify = candle_nn::conv2d(3, dim, patch, cfg, vb.pp("patch")).unwrap();
        let blocks = (0..depth)
            .map(|i| candle_nn::linear(dim, dim, vb.pp(format!("block{i}"))).unwrap())
            .collect();
        Self {
            patchify,
            blocks,
            dim,
            patch,
            device: vb.device().clone(),
        }
    }

    /// A randomly initialised encoder with its `VarMap` (seeded by candle's RNG).
    pub fn random(dim: usize, depth: usize, patch: usize) -> (Self, VarMap) {
        let varmap = VarMap::new();
        let enc = Self::new(
            dim,
            depth,
            patch,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        );
        (enc, varmap)
    }
}

impl Encoder for TestEncoder {
    fn forward_features(
        &self,
        pixels: &Tensor,
        request: &FeatureRequest,
    ) -> cxr_core::Result<Features> {
        let map = self.patchify.forward(pixels)?;
        let (b, d, h, w) = map.dims4()?;
        let mut x = map.reshape((b, d, h * w))?.transpose(1, 2)?.contiguous()?;
        let mut intermediates = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            x = (&x + block.forward(&x)?.gelu_erf()?)?;
            if request.layers.contains(&i) {
                intermediates.push(Intermediate {
                    layer: i,
                    tokens: x.clone(),
                    grid: (h, w),
                    cls: None,
                });
            }
        }
        for &l in &request.layers {
            if l >= self.blocks.len() {
                return Err(cxr_core::Error::NotFound(format!("layer {l}")));
            }
        }
        Ok(Features {
            pooled: x.mean(1)?,
            patch_tokens: x,
            grid: (h, w),
            intermediates,
        })
    }

    fn feature_info(&self) -> FeatureInfo {
        FeatureInfo {
            embed_dim: self.dim,
            patch_stride: self.patch,
            layers: vec![
                LayerInfo {
                    channels: self.dim,
                    stride: self.patch
                };
                self.blocks.len()
            ],
        }
    }

    fn preprocessing(&self) -> Preprocessing {
        Preprocessing::imagenet(32)
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

/// Synthetic segmentation batches: noisy images with a bright disc (class 0) and a
/// horizontal bar (class 1) that may overlap it; masks are the shapes.
pub fn synthetic_batches(
    n_batches: usize,
    batch: usize,
    size: usize,
    seed: u64,
) -> Vec<seg_decoders::SegBatch> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15).wrapping_add(1);
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n_batches)
        .map(|_| {
            let mut img = vec![0f32; batch * 3 * size * size];
            let mut mask = vec![0f32; batch * 2 * size * size];
            for b in 0..batch {
                let f = size as f64;
                let (cy, cx, r) = (
                    f * (0.3 + 0.4 * next()),
                    f * (0.3 + 0.4 * next()),
                    f * (0.15 + 0.1 * next()),
                );
                let (by, bh) = ((f * (0.2 + 0.5 * next())) as usize, (f * 0.15) as usize);
                for y in 0..size {
                    for x in 0..size {
                        let disc = ((y as f64 - cy).powi(2) + (x as f64 - cx).powi(2)).sqrt() < r;
                        let bar = y >= by && y < by + bh;
                        let v =
                            0.8 * disc as u8 as f64 - 0.6 * bar as u8 as f64 + 0.3 * (next() - 0.5);
                        for c in 0..3 {
                            img[((b * 3 + c) * size + y) * size + x] = v as f32;
                        }
                        mask[((b * 2) * size + y) * size + x] = disc as u8 as f32;
                        mask[((b * 2 + 1) * size + y) * size + x] = bar as u8 as f32;
                    }
                }
            }
            seg_decoders::SegBatch {
                images: Tensor::from_vec(img, (batch, 3, size, size), &Device::Cpu).unwrap(),
                masks: Tensor::from_vec(mask, (batch, 2, size, size), &Device::Cpu).unwrap(),
            }
        })
        .collect()
}
