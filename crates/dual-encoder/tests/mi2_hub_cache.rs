//! `Mi2::from_pretrained` reads a tiny MI2 from a local Hugging Face cache laid out like the
//! MedImageInsight repository, with no network access. (One test per binary: it sets
//! `HF_HOME` for the process.)
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use common::{fixture, load, max_diff};
use dual_encoder::Mi2;

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

#[test]
fn loads_from_a_hub_cache_layout() {
    let tmp = tempfile::tempdir().unwrap();
    // HF_HOME/hub/models--org--name/{refs/main, snapshots/<commit>/2024.09.27/...}
    let repo = tmp.path().join("hub").join("models--lion-ai--tiny-mi2");
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let rel = repo.join("snapshots").join(commit).join("2024.09.27");
    copy(&fixture("mi2_tiny/config.json"), &rel.join("config.json"));
    copy(
        &fixture("mi2_tiny/model.safetensors"),
        &rel.join("vision_model/medimageinsigt-v1.0.0.pt"),
    );
    let tok = rel.join("language_model/clip_tokenizer_4.16.2");
    copy(&fixture("tokenizer/vocab.json"), &tok.join("vocab.json"));
    copy(&fixture("tokenizer/merges.txt"), &tok.join("merges.txt"));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    std::env::set_var("HF_HOME", tmp.path());
    std::env::remove_var("HF_HUB_CACHE");
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let m = Mi2::from_pretrained("lion-ai/tiny-mi2", None, DType::F32, &Device::Cpu).unwrap();
    let exp = load("mi2_tiny/expected.safetensors");
    let img = m.model().encode_image(&exp["images"], false).unwrap();
    assert!(max_diff(&img, &exp["image_embeddings"]) < 1e-5);
    // a commit hash as revision names the snapshot directly
    Mi2::from_pretrained("lion-ai/tiny-mi2", Some(commit), DType::F32, &Device::Cpu).unwrap();

    let err = Mi2::from_pretrained("lion-ai/absent", None, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lion-ai/absent") && err.contains("huggingface-cli download"),
        "{err}"
    );
}
