//! Checkpoint key layouts and their validation.
//!
//! The canonical layout is the one of `transformers`' `Dinov2Model` checkpoints on the hub
//! (`microsoft/rad-dino`, `facebook/dinov2-*`). Two other layouts are converted into it:
//! the names `transformers` ≥ 5 uses in memory (`attention.q_proj`, `mlp.gate_proj`, …) and the
//! original facebookresearch/dinov2 / timm names (`blocks.{i}.attn.qkv`, `pos_embed`, …, as in
//! RAD-DINO's `backbone_compatible.safetensors`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use cxr_core::Error;

use crate::config::Dinov2Config;

/// Which naming a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLayout {
    /// `transformers` hub checkpoints: `encoder.layer.{i}.attention.attention.query.weight`.
    Transformers,
    /// `transformers` ≥ 5 in-memory names: `encoder.layer.{i}.attention.q_proj.weight`.
    TransformersV5,
    /// facebookresearch/dinov2 and timm: `blocks.{i}.attn.qkv.weight`.
    Original,
}

/// Every tensor the model built from `cfg` wants, with its shape, in the canonical layout.
pub fn expected_tensors(cfg: &Dinov2Config) -> Vec<(String, Vec<usize>)> {
    let d = cfg.hidden_size;
    let p = cfg.patch_size;
    let n = cfg.grid_size() * cfg.grid_size();
    let h = cfg.mlp_hidden();
    let mut out = vec![("embeddings.cls_token".to_string(), vec![1, 1, d])];
    if cfg.use_mask_token {
        out.push(("embeddings.mask_token".into(), vec![1, d]));
    }
    if cfg.num_register_tokens > 0 {
        out.push((
            "embeddings.register_tokens".into(),
            vec![1, cfg.num_register_tokens, d],
        ));
    }
    out.push(("embeddings.position_embeddings".into(), vec![1, n + 1, d]));
    out.push((
        "embeddings.patch_embeddings.projection.weight".into(),
        vec![d, cfg.num_channels, p, p],
    ));
    out.push((
        "embeddings.patch_embeddings.projection.bias".into(),
        vec![d],
    ));
    for i in 0..cfg.num_hidden_layers {
        let l = format!("encoder.layer.{i}");
        let mut push = |name: &str, shape: Vec<usize>| out.push((format!("{l}.{name}"), shape));
        push("norm1.weight", vec![d]);
        push("norm1.bias", vec![d]);
        for proj in ["query", "key", "value"] {
            push(&format!("attention.attention.{proj}.weight"), vec![d, d]);
            if cfg.qkv_bias {
                push(&format!("attention.attention.{proj}.bias"), vec![d]);
            }
        }
        push("attention.output.dense.weight", vec![d, d]);
        push("attention.output.dense.bias", vec![d]);
        push("layer_scale1.lambda1", vec![d]);
        push("norm2.weight", vec![d]);
        push("norm2.bias", vec![d]);
        if cfg.use_swiglu_ffn {
            push("mlp.weights_in.weight", vec![2 * h, d]);
            push("mlp.weights_in.bias", vec![2 * h]);
            push("mlp.weights_out.weight", vec![d, h]);
            push("mlp.weights_out.bias", vec![d]);
        } else {
            push("mlp.fc1.weight", vec![h, d]);
            push("mlp.fc1.bias", vec![h]);
            push("mlp.fc2.weight", vec![d, h]);
            push("mlp.fc2.bias", vec![d]);
        }
        push("layer_scale2.lambda1", vec![d]);
    }
    out.push(("layernorm.weight".into(), vec![d]));
    out.push(("layernorm.bias".into(), vec![d]));
    out
}

/// Prefixes training frameworks put before backbone keys; stripped when every key has one.
const KNOWN_PREFIXES: [&str; 5] = [
    "teacher.backbone.",
    "student.backbone.",
    "backbone.",
    "dinov2.",
    "model.",
];

