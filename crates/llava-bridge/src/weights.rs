//! Reading Hugging Face safetensors checkpoints (single file or sharded) into named tensors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// Named tensors of one checkpoint and the file(s) they came from, for error messages.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Where the tensors were read from.
    pub source: String,
    /// The tensors, on their target device and dtype.
    pub tensors: HashMap<String, Tensor>,
}

/// The safetensors files of a model directory: `model.safetensors`, or every shard named by
/// `model.safetensors.index.json`.
pub fn model_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        return Err(Error::config(
            dir,
            "has neither model.safetensors nor model.safetensors.index.json",
        ));
    }
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::config(&index, format!("not JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::config(&index, "no `weight_map` object"))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

impl Weights {
    /// Reads every tensor of `files`, converted to `dtype` on `device`.
    pub fn read(files: &[PathBuf], dtype: DType, device: &Device) -> Result<Self> {
        let mut tensors = HashMap::new();
        for file in files {
            let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
            let loaded =
                candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
                    Error::config(file, format!("not a readable safetensors file: {e}"))
                })?;
            for (name, t) in loaded {
                tensors.insert(name, t.to_dtype(dtype)?.to_device(device)?);
            }
        }
        let source = files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Self { source, tensors })
    }

    /// Reads the checkpoint of a model directory.
    pub fn from_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::read(&model_files(dir)?, dtype, device)
    }

    /// Wraps tensors that are already in memory.
    pub fn from_map(source: impl Into<String>, tensors: HashMap<String, Tensor>) -> Self {
        Self {
            source: source.into(),
            tensors,
        }
    }

    /// True when `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor `name`, which must have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            file: self.source.clone(),
            tensor: name.to_owned(),
            expected: shape.to_vec(),
        })?;
        if t.dims() != shape {
            return Err(Error::ShapeMismatch {
                file: self.source.clone(),
                tensor: name.to_owned(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(t.clone())
    }
}
