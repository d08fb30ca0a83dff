//! The candidate pool of a study: the train splits of one or more packs, with the finding
//! labels of each image where its pack has them, and frozen embeddings of the pool.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use cxr_core::{Encoder, FeatureRequest};
use cxr_data::{decode_file, DecodeOptions, ImageProcessor, Split};
use rayon::prelude::*;

use crate::{Error, Result};

/// Pool images and their labels.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Image paths.
    pub files: Vec<PathBuf>,
    /// Index into `packs` of each image.
    pub pack: Vec<usize>,
    /// The pack directories.
    pub packs: Vec<PathBuf>,
    /// Binary labels of each image as `(name, positive)`; empty for packs without findings.
    pub labels: Vec<Vec<(String, bool)>>,
}

impl Pool {
    /// The train split of every pack in `dirs` (cxr-mini / cxr-findings layout).
    pub fn from_packs(dirs: &[PathBuf]) -> Result<Self> {
        let mut pool = Pool {
            files: Vec::new(),
            pack: Vec::new(),
            packs: dirs.to_vec(),
            labels: Vec::new(),
        };
        for (p, dir) in dirs.iter().enumerate() {
            let m = dino_pretrain::packs::read_pack(dir)?;
            // only cxr-findings style packs carry finding labels worth counting
            let findings = m.label_index("no_finding").is_some();
            for i in m.indices_in(Split::Train) {
                let r = &m.records[i];
                pool.files.push(if r.image.is_absolute() {
                    r.image.clone()
                } else {
                    dir.join(&r.image)
                });
                pool.pack.push(p);
                pool.labels.push(if findings {
                    m.label_names
                        .iter()
                        .zip(&r.labels)
                        .filter_map(|(n, v)| v.map(|v| (n.clone(), v > 0.5)))
                        .collect()
                } else {
                    Vec::new()
                });
            }
        }
        if pool.files.is_empty() {
            return Err(Error::invalid("pool", "no train images in the given packs"));
        }
        Ok(pool)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True without images.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Pooled (CLS) embeddings of `files` under `encoder`'s own preprocessing, `n × d`
/// row-major, and `d`.
pub fn embed_files(
    encoder: &dyn Encoder,
    files: &[PathBuf],
    batch: usize,
) -> Result<(Vec<f64>, usize)> {
    let processor = ImageProcessor::from_preprocessing(&encoder.preprocessing());
    let opts = DecodeOptions::default();
    let mut out = Vec::new();
    let mut dim = 0;
    for chunk in files.chunks(batch.max(1)) {
        let px: Vec<(Vec<f32>, (usize, usize))> = chunk
            .par_iter()
            .map(|p: &PathBuf| -> Result<_> {
                let img = decode_file(Path::new(p), &opts)?;
                Ok(processor.apply(&img)?)
            })
            .collect::<Result<_>>()?;
        let (h, w) = px[0].1;
        if let Some(i) = px.iter().position(|(_, s)| *s != (h, w)) {
            return Err(Error::invalid(
                "embedding",
                format!(
                    "{} preprocesses to {:?}, not {:?}",
                    chunk[i].display(),
                    px[i].1,
                    (h, w)
                ),
            ));
        }
        let flat: Vec<f32> = px.into_iter().flat_map(|(v, _)| v).collect();
        let x = Tensor::from_vec(flat, (chunk.len(), 3, h, w), encoder.device())?;
        let f = encoder.forward_features(&x, &FeatureRequest::default())?;
        let pooled = f.pooled.to_dtype(DType::F64)?.flatten_from(1)?;
        dim = pooled.dim(1)?;
        out.extend(pooled.flatten_all()?.to_vec1::<f64>()?);
    }
    Ok((out, dim))
}