/// Detects the layout of `names`.
pub fn detect_layout<'a>(names: impl IntoIterator<Item = &'a str>) -> KeyLayout {
    let mut layout = KeyLayout::Transformers;
    for n in names {
        if n.contains("blocks.") || n == "pos_embed" || n.starts_with("patch_embed.") {
            return KeyLayout::Original;
        }
        if n.contains("attention.q_proj") || n.contains("mlp.gate_proj") {
            layout = KeyLayout::TransformersV5;
        }
    }
    layout
}

fn strip_prefix(mut tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    for prefix in KNOWN_PREFIXES {
        if !tensors.is_empty() && tensors.keys().all(|k| k.starts_with(prefix)) {
            tensors = tensors
                .into_iter()
                .map(|(k, v)| (k[prefix.len()..].to_string(), v))
                .collect();
        }
    }
    tensors
}

/// Converts a checkpoint in any supported layout into the canonical one.
pub fn to_canonical(
    tensors: HashMap<String, Tensor>,
) -> candle_core::Result<HashMap<String, Tensor>> {
    let tensors = strip_prefix(tensors);
    match detect_layout(tensors.keys().map(String::as_str)) {
        KeyLayout::Transformers => Ok(tensors),
        KeyLayout::TransformersV5 => from_v5(tensors),
        KeyLayout::Original => from_original(tensors),
    }
}

fn from_v5(tensors: HashMap<String, Tensor>) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    let mut gate_up: HashMap<String, (Option<Tensor>, Option<Tensor>)> = HashMap::new();
    for (k, v) in tensors {
        let renamed = k
            .replace("attention.q_proj", "attention.attention.query")
            .replace("attention.k_proj", "attention.attention.key")
            .replace("attention.v_proj", "attention.attention.value")
            .replace("attention.o_proj", "attention.output.dense")
            .replace("mlp.down_proj", "mlp.weights_out");
        if let Some(pos) = renamed.find("mlp.gate_proj.") {
            let key = format!("{}mlp.weights_in.{}", &renamed[..pos], &renamed[pos + 14..]);
            gate_up.entry(key).or_default().0 = Some(v);
        } else if let Some(pos) = renamed.find("mlp.up_proj.") {
            let key = format!("{}mlp.weights_in.{}", &renamed[..pos], &renamed[pos + 12..]);
            gate_up.entry(key).or_default().1 = Some(v);
        } else {
            out.insert(renamed, v);
        }
    }
    for (k, pair) in gate_up {
        match pair {
            (Some(g), Some(u)) => {
                out.insert(k, Tensor::cat(&[g, u], 0)?);
            }
            _ => candle_core::bail!("`{k}`: gate_proj and up_proj must both be present"),
        }
    }
    Ok(out)
}

fn from_original(tensors: HashMap<String, Tensor>) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (k, v) in tensors {
        let simple = match k.as_str() {
            "cls_token" => Some("embeddings.cls_token".to_string()),
            "mask_token" => Some("embeddings.mask_token".to_string()),
            "register_tokens" => Some("embeddings.register_tokens".to_string()),
            "pos_embed" => Some("embeddings.position_embeddings".to_string()),
            "patch_embed.proj.weight" => {
                Some("embeddings.patch_embeddings.projection.weight".into())
            }
            "patch_embed.proj.bias" => Some("embeddings.patch_embeddings.projection.bias".into()),
            "norm.weight" => Some("layernorm.weight".into()),
            "norm.bias" => Some("layernorm.bias".into()),
            _ => None,
        };
        if let Some(name) = simple {
            out.insert(name, v);
            continue;
        }
        let Some((layer, rest)) = parse_block_key(&k) else {
            // heads and other modules the backbone does not own stay, to be reported
            out.insert(k, v);
            continue;
        };
        let l = format!("encoder.layer.{layer}");
        match rest {
            "attn.qkv.weight" | "attn.qkv.bias" => {
                let kind = if rest.ends_with("weight") {
                    "weight"
                } else {
                    "bias"
                };
                let third = v.dim(0)? / 3;
                for (i, proj) in ["query", "key", "value"].iter().enumerate() {
                    out.insert(
                        format!("{l}.attention.attention.{proj}.{kind}"),
                        v.narrow(0, i * third, third)?,
                    );
                }
            }
            _ => {
                let renamed = rest
                    .replace("attn.proj.", "attention.output.dense.")
                    .replace("ls1.gamma", "layer_scale1.lambda1")
                    .replace("ls2.gamma", "layer_scale2.lambda1")
                    .replace("mlp.w12.", "mlp.weights_in.")
                    .replace("mlp.w3.", "mlp.weights_out.");
                out.insert(format!("{l}.{renamed}"), v);
            }
        }
    }
    Ok(out)
}

