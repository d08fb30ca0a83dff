//! WebDataset-style tar shards: each sample is `<key>.<image ext>` plus `<key>.json`, stored
//! next to each other, so millions of images stream without one file each.
//!
//! Shards are assigned round-robin to the `world_size × num_workers` global workers
//! (`shard i` → worker `i mod (world_size · num_workers)`), and a reader can resume from a
//! [`ShardPosition`] (shard index in its own list, sample index within that shard).
//! [`ShardIndex`] reads them by sample index instead, for loaders that draw seeded
//! permutations (random access with one seek per member).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Error, Result};

mod index;
pub use index::ShardIndex;

const IMAGE_EXTS: [&str; 5] = ["png", "jpg", "jpeg", "dcm", "dicom"];

/// One sample of a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSample {
    /// The sample key (member name up to the first dot).
    pub key: String,
    /// Image extension (`png`, `jpg`, `dcm`, …).
    pub ext: String,
    /// The encoded image file.
    pub image: Vec<u8>,
    /// The JSON metadata (`Value::Null` if the sample has none).
    pub meta: Value,
    /// Where the *next* sample starts, for resuming after this one.
    pub next: ShardPosition,
}

/// A resumable position in a worker's shard list.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ShardPosition {
    /// Index into the worker's shard list.
    pub shard: usize,
    /// Samples of that shard already consumed.
    pub sample: usize,
}

/// Writes samples into numbered shards of at most `max_samples` samples each.
pub struct ShardWriter {
    dir: PathBuf,
    prefix: String,
    max_samples: usize,
    current: Option<tar::Builder<BufWriter<File>>>,
    in_current: usize,
    written: Vec<PathBuf>,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .field("max_samples", &self.max_samples)
            .field("written", &self.written)
            .finish()
    }
}

impl ShardWriter {
    /// Shards go to `dir/<prefix>-000000.tar`, `…-000001.tar`, ….
    pub fn new(dir: impl Into<PathBuf>, prefix: &str, max_samples: usize) -> Result<Self> {
        if max_samples == 0 {
            return Err(Error::Invalid("max_samples must be positive".into()));
        }
        Ok(Self {
            dir: dir.into(),
            prefix: prefix.to_string(),
            max_samples,
            current: None,
            in_current: 0,
            written: Vec::new(),
        })
    }

    /// Appends one sample; `key` must not contain `.` or `/`.
    pub fn write(&mut self, key: &str, ext: &str, image: &[u8], meta: &Value) -> Result<()> {
        if key.is_empty() || key.contains('.') || key.contains('/') {
            return Err(Error::Invalid(format!(
                "sample key `{key}` must be non-empty without `.` or `/`"
            )));
        }
        if self.current.is_none() || self.in_current >= self.max_samples {
            self.finish_current()?;
            let path = self
                .dir
                .join(format!("{}-{:06}.tar", self.prefix, self.written.len()));
            let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
            self.current = Some(tar::Builder::new(BufWriter::new(f)));
            self.written.push(path);
            self.in_current = 0;
        }
        let path = self.written.last().cloned().unwrap_or_default();
        let json = serde_json::to_vec(meta)
            .map_err(|e| Error::Invalid(format!("metadata of {key}: {e}")))?;
        if let Some(b) = self.current.as_mut() {
            for (name, data) in [
                (format!("{key}.{ext}"), image),
                (format!("{key}.json"), &json[..]),
            ] {
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(0);
                header.set_cksum();
                b.append_data(&mut header, &name, data)
                    .map_err(|e| Error::io(&path, e))?;
            }
        }
        self.in_current += 1;
        Ok(())
    }

    fn finish_current(&mut self) -> Result<()> {
        if let Some(b) = self.current.take() {
            let path = self.written.last().cloned().unwrap_or_default();
            let mut w = b.into_inner().map_err(|e| Error::io(&path, e))?;
            std::io::Write::flush(&mut w).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// Closes the last shard and returns every shard written.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        self.finish_current()?;
        Ok(std::mem::take(&mut self.written))
    }
}

/// The sample key for an image file: its name without the extension, with `.` and `/` (which
/// a key may not hold; DICOM names are often dotted UIDs) replaced by `_`.
pub fn sample_key(image: &Path) -> String {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = match name.rsplit_once('.') {
        Some((stem, ext)) if IMAGE_EXTS.contains(&ext.to_ascii_lowercase().as_str()) => stem,
        _ => &name,
    };
    stem.replace(['.', '/'], "_")
}

/// The JSON metadata of one manifest record, as `write_shards` stores it beside the image:
/// `{"patient", "split", "labels": {name: value or null}, "meta": {column: text},
/// "source": path}`.
pub fn record_json(manifest: &crate::Manifest, record: &crate::Record) -> Value {
    let labels: serde_json::Map<String, Value> = manifest
        .label_names
        .iter()
        .zip(&record.labels)
        .map(|(n, v)| (n.clone(), v.map_or(Value::Null, |x| serde_json::json!(x))))
        .collect();
    serde_json::json!({
        "patient": record.patient,
        "split": record.split.map(|s| s.as_str()),
        "labels": labels,
        "meta": record.meta,
        "source": record.image.display().to_string(),
    })
}

/// The `*.tar` files of `dir`, in file-name order; none is an error.
pub fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tar"))
        .collect();
    if shards.is_empty() {
        return Err(Error::Invalid(format!(
            "{} holds no .tar shards",
            dir.display()
        )));
    }
    shards.sort();
    Ok(shards)
}

/// The shards of global worker `rank * num_workers + worker` out of `world_size * num_workers`.
pub fn assign_shards(
    shards: &[PathBuf],
    rank: usize,
    world_size: usize,
    worker: usize,
    num_workers: usize,
) -> Result<Vec<PathBuf>> {
    if world_size == 0 || num_workers == 0 || rank >= world_size || worker >= num_workers {
        return Err(Error::Invalid(format!(
            "rank {rank}/{world_size}, worker {worker}/{num_workers}"
        )));
    }
    let total = world_size * num_workers;
    let id = rank * num_workers + worker;
    Ok(shards
        .iter()
        .enumerate()
        .filter(|(i, _)| i % total == id)
        .map(|(_, p)| p.clone())
        .collect())
}

/// Streams the samples of `shards` from `start`, reading one shard at a time.
pub fn stream(
    shards: Vec<PathBuf>,
    start: ShardPosition,
) -> impl Iterator<Item = Result<ShardSample>> {
    shards
        .into_iter()
        .enumerate()
        .skip(start.shard)
        .flat_map(move |(si, path)| {
            let skip = if si == start.shard { start.sample } else { 0 };
            match index::read_shard(&path, si) {
                Ok(v) => v.into_iter().skip(skip).map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            }
        })
}
