//! Loader: thread-count independence, epoch shuffling, skip-or-fail on bad files.
#![allow(clippy::unwrap_used)] // tests may unwrap
use crate::common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use cxr_data::augment::{multi_crop, MultiCropConfig};
use cxr_data::loader::{Loader, LoaderConfig, OnError, Transform};
use cxr_data::{Error, ImageProcessor};

/// Five pack images (an odd count, so the batch-size-2 loaders end on a partial batch); each
/// must exist, so a missing file fails here instead of silently shrinking every test's input.
fn files() -> Vec<PathBuf> {
    let files: Vec<PathBuf> = ["fff13f3a", "53c9be49", "b343e657", "c9280a30", "6b5af975"]
        .iter()
        .map(|id| mini().join(format!("images/{id}.png")))
        .collect();
    for p in &files {
        assert!(p.is_file(), "{} is missing from the pack", p.display());
    }
    files
}

fn random_crop_loader(threads: usize) -> Loader {
    let cfg = MultiCropConfig {
        global_size: 32,
        n_local: 0,
        ..MultiCropConfig::dinov2()
    };
    let t: Transform =
        Arc::new(move |img, rng| Ok(multi_crop(img, &cfg, rng)?.global.swap_remove(0).data));
    let lc = LoaderConfig {
        batch_size: 2,
        threads,
        seed: 9,
        ..Default::default()
    };
    Loader::new(files(), (3, 32, 32), t, lc).unwrap()
}

fn collect(l: &Loader, epoch: u64) -> Vec<(Vec<usize>, Vec<f32>)> {
    l.epoch(epoch)
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            (
                b.indices,
                b.pixels.flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect()
}

#[test]
fn same_batches_on_one_and_two_threads() {
    let a = collect(&random_crop_loader(1), 3);
    let b = collect(&random_crop_loader(2), 3);
    assert_eq!(a, b);
    assert_eq!(a.iter().map(|(i, _)| i.len()).sum::<usize>(), files().len());
    let l = random_crop_loader(2);
    assert_ne!(l.order(3), l.order(4), "each epoch has its own order");
}

#[test]
fn bad_files_skip_or_fail() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let mut fs = files();
    fs.insert(1, bad.clone());
    let p = ImageProcessor::from_file(fixture("processor/small_preprocessor_config.json")).unwrap();
    let cfg = LoaderConfig {
        batch_size: 4,
        shuffle: false,
        on_error: OnError::Skip,
        ..Default::default()
    };
    let l = Loader::with_processor(fs.clone(), p.clone(), cfg.clone()).unwrap();
    let batches: Vec<_> = l.epoch(0).unwrap().map(|b| b.unwrap()).collect();
    let skipped: Vec<_> = batches.iter().flat_map(|b| &b.skipped).collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, 1);
    assert!(skipped[0].1.to_string().contains("broken.png"));
    assert_eq!(batches[0].pixels.dims(), &[3, 3, 33, 33]);
    let l = Loader::with_processor(
        fs,
        p,
        LoaderConfig {
            on_error: OnError::Fail,
            ..cfg
        },
    )
    .unwrap();
    let first = l.epoch(0).unwrap().next().unwrap();
    assert!(matches!(first, Err(Error::Decode { .. })), "{first:?}");
}

/// The loader reads tar shards as it reads files: the same batches, in the same order.
#[test]
fn shards_load_as_the_files_do() {
    use cxr_data::shards::{sample_key, ShardWriter};
    use cxr_data::ShardIndex;
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::new(dir.path(), "l", 2).unwrap();
    for f in files() {
        let bytes = std::fs::read(&f).unwrap();
        w.write(&sample_key(&f), "png", &bytes, &serde_json::json!({}))
            .unwrap();
    }
    w.finish().unwrap();
    let index = ShardIndex::from_dir(dir.path()).unwrap();
    let p = ImageProcessor::from_file(fixture("processor/small_preprocessor_config.json")).unwrap();
    let cfg = LoaderConfig {
        batch_size: 2,
        seed: 3,
        ..Default::default()
    };
    let from_files = Loader::with_processor(files(), p.clone(), cfg.clone()).unwrap();
    let from_shards = Loader::with_processor(index, p, cfg).unwrap();
    assert_eq!(collect(&from_files, 1), collect(&from_shards, 1));
}
