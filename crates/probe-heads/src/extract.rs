//! Feature extraction, once: run an encoder over manifest rows and cache the CLS (`pooled`)
//! and mean-pooled patch features to safetensors, keyed by the manifest ids.
//!
//! The cache file holds two `F32` tensors, `cls` `[N, D]` and `patch_mean` `[N, C]`, and in
//! the safetensors metadata `ids` (a JSON array, one id per row) and `encoder` (a free tag
//! naming the encoder). A cache is reused only when both match the request *and* the encoder
//! still gives the cached features for the first row (re-encoded, one image): a rerun with
//! the same encoder and rows costs one image, a different encoder or split is recomputed, and
//! so are stale features of a model whose weights changed under the same name.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use cxr_core::{Encoder, FeatureRequest};
use cxr_data::{decode_file, DecodeOptions, ImageProcessor, Manifest};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::{Error, Matrix, Result};

/// Settings of [`extract_features`].
#[derive(Debug, Clone)]
pub struct ExtractConfig {
    /// Images per encoder call.
    pub batch_size: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// How images are decoded.
    pub decode: DecodeOptions,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            progress: true,
            decode: DecodeOptions::default(),
        }
    }
}

/// Frozen features of a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    /// Manifest id of each row (the image path relative to the manifest's folder).
    pub ids: Vec<String>,
    /// The encoder's pooled (CLS) embedding, `[N, D]`.
    pub cls: Matrix,
    /// The mean of the final patch tokens, `[N, C]`.
    pub patch_mean: Matrix,
    /// The tag of the encoder that produced them.
    pub encoder: String,
}

/// The id of manifest row `i`: its image path relative to the manifest's folder.
pub fn record_id(manifest: &Manifest, i: usize) -> String {
    let image = &manifest.records[i].image;
    let root = manifest.path.parent().unwrap_or(Path::new(""));
    image
        .strip_prefix(root)
        .unwrap_or(image)
        .to_string_lossy()
        .into_owned()
}

