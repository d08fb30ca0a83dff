//! Image–text–label samples from a cxr-data manifest, and batches that are a pure function
//! of `(seed, step)`.
//!
//! Images come from files or tar shards ([`ImageSource`]). A data set whose preprocessed
//! pixels fit [`PIXEL_CACHE_BYTES`] is decoded and preprocessed once (in parallel) and kept
//! in memory at the training size; a larger one is decoded per batch, in parallel, with the
//! same result. A step's samples come from epochs of a seeded permutation, its texts from
//! [`PromptSampler`] keyed by `(seed, step, index)`, and tokenisation runs on the rayon pool.
//! A resumed run therefore sees exactly the batches it would have seen.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use cxr_data::{
    DecodeOptions, ImageProcessor, ImageSource, IndexSampler, Manifest, ShardIndex, Split, Subset,
};
use dual_encoder::{TextTokenizer, TokenBatch};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use unicl_loss::{BatchItem, BatchTargets, LabelSet, PromptSampler, PromptTemplates};

use crate::{Error, Result};

/// Preprocessed pixels up to this many bytes are kept in memory; a larger data set is
/// decoded batch by batch.
pub const PIXEL_CACHE_BYTES: usize = 2 << 30;

/// One image's structured labels and, when the manifest has one, its report (the image is
/// the same index of the data set's [`ImageSource`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PairSample {
    /// Patient id (for patient-level bootstrap).
    pub patient: String,
    /// The findings present (empty = no finding): the UniCL label of this image.
    pub labels: LabelSet,
    /// Per finding: present / absent / missing, for evaluation.
    pub flags: Vec<Option<bool>>,
    /// Free-text report, used verbatim (a unique label) instead of the label prompt.
    pub report: Option<String>,
}

/// The samples of one split, their images, and how those become pixels.
#[derive(Debug, Clone)]
pub struct PairDataset {
    /// The samples.
    pub samples: Vec<PairSample>,
    /// The finding names (column names), in label-index order.
    pub findings: Vec<String>,
    images: Arc<dyn ImageSource>,
    processor: ImageProcessor,
    /// Every sample's pixels, when they fit [`PIXEL_CACHE_BYTES`].
    cached: Option<Arc<Vec<Vec<f32>>>>,
    size: (usize, usize),
}

/// The findings of one row (`None` = missing) as flags, and the set of those present.
fn label_set(flags: &[Option<bool>]) -> LabelSet {
    let present: Vec<bool> = flags.iter().map(|f| f.unwrap_or(false)).collect();
    LabelSet::from_flags(&present)
}

