//! DaViT (MI2 image tower) against the PyTorch reference of `davit_reference.py`, on the
//! tiny fixture written by `gen_davit.py`; plus the full-size key manifest, the pickle-free
//! `.pt` reader and the loader's errors.
//!
//! Tolerance: 1e-4 absolute on every stage map, the pooled feature and the embedding, in both
//! the inference (fused kernels) and the differentiable path.
#![allow(clippy::unwrap_used)] // tests may panic on failure

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use cxr_core::{Encoder, Error, FeatureRequest};
use vit_backbone::davit::weights::{
    expected_tensors, read_checkpoint, read_pytorch, write_safetensors,
};
use vit_backbone::davit::{DavitCheckpoint, DavitConfig, DavitModel};

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("davit_tiny/expected.safetensors"), &Device::Cpu)
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    cxr_core::ops::max_abs_diff(a, b).unwrap()
}

fn check(model: &DavitModel, exp: &HashMap<String, Tensor>, tag: &str) {
    let pixels = &exp[&format!("{tag}.pixel_values")];
    let out = model.forward(pixels, false).unwrap();
    assert_eq!(out.stages.len(), 4);
    for (i, s) in out.stages.iter().enumerate() {
        let want = &exp[&format!("{tag}.stage{i}")];
        assert_eq!(s.tokens.dims(), want.dims(), "{tag} stage {i} shape");
        assert_eq!(s.grid.0 * s.grid.1, want.dim(1).unwrap());
        let d = max_diff(&s.tokens, want);
        eprintln!("{tag} stage {i}: max abs diff {d:e}");
        assert!(d < TOL, "{tag} stage {i} differs by {d}");
    }
    let d = max_diff(&out.pooled, &exp[&format!("{tag}.pooled")]);
    assert!(d < TOL, "{tag} pooled differs by {d}");
    let emb = model.project(&out.pooled).unwrap();
    let d = max_diff(&emb, &exp[&format!("{tag}.embedding")]);
    assert!(d < TOL, "{tag} embedding differs by {d}");
}

#[test]
fn tiny_tower_matches_pytorch_reference() {
    let model = DavitModel::from_dir(&fixture("davit_tiny"), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.config(), &DavitConfig::tiny());
    let exp = expected();
    // 64x64: window-aligned until the last stage; 52x84: 13x21, 7x11, 4x6, 2x3 grids, all padded
    check(&model, &exp, "square");
    check(&model, &exp, "odd");
}

#[test]
fn trainable_path_matches_pytorch_reference() {
    let cfg = DavitConfig::tiny();
    let files = vec![fixture("davit_tiny/model.safetensors")];
    let varmap = VarMap::new();
    let model = DavitCheckpoint::read(cfg, &files)
        .unwrap()
        .into_trainable(&varmap, DType::F32, &Device::Cpu)
        .unwrap();
    let exp = expected();
    check(&model, &exp, "odd");
}

/// An input that a stage's patch embedding shrinks to nothing is an error naming the stage
/// (candle's conv underflowed computing its output size: a panic in debug builds, an
/// empty map and a panic in the depth-wise convolution in release builds).
#[test]
fn input_too_small_for_a_stage_is_an_error() {
    let cfg = DavitConfig {
        patch_padding: vec![3, 1, 0, 1],
        ..DavitConfig::tiny()
    };
    let model = DavitCheckpoint::read(cfg, &[fixture("davit_tiny/model.safetensors")])
        .unwrap()
        .into_model(DType::F32, &Device::Cpu)
        .unwrap();
    // 14x14 -> 4x4 -> 2x2, then kernel 3 without padding does not fit
    let pixels = Tensor::zeros((1, 3, 14, 14), DType::F32, &Device::Cpu).unwrap();
    let err = model
        .forward_features(&pixels, &FeatureRequest::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DaViT stage 2, pixels [1, 3, 14, 14]")
            && err.contains("a 2x2 map padded by 0 is smaller than the 3x3 kernel"),
        "{err}"
    );
}

