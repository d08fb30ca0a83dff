//! The shipped default encoder loads (f16 weights into f32) and embeds a real image.
#![allow(clippy::unwrap_used)]
use crate::common;

use std::path::PathBuf;

use candle_core::{DType, Device};
use cxr_core::Encoder;
use cxr_data::{decode_file, DecodeOptions, ImageProcessor};
use vit_backbone::{Dinov2Model, ForwardOptions};

fn model_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/cxr-dino-vit-tiny"
    ))
}

#[test]
fn shipped_encoder_embeds_a_real_chest_x_ray() {
    let dir = model_dir();
    let model = Dinov2Model::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.dtype(), DType::F32);
    assert_eq!(model.config().hidden_size, 192);
    let proc = ImageProcessor::from_file(dir.join("preprocessor_config.json")).unwrap();
    let (h, w) = proc.preprocessing().crop;
    assert_eq!(model.preprocessing().crop, (h, w));
    let img = common::pack("cxr-findings").join("images/00000075_000.png");
    let px = proc
        .apply_tensor(
            &decode_file(&img, &DecodeOptions::default()).unwrap(),
            &Device::Cpu,
        )
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = model.forward(&px, &ForwardOptions::default()).unwrap();
    let cls: Vec<f32> = out.pooler_output.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(cls.len(), 192);
    assert!(cls.iter().all(|v| v.is_finite()));
    let norm = cls.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(norm > 1.0, "CLS norm {norm}");
    assert_eq!(out.grid, (h / 14, w / 14));
}
