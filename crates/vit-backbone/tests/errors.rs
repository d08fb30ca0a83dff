//! Bad checkpoints give typed errors that name the file, the tensor and the shapes.
#![allow(clippy::unwrap_used)] // tests may panic on failure

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use vit_backbone::{Checkpoint, Dinov2Config, Dinov2Model};

fn tiny_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dinov2_tiny")
}

fn weights() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(tiny_dir().join("model.safetensors"), &Device::Cpu).unwrap()
}

fn write(dir: &Path, tensors: &HashMap<String, Tensor>) -> std::path::PathBuf {
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(tensors, &path).unwrap();
    path
}

fn cfg() -> Dinov2Config {
    Dinov2Config::from_file(&tiny_dir().join("config.json")).unwrap()
}

#[test]
fn missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = weights();
    w.remove("encoder.layer.1.mlp.fc2.weight");
    let path = write(tmp.path(), &w);
    let err = Checkpoint::read_weights(cfg(), &[path], None).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, cxr_core::Error::MissingTensor { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("encoder.layer.1.mlp.fc2.weight") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_names_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = weights();
    w.insert(
        "layernorm.bias".into(),
        Tensor::zeros(47, DType::F32, &Device::Cpu).unwrap(),
    );
    let path = write(tmp.path(), &w);
    let msg = Checkpoint::read_weights(cfg(), &[path], None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("layernorm.bias") && msg.contains("[47]") && msg.contains("[48]"),
        "{msg}"
    );
}

#[test]
fn unexpected_tensor_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = weights();
    w.insert(
        "head.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let path = write(tmp.path(), &w);
    let msg = Checkpoint::read_weights(cfg(), &[path], None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("head.weight"), "{msg}");
}

#[test]
fn corrupt_and_truncated_files_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(tiny_dir().join("model.safetensors")).unwrap();
    for (name, data) in [
        ("truncated.safetensors", &bytes[..bytes.len() / 2]),
        (
            "garbage.safetensors",
            &b"\xff\xff\xff\xff\xff\xff\xff\x7fnot safetensors"[..],
        ),
        ("empty.safetensors", &b""[..]),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, data).unwrap();
        let msg = Checkpoint::read_weights(cfg(), &[path], None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(name), "{msg}");
    }
}

#[test]
fn missing_directory_and_bad_config_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(Dinov2Model::from_dir(tmp.path(), DType::F32, &Device::Cpu).is_err());
    std::fs::copy(
        tiny_dir().join("model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"hidden_size": 50, "num_attention_heads": 4}"#,
    )
    .unwrap();
    let msg = Dinov2Model::from_dir(tmp.path(), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("config.json") && msg.contains("divisible"),
        "{msg}"
    );
}

/// A config with no blocks is the stem alone (the GPU benchmark times it that way): its
/// output is the final layer norm of the full model's embeddings.
#[test]
fn zero_block_model_is_the_normed_stem() {
    let full_cfg = cfg();
    let w = weights();
    let full = Dinov2Model::new(
        &full_cfg,
        candle_nn::VarBuilder::from_tensors(w.clone(), DType::F32, &Device::Cpu),
    )
    .unwrap();
    let stem_cfg = Dinov2Config {
        num_hidden_layers: 0,
        ..full_cfg.clone()
    };
    let stem_weights: HashMap<String, Tensor> = w
        .into_iter()
        .filter(|(k, _)| !k.starts_with("encoder."))
        .collect();
    let stem = Dinov2Model::new(
        &stem_cfg,
        candle_nn::VarBuilder::from_tensors(stem_weights, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 56, 42), &Device::Cpu).unwrap();
    let opts = vit_backbone::ForwardOptions {
        output_hidden_states: true,
        ..Default::default()
    };
    let embeddings = full.forward(&x, &opts).unwrap().hidden_states[0].clone();
    let got = stem.forward(&x, &opts).unwrap();
    assert_eq!(got.hidden_states.len(), 1);
    let max_diff = |a: &Tensor, b: &Tensor| cxr_core::ops::max_abs_diff(a, b).unwrap();
    let d = max_diff(&got.hidden_states[0], &embeddings);
    assert!(d < 1e-6, "stem embeddings differ by {d}");
    let ln = |which: &str| weights()[&format!("layernorm.{which}")].clone();
    let want = cxr_core::ops::layer_norm(
        &embeddings,
        &ln("weight"),
        &ln("bias"),
        full_cfg.layer_norm_eps,
    )
    .unwrap();
    let d = max_diff(&got.last_hidden_state, &want);
    assert!(
        d < 1e-5,
        "stem output differs from the normed embeddings by {d}"
    );
}
