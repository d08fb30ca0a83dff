//! Loading a `Dinov2Model` from a directory, a set of files or the Hugging Face cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_core::{Error, Preprocessing};

use crate::config::Dinov2Config;
use crate::model::Dinov2Model;
use crate::weights::{read_safetensors, to_canonical, validate};

/// Where the files of one model are.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// One or more safetensors files (sharded checkpoints list every shard).
    pub weights: Vec<PathBuf>,
    /// `preprocessor_config.json`, when the model ships one.
    pub preprocessor: Option<PathBuf>,
}

impl ModelFiles {
    /// The files of a model directory in Hugging Face layout: `config.json`, then
    /// `model.safetensors`, or `model.safetensors.index.json` and its shards.
    pub fn in_dir(dir: &Path) -> cxr_core::Result<Self> {
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(Error::NotFound(format!(
                "{} has no config.json",
                dir.display()
            )));
        }
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let weights = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            shards_of(&index)?
                .into_iter()
                .map(|f| dir.join(f))
                .collect()
        } else {
            return Err(Error::NotFound(format!(
                "{} has neither model.safetensors nor model.safetensors.index.json",
                dir.display()
            )));
        };
        let preprocessor = Some(dir.join("preprocessor_config.json")).filter(|p| p.is_file());
        Ok(Self {
            config,
            weights,
            preprocessor,
        })
    }
}

/// The distinct shard files named by a `model.safetensors.index.json`.
fn shards_of(index: &Path) -> cxr_core::Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::config(index, e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::config(index, "no `weight_map` object"))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Finds a model in the local Hugging Face cache (`HF_HOME`, `HF_HUB_CACHE`), without
/// network access. Download it first with `huggingface-cli download REPO` (or any tool that
/// fills the same cache) on a machine with access.
pub fn cached_model_files(repo_id: &str, revision: Option<&str>) -> cxr_core::Result<ModelFiles> {
    let cache = hf_hub::Cache::from_env();
    let repo = match revision {
        Some(r) => hf_hub::Repo::with_revision(repo_id.into(), hf_hub::RepoType::Model, r.into()),
        None => hf_hub::Repo::model(repo_id.into()),
    };
    let cached = cache.repo(repo);
    let not_found = |what: &str| {
        Error::NotFound(format!(
            "{repo_id}: {what} is not in the Hugging Face cache at {} (download it with \
             `huggingface-cli download {repo_id}` where the hub is reachable, or point HF_HOME \
             at a cache that has it)",
            cache.path().display()
        ))
    };
    let config = cached
        .get("config.json")
        .ok_or_else(|| not_found("config.json"))?;
    let weights = if let Some(single) = cached.get("model.safetensors") {
        vec![single]
    } else if let Some(index) = cached.get("model.safetensors.index.json") {
        shards_of(&index)?
            .iter()
            .map(|f| cached.get(f).ok_or_else(|| not_found(f)))
            .collect::<cxr_core::Result<Vec<_>>>()?
    } else {
        return Err(not_found("model.safetensors"));
    };
    Ok(ModelFiles {
        config,
        weights,
        preprocessor: cached.get("preprocessor_config.json"),
    })
}

/// The snapshot folder of `repo_id` at `revision` (default `main`) in the local Hugging Face
/// cache (`HF_HOME`, `HF_HUB_CACHE`): `refs/<revision>` names the commit, whose
/// `snapshots/<commit>` folder holds the files; a commit hash as `revision` names its snapshot
/// directly. Never downloads.
pub fn cached_snapshot(repo_id: &str, revision: Option<&str>) -> cxr_core::Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    let repo = match revision {
        Some(r) => hf_hub::Repo::with_revision(repo_id.into(), hf_hub::RepoType::Model, r.into()),
        None => hf_hub::Repo::model(repo_id.into()),
    };
    let rev = repo.revision().to_string();
    let refs = cache
        .path()
        .join(repo.folder_name())
        .join("refs")
        .join(&rev);
    let commit = match std::fs::read_to_string(&refs) {
        Ok(c) => c.trim().to_string(),
        Err(_) => rev.clone(),
    };
    let snapshot = cache.repo(repo).pointer_path(&commit);
    if !snapshot.is_dir() {
        return Err(Error::NotFound(format!(
            "{repo_id} (revision {rev}) is not in the Hugging Face cache at {} (download it with \
             `huggingface-cli download {repo_id}` where the hub is reachable, or point HF_HOME at \
             a cache that has it)",
            cache.path().display()
        )));
    }
    Ok(snapshot)
}

