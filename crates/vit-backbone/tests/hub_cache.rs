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

    let err = Dinov2Model::from_pretrained("microsoft/absent", None, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("microsoft/absent") && err.contains("huggingface-cli download"),
        "{err}"
    );
}
