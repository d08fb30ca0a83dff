//! The full MI2 text side builds with exactly the tensor names and shapes of
//! MedImageInsight's UniCLModel (manifest written by gen.py on the meta device).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use cxr_core::{Encoder, FeatureInfo, FeatureRequest, Features, Preprocessing};
use dual_encoder::{DualEncoder, TextConfig, TextTransformer};

type Shapes = Arc<Mutex<BTreeMap<String, Vec<usize>>>>;

/// Hands out zero-stride views (nothing allocated) and records every request.
struct Recorder(Shapes);

impl SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.0
            .lock()
            .unwrap()
            .insert(name.into(), s.dims().to_vec());
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("unexpected unchecked get of {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Stands in for DaViT's 2048-wide pooled output; only its width is used here.
struct Width2048(Device);

impl Encoder for Width2048 {
    fn forward_features(&self, _: &Tensor, _: &FeatureRequest) -> cxr_core::Result<Features> {
        Err(cxr_core::Error::NotFound("not runnable".into()))
    }
    fn feature_info(&self) -> FeatureInfo {
        FeatureInfo {
            embed_dim: 2048,
            patch_stride: 32,
            layers: vec![],
        }
    }
    fn preprocessing(&self) -> Preprocessing {
        Preprocessing::imagenet(480)
    }
    fn device(&self) -> &Device {
        &self.0
    }
}

#[test]
fn mi2_text_side_has_the_reference_keys_and_shapes() {
    let shapes: Shapes = Arc::default();
    let vb = VarBuilder::from_backend(Box::new(Recorder(shapes.clone())), DType::F32, Device::Cpu);
    let text = TextTransformer::new(&TextConfig::mi2(), vb.clone()).unwrap();
    let text_only = shapes.lock().unwrap().clone();
    DualEncoder::new(Box::new(Width2048(Device::Cpu)), Box::new(text), vb).unwrap();
    let ours = shapes.lock().unwrap().clone();

    let manifest = common::json("mi2_text_keys.json");
    let want: BTreeMap<String, Vec<usize>> =
        serde_json::from_value(manifest["tensors"].clone()).unwrap();
    assert_eq!(ours, want);
    let n: usize = text_only
        .values()
        .map(|s| s.iter().product::<usize>())
        .sum();
    assert_eq!(n as u64, manifest["text_parameters"].as_u64().unwrap());
    // "≈0.25B" in the MedImageInsight report
    assert!((240_000_000..260_000_000).contains(&n), "{n} parameters");
}
