//! Images addressed by index, wherever they are stored: one file each, or samples of tar
//! shards ([`crate::shards::ShardIndex`]). Loaders that draw indices from a seeded sampler
//! read either the same way.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{decode_file, DecodeOptions, Error, GrayImage, Result};

/// A fixed, indexable set of encoded images.
pub trait ImageSource: Send + Sync + std::fmt::Debug {
    /// Number of images.
    fn len(&self) -> usize;

    /// Whether there is no image.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What names image `i` in messages: its path, or `shard.tar:key.ext`.
    fn name(&self, i: usize) -> String;

    /// [`Self::name`] without its folder (`x.png`, `shard.tar:key.png`): the same data reached
    /// by a relative or an absolute path has the same ids, e.g. to fingerprint a run's data.
    fn id(&self, i: usize) -> String {
        let name = self.name(i);
        match std::path::Path::new(&name).file_name() {
            Some(f) => f.to_string_lossy().into_owned(),
            None => name,
        }
    }

    /// Reads and decodes image `i`; an index out of range is an error.
    fn decode(&self, i: usize, opts: &DecodeOptions) -> Result<GrayImage>;
}

/// A shared source (`Arc<dyn ImageSource>`, `Arc<ShardIndex>`) reads as the source itself.
impl<T: ImageSource + ?Sized> ImageSource for Arc<T> {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn name(&self, i: usize) -> String {
        (**self).name(i)
    }

    fn decode(&self, i: usize, opts: &DecodeOptions) -> Result<GrayImage> {
        (**self).decode(i, opts)
    }
}

/// One file per image.
impl ImageSource for Vec<PathBuf> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn name(&self, i: usize) -> String {
        match self.get(i) {
            Some(p) => p.display().to_string(),
            None => format!("image {i} of {}", self.as_slice().len()),
        }
    }

    fn decode(&self, i: usize, opts: &DecodeOptions) -> Result<GrayImage> {
        let path = self.get(i).ok_or_else(|| {
            Error::Invalid(format!("image {i} of {} files", self.as_slice().len()))
        })?;
        decode_file(path, opts)
    }
}

/// Some images of another source, in a chosen order (a split of a shard set, say).
#[derive(Debug, Clone)]
pub struct Subset {
    source: Arc<dyn ImageSource>,
    indices: Vec<usize>,
}

impl Subset {
    /// Images `indices` of `source`; each must be in range.
    pub fn new(source: Arc<dyn ImageSource>, indices: Vec<usize>) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= source.len()) {
            return Err(Error::Invalid(format!(
                "image {bad} of a source holding {}",
                source.len()
            )));
        }
        Ok(Self { source, indices })
    }
}

impl ImageSource for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn name(&self, i: usize) -> String {
        match self.indices.get(i) {
            Some(&j) => self.source.name(j),
            None => format!("image {i} of {}", self.indices.len()),
        }
    }

    fn decode(&self, i: usize, opts: &DecodeOptions) -> Result<GrayImage> {
        let j = *self.indices.get(i).ok_or_else(|| {
            Error::Invalid(format!("image {i} of a subset of {}", self.indices.len()))
        })?;
        self.source.decode(j, opts)
    }
}
