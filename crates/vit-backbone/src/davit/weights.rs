//! The released checkpoint's key layout, its older spellings, and validation.
//!
//! Canonical names are those of MedImageInsight's UniCL state dict (the 2024.09.27 release):
//! `image_encoder.convs.{i}.{proj,norm}.{weight,bias}`,
//! `image_encoder.blocks.{i}.{j}.{spatial,channel}_block.{conv1.fn.dw, window_attn.norm,
//! window_attn.fn.{qkv,proj} | channel_attn.norm, channel_attn.fn.{qkv,proj}, conv2.fn.dw,
//! ffn.norm, ffn.fn.net.{fc1,fc2}}.{weight,bias}`, `image_encoder.norms.{weight,bias}` and
//! `image_projection` `[C_last, P]` (applied as `x @ P`, not transposed).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use cxr_core::Error;

use super::config::DavitConfig;

/// Every tensor the tower built from `cfg` wants, with its shape, in the canonical layout.
pub fn expected_tensors(cfg: &DavitConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>| out.push((name, shape));
    for i in 0..cfg.num_stages() {
        let d = cfg.embed_dims[i];
        let cin = if i == 0 {
            cfg.in_chans
        } else {
            cfg.embed_dims[i - 1]
        };
        let k = cfg.patch_size[i];
        let p = format!("image_encoder.convs.{i}");
        push(format!("{p}.proj.weight"), vec![d, cin, k, k]);
        push(format!("{p}.proj.bias"), vec![d]);
        let nd = if cfg.patch_prenorm[i] { cin } else { d };
        push(format!("{p}.norm.weight"), vec![nd]);
        push(format!("{p}.norm.bias"), vec![nd]);
    }
    for i in 0..cfg.num_stages() {
        let d = cfg.embed_dims[i];
        let h = (d as f64 * cfg.mlp_ratio) as usize;
        for j in 0..cfg.depths[i] {
            for (block, attn) in [
                ("spatial_block", "window_attn"),
                ("channel_block", "channel_attn"),
            ] {
                let p = format!("image_encoder.blocks.{i}.{j}.{block}");
                let mut sub = |name: &str, shape: Vec<usize>| push(format!("{p}.{name}"), shape);
                if cfg.conv_at_attn {
                    sub("conv1.fn.dw.weight", vec![d, 1, 3, 3]);
                    sub("conv1.fn.dw.bias", vec![d]);
                }
                sub(&format!("{attn}.norm.weight"), vec![d]);
                sub(&format!("{attn}.norm.bias"), vec![d]);
                sub(&format!("{attn}.fn.qkv.weight"), vec![3 * d, d]);
                if cfg.qkv_bias {
                    sub(&format!("{attn}.fn.qkv.bias"), vec![3 * d]);
                }
                sub(&format!("{attn}.fn.proj.weight"), vec![d, d]);
                sub(&format!("{attn}.fn.proj.bias"), vec![d]);
                if cfg.conv_at_ffn {
                    sub("conv2.fn.dw.weight", vec![d, 1, 3, 3]);
                    sub("conv2.fn.dw.bias", vec![d]);
                }
                sub("ffn.norm.weight", vec![d]);
                sub("ffn.norm.bias", vec![d]);
                sub("ffn.fn.net.fc1.weight", vec![h, d]);
                sub("ffn.fn.net.fc1.bias", vec![h]);
                sub("ffn.fn.net.fc2.weight", vec![d, h]);
                sub("ffn.fn.net.fc2.bias", vec![d]);
            }
        }
    }
    push("image_encoder.norms.weight".into(), vec![cfg.out_dim()]);
    push("image_encoder.norms.bias".into(), vec![cfg.out_dim()]);
    if let Some(p) = cfg.projection_dim {
        push("image_projection".into(), vec![cfg.out_dim(), p]);
    }
    out
}

/// Renamings of the original DaViT code that MedImageInsight's loader applies
/// (`_try_remap_keys`), as substring replacements in this order.
const DAVIT_REMAP: [(&str, &str); 14] = [
    ("conv_embeds", "convs"),
    ("main_blocks", "blocks"),
    ("0.cpe.0.proj", "spatial_block.conv1.fn.dw"),
    ("0.attn", "spatial_block.window_attn.fn"),
    ("0.cpe.1.proj", "spatial_block.conv2.fn.dw"),
    ("0.mlp", "spatial_block.ffn.fn.net"),
    ("1.cpe.0.proj", "channel_block.conv1.fn.dw"),
    ("1.attn", "channel_block.channel_attn.fn"),
    ("1.cpe.1.proj", "channel_block.conv2.fn.dw"),
    ("1.mlp", "channel_block.ffn.fn.net"),
    ("0.norm1", "spatial_block.window_attn.norm"),
    ("0.norm2", "spatial_block.ffn.norm"),
    ("1.norm1", "channel_block.channel_attn.norm"),
    ("1.norm2", "channel_block.ffn.norm"),
];

/// The result of [`to_canonical`]: the image tower's tensors and the names of the tensors
/// that belong to the rest of the UniCL model (text tower, `logit_scale`, a classifier head).
#[derive(Debug)]
pub struct CanonicalWeights {
    /// Tensors in the canonical layout (image tower and anything unrecognised).
    pub tensors: HashMap<String, Tensor>,
    /// Names set aside as not part of the image tower.
    pub other_towers: Vec<String>,
}

