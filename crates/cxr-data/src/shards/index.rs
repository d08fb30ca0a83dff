//! Random access into tar shards, as webdataset's indexed `wids` datasets do: one pass over
//! the tar headers (seeking past the data) records where every sample's image and metadata
//! lie, and sample `i` is then read with one seek. Training loops whose batches are a pure
//! function of `(seed, step)` (seeded permutations, exact resume) can therefore read shards
//! as they read files, without streaming them in order.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;

use super::{ShardPosition, ShardSample, IMAGE_EXTS};
use crate::{decode_bytes, DecodeOptions, Error, GrayImage, ImageSource, Result, Split};

/// Where one member's bytes lie in its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    offset: u64,
    len: u64,
}

/// One indexed sample.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Index into [`ShardIndex::shards`].
    shard: usize,
    /// Position of the sample within its shard.
    sample: usize,
    key: String,
    ext: String,
    image: Span,
    meta: Option<Span>,
}

/// Every sample of a list of shards, addressable by index (shard order, then member order).
#[derive(Clone, PartialEq, Eq)]
pub struct ShardIndex {
    shards: Vec<PathBuf>,
    entries: Vec<Entry>,
    /// First entry of each shard, and the total at the end.
    starts: Vec<usize>,
}

impl std::fmt::Debug for ShardIndex {
    // millions of entries: the counts, not the table
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardIndex")
            .field("shards", &self.shards.len())
            .field("samples", &self.entries.len())
            .finish()
    }
}

impl ShardIndex {
    /// Indexes `shards` (their headers only, read in parallel).
    pub fn build(shards: Vec<PathBuf>) -> Result<Self> {
        let per_shard = shards
            .par_iter()
            .enumerate()
            .map(|(i, p)| index_shard(p, i))
            .collect::<Result<Vec<_>>>()?;
        let mut starts = Vec::with_capacity(shards.len() + 1);
        let mut entries = Vec::new();
        for e in per_shard {
            starts.push(entries.len());
            entries.extend(e);
        }
        starts.push(entries.len());
        Ok(Self {
            shards,
            entries,
            starts,
        })
    }

    /// Indexes every `*.tar` file of `dir`, in file-name order ([`super::shard_files`]).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::build(super::shard_files(dir)?)
    }

    /// The shards, in index order.
    pub fn shards(&self) -> &[PathBuf] {
        &self.shards
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the shards hold no sample.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position in [`Self::shards`] of the shard holding sample `i`.
    pub fn shard_of(&self, i: usize) -> Result<usize> {
        Ok(self.entry(i)?.shard)
    }

    /// The key of sample `i`.
    pub fn key(&self, i: usize) -> Result<&str> {
        Ok(&self.entry(i)?.key)
    }

    /// The index of the sample at `position` of the shard list (the inverse of
    /// [`ShardSample::next`]), `len()` when it lies past the last sample.
    pub fn index_of(&self, position: ShardPosition) -> Result<usize> {
        let (Some(&start), Some(&end)) = (
            self.starts.get(position.shard),
            self.starts.get(position.shard + 1),
        ) else {
            return if position.shard == self.shards.len() && position.sample == 0 {
                Ok(self.len())
            } else {
                Err(Error::Invalid(format!(
                    "shard position {position:?} beyond the {} shards",
                    self.shards.len()
                )))
            };
        };
        if start + position.sample > end {
            return Err(Error::Invalid(format!(
                "shard position {position:?}: {} holds {} samples",
                self.shards[position.shard].display(),
                end - start
            )));
        }
        Ok(start + position.sample)
    }

    /// The JSON metadata of sample `i` alone (`Value::Null` when it has none).
    pub fn read_meta(&self, i: usize) -> Result<Value> {
        let e = self.entry(i)?;
        let path = &self.shards[e.shard];
        let mut f = File::open(path).map_err(|err| Error::io(path, err))?;
        read_meta(&mut f, path, e)
    }

    /// Every sample's JSON metadata, in order (`Value::Null` where a sample has none): one
    /// open per shard, shards read in parallel.
    pub fn metas(&self) -> Result<Vec<Value>> {
        let per_shard = (0..self.shards.len())
            .into_par_iter()
            .map(|s| {
                let path = &self.shards[s];
                let mut f = File::open(path).map_err(|err| Error::io(path, err))?;
                self.entries[self.starts[s]..self.starts[s + 1]]
                    .iter()
                    .map(|e| read_meta(&mut f, path, e))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(per_shard.into_iter().flatten().collect())
    }

    /// The samples whose metadata (`metas`, as [`Self::metas`] reads them) names `split` (as
    /// [`Split::parse`] reads it), in order; with `unsplit`, also those whose metadata names
    /// no split (unlabelled shards). A split that is not a split name is an error naming the
    /// sample.
    pub fn samples_in(&self, metas: &[Value], split: Split, unsplit: bool) -> Result<Vec<usize>> {
        if metas.len() != self.len() {
            return Err(Error::Invalid(format!(
                "{} metadata records for {} samples",
                metas.len(),
                self.len()
            )));
        }
        let mut chosen = Vec::new();
        for (i, meta) in metas.iter().enumerate() {
            let keep = match &meta["split"] {
                Value::Null => unsplit,
                Value::String(s) => match Split::parse(s) {
                    Some(named) => named == split,
                    None => {
                        return Err(Error::Invalid(format!(
                            "{}: split `{s}` is not train, val or test",
                            self.name(i)
                        )))
                    }
                },
                other => {
                    return Err(Error::Invalid(format!(
                        "{}: split {other} is not a name",
                        self.name(i)
                    )))
                }
            };
            if keep {
                chosen.push(i);
            }
        }
        Ok(chosen)
    }

    /// Reads sample `i` (image bytes and metadata) with one seek per member.
    pub fn read(&self, i: usize) -> Result<ShardSample> {
        let e = self.entry(i)?;
        let path = &self.shards[e.shard];
        let mut f = File::open(path).map_err(|err| Error::io(path, err))?;
        let in_shard = self.starts[e.shard + 1] - self.starts[e.shard];
        read_entry(&mut f, path, e, in_shard)
    }

    fn entry(&self, i: usize) -> Result<&Entry> {
        self.entries.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "sample {i} of shards holding {} samples",
                self.entries.len()
            ))
        })
    }
}

