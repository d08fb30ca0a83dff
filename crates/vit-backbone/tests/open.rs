//! `open_encoder`: one folder, whichever backbone its `config.json` names, behind the
//! `Encoder` trait, with the same outputs as the backbone's own loader.
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use cxr_core::{Encoder, FeatureRequest};
use vit_backbone::{encoder_kind, open_encoder, DavitModel, Dinov2Model, EncoderKind};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The MI2 fixture of the dual-encoder crate: a whole UniCL checkpoint (both towers) and a
/// config with `image` and `text` sections.
fn mi2_tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dual-encoder/tests/fixtures/mi2_tiny")
}

fn pooled(enc: &dyn Encoder, pixels: &Tensor) -> Tensor {
    enc.forward_features(pixels, &FeatureRequest::default())
        .unwrap()
        .pooled
}

fn pixels(side: usize) -> Tensor {
    Tensor::randn(0f32, 1.0, (2, 3, side, side), &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    cxr_core::ops::max_abs_diff(a, b).unwrap()
}

#[test]
fn a_dinov2_folder_opens_as_dinov2() {
    let dir = fixture("dinov2_tiny");
    assert_eq!(encoder_kind(&dir).unwrap(), EncoderKind::Dinov2);
    let opened = open_encoder(&dir, DType::F32, &Device::Cpu).unwrap();
    let direct = Dinov2Model::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let x = pixels(28);
    assert_eq!(
        max_diff(&pooled(opened.as_ref(), &x), &pooled(&direct, &x)),
        0.0
    );
    assert_eq!(opened.feature_info(), direct.feature_info());
}

#[test]
fn a_davit_folder_opens_as_davit() {
    let dir = fixture("davit_tiny");
    assert_eq!(encoder_kind(&dir).unwrap(), EncoderKind::Davit);
    let opened = open_encoder(&dir, DType::F32, &Device::Cpu).unwrap();
    let direct = DavitModel::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let x = pixels(64);
    assert_eq!(
        max_diff(&pooled(opened.as_ref(), &x), &pooled(&direct, &x)),
        0.0
    );
}

#[test]
fn an_mi2_folder_opens_its_image_tower_at_parity() {
    let dir = mi2_tiny();
    assert_eq!(encoder_kind(&dir).unwrap(), EncoderKind::Davit);
    let tower = DavitModel::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let images = &expected["images"];
    // the reference's image embeddings are the projected, L2-normalised pooled features
    let emb = tower.project(&pooled(&tower, images)).unwrap();
    let norm = emb.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
    let emb = emb.broadcast_div(&norm).unwrap();
    let d = max_diff(&emb, &expected["image_embeddings"]);
    assert!(d < 1e-5, "MI2 image embeddings differ by {d}");
    let opened = open_encoder(&dir, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        max_diff(&pooled(opened.as_ref(), images), &pooled(&tower, images)),
        0.0
    );
}

#[test]
fn folders_that_are_no_known_encoder_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let e = encoder_kind(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("has no config.json"), "{e}");
    let config = tmp.path().join("config.json");
    std::fs::write(&config, r#"{"model_type": "vit", "image_size": 224}"#).unwrap();
    let e = open_encoder(tmp.path(), DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("config.json") && e.contains("\"vit\""), "{e}");
    assert!(e.contains("neither a DINOv2"), "{e}");
    std::fs::write(&config, "{not json").unwrap();
    let e = encoder_kind(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
    // a DaViT config whose weights are missing
    std::fs::copy(fixture("davit_tiny/config.json"), &config).unwrap();
    let e = open_encoder(tmp.path(), DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("weight file"), "{e}");
}

/// The MI2 repository keeps its release one level down (`2024.09.27/`): a folder whose one
/// subfolder holds the model opens it; two such subfolders are an error naming both.
#[test]
fn a_release_one_level_down_is_found_and_two_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let release = tmp.path().join("2024.09.27");
    std::fs::create_dir_all(&release).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("davit_tiny").join(f), release.join(f)).unwrap();
    }
    assert_eq!(vit_backbone::model_folder(tmp.path()), release);
    assert_eq!(encoder_kind(tmp.path()).unwrap(), EncoderKind::Davit);
    let opened = open_encoder(tmp.path(), DType::F32, &Device::Cpu).unwrap();
    let direct = DavitModel::from_dir(&fixture("davit_tiny"), DType::F32, &Device::Cpu).unwrap();
    let x = pixels(64);
    assert_eq!(
        max_diff(&pooled(opened.as_ref(), &x), &pooled(&direct, &x)),
        0.0
    );
    let second = tmp.path().join("2025.01.01");
    std::fs::create_dir_all(&second).unwrap();
    std::fs::copy(
        fixture("davit_tiny/config.json"),
        second.join("config.json"),
    )
    .unwrap();
    let e = encoder_kind(tmp.path()).unwrap_err().to_string();
    assert!(
        e.contains("several model folders") && e.contains("2024.09.27") && e.contains("2025.01.01"),
        "{e}"
    );
}
