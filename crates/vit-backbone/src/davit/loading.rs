//! Loading a [`DavitModel`] from checkpoint files, through the same readers and typed errors
//! as the DINOv2 loader.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_core::Error;

use super::config::DavitConfig;
use super::model::DavitModel;
use super::weights::{read_checkpoint, to_canonical, validate};

/// A DaViT checkpoint read into memory in the canonical layout and validated.
#[derive(Debug)]
pub struct DavitCheckpoint {
    /// The configuration.
    pub config: DavitConfig,
    /// Canonical-layout tensors of the image tower.
    pub tensors: HashMap<String, Tensor>,
    /// Tensors of the rest of the UniCL model that were set aside (text tower, logit scale).
    pub other_towers: Vec<String>,
}

impl DavitCheckpoint {
    /// Reads `files` (safetensors or PyTorch zip, detected from their content), converts the
    /// key layout and checks every tensor against `config`.
    pub fn read(config: DavitConfig, files: &[PathBuf]) -> cxr_core::Result<Self> {
        let first = files
            .first()
            .cloned()
            .ok_or_else(|| Error::NotFound("no DaViT weight files given".into()))?;
        let mut raw = HashMap::new();
        for f in files {
            raw.extend(read_checkpoint(f)?);
        }
        let canonical = to_canonical(raw);
        validate(&config, &canonical.tensors, &first)?;
        Ok(Self {
            config,
            tensors: canonical.tensors,
            other_towers: canonical.other_towers,
        })
    }

    /// An inference model (plain tensors, fused kernels) in `dtype` on `device`.
    pub fn into_model(self, dtype: DType, device: &Device) -> cxr_core::Result<DavitModel> {
        let vb = VarBuilder::from_tensors(self.tensors, dtype, device);
        Ok(DavitModel::new(&self.config, vb)?)
    }

    /// A trainable model whose weights are `Var`s of `varmap`, initialised from the checkpoint.
    pub fn into_trainable(
        self,
        varmap: &VarMap,
        dtype: DType,
        device: &Device,
    ) -> cxr_core::Result<DavitModel> {
        let vb = VarBuilder::from_varmap(varmap, dtype, device);
        let model = DavitModel::new(&self.config, vb)?;
        crate::weights::load_into_varmap(varmap, &self.tensors, dtype, device)?;
        Ok(model)
    }
}

/// The weight files of a model directory: `model.safetensors`, else the single
/// `*.safetensors` / `*.pt` / `*.pth` file in it (or in its `vision_model/` folder, the
/// layout of the MI2 release).
fn weight_files_in(dir: &Path) -> cxr_core::Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    for sub in [dir.to_path_buf(), dir.join("vision_model")] {
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("safetensors" | "pt" | "pth")
                    )
            })
            .collect();
        found.sort();
        match found.len() {
            0 => continue,
            1 => return Ok(found),
            _ => {
                return Err(Error::NotFound(format!(
                "{} holds several weight files ({found:?}); pass one with DavitModel::from_file",
                sub.display()
            )))
            }
        }
    }
    Err(Error::NotFound(format!(
        "{} has no model.safetensors and no single .safetensors/.pt/.pth weight file",
        dir.display()
    )))
}

/// The image tower's config of a model directory: its `config.json`, either the JSON form of
/// [`DavitConfig`] or a whole MI2 config whose `image` section is one; without a
/// `config.json`, the MI2 preset.
fn config_in(dir: &Path) -> cxr_core::Result<DavitConfig> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Ok(DavitConfig::mi2());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::config(&path, e.to_string()))?;
    let tower = match json.get_mut("image") {
        Some(image) if image.is_object() => image.take(),
        _ => json,
    };
    let config: DavitConfig =
        serde_json::from_value(tower).map_err(|e| Error::config(&path, e.to_string()))?;
    config
        .validate()
        .map_err(|reason| Error::config(&path, reason))?;
    Ok(config)
}

impl DavitModel {
    /// Loads an inference model from a directory: its `config.json` (the JSON form of
    /// [`DavitConfig`], or an MI2 config with an `image` section) or, without one, the MI2
    /// preset; weights as `weight_files_in` finds them (the text tower of a whole UniCL
    /// checkpoint is set aside).
    pub fn from_dir(dir: &Path, dtype: DType, device: &Device) -> cxr_core::Result<Self> {
        DavitCheckpoint::read(config_in(dir)?, &weight_files_in(dir)?)?.into_model(dtype, device)
    }

    /// Loads an inference model from one checkpoint file for a known config.
    pub fn from_file(
        config: DavitConfig,
        file: &Path,
        dtype: DType,
        device: &Device,
    ) -> cxr_core::Result<Self> {
        DavitCheckpoint::read(config, &[file.to_path_buf()])?.into_model(dtype, device)
    }
}