impl PairDataset {
    /// The rows of `split` of `manifest`. `findings` are the label columns that make up the
    /// label set (e.g. the 14 NIH findings; a `no_finding` column is implied by the empty
    /// set and should be left out); `text_column` names a metadata column holding reports.
    /// Images are decoded and run through `processor` now, in parallel.
    pub fn from_manifest(
        manifest: &Manifest,
        split: Split,
        findings: &[String],
        text_column: Option<&str>,
        processor: &ImageProcessor,
    ) -> Result<Self> {
        let cols = findings
            .iter()
            .map(|f| {
                manifest.label_index(f).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: no label column `{f}` (labels: {})",
                        manifest.path.display(),
                        manifest.label_names.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut samples = Vec::new();
        let mut files = Vec::new();
        for i in manifest.indices_in(split) {
            let r = &manifest.records[i];
            let flags: Vec<Option<bool>> =
                cols.iter().map(|&c| r.labels[c].map(|v| v > 0.5)).collect();
            let report = match text_column {
                Some(col) => {
                    let t = r.meta.get(col).ok_or_else(|| {
                        Error::Invalid(format!(
                            "{}: no text column `{col}`",
                            manifest.path.display()
                        ))
                    })?;
                    (!t.trim().is_empty()).then(|| t.trim().to_string())
                }
                None => None,
            };
            samples.push(PairSample {
                patient: r.patient.clone(),
                labels: label_set(&flags),
                flags,
                report,
            });
            files.push(r.image.clone());
        }
        if samples.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no rows in split {split:?}",
                manifest.path.display()
            )));
        }
        Self::with_samples(samples, files, findings.to_vec(), processor)
    }

    /// The samples of `split` in tar shards written by cxr-data's `write_shards` (metadata
    /// `{"patient", "split", "labels": {name: value or null}, "meta": {column: text}}`), with
    /// the same meaning of `findings` and `text_column` as [`Self::from_manifest`].
    pub fn from_shards(
        index: Arc<ShardIndex>,
        split: Split,
        findings: &[String],
        text_column: Option<&str>,
        processor: &ImageProcessor,
    ) -> Result<Self> {
        let metas = index.metas()?;
        let chosen = index.samples_in(&metas, split, false)?;
        let mut samples = Vec::with_capacity(chosen.len());
        for &i in &chosen {
            let meta = &metas[i];
            let bad = |what: String| Error::Invalid(format!("{}: {what}", index.name(i)));
            let flags = findings
                .iter()
                .map(|f| match &meta["labels"][f.as_str()] {
                    serde_json::Value::Null => Ok(None),
                    v => v
                        .as_f64()
                        .map(|x| Some(x > 0.5))
                        .ok_or_else(|| bad(format!("label `{f}` is {v}, not a number or null"))),
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(f) = findings
                .iter()
                .find(|f| meta["labels"].get(f.as_str()).is_none())
            {
                return Err(bad(format!("no label `{f}` in the shard metadata")));
            }
            let patient = meta["patient"]
                .as_str()
                .ok_or_else(|| bad("no patient in the shard metadata".into()))?
                .to_string();
            let report = match text_column {
                Some(col) => {
                    let t = meta["meta"][col]
                        .as_str()
                        .ok_or_else(|| bad(format!("no text column `{col}`")))?;
                    (!t.trim().is_empty()).then(|| t.trim().to_string())
                }
                None => None,
            };
            samples.push(PairSample {
                patient,
                labels: label_set(&flags),
                flags,
                report,
            });
        }
        if samples.is_empty() {
            return Err(Error::Invalid(format!(
                "{} shards: no sample in split {}",
                index.shards().len(),
                split.as_str()
            )));
        }
        let images = Subset::new(index, chosen)?;
        Self::with_samples(samples, images, findings.to_vec(), processor)
    }

    /// A data set over explicit samples and their images (`images` image `i` is sample
    /// `i`'s). Pixels are computed now when they fit [`PIXEL_CACHE_BYTES`], else per batch.
    pub fn with_samples(
        samples: Vec<PairSample>,
        images: impl ImageSource + 'static,
        findings: Vec<String>,
        processor: &ImageProcessor,
    ) -> Result<Self> {
        if images.len() != samples.len() {
            return Err(Error::Invalid(format!(
                "{} samples but {} images",
                samples.len(),
                images.len()
            )));
        }
        if samples.is_empty() {
            return Err(Error::Invalid("no samples".into()));
        }
        let images: Arc<dyn ImageSource> = Arc::new(images);
        let (h, w) = processor.crop_size;
        let bytes = samples.len().saturating_mul(3 * h * w * 4);
        let mut data = Self {
            samples,
            findings,
            images,
            processor: processor.clone(),
            cached: None,
            size: (h, w),
        };
        // the first image fixes the size every other must have
        let (first, size) = data.process(0)?;
        data.size = size;
        if bytes <= PIXEL_CACHE_BYTES {
            let rest: Vec<usize> = (1..data.len()).collect();
            let mut all = Vec::with_capacity(data.len());
            all.push(first);
            all.extend(data.process_all(&rest)?);
            data.cached = Some(Arc::new(all));
        }
        Ok(data)
    }

    /// The same data decoded per batch instead of from memory (same pixels), as a data set
    /// above [`PIXEL_CACHE_BYTES`] is.
    pub fn uncached(mut self) -> Self {
        self.cached = None;
        self
    }

    /// Whether every sample's pixels are in memory.
    pub fn is_cached(&self) -> bool {
        self.cached.is_some()
    }

    fn process(&self, i: usize) -> Result<(Vec<f32>, (usize, usize))> {
        let img = self.images.decode(i, &DecodeOptions::default())?;
        Ok(self.processor.apply(&img)?)
    }

    /// The pixels of `indices`, decoded and preprocessed in parallel, checked for size.
    fn process_all(&self, indices: &[usize]) -> Result<Vec<Vec<f32>>> {
        indices
            .par_iter()
            .map(|&i| {
                let (px, size) = self.process(i)?;
                if size != self.size {
                    return Err(Error::Invalid(format!(
                        "{}: preprocessed to {size:?}, the first image to {:?}; use a centre \
                         crop",
                        self.images.name(i),
                        self.size
                    )));
                }
                Ok(px)
            })
            .collect()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True without samples (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// `[n, 3, H, W]` pixels of the samples `indices`.
    pub fn pixels(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        let (h, w) = self.size;
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::Invalid(format!(
                "sample {bad} of a data set of {}",
                self.len()
            )));
        }
        let mut flat = Vec::with_capacity(indices.len() * 3 * h * w);
        match &self.cached {
            Some(all) => {
                for &i in indices {
                    flat.extend_from_slice(&all[i]);
                }
            }
            None => {
                for px in self.process_all(indices)? {
                    flat.extend_from_slice(&px);
                }
            }
        }
        Ok(Tensor::from_vec(flat, (indices.len(), 3, h, w), device)?)
    }

    /// What names sample `i`'s image in messages (its path, or `shard.tar:key.ext`).
    pub fn image_name(&self, i: usize) -> String {
        self.images.name(i)
    }

    /// Sample `i`'s image name without its folder ([`ImageSource::id`]).
    pub fn image_id(&self, i: usize) -> String {
        self.images.id(i)
    }

    /// Per sample, per finding: present / absent / missing.
    pub fn flags(&self) -> Vec<Vec<Option<bool>>> {
        self.samples.iter().map(|s| s.flags.clone()).collect()
    }

    /// Patient id of every sample.
    pub fn patients(&self) -> Vec<String> {
        self.samples.iter().map(|s| s.patient.clone()).collect()
    }
}

/// One training batch.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// `[B, 3, H, W]` preprocessed images.
    pub pixels: Tensor,
    /// `[B, L]` tokenised texts.
    pub tokens: TokenBatch,
    /// The label-equality grouping the loss uses.
    pub targets: BatchTargets,
    /// The texts, in batch order.
    pub texts: Vec<String>,
    /// Dataset indices of the samples.
    pub indices: Vec<usize>,
}