impl ImageSource for ShardIndex {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn name(&self, i: usize) -> String {
        match self.entries.get(i) {
            Some(e) => format!("{}:{}.{}", self.shards[e.shard].display(), e.key, e.ext),
            None => format!("sample {i} of {}", self.entries.len()),
        }
    }

    fn decode(&self, i: usize, opts: &DecodeOptions) -> Result<GrayImage> {
        let e = self.entry(i)?;
        let path = &self.shards[e.shard];
        let mut f = File::open(path).map_err(|err| Error::io(path, err))?;
        let image = read_span(&mut f, path, e.image, &e.key)?;
        // errors name the shard and the member: `shard.tar:key.dcm`
        decode_bytes(&image, Path::new(&self.name(i)), opts)
    }
}

/// Every sample of the shard at `path` (position `shard` in its list), in order, read with
/// one pass over its headers and one over its members: what [`super::stream`] yields.
pub(super) fn read_shard(path: &Path, shard: usize) -> Result<Vec<ShardSample>> {
    let entries = index_shard(path, shard)?;
    let mut f = File::open(path).map_err(|err| Error::io(path, err))?;
    entries
        .iter()
        .map(|e| read_entry(&mut f, path, e, entries.len()))
        .collect()
}

/// Sample `e` of a shard holding `in_shard` samples, with where the next one starts.
fn read_entry(f: &mut File, path: &Path, e: &Entry, in_shard: usize) -> Result<ShardSample> {
    let image = read_span(f, path, e.image, &e.key)?;
    let meta = read_meta(f, path, e)?;
    let next = if e.sample + 1 < in_shard {
        ShardPosition {
            shard: e.shard,
            sample: e.sample + 1,
        }
    } else {
        ShardPosition {
            shard: e.shard + 1,
            sample: 0,
        }
    };
    Ok(ShardSample {
        key: e.key.clone(),
        ext: e.ext.clone(),
        image,
        meta,
        next,
    })
}

fn read_meta(f: &mut File, path: &Path, e: &Entry) -> Result<Value> {
    let Some(span) = e.meta else {
        return Ok(Value::Null);
    };
    let bytes = read_span(f, path, span, &e.key)?;
    serde_json::from_slice(&bytes).map_err(|err| Error::Shard {
        path: path.to_path_buf(),
        reason: format!("{}.json: {err}", e.key),
    })
}

fn read_span(f: &mut File, path: &Path, span: Span, key: &str) -> Result<Vec<u8>> {
    let len = usize::try_from(span.len).map_err(|_| Error::Shard {
        path: path.to_path_buf(),
        reason: format!("{key}: member of {} bytes", span.len),
    })?;
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(span.offset))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|err| Error::Shard {
            path: path.to_path_buf(),
            reason: format!(
                "{key}: {len} bytes at offset {}: {err} (changed since it was indexed?)",
                span.offset
            ),
        })?;
    Ok(buf)
}

/// The samples of one shard: consecutive members with the same key, one image each (the last
/// image member of the key), metadata optional; other members are ignored.
fn index_shard(path: &Path, shard: usize) -> Result<Vec<Entry>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut archive = tar::Archive::new(BufReader::new(f));
    let bad = |reason: String| Error::Shard {
        path: path.to_path_buf(),
        reason,
    };
    // per key, in member order: (key, image extension and span, metadata span)
    type Members = (String, Option<(String, Span)>, Option<Span>);
    let mut out: Vec<Members> = Vec::new();
    let members = archive
        .entries_with_seek()
        .map_err(|e| bad(e.to_string()))?;
    for member in members {
        let member = member.map_err(|e| bad(e.to_string()))?;
        if !member.header().entry_type().is_file() {
            continue;
        }
        let name = member
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .to_string();
        let base = name.rsplit('/').next().unwrap_or(&name);
        let (key, ext) = base
            .split_once('.')
            .ok_or_else(|| bad(format!("member `{name}` has no extension")))?;
        let span = Span {
            offset: member.raw_file_position(),
            len: member.size(),
        };
        // seeking past the data does not notice a shard cut short inside a member
        if span.offset.saturating_add(span.len) > file_len {
            return Err(bad(format!(
                "member `{name}` ends at byte {} of a {file_len}-byte file (truncated?)",
                span.offset.saturating_add(span.len)
            )));
        }
        if out.last().is_none_or(|(k, _, _)| k != key) {
            out.push((key.to_string(), None, None));
        }
        let ext = ext.to_ascii_lowercase();
        if let Some(last) = out.last_mut() {
            if ext == "json" {
                last.2 = Some(span);
            } else if IMAGE_EXTS.contains(&ext.as_str()) {
                last.1 = Some((ext, span));
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(sample, (key, image, meta))| {
            let (ext, image) = image.ok_or_else(|| bad(format!("sample `{key}` has no image")))?;
            Ok(Entry {
                shard,
                sample,
                key,
                ext,
                image,
                meta,
            })
        })
        .collect()
}
