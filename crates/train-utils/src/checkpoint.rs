//! Atomic checkpoints: named tensors (safetensors) + JSON state, and a `latest.json` pointer.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::{Error, Result, TrainState};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, `fsync`,
/// `rename` over the target, then `fsync` of the directory. A crash leaves either the old
/// file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = File::open(dir) {
        // directory fsync makes the rename durable; not every platform allows it
        let _ = d.sync_all();
    }
    Ok(())
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// Its step.
    pub step: u64,
    /// The named tensors (models, teacher, heads, centers, optimizer moments).
    pub tensors: HashMap<String, Tensor>,
    /// The JSON state.
    pub state: TrainState,
}

/// A directory of checkpoints `step-XXXXXXXX.safetensors` + `step-XXXXXXXX.json`, with
/// `latest.json` naming the newest complete one. The pointer is rewritten only after both
/// files of a checkpoint are durable, so an interrupted or failed save never replaces the last
/// good checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: PathBuf,
    keep: usize,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Latest {
    step: u64,
}

impl CheckpointDir {
    /// Uses (and creates) `dir`, keeping the `keep` newest checkpoints (at least 1).
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self {
            dir,
            keep: keep.max(1),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn files(&self, step: u64) -> (PathBuf, PathBuf) {
        let stem = format!("step-{step:08}");
        (
            self.dir.join(format!("{stem}.safetensors")),
            self.dir.join(format!("{stem}.json")),
        )
    }

    /// Writes a checkpoint and makes it the latest; returns the tensor file's path.
    pub fn save(&self, tensors: &HashMap<String, Tensor>, state: &TrainState) -> Result<PathBuf> {
        let (st_path, json_path) = self.files(state.step);
        let tmp = self.dir.join(format!(
            ".step-{:08}.tmp-{}",
            state.step,
            std::process::id()
        ));
        candle_core::safetensors::save(tensors, &tmp)?;
        let f = File::open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &st_path).map_err(|e| Error::io(&st_path, e))?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::Json {
            path: json_path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&json_path, &json)?;
        let latest = serde_json::to_vec(&Latest { step: state.step }).map_err(|e| Error::Json {
            path: self.dir.join("latest.json"),
            reason: e.to_string(),
        })?;
        write_atomic(&self.dir.join("latest.json"), &latest)?;
        self.prune(state.step)?;
        Ok(st_path)
    }

    fn prune(&self, newest: u64) -> Result<()> {
        let mut steps = self.steps()?;
        steps.retain(|&s| s <= newest);
        if steps.len() > self.keep {
            for &s in &steps[..steps.len() - self.keep] {
                let (a, b) = self.files(s);
                let _ = fs::remove_file(a);
                let _ = fs::remove_file(b);
            }
        }
        Ok(())
    }

    /// Steps of the complete checkpoints on disk, ascending.
    pub fn steps(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(step) = name
                .strip_prefix("step-")
                .and_then(|s| s.strip_suffix(".json"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                if self.files(step).0.exists() {
                    out.push(step);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The step `latest.json` names, if any.
    pub fn latest_step(&self) -> Result<Option<u64>> {
        let path = self.dir.join("latest.json");
        if !path.exists() {
            return Ok(None);
        }
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let latest: Latest = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some(latest.step))
    }

    /// Loads the checkpoint of `step` onto `device`.
    pub fn load(&self, step: u64, device: &Device) -> Result<Checkpoint> {
        let (st_path, json_path) = self.files(step);
        // candle's own message ("invalid header length") does not say which file
        let tensors =
            candle_core::safetensors::load(&st_path, device).map_err(|e| e.with_path(&st_path))?;
        let bytes = fs::read(&json_path).map_err(|e| Error::io(&json_path, e))?;
        let state: TrainState = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            path: json_path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Checkpoint {
            step,
            tensors,
            state,
        })
    }

    /// Loads the latest checkpoint, if any.
    pub fn load_latest(&self, device: &Device) -> Result<Option<Checkpoint>> {
        match self.latest_step()? {
            Some(step) => Ok(Some(self.load(step, device)?)),
            None => Ok(None),
        }
    }
}