/// Turns a [`PairDataset`] into seeded batches.
#[derive(Debug, Clone)]
pub struct PairSource {
    data: PairDataset,
    sampler: PromptSampler,
    tokenizer: TextTokenizer,
    batch_size: usize,
    seed: u64,
    unique_targets: bool,
    /// Who picks each epoch's samples (a curated subset, say); `None`: a seeded permutation
    /// of the whole dataset.
    index_sampler: Option<std::sync::Arc<dyn IndexSampler>>,
}

impl PairSource {
    /// Batches of `batch_size` with texts drawn from `templates`. With `unique_targets`
    /// every sample is its own label (CLIP's pairing) whatever its findings.
    pub fn new(
        data: PairDataset,
        templates: PromptTemplates,
        tokenizer: TextTokenizer,
        batch_size: usize,
        seed: u64,
        unique_targets: bool,
    ) -> Result<Self> {
        if batch_size == 0 || batch_size > data.len() {
            return Err(Error::Invalid(format!(
                "batch size {batch_size} must be between 1 and the {} training samples",
                data.len()
            )));
        }
        Ok(Self {
            sampler: PromptSampler::new(templates, seed)?,
            data,
            tokenizer,
            batch_size,
            seed,
            unique_targets,
            index_sampler: None,
        })
    }