/// `blocks.{i}.rest` or chunked `blocks.{c}.{i}.rest` → `(i, rest)`.
fn parse_block_key(k: &str) -> Option<(usize, &str)> {
    let tail = k.strip_prefix("blocks.")?;
    let (first, rest) = tail.split_once('.')?;
    let first: usize = first.parse().ok()?;
    if let Some((second, rest2)) = rest.split_once('.') {
        if let Ok(second) = second.parse::<usize>() {
            return Some((second, rest2));
        }
    }
    Some((first, rest))
}

/// Checks that `tensors` holds exactly what `cfg` needs: missing and mis-shaped tensors are
/// errors naming the tensor and both shapes; unexpected ones are an error unless allowed.
pub fn validate(
    cfg: &Dinov2Config,
    tensors: &HashMap<String, Tensor>,
    file: &Path,
    allow_unexpected: bool,
) -> cxr_core::Result<()> {
    cxr_core::check_tensors(&expected_tensors(cfg), tensors, file, allow_unexpected)
}

/// Sets every variable of `varmap` that `tensors` names to that tensor, in `dtype` on
/// `device` (how a trainable model built from a `VarMap` takes a checkpoint's weights).
pub fn load_into_varmap(
    varmap: &candle_nn::VarMap,
    tensors: &HashMap<String, Tensor>,
    dtype: candle_core::DType,
    device: &Device,
) -> cxr_core::Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Candle(candle_core::Error::Msg("VarMap lock poisoned".into())))?;
    for (name, var) in data.iter() {
        if let Some(t) = tensors.get(name) {
            var.set(&t.to_dtype(dtype)?.to_device(device)?)?;
        }
    }
    Ok(())
}

/// Reads every tensor of one or more safetensors files onto the CPU.
pub fn read_safetensors(files: &[impl AsRef<Path>]) -> cxr_core::Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for file in files {
        let file = file.as_ref();
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        let loaded = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| Error::config(file, format!("not a readable safetensors file: {e}")))?;
        out.extend(loaded);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_keys_parse_plain_and_chunked() {
        assert_eq!(
            parse_block_key("blocks.3.attn.qkv.weight"),
            Some((3, "attn.qkv.weight"))
        );
        assert_eq!(
            parse_block_key("blocks.0.7.ls1.gamma"),
            Some((7, "ls1.gamma"))
        );
        assert_eq!(parse_block_key("norm.weight"), None);
    }

    #[test]
    fn rad_dino_has_the_documented_key_count() {
        // 5 stem tensors + 18 per block + 2 final norm
        let keys = expected_tensors(&Dinov2Config::rad_dino());
        assert_eq!(keys.len(), 5 + 18 * 12 + 2);
        let pos = keys
            .iter()
            .find(|(k, _)| k == "embeddings.position_embeddings")
            .unwrap();
        assert_eq!(pos.1, vec![1, 1370, 768]);
    }

    #[test]
    fn layouts_are_detected() {
        assert_eq!(
            detect_layout(["blocks.0.attn.qkv.weight"]),
            KeyLayout::Original
        );
        assert_eq!(
            detect_layout(["encoder.layer.0.attention.q_proj.weight"]),
            KeyLayout::TransformersV5
        );
        assert_eq!(
            detect_layout(["encoder.layer.0.attention.attention.query.weight"]),
            KeyLayout::Transformers
        );
    }
}