/// A checkpoint read into memory in the canonical key layout, validated against its config.
#[derive(Debug)]
pub struct Checkpoint {
    /// The configuration.
    pub config: Dinov2Config,
    /// Canonical-layout tensors.
    pub tensors: HashMap<String, Tensor>,
    /// Preprocessing from `preprocessor_config.json`, if present.
    pub preprocessing: Option<Preprocessing>,
}

impl Checkpoint {
    /// Reads and validates `files`.
    pub fn read(files: &ModelFiles) -> cxr_core::Result<Self> {
        let config = Dinov2Config::from_file(&files.config)?;
        Self::read_weights(config, &files.weights, files.preprocessor.as_deref())
    }

    /// Reads weights for a known config (for checkpoints that come without `config.json`).
    pub fn read_weights(
        config: Dinov2Config,
        weights: &[PathBuf],
        preprocessor: Option<&Path>,
    ) -> cxr_core::Result<Self> {
        let raw = read_safetensors(weights)?;
        let first = weights.first().cloned().unwrap_or_default();
        let tensors = to_canonical(raw)
            .map_err(|e| Error::config(&first, format!("cannot convert key layout: {e}")))?;
        validate(&config, &tensors, &first, false)?;
        let preprocessing = preprocessor
            .map(Preprocessing::from_hf_config)
            .transpose()?;
        Ok(Self {
            config,
            tensors,
            preprocessing,
        })
    }

    /// An inference model (plain tensors, fused kernels) in `dtype` on `device`.
    pub fn into_model(self, dtype: DType, device: &Device) -> cxr_core::Result<Dinov2Model> {
        let vb = VarBuilder::from_tensors(self.tensors, dtype, device);
        let model = Dinov2Model::new(&self.config, vb)?;
        Ok(match self.preprocessing {
            Some(p) => model.with_preprocessing(p),
            None => model,
        })
    }

    /// A trainable model whose weights are `Var`s of `varmap`, initialised from the checkpoint.
    pub fn into_trainable(
        self,
        varmap: &VarMap,
        dtype: DType,
        device: &Device,
    ) -> cxr_core::Result<Dinov2Model> {
        let vb = VarBuilder::from_varmap(varmap, dtype, device);
        let model = Dinov2Model::new(&self.config, vb)?;
        crate::weights::load_into_varmap(varmap, &self.tensors, dtype, device)?;
        Ok(match self.preprocessing {
            Some(p) => model.with_preprocessing(p),
            None => model,
        })
    }
}

impl Dinov2Model {
    /// Loads an inference model from a Hugging Face model directory.
    pub fn from_dir(dir: &Path, dtype: DType, device: &Device) -> cxr_core::Result<Self> {
        Checkpoint::read(&ModelFiles::in_dir(dir)?)?.into_model(dtype, device)
    }

    /// Loads an inference model from the local Hugging Face cache (`HF_HOME`), e.g.
    /// `Dinov2Model::from_pretrained("microsoft/rad-dino", None, DType::F32, &Device::Cpu)`.
    pub fn from_pretrained(
        repo_id: &str,
        revision: Option<&str>,
        dtype: DType,
        device: &Device,
    ) -> cxr_core::Result<Self> {
        Checkpoint::read(&cached_model_files(repo_id, revision)?)?.into_model(dtype, device)
    }
}
