//! `from_pretrained` reads a model from a local Hugging Face cache with no network access.
//! (One test per binary: it sets `HF_HOME` for the process.)
#![allow(clippy::unwrap_used)] // tests may panic on failure

use std::path::Path;

use candle_core::{DType, Device};
use vit_backbone::Dinov2Model;

#[test]
fn loads_from_a_hub_cache_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dinov2_tiny");
    // HF_HOME/hub/models--org--name/{refs/main, snapshots/<commit>/...}
    let repo = tmp
        .path()
        .join("hub")
        .join("models--microsoft--tiny-rad-dino");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), snapshot.join(f)).unwrap();
    }
    std::fs::write(
        snapshot.join("preprocessor_config.json"),
        r#"{"crop_size":{"height":56,"width":56},"do_center_crop":true,"do_normalize":true,
            "do_rescale":true,"do_resize":true,"image_mean":[0.5307,0.5307,0.5307],
            "image_std":[0.2583,0.2583,0.2583],"resample":3,"rescale_factor":0.00392156862745098,
            "size":{"shortest_edge":56}}"#,
    )
    .unwrap();
    std::env::set_var("HF_HOME", tmp.path());
    std::env::remove_var("HF_HUB_CACHE");
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let model =
        Dinov2Model::from_pretrained("microsoft/tiny-rad-dino", None, DType::F32, &Device::Cpu)
            .unwrap();
    assert_eq!(model.config().hidden_size, 48);
    let p = cxr_core::Encoder::preprocessing(&model);
    assert_eq!(p.mean, [0.5307; 3]);
    assert_eq!(p.crop, (56, 56));

    // open_cached_encoder: the same DINOv2 repository behind the Encoder trait, and an MI2-like
    // repository whose release sits one folder down, as lion-ai/MedImageInsights has it
    let opened = vit_backbone::open_cached_encoder(
        "microsoft/tiny-rad-dino",
        None,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        opened.feature_info(),
        cxr_core::Encoder::feature_info(&model)
    );
    let davit = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/davit_tiny");
    let mi2 = tmp.path().join("hub").join("models--lion-ai--tiny-mi2");
    let release = mi2.join("snapshots").join(commit).join("2024.09.27");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::create_dir_all(mi2.join("refs")).unwrap();
    std::fs::write(mi2.join("refs").join("main"), commit).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(davit.join(f), release.join(f)).unwrap();
    }
    let tower =
        vit_backbone::open_cached_encoder("lion-ai/tiny-mi2", None, DType::F32, &Device::Cpu)
            .unwrap();
    let direct = vit_backbone::DavitModel::from_dir(&davit, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        tower.feature_info(),
        cxr_core::Encoder::feature_info(&direct)
    );
    let x = candle_core::Tensor::randn(0f32, 1.0, (1, 3, 64, 64), &Device::Cpu).unwrap();
    let req = cxr_core::FeatureRequest::default();
    let (a, b) = (
        tower.forward_features(&x, &req).unwrap().pooled,
        cxr_core::Encoder::forward_features(&direct, &x, &req)
            .unwrap()
            .pooled,
    );
    assert_eq!(cxr_core::ops::max_abs_diff(&a, &b).unwrap(), 0.0);
    let err = vit_backbone::open_cached_encoder("lion-ai/absent", None, DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("lion-ai/absent") && err.contains("huggingface-cli download"),
        "{err}"
    );

    let err = Dinov2Model::from_pretrained("microsoft/absent", None, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("microsoft/absent") && err.contains("huggingface-cli download"),
        "{err}"
    );
}
