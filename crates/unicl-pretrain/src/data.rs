//! Image–text–label samples from a cxr-data manifest, and batches that are a pure function
//! of `(seed, step)`.
//!
//! Every image is decoded and preprocessed once (in parallel) and kept in memory at the
//! training size; a step's samples come from epochs of a seeded permutation, its texts
//! from [`PromptSampler`] keyed by `(seed, step, index)`, and tokenisation runs on the
//! rayon pool. A resumed run therefore sees exactly the batches it would have seen.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use cxr_data::{decode_file, DecodeOptions, ImageProcessor, IndexSampler, Manifest, Split};
use dual_encoder::{TextTokenizer, TokenBatch};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use unicl_loss::{BatchItem, BatchTargets, LabelSet, PromptSampler, PromptTemplates};

use crate::{Error, Result};

/// One image with its structured labels and, when the manifest has one, its report.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSample {
    /// The image file.
    pub image: PathBuf,
    /// Patient id (for patient-level bootstrap).
    pub patient: String,
    /// The findings present (empty = no finding): the UniCL label of this image.
    pub labels: LabelSet,
    /// Per finding: present / absent / missing, for evaluation.
    pub flags: Vec<Option<bool>>,
    /// Free-text report, used verbatim (a unique label) instead of the label prompt.
    pub report: Option<String>,
}

/// The samples of one split and the preprocessed pixels of each.
#[derive(Debug, Clone)]
pub struct PairDataset {
    /// The samples.
    pub samples: Vec<PairSample>,
    /// The finding names (column names), in label-index order.
    pub findings: Vec<String>,
    pixels: Arc<Vec<Vec<f32>>>,
    size: (usize, usize),
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
        for i in manifest.indices_in(split) {
            let r = &manifest.records[i];
            let flags: Vec<Option<bool>> =
                cols.iter().map(|&c| r.labels[c].map(|v| v > 0.5)).collect();
            let present: Vec<bool> = flags.iter().map(|f| f.unwrap_or(false)).collect();
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
                image: r.image.clone(),
                patient: r.patient.clone(),
                labels: LabelSet::from_flags(&present),
                flags,
                report,
            });
        }
        if samples.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no rows in split {split:?}",
                manifest.path.display()
            )));
        }
        Self::with_samples(samples, findings.to_vec(), processor)
    }

    /// A dataset over explicit samples (decoded and preprocessed now, in parallel).
    pub fn with_samples(
        samples: Vec<PairSample>,
        findings: Vec<String>,
        processor: &ImageProcessor,
    ) -> Result<Self> {
        let processed = samples
            .par_iter()
            .map(|s| -> Result<_> {
                let img = decode_file(&s.image, &DecodeOptions::default())?;
                Ok(processor.apply(&img)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let size = processed.first().map_or((0, 0), |p| p.1);
        if let Some((s, _)) = samples.iter().zip(&processed).find(|(_, p)| p.1 != size) {
            return Err(Error::Invalid(format!(
                "{}: preprocessed to a different size than the first image; use a centre crop",
                s.image.display()
            )));
        }
        Ok(Self {
            samples,
            findings,
            pixels: Arc::new(processed.into_iter().map(|p| p.0).collect()),
            size,
        })
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
        let mut flat = Vec::with_capacity(indices.len() * 3 * h * w);
        for &i in indices {
            flat.extend_from_slice(&self.pixels[i]);
        }
        Ok(Tensor::from_vec(flat, (indices.len(), 3, h, w), device)?)
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