    /// The same source with epochs drawn by `sampler` (indices into the dataset), e.g. a
    /// curated subset from `scaling::curation`: the training loop does not know how the
    /// samples were chosen.
    pub fn with_sampler(mut self, sampler: std::sync::Arc<dyn IndexSampler>) -> Self {
        self.index_sampler = Some(sampler);
        self
    }

    /// The dataset.
    pub fn data(&self) -> &PairDataset {
        &self.data
    }

    /// Samples per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn order(&self, epoch: u64) -> Vec<usize> {
        if let Some(sampler) = &self.index_sampler {
            return sampler.indices(epoch, self.data.len());
        }
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(epoch);
        order.shuffle(&mut rng);
        order
    }

    /// Samples per epoch: the dataset, or what the sampler draws from it.
    fn epoch_len(&self) -> usize {
        match &self.index_sampler {
            Some(s) => s.epoch_len(self.data.len()).max(1),
            None => self.data.len(),
        }
    }

    /// Dataset indices of the samples of `step` (epochs of a seeded permutation, or of the
    /// sampler's draws).
    pub fn indices(&self, step: u64) -> Vec<usize> {
        let n = self.epoch_len() as u64;
        let b = self.batch_size as u64;
        let mut cached: Option<(u64, Vec<usize>)> = None;
        (step * b..(step + 1) * b)
            .map(|pos| {
                let epoch = pos / n;
                let order = match &cached {
                    Some((e, o)) if *e == epoch => o,
                    _ => &cached.insert((epoch, self.order(epoch))).1,
                };
                // a sampler that draws fewer than `epoch_len` indices shows up as an
                // out-of-range index, which `batch` reports
                order.get((pos % n) as usize).copied().unwrap_or(usize::MAX)
            })
            .collect()
    }

    /// The batch of `step`.
    pub fn batch(&self, step: u64, device: &Device) -> Result<PairBatch> {
        let indices = self.indices(step);
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.data.len()) {
            return Err(Error::Invalid(format!(
                "step {step}: the sampler gave index {} for {} samples (or fewer indices than \
                 its epoch length)",
                if bad == usize::MAX {
                    "none".to_string()
                } else {
                    bad.to_string()
                },
                self.data.len()
            )));
        }
        let items: Vec<BatchItem<'_>> = indices
            .iter()
            .map(|&i| {
                let s = &self.data.samples[i];
                match &s.report {
                    Some(r) => BatchItem::Report(r),
                    None => BatchItem::Labels(&s.labels),
                }
            })
            .collect();
        let assembled = self.sampler.assemble(&items, step)?;
        let targets = if self.unique_targets {
            BatchTargets::unique(indices.len())
        } else {
            assembled.targets
        };
        let tokens = tokenize_parallel(&self.tokenizer, &assembled.texts, device)?;
        Ok(PairBatch {
            pixels: self.data.pixels(&indices, device)?,
            tokens,
            targets,
            texts: assembled.texts,
            indices,
        })
    }
}

/// Tokenises `texts` on the rayon pool, each padded / truncated to the context length.
pub fn tokenize_parallel(
    tokenizer: &TextTokenizer,
    texts: &[String],
    device: &Device,
) -> Result<TokenBatch> {
    let l = tokenizer.context_length();
    let rows = texts
        .par_iter()
        .map(|t| -> Result<(Vec<u32>, Vec<u32>)> {
            let e = tokenizer
                .inner()
                .encode(t.as_str(), true)
                .map_err(|e| Error::Tokenizer(format!("{t:?}: {e}")))?;
            let (ids, mask) = (e.get_ids().to_vec(), e.get_attention_mask().to_vec());
            if ids.len() != l {
                return Err(Error::Tokenizer(format!(
                    "{t:?} gave {} tokens, expected the context length {l} (is padding set?)",
                    ids.len()
                )));
            }
            Ok((ids, mask))
        })
        .collect::<Result<Vec<_>>>()?;
    let (ids, mask): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
    Ok(TokenBatch::from_rows(&ids, Some(&mask), device)?)
}