/// Runs `encoder` over manifest `rows` with the encoder's own preprocessing.
pub fn extract_features(
    encoder: &dyn Encoder,
    tag: &str,
    manifest: &Manifest,
    rows: &[usize],
    cfg: &ExtractConfig,
) -> Result<FeatureSet> {
    if cfg.batch_size == 0 {
        return Err(Error::bad("extract", "batch_size must be at least 1"));
    }
    if let Some(&bad) = rows.iter().find(|&&i| i >= manifest.records.len()) {
        return Err(Error::bad(
            "extract",
            format!(
                "row {bad} out of range ({} records)",
                manifest.records.len()
            ),
        ));
    }
    let processor = ImageProcessor::from_preprocessing(&encoder.preprocessing());
    let device = encoder.device().clone();
    let bar = if cfg.progress {
        let b = ProgressBar::new(rows.len() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed} < {eta}]")
        {
            b.set_style(style);
        }
        b.set_message(format!("features ({tag})"));
        b
    } else {
        ProgressBar::hidden()
    };
    let request = FeatureRequest::default();
    let (mut cls, mut patch) = (Vec::new(), Vec::new());
    let (mut d_cls, mut d_patch) = (0, 0);
    for chunk in rows.chunks(cfg.batch_size) {
        let images: Vec<(Vec<f32>, (usize, usize))> = chunk
            .par_iter()
            .map(|&i| {
                let img = decode_file(&manifest.records[i].image, &cfg.decode)?;
                processor.apply(&img)
            })
            .collect::<std::result::Result<_, cxr_data::Error>>()?;
        let (h, w) = images[0].1;
        let mut flat = Vec::with_capacity(images.len() * 3 * h * w);
        for ((v, size), &i) in images.into_iter().zip(chunk) {
            if size != (h, w) {
                return Err(Error::bad(
                    "extract",
                    format!(
                        "{}: preprocessed to {size:?}, the batch is {:?}; use a centre crop",
                        manifest.records[i].image.display(),
                        (h, w)
                    ),
                ));
            }
            flat.extend(v);
        }
        let pixels = Tensor::from_vec(flat, (chunk.len(), 3, h, w), &device)?;
        let f = encoder.forward_features(&pixels, &request)?;
        let pooled = f.pooled.to_dtype(DType::F32)?.flatten_from(1)?;
        let mean = f.patch_tokens.to_dtype(DType::F32)?.mean(1)?;
        d_cls = pooled.dim(1)?;
        d_patch = mean.dim(1)?;
        cls.extend(pooled.flatten_all()?.to_vec1::<f32>()?);
        patch.extend(mean.flatten_all()?.to_vec1::<f32>()?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(FeatureSet {
        ids: rows.iter().map(|&i| record_id(manifest, i)).collect(),
        cls: Matrix::new(rows.len(), d_cls, cls)?,
        patch_mean: Matrix::new(rows.len(), d_patch, patch)?,
        encoder: tag.to_string(),
    })
}

/// [`extract_features`], reusing `path` when it holds features of the same encoder tag and
/// the same ids that `encoder` still reproduces for the first row, and writing it otherwise.
/// Returns the features and whether the cache was hit.
pub fn extract_cached(
    encoder: &dyn Encoder,
    tag: &str,
    manifest: &Manifest,
    rows: &[usize],
    path: &Path,
    cfg: &ExtractConfig,
) -> Result<(FeatureSet, bool)> {
    let ids: Vec<String> = rows.iter().map(|&i| record_id(manifest, i)).collect();
    if path.exists() {
        if let Ok(cached) = FeatureSet::load(path) {
            if cached.ids == ids
                && cached.encoder == tag
                && still_reproduced(&cached, encoder, tag, manifest, rows, cfg)?
            {
                return Ok((cached, true));
            }
        }
    }
    let f = extract_features(encoder, tag, manifest, rows, cfg)?;
    f.save(path)?;
    Ok((f, false))
}

/// Whether `encoder` gives `cached`'s first row again. Batch composition changes the float
/// summation order, so equality is up to a relative 1e-4: far below what a change of
/// weights does to the features.
fn still_reproduced(
    cached: &FeatureSet,
    encoder: &dyn Encoder,
    tag: &str,
    manifest: &Manifest,
    rows: &[usize],
    cfg: &ExtractConfig,
) -> Result<bool> {
    let Some(&first) = rows.first() else {
        return Ok(true);
    };
    let one = ExtractConfig {
        batch_size: 1,
        progress: false,
        ..cfg.clone()
    };
    let fresh = extract_features(encoder, tag, manifest, &[first], &one)?;
    let close = |a: &Matrix, b: &Matrix| {
        let (a, b) = (a.row(0), b.row(0));
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 * scale)
    };
    Ok(cached.cls.cols == fresh.cls.cols
        && cached.patch_mean.cols == fresh.patch_mean.cols
        && close(&cached.cls, &fresh.cls)
        && close(&cached.patch_mean, &fresh.patch_mean))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl FeatureSet {
    /// Writes the cache file (tensors `cls`, `patch_mean`; metadata `ids`, `encoder`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let cache_err = |reason: String| Error::Cache {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let cls = f32_bytes(&self.cls.data);
        let patch = f32_bytes(&self.patch_mean.data);
        let views = [
            (
                "cls",
                TensorView::new(Dtype::F32, vec![self.cls.rows, self.cls.cols], &cls),
            ),
            (
                "patch_mean",
                TensorView::new(
                    Dtype::F32,
                    vec![self.patch_mean.rows, self.patch_mean.cols],
                    &patch,
                ),
            ),
        ];
        let mut tensors = Vec::new();
        for (name, v) in views {
            tensors.push((name, v.map_err(|e| cache_err(e.to_string()))?));
        }
        let ids = serde_json::to_string(&self.ids).map_err(|e| cache_err(e.to_string()))?;
        let meta = HashMap::from([
            ("ids".to_string(), ids),
            ("encoder".to_string(), self.encoder.clone()),
        ]);
        // Write then rename, so an interrupted run never leaves a truncated cache behind.
        let tmp = path.with_extension("safetensors.partial");
        safetensors::serialize_to_file(tensors, Some(meta), &tmp)
            .map_err(|e| cache_err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Reads a cache file written by [`FeatureSet::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let cache_err = |reason: String| Error::Cache {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| cache_err(e.to_string()))?;
        let info = meta
            .metadata()
            .as_ref()
            .ok_or_else(|| cache_err("no metadata".into()))?;
        let ids: Vec<String> = serde_json::from_str(
            info.get("ids")
                .ok_or_else(|| cache_err("no `ids` in metadata".into()))?,
        )
        .map_err(|e| cache_err(format!("`ids`: {e}")))?;
        let encoder = info.get("encoder").cloned().unwrap_or_default();
        let st = SafeTensors::deserialize(&bytes).map_err(|e| cache_err(e.to_string()))?;
        let read = |name: &str| -> Result<Matrix> {
            let t = st
                .tensor(name)
                .map_err(|e| cache_err(format!("`{name}`: {e}")))?;
            let shape = t.shape();
            if t.dtype() != Dtype::F32 || shape.len() != 2 || shape[0] != ids.len() {
                return Err(cache_err(format!(
                    "`{name}` is {:?} {shape:?}, expected F32 [{}, D]",
                    t.dtype(),
                    ids.len()
                )));
            }
            let data = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Matrix::new(shape[0], shape[1], data)
        };
        Ok(Self {
            cls: read("cls")?,
            patch_mean: read("patch_mean")?,
            ids,
            encoder,
        })
    }

    /// CLS and mean patch features side by side (`[N, D + C]`), the usual probe input.
    pub fn cls_and_patch_mean(&self) -> Result<Matrix> {
        self.cls.hconcat(&self.patch_mean)
    }
}
