//! A parallel batch loader: rayon decode + transform, bounded prefetch on a producer thread,
//! collation into `[B, 3, H, W]` candle tensors, epoch-seeded shuffling, skip-or-fail on bad
//! files, optional progress bar. Images come from any [`ImageSource`]: a file list, or tar
//! shards through [`crate::ShardIndex`].

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::augment::sample_rng;
use crate::decode::DecodeOptions;
use crate::{Error, GrayImage, ImageProcessor, ImageSource, Result};

/// What to do with a file that fails to decode or transform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnError {
    /// Stop the epoch with the error.
    #[default]
    Fail,
    /// Leave the sample out and report it in [`Batch::skipped`].
    Skip,
}

/// Loader settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Base seed of shuffling and per-sample randomness.
    pub seed: u64,
    /// Shuffle each epoch (a permutation seeded by `(seed, epoch)`).
    pub shuffle: bool,
    /// Drop a last incomplete batch.
    pub drop_last: bool,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Worker threads (0 = rayon's default).
    pub threads: usize,
    /// Bad-file policy.
    pub on_error: OnError,
    /// Show an indicatif progress bar.
    pub progress: bool,
    /// Decoder options.
    pub decode: DecodeOptions,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            seed: 0,
            shuffle: true,
            drop_last: false,
            prefetch: 2,
            threads: 0,
            on_error: OnError::Fail,
            progress: false,
            decode: DecodeOptions::default(),
        }
    }
}

/// A per-sample transform: decoded image and the sample's own generator → `[3, H, W]` values.
pub type Transform = Arc<dyn Fn(&GrayImage, &mut ChaCha8Rng) -> Result<Vec<f32>> + Send + Sync>;

/// One collated batch.
#[derive(Debug)]
pub struct Batch {
    /// `[B, 3, H, W]` f32 (B may be smaller than the batch size after skips).
    pub pixels: Tensor,
    /// Dataset indices of the rows of `pixels`.
    pub indices: Vec<usize>,
    /// Samples left out under [`OnError::Skip`], with the reason.
    pub skipped: Vec<(usize, Error)>,
}

/// Streams batches of a set of images (files or shard samples).
#[derive(Clone)]
pub struct Loader {
    files: Arc<dyn ImageSource>,
    transform: Transform,
    shape: (usize, usize, usize),
    config: LoaderConfig,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("files", &self.files.len())
            .field("shape", &self.shape)
            .field("config", &self.config)
            .finish()
    }
}

impl Loader {
    /// A loader applying `transform`, whose outputs must have `shape` `(3, H, W)`.
    pub fn new(
        files: impl ImageSource + 'static,
        shape: (usize, usize, usize),
        transform: Transform,
        config: LoaderConfig,
    ) -> Result<Self> {
        if config.batch_size == 0 || config.prefetch == 0 {
            return Err(Error::Invalid(
                "batch size and prefetch must be positive".into(),
            ));
        }
        Ok(Self {
            files: Arc::new(files),
            transform,
            shape,
            config,
        })
    }

    /// An evaluation loader: the HF processor on every image, no randomness.
    pub fn with_processor(
        files: impl ImageSource + 'static,
        processor: ImageProcessor,
        config: LoaderConfig,
    ) -> Result<Self> {
        let (h, w) = processor.preprocessing().crop;
        let t: Transform = Arc::new(move |img, _| processor.apply(img).map(|(v, _)| v));
        Self::new(files, (3, h, w), t, config)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.files.len()).collect();
        if self.config.shuffle {
            order.shuffle(&mut sample_rng(self.config.seed, epoch, u64::MAX));
        }
        order
    }

    /// The batches of `epoch`, prepared ahead on a background thread.
    pub fn epoch(&self, epoch: u64) -> Result<BatchIter> {
        let mut order = self.order(epoch);
        let bs = self.config.batch_size;
        if self.config.drop_last {
            order.truncate(order.len() / bs * bs);
        }
        let chunks: Vec<Vec<usize>> = order.chunks(bs).map(|c| c.to_vec()).collect();
        let total = chunks.len();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.config.threads)
            .build()
            .map_err(|e| Error::Invalid(format!("thread pool: {e}")))?;
        let (tx, rx) = sync_channel(self.config.prefetch);
        let this = self.clone();
        std::thread::spawn(move || {
            for chunk in chunks {
                let batch = pool.install(|| this.make_batch(&chunk, epoch));
                let stop = batch.is_err();
                if tx.send(batch).is_err() || stop {
                    return; // consumer gone, or the epoch failed
                }
            }
        });
        let progress = self.config.progress.then(|| {
            let pb = indicatif::ProgressBar::new(total as u64);
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} batches {elapsed} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            pb
        });
        Ok(BatchIter { rx, progress })
    }

    fn make_batch(&self, chunk: &[usize], epoch: u64) -> Result<Batch> {
        let results: Vec<(usize, Result<Vec<f32>>)> = chunk
            .par_iter()
            .map(|&i| {
                let mut rng = sample_rng(self.config.seed, epoch, i as u64);
                let r = self.files.decode(i, &self.config.decode).and_then(|img| {
                    let v = (self.transform)(&img, &mut rng)?;
                    let n = self.shape.0 * self.shape.1 * self.shape.2;
                    if v.len() != n {
                        return Err(Error::Invalid(format!(
                            "{}: transform gave {} values, expected {:?}",
                            self.files.name(i),
                            v.len(),
                            self.shape
                        )));
                    }
                    Ok(v)
                });
                (i, r)
            })
            .collect();
        let mut data = Vec::new();
        let mut indices = Vec::new();
        let mut skipped = Vec::new();
        for (i, r) in results {
            match r {
                Ok(v) => {
                    data.extend_from_slice(&v);
                    indices.push(i);
                }
                Err(e) if self.config.on_error == OnError::Skip => skipped.push((i, e)),
                Err(e) => return Err(e),
            }
        }
        let (c, h, w) = self.shape;
        let pixels = Tensor::from_vec(data, (indices.len(), c, h, w), &Device::Cpu)?;
        Ok(Batch {
            pixels,
            indices,
            skipped,
        })
    }
}

/// Iterator over the batches of one epoch.
#[derive(Debug)]
pub struct BatchIter {
    rx: Receiver<Result<Batch>>,
    progress: Option<indicatif::ProgressBar>,
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.rx.recv().ok();
        match (&item, &self.progress) {
            (Some(_), Some(pb)) => pb.inc(1),
            (None, Some(pb)) => pb.finish(),
            _ => {}
        }
        item
    }
}