/// Converts any supported layout into the canonical one: the full UniCL state dict, its old
/// `visual.` / `vision_projection` names, a bare tower (`convs.…`, `blocks.…`), the original
/// DaViT names (`conv_embeds`, `main_blocks`, `cpe`), with or without a DDP `module.` prefix.
pub fn to_canonical(tensors: HashMap<String, Tensor>) -> CanonicalWeights {
    let strip_module = !tensors.is_empty() && tensors.keys().all(|k| k.starts_with("module."));
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(k, v)| match k.strip_prefix("module.") {
            Some(rest) if strip_module => (rest.to_string(), v),
            _ => (k, v),
        })
        .collect();
    let bare = !tensors
        .iter()
        .any(|(k, _)| k.starts_with("image_encoder.") || k.starts_with("visual."));
    let mut out = HashMap::new();
    let mut other_towers = Vec::new();
    for (k, v) in tensors {
        // UniCLModel._convert_old_weights
        let mut k = if let Some(rest) = k.strip_prefix("visual.") {
            format!("image_encoder.{rest}")
        } else if k == "vision_projection" {
            "image_projection".to_string()
        } else {
            k
        };
        if bare && k != "image_projection" && !is_other_tower(&k) {
            k = format!("image_encoder.{k}");
        }
        if let Some(rest) = k.strip_prefix("image_encoder.") {
            let mut rest = rest.to_string();
            for (old, new) in DAVIT_REMAP {
                if rest.contains(old) {
                    rest = rest.replace(old, new);
                }
            }
            k = format!("image_encoder.{rest}");
        }
        if is_other_tower(&k) {
            other_towers.push(k);
        } else {
            out.insert(k, v);
        }
    }
    other_towers.sort();
    CanonicalWeights {
        tensors: out,
        other_towers,
    }
}

fn is_other_tower(k: &str) -> bool {
    k.starts_with("lang_encoder.")
        || k.starts_with("text.")
        || k == "lang_projection"
        || k == "text_projection"
        || k == "logit_scale"
        || k.starts_with("image_encoder.head.")
}

/// Checks that `tensors` holds exactly what `cfg` needs; errors name the tensor and shapes.
pub fn validate(
    cfg: &DavitConfig,
    tensors: &HashMap<String, Tensor>,
    file: &Path,
) -> cxr_core::Result<()> {
    cxr_core::check_tensors(&expected_tensors(cfg), tensors, file, false)
}

/// True when `path` is a PyTorch zip checkpoint (`torch.save` ≥ 1.6), false for anything
/// else (safetensors). MI2's released `medimageinsigt-v1.0.0.pt` is a safetensors file
/// despite its extension, so the content decides, not the name.
pub fn is_pytorch_zip(path: &Path) -> cxr_core::Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
    Ok(n == 4 && magic == *b"PK\x03\x04")
}

/// Reads the tensors of a PyTorch zip checkpoint without executing pickle: candle's reader
/// interprets only the opcodes that describe tensors (storage, offset, shape, strides).
/// `key` selects a nested dict (e.g. `"state_dict"`, `"model"`).
pub fn read_pytorch(path: &Path, key: Option<&str>) -> cxr_core::Result<HashMap<String, Tensor>> {
    let tensors = candle_core::pickle::read_all_with_key(path, key)
        .map_err(|e| Error::config(path, format!("not a readable PyTorch checkpoint: {e}")))?;
    Ok(tensors.into_iter().collect())
}

/// Reads one checkpoint file, PyTorch zip or safetensors, onto the CPU.
pub fn read_checkpoint(path: &Path) -> cxr_core::Result<HashMap<String, Tensor>> {
    if is_pytorch_zip(path)? {
        read_pytorch(path, None)
    } else {
        crate::weights::read_safetensors(&[path])
    }
}

/// Writes `tensors` as a safetensors file (contiguous copies, any strides in the source).
pub fn write_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> cxr_core::Result<()> {
    let contiguous = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<candle_core::Result<HashMap<_, _>>>()?;
    candle_core::safetensors::save(&contiguous, path)
        .map_err(|e| Error::config(path, format!("cannot write safetensors: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mi2_has_the_documented_size() {
        let keys = expected_tensors(&DavitConfig::mi2());
        // 4 convs × 4 + 12 pairs × 2 blocks × 16 + final norm 2 + projection 1
        assert_eq!(keys.len(), 16 + 12 * 2 * 16 + 2 + 1);
        let params: usize = keys.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(params, 362_733_568);
    }

    #[test]
    fn old_and_bare_layouts_are_renamed() {
        let t = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut m = HashMap::new();
        m.insert(
            "visual.main_blocks.0.0.0.attn.qkv.weight".to_string(),
            t.clone(),
        );
        m.insert("vision_projection".to_string(), t.clone());
        m.insert("text.token_embedding.weight".to_string(), t.clone());
        m.insert("logit_scale".to_string(), t.clone());
        let c = to_canonical(m);
        assert!(c
            .tensors
            .contains_key("image_encoder.blocks.0.0.spatial_block.window_attn.fn.qkv.weight"));
        assert!(c.tensors.contains_key("image_projection"));
        assert_eq!(c.other_towers.len(), 2);
        let mut bare = HashMap::new();
        bare.insert("module.convs.0.proj.weight".to_string(), t.clone());
        bare.insert("module.norms.weight".to_string(), t);
        let c = to_canonical(bare);
        assert!(c.tensors.contains_key("image_encoder.convs.0.proj.weight"));
        assert!(c.tensors.contains_key("image_encoder.norms.weight"));
    }

    #[test]
    fn canonical_names_are_left_alone() {
        let t = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
        let m: HashMap<String, Tensor> = expected_tensors(&DavitConfig::mi2())
            .into_iter()
            .map(|(k, _)| (k, t.clone()))
            .collect();
        let c = to_canonical(m.clone());
        assert!(c.other_towers.is_empty());
        let mut a: Vec<_> = c.tensors.keys().collect();
        let mut b: Vec<_> = m.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