#[test]
fn encoder_contract() {
    let model = DavitModel::from_dir(&fixture("davit_tiny"), DType::F32, &Device::Cpu).unwrap();
    let exp = expected();
    let pixels = &exp["odd.pixel_values"];
    let f = model
        .forward_features(pixels, &FeatureRequest::with_layers([3, 0, 2]))
        .unwrap();
    assert!(max_diff(&f.pooled, &exp["odd.pooled"]) < TOL);
    assert_eq!(f.grid, (2, 3));
    assert!(max_diff(&f.patch_tokens, &exp["odd.stage3"]) < TOL);
    let layers: Vec<usize> = f.intermediates.iter().map(|i| i.layer).collect();
    assert_eq!(layers, vec![3, 0, 2]);
    assert_eq!(f.intermediate(0).unwrap().grid, (13, 21));
    assert!(max_diff(&f.intermediate(2).unwrap().tokens, &exp["odd.stage2"]) < TOL);
    assert_eq!(
        f.intermediate(0).unwrap().map().unwrap().dims(),
        &[2, 8, 13, 21]
    );
    let info = model.feature_info();
    assert_eq!(info.embed_dim, 32);
    assert_eq!(info.patch_stride, 32);
    let cs: Vec<(usize, usize)> = info.layers.iter().map(|l| (l.channels, l.stride)).collect();
    assert_eq!(cs, vec![(8, 4), (16, 8), (24, 16), (32, 32)]);
    assert_eq!(info.evenly_spaced_layers(4), vec![0, 1, 2, 3]);
    let p = model.preprocessing();
    assert_eq!((p.crop, p.shortest_edge), ((64, 64), None));
    assert_eq!(p.mean, [0.485, 0.456, 0.406]);
    // bad requests are typed errors
    let err = model.forward_features(pixels, &FeatureRequest::with_layers([4]));
    assert!(matches!(err, Err(Error::BadInput { .. })));
    let gray = Tensor::zeros((1, 1, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward_features(&gray, &FeatureRequest::default());
    assert!(matches!(err, Err(Error::BadInput { .. })));
}

#[test]
fn mi2_manifest_matches_expected_tensors() {
    let text = std::fs::read_to_string(fixture("mi2_image_keys.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let from_torch: HashMap<String, Vec<usize>> = json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let shape = e[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize);
            (e[0].as_str().unwrap().to_string(), shape.collect())
        })
        .collect();
    let ours: HashMap<String, Vec<usize>> =
        expected_tensors(&DavitConfig::mi2()).into_iter().collect();
    let mut missing: Vec<_> = from_torch
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .collect();
    let mut extra: Vec<_> = ours
        .keys()
        .filter(|k| !from_torch.contains_key(*k))
        .collect();
    missing.sort();
    extra.sort();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (k, shape) in &from_torch {
        assert_eq!(&ours[k], shape, "{k}");
    }
    assert_eq!(json["parameters"].as_u64().unwrap(), 362_733_568);
    // the manifest's config is the preset
    let cfg = &json["config"];
    let mi2 = DavitConfig::mi2();
    assert_eq!(
        cfg["window_size"].as_u64().unwrap() as usize,
        mi2.window_size
    );
    assert_eq!(cfg["image_size"].as_u64().unwrap() as usize, mi2.image_size);
}

#[test]
fn pytorch_zip_is_read_without_pickle_and_converts() {
    let pt = fixture("davit_tiny/subset.pt");
    let tensors = read_pytorch(&pt, None).unwrap();
    let reference =
        candle_core::safetensors::load(fixture("davit_tiny/model.safetensors"), &Device::Cpu)
            .unwrap();
    assert_eq!(tensors.len(), 5);
    for (k, v) in &tensors {
        let want = if k == "transposed" {
            reference["image_projection"].t().unwrap()
        } else {
            reference[k].clone()
        };
        assert_eq!(v.dims(), want.dims(), "{k}");
        assert_eq!(max_diff(v, &want), 0.0, "{k}");
    }
    // content sniffing: the same reader takes both formats
    assert_eq!(read_checkpoint(&pt).unwrap().len(), 5);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("subset.safetensors");
    write_safetensors(&tensors, &out).unwrap();
    let back = read_checkpoint(&out).unwrap();
    assert_eq!(max_diff(&back["transposed"], &tensors["transposed"]), 0.0);
}

#[test]
fn loader_errors_name_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors =
        candle_core::safetensors::load(fixture("davit_tiny/model.safetensors"), &Device::Cpu)
            .unwrap();
    // the text tower of a full UniCL state dict is set aside, not an error
    tensors.insert(
        "lang_encoder.token_embedding.weight".into(),
        Tensor::zeros((4, 2), DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "logit_scale".into(),
        Tensor::ones((), DType::F32, &Device::Cpu).unwrap(),
    );
    let ok = dir.path().join("ok.safetensors");
    write_safetensors(&tensors, &ok).unwrap();
    let ck = DavitCheckpoint::read(DavitConfig::tiny(), &[ok]).unwrap();
    assert_eq!(ck.other_towers.len(), 2);

    let mut missing = tensors.clone();
    missing.remove("image_encoder.blocks.2.1.channel_block.ffn.fn.net.fc1.weight");
    let p = dir.path().join("missing.safetensors");
    write_safetensors(&missing, &p).unwrap();
    match DavitCheckpoint::read(DavitConfig::tiny(), &[p]) {
        Err(Error::MissingTensor {
            tensor, expected, ..
        }) => {
            assert_eq!(
                tensor,
                "image_encoder.blocks.2.1.channel_block.ffn.fn.net.fc1.weight"
            );
            assert_eq!(expected, vec![96, 24]);
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    // the tiny weights under the MI2 config: the first tensor has the wrong shape
    let p = dir.path().join("ok2.safetensors");
    write_safetensors(&tensors, &p).unwrap();
    match DavitCheckpoint::read(DavitConfig::mi2(), &[p]) {
        Err(Error::ShapeMismatch {
            tensor,
            expected,
            found,
            ..
        }) => {
            assert_eq!(tensor, "image_encoder.convs.0.proj.weight");
            assert_eq!((expected, found), (vec![256, 3, 7, 7], vec![8, 3, 7, 7]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let mut extra = tensors;
    extra.insert(
        "image_encoder.blocks.9.x".into(),
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
    );
    let p = dir.path().join("extra.safetensors");
    write_safetensors(&extra, &p).unwrap();
    assert!(matches!(
        DavitCheckpoint::read(DavitConfig::tiny(), &[p]),
        Err(Error::UnexpectedTensors { .. })
    ));
    assert!(matches!(
        DavitModel::from_dir(
            dir.path().join("nowhere").as_path(),
            DType::F32,
            &Device::Cpu
        ),
        Err(Error::NotFound(_))
    ));
}
