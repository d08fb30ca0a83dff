//! The candidate pool of a study: the train splits of one or more packs (or the samples of
//! tar shards written from them), with the finding labels of each image where its source
//! has them, and frozen embeddings of the pool.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Tensor};
use cxr_core::{Encoder, FeatureRequest};
use cxr_data::shards::shard_files;
use cxr_data::{DecodeOptions, ImageProcessor, ImageSource, ShardIndex, Split};
use rayon::prelude::*;

use crate::{Error, Result};

/// Pool images and their labels.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The images (files, or tar shard samples).
    pub images: Arc<dyn ImageSource>,
    /// Index into `packs` of each image.
    pub pack: Vec<usize>,
    /// The pack (or shard) directories.
    pub packs: Vec<PathBuf>,
    /// Binary labels of each image as `(name, positive)`; empty for packs without findings.
    pub labels: Vec<Vec<(String, bool)>>,
}

impl Pool {
    /// The train split of every pack in `dirs` (cxr-mini / cxr-findings layout).
    pub fn from_packs(dirs: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut pool = Pool {
            images: Arc::new(Vec::<PathBuf>::new()),
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
                files.push(if r.image.is_absolute() {
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
        if files.is_empty() {
            return Err(Error::invalid("pool", "no train images in the given packs"));
        }
        pool.images = Arc::new(files);
        Ok(pool)
    }

    /// The samples of the tar shards in every folder of `dirs` whose metadata names the
    /// `train` split or none (unlabelled images), as `pretrain_dino --shards` takes them
    /// (cxr-data's `write_shards` writes `split` and `labels`; finding labels count where the
    /// metadata has a `no_finding` label, as for packs).
    pub fn from_shards(dirs: &[PathBuf]) -> Result<Self> {
        let mut tars = Vec::new();
        let mut owner = Vec::new();
        for (p, dir) in dirs.iter().enumerate() {
            let t = shard_files(dir)?;
            owner.extend(std::iter::repeat_n(p, t.len()));
            tars.extend(t);
        }
        let index = Arc::new(ShardIndex::build(tars)?);
        // the rule pretrain_dino --shards follows: train, or no split at all (unlabelled)
        let metas = index.metas()?;
        let chosen = index.samples_in(&metas, Split::Train, true)?;
        let (mut pack, mut labels) = (Vec::new(), Vec::new());
        for &i in &chosen {
            let l = match metas[i]["labels"].as_object() {
                Some(obj) if obj.contains_key("no_finding") => obj
                    .iter()
                    .filter_map(|(n, v)| v.as_f64().map(|v| (n.clone(), v > 0.5)))
                    .collect(),
                _ => Vec::new(),
            };
            pack.push(owner[index.shard_of(i)?]);
            labels.push(l);
        }
        if chosen.is_empty() {
            return Err(Error::invalid(
                "pool",
                "no train samples in the given shards",
            ));
        }
        Ok(Pool {
            images: Arc::new(cxr_data::Subset::new(index, chosen)?),
            pack,
            packs: dirs.to_vec(),
            labels,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// True without images.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

/// Pooled (CLS) embeddings of `images` under `encoder`'s own preprocessing, `n × d`
/// row-major, and `d`.
pub fn embed_images(
    encoder: &dyn Encoder,
    images: &dyn ImageSource,
    batch: usize,
) -> Result<(Vec<f64>, usize)> {
    let processor = ImageProcessor::from_preprocessing(&encoder.preprocessing());
    let opts = DecodeOptions::default();
    let mut out = Vec::new();
    let mut dim = 0;
    let all: Vec<usize> = (0..images.len()).collect();
    for chunk in all.chunks(batch.max(1)) {
        let px: Vec<(Vec<f32>, (usize, usize))> = chunk
            .par_iter()
            .map(|&i| -> Result<_> {
                let img = images.decode(i, &opts)?;
                Ok(processor.apply(&img)?)
            })
            .collect::<Result<_>>()?;
        let (h, w) = px[0].1;
        if let Some(i) = px.iter().position(|(_, s)| *s != (h, w)) {
            return Err(Error::invalid(
                "embedding",
                format!(
                    "{} preprocesses to {:?}, not {:?}",
                    images.name(chunk[i]),
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
