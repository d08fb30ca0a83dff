//! Any image-tower folder as a `Box<dyn Encoder>`, so one command line takes every backbone
//! of this crate: the folder's `config.json` says which.

use std::path::Path;

use candle_core::{DType, Device};
use cxr_core::{Encoder, Error};

use crate::davit::DavitModel;
use crate::model::Dinov2Model;

/// The backbones [`open_encoder`] tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncoderKind {
    /// A Hugging Face DINOv2 folder (RAD-DINO, DINOv2, the models this workspace trains).
    Dinov2,
    /// A DaViT image tower: its own config, an MI2 config's `image` section, or the MI2
    /// release without a `config.json` (the MI2 preset).
    Davit,
}

impl std::fmt::Display for EncoderKind {
    /// `DINOv2` or `DaViT`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncoderKind::Dinov2 => "DINOv2",
            EncoderKind::Davit => "DaViT",
        })
    }
}

/// Which backbone the folder `dir` holds. A `config.json` with `"model_type": "dinov2"` (or
/// without a `model_type` but with `hidden_size`) is DINOv2; one with `embed_dims` or an
/// `image` section is DaViT/MI2; a folder without `config.json` that holds
/// `model.safetensors` or `vision_model/` is the MI2 release.
pub fn encoder_kind(dir: &Path) -> cxr_core::Result<EncoderKind> {
    let path = dir.join("config.json");
    if !path.is_file() {
        if dir.join("model.safetensors").is_file() || dir.join("vision_model").is_dir() {
            return Ok(EncoderKind::Davit);
        }
        return Err(Error::NotFound(format!(
            "{} has no config.json (nor the MI2 release's model.safetensors or vision_model/)",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::config(&path, e.to_string()))?;
    let has = |key: &str| json.get(key).is_some();
    match json.get("model_type").and_then(|t| t.as_str()) {
        Some("dinov2") => Ok(EncoderKind::Dinov2),
        None if has("hidden_size") => Ok(EncoderKind::Dinov2),
        _ if has("embed_dims") || json.get("image").is_some_and(|i| i.is_object()) => {
            Ok(EncoderKind::Davit)
        }
        other => Err(Error::config(
            &path,
            format!(
                "model_type {}: neither a DINOv2 config (model_type \"dinov2\") nor a DaViT/MI2 \
                 one (embed_dims, or an image section)",
                other.map_or("missing".to_string(), |t| format!("{t:?}"))
            ),
        )),
    }
}

/// Loads the image tower in `dir`, whichever backbone [`encoder_kind`] finds there, for
/// inference.
pub fn open_encoder(
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> cxr_core::Result<Box<dyn Encoder>> {
    Ok(match encoder_kind(dir)? {
        EncoderKind::Dinov2 => Box::new(Dinov2Model::from_dir(dir, dtype, device)?),
        EncoderKind::Davit => Box::new(DavitModel::from_dir(dir, dtype, device)?),
    })
}
