//! Old-layout UniCL checkpoints (`text.*`, `text_projection`, …) load like current ones.
#![allow(clippy::unwrap_used)]

use crate::common;

use candle_core::{DType, Device};
use common::{batch, fixture, load, max_diff, text_config};
use dual_encoder::{convert_old_key, unicl_var_builder, TextEncoder, TextTransformer};

#[test]
fn old_key_layout_is_converted() {
    assert_eq!(
        convert_old_key("text.resblocks.0.attn.in_proj_weight"),
        "lang_encoder.resblocks.0.attn.in_proj_weight"
    );
    assert_eq!(
        convert_old_key("visual.stem.weight"),
        "image_encoder.stem.weight"
    );
    assert_eq!(convert_old_key("text_projection"), "lang_projection");
    assert_eq!(convert_old_key("vision_projection"), "image_projection");
    assert_eq!(convert_old_key("logit_scale"), "logit_scale");

    let current = load("text_causal/model.safetensors");
    let old: std::collections::HashMap<String, _> = current
        .into_iter()
        .map(|(k, v)| {
            let k = if let Some(r) = k.strip_prefix("lang_encoder.") {
                format!("text.{r}")
            } else if k == "lang_projection" {
                "text_projection".into()
            } else {
                k
            };
            (k, v)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.safetensors");
    candle_core::safetensors::save(&old, &path).unwrap();
    let vb = unicl_var_builder(&path, DType::F32, &Device::Cpu).unwrap();
    let model = TextTransformer::new(&text_config("text_causal"), vb).unwrap();
    let exp = load("text_causal/expected.safetensors");
    let out = model.encode(&batch(&exp)).unwrap();
    assert!(max_diff(&out.projected, &exp["projected"]) < 1e-4);
}

#[test]
fn missing_checkpoint_is_a_clear_error() {
    let e = unicl_var_builder(&fixture("nope.safetensors"), DType::F32, &Device::Cpu)
        .err()
        .unwrap();
    assert!(e.to_string().contains("nope.safetensors"), "{e}");
    let e = unicl_var_builder(&fixture("tokenizer/vocab.json"), DType::F32, &Device::Cpu)
        .err()
        .unwrap();
    assert!(e.to_string().contains("vocab.json"), "{e}");
}
