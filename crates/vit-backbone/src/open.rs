//! Any image-tower folder as a `Box<dyn Encoder>`, so one command line takes every backbone
//! of this crate: the folder's `config.json` says which.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use cxr_core::{Encoder, Error};

use crate::davit::DavitModel;
use crate::loading::cached_snapshot;
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

/// Whether `dir` holds a model itself: a `config.json`, a `model.safetensors` or the MI2
/// release's `vision_model/`.
fn holds_a_model(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        || dir.join("model.safetensors").is_file()
        || dir.join("vision_model").is_dir()
}

/// The subfolders of `dir` that hold a model, sorted.
fn model_subfolders(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut inner: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && holds_a_model(p))
        .collect();
    inner.sort();
    inner
}

/// `dir`, or the one subfolder that holds a model when `dir` itself does not (the MI2
/// repository keeps its release in a dated folder such as `2024.09.27/`).
pub fn model_folder(dir: &Path) -> PathBuf {
    if holds_a_model(dir) {
        return dir.to_path_buf();
    }
    match model_subfolders(dir).as_slice() {
        [one] => one.clone(),
        _ => dir.to_path_buf(),
    }
}

/// Which backbone the folder `dir` (or its one model subfolder, [`model_folder`]) holds. A
/// `config.json` with `"model_type": "dinov2"` (or without a `model_type` but with
/// `hidden_size`) is DINOv2; one with `embed_dims` or an `image` section is DaViT/MI2; a folder
/// without `config.json` that holds `model.safetensors` or `vision_model/` is the MI2 release.
pub fn encoder_kind(dir: &Path) -> cxr_core::Result<EncoderKind> {
    kind_in(&model_folder(dir))
}

/// [`encoder_kind`] of a folder already resolved by [`model_folder`].
fn kind_in(dir: &Path) -> cxr_core::Result<EncoderKind> {
    let path = dir.join("config.json");
    if !path.is_file() {
        if dir.join("model.safetensors").is_file() || dir.join("vision_model").is_dir() {
            return Ok(EncoderKind::Davit);
        }
        let inner = model_subfolders(dir);
        return Err(Error::NotFound(if inner.len() > 1 {
            format!(
                "{} holds several model folders ({}): pass one of them",
                dir.display(),
                inner
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "{} has no config.json (nor the MI2 release's model.safetensors or vision_model/)",
                dir.display()
            )
        }));
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

/// Loads the image tower in `dir` (or its one model subfolder), whichever backbone
/// [`encoder_kind`] finds there, for inference.
pub fn open_encoder(
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> cxr_core::Result<Box<dyn Encoder>> {
    let dir = &model_folder(dir);
    Ok(match kind_in(dir)? {
        EncoderKind::Dinov2 => Box::new(Dinov2Model::from_dir(dir, dtype, device)?),
        EncoderKind::Davit => Box::new(DavitModel::from_dir(dir, dtype, device)?),
    })
}

/// [`open_encoder`] on `repo_id` in the local Hugging Face cache ([`cached_snapshot`]), e.g.
/// `microsoft/rad-dino` or `lion-ai/MedImageInsights`. Never downloads.
pub fn open_cached_encoder(
    repo_id: &str,
    revision: Option<&str>,
    dtype: DType,
    device: &Device,
) -> cxr_core::Result<Box<dyn Encoder>> {
    open_encoder(&cached_snapshot(repo_id, revision)?, dtype, device)
}
