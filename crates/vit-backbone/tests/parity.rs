//! Parity with `transformers` on the tiny fixtures written by `gen.py`.
//!
//! Tolerance: 1e-4 absolute on every output (f32 reference vs f32 candle; observed errors are
//! around 1e-6).
#![allow(clippy::unwrap_used)] // tests may panic on failure

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use cxr_core::{Encoder, FeatureRequest};
use vit_backbone::{
    interpolate::resample_grid, Checkpoint, Dinov2Config, Dinov2Model, ForwardOptions, ModelFiles,
    PosInterpolation,
};

const TOL: f32 = 1e-4;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
}

fn expected(case: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(case).join("expected.safetensors"), &Device::Cpu)
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    cxr_core::ops::max_abs_diff(a, b).unwrap()
}

fn check_all(model: &Dinov2Model, exp: &HashMap<String, Tensor>, tag: &str) {
    let pixels = &exp[&format!("{tag}.pixel_values")];
    let mask = exp
        .get(&format!("{tag}.bool_masked_pos"))
        .map(|m| m.to_dtype(DType::F32).unwrap());
    let out = model
        .forward(
            pixels,
            &ForwardOptions {
                bool_masked_pos: mask.as_ref(),
                output_hidden_states: true,
                all_attentions: true,
                ..Default::default()
            },
        )
        .unwrap();
    let d = max_diff(
        &out.last_hidden_state,
        &exp[&format!("{tag}.last_hidden_state")],
    );
    assert!(d < TOL, "{tag} last_hidden_state differs by {d}");
    let d = max_diff(&out.pooler_output, &exp[&format!("{tag}.pooler_output")]);
    assert!(d < TOL, "{tag} pooler_output differs by {d}");
    let n_layers = model.config().num_hidden_layers;
    assert_eq!(out.hidden_states.len(), n_layers + 1);
    for (i, h) in out.hidden_states.iter().enumerate() {
        let d = max_diff(h, &exp[&format!("{tag}.hidden_states.{i}")]);
        assert!(d < TOL, "{tag} hidden_states.{i} differs by {d}");
    }
    // without attention outputs the fused CPU attention kernel runs: same numbers
    let fused = model
        .forward(
            pixels,
            &ForwardOptions {
                bool_masked_pos: mask.as_ref(),
                ..Default::default()
            },
        )
        .unwrap();
    let d = max_diff(
        &fused.last_hidden_state,
        &exp[&format!("{tag}.last_hidden_state")],
    );
    assert!(d < TOL, "{tag} fused last_hidden_state differs by {d}");
    assert_eq!(out.attentions.len(), n_layers);
    for (i, a) in &out.attentions {
        let d = max_diff(a, &exp[&format!("{tag}.attentions.{i}")]);
        assert!(d < 1e-5, "{tag} attentions.{i} differs by {d}");
    }
}

#[test]
fn tiny_dinov2_matches_transformers_native_nonsquare_and_masked() {
    let model = Dinov2Model::from_dir(&fixture("dinov2_tiny"), DType::F32, &Device::Cpu).unwrap();
    let exp = expected("dinov2_tiny");
    for tag in ["native", "nonsquare", "masked"] {
        check_all(&model, &exp, tag);
    }
}

#[test]
fn registers_and_swiglu_match_transformers() {
    let model = Dinov2Model::from_dir(
        &fixture("dinov2_registers_swiglu"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        model.config().interpolation(),
        PosInterpolation::BicubicAntialias
    );
    let exp = expected("dinov2_registers_swiglu");
    for tag in ["native", "nonsquare"] {
        check_all(&model, &exp, tag);
    }
}

#[test]
fn original_dinov2_key_layout_loads_to_the_same_model() {
    let dir = fixture("dinov2_tiny");
    let cfg = Dinov2Config::from_file(&dir.join("config.json")).unwrap();
    let ckpt =
        Checkpoint::read_weights(cfg, &[dir.join("original_layout.safetensors")], None).unwrap();
    let model = ckpt.into_model(DType::F32, &Device::Cpu).unwrap();
    let exp = expected("dinov2_tiny");
    check_all(&model, &exp, "nonsquare");
}

#[test]
fn offset_interpolation_matches_scale_factor_semantics() {
    let dir = fixture("dinov2_tiny");
    let weights: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let pos = weights["embeddings.position_embeddings"]
        .squeeze(0)
        .unwrap()
        .narrow(0, 1, 16)
        .unwrap();
    let ours = resample_grid(&pos, (4, 4), (3, 5), PosInterpolation::BicubicOffset).unwrap();
    let want: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir.join("offset_interpolation.safetensors"), &Device::Cpu)
            .unwrap();
    let d = max_diff(&ours, &want["patch_pos_3x5"]);
    assert!(d < 1e-5, "offset interpolation differs by {d}");
    let exact = resample_grid(&pos, (4, 4), (3, 5), PosInterpolation::Bicubic).unwrap();
    assert!(
        max_diff(&exact, &want["patch_pos_3x5"]) > 1e-3,
        "the two semantics must differ"
    );
}

#[test]
fn encoder_contract_returns_named_features() {
    let model = Dinov2Model::from_dir(&fixture("dinov2_tiny"), DType::F32, &Device::Cpu).unwrap();
    let exp = expected("dinov2_tiny");
    let pixels = &exp["nonsquare.pixel_values"];
    let f = model
        .forward_features(pixels, &FeatureRequest::with_layers(vec![0, 1]))
        .unwrap();
    assert_eq!(f.grid, (3, 5));
    assert_eq!(f.patch_tokens.dims(), &[2, 15, 48]);
    assert_eq!(f.pooled.dims(), &[2, 48]);
    let last = exp["nonsquare.last_hidden_state"].narrow(1, 1, 15).unwrap();
    assert!(max_diff(&f.patch_tokens, &last) < TOL);
    let h1 = exp["nonsquare.hidden_states.1"].narrow(1, 1, 15).unwrap();
    let i0 = f.intermediate(0).unwrap();
    assert!(max_diff(&i0.tokens, &h1) < TOL);
    assert_eq!(i0.map().unwrap().dims(), &[2, 48, 3, 5]);
    let info = model.feature_info();
    assert_eq!(
        (info.embed_dim, info.patch_stride, info.num_layers()),
        (48, 14, 2)
    );
    assert!(model
        .forward_features(pixels, &FeatureRequest::with_layers(vec![2]))
        .is_err());
    let bad = Tensor::zeros((3, 56, 56), DType::F32, &Device::Cpu).unwrap();
    assert!(model
        .forward_features(&bad, &FeatureRequest::default())
        .is_err());
}

#[test]
fn trainable_model_matches_inference_model_and_half_precision_is_close() {
    let dir = fixture("dinov2_tiny");
    let exp = expected("dinov2_tiny");
    let varmap = VarMap::new();
    let trainable = Checkpoint::read(&ModelFiles::in_dir(&dir).unwrap())
        .unwrap()
        .into_trainable(&varmap, DType::F32, &Device::Cpu)
        .unwrap();
    // every op now takes its differentiable path; the outputs must not move
    check_all(&trainable, &exp, "nonsquare");
    let bf16 = Dinov2Model::from_dir(&dir, DType::BF16, &Device::Cpu).unwrap();
    let out = bf16
        .forward(&exp["native.pixel_values"], &ForwardOptions::default())
        .unwrap();
    let d = max_diff(
        &out.pooler_output.to_dtype(DType::F32).unwrap(),
        &exp["native.pooler_output"],
    );
    assert!(d < 0.15, "bf16 pooler differs by {d}");
}

#[test]
fn full_rad_dino_config_wants_exactly_the_transformers_keys() {
    let text = std::fs::read_to_string(fixture("rad_dino_keys.json")).unwrap();
    let want: HashMap<String, Vec<usize>> = serde_json::from_str(&text).unwrap();
    let ours: HashMap<String, Vec<usize>> =
        vit_backbone::weights::expected_tensors(&Dinov2Config::rad_dino())
            .into_iter()
            .collect();
    assert_eq!(ours, want);
    // and the model built from the preset asks for exactly these tensors
    let varmap = VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let _model = Dinov2Model::new(&Dinov2Config::rad_dino(), vb).unwrap();
    let built: HashMap<String, Vec<usize>> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    assert_eq!(built, want);
}
