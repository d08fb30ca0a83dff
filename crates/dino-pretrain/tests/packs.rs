//! The image lists of a pack exist on disk whether the pack folder is given as an absolute
//! or a relative path (examples take `--data ../shared/data/cxr-mini`).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};

use cxr_data::Split;
use dino_pretrain::packs::split_files;

#[test]
fn split_files_exist_for_relative_and_absolute_pack_paths() {
    let abs = common::pack("cxr-mini");
    // tests run in the crate folder, so the pack relative to it is the suffix after it; the
    // detour through `../dino-pretrain` makes a path that joined to itself no longer
    // resolves (a plain `../../../shared/…` would, by coincidence of depth)
    let relative = abs
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .map(|rest| Path::new("..").join("dino-pretrain").join(rest))
        .unwrap_or_else(|_| abs.clone());
    assert_eq!(
        std::env::current_dir().unwrap(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    );
    for dir in [&abs, &relative] {
        let files = split_files(dir, Split::Train).unwrap();
        assert_eq!(files.len(), 143, "{}", dir.display());
        for f in &files {
            assert!(
                f.is_file(),
                "{} (pack given as {})",
                f.display(),
                dir.display()
            );
        }
    }
}

#[test]
fn the_crops_section_sets_the_augmentations() {
    let (mut cfg, _) = common::tiny_config(0.0);
    cfg.crops.horizontal_flip_prob = 0.5;
    cfg.crops.color_jitter_prob = 0.0;
    cfg.crops.brightness = 0.1;
    cfg.crops.contrast = 0.2;
    cfg.crops.blur_prob = [0.3, 0.2, 0.1];
    cfg.crops.solarize_prob = 0.0;
    let files = split_files(&common::pack("cxr-mini"), Split::Train).unwrap();
    let source = dino_pretrain::MultiCropSource::new(files, &cfg, 4, [0.5; 3], [0.25; 3]).unwrap();
    let c = source.crops();
    assert_eq!(c.flip_p, 0.5);
    assert_eq!(c.jitter, (0.1, 0.2, 0.0));
    assert_eq!(c.blur_p, [0.3, 0.2, 0.1]);
    assert_eq!(c.solarize_p, 0.0);
    assert_eq!((c.global_size, c.local_size, c.n_local), (16, 8, 2));
}

/// A run on tar shards sees the batches a run on the same images as files sees: the shard
/// index reads by sample index, so the seeded permutation, the crops and the masks are the
/// same, to the bit.
#[test]
fn shards_give_the_batches_the_files_give() {
    use candle_core::Device;
    use cxr_data::shards::{record_json, sample_key, ShardWriter};
    use cxr_data::{Manifest, ShardIndex};
    use dino_pretrain::MultiCropSource;

    let (cfg, _) = common::tiny_config(0.0);
    let manifest = Manifest::from_pack(common::pack("cxr-mini")).unwrap();
    let rows: Vec<usize> = manifest
        .indices_in(Split::Train)
        .into_iter()
        .take(7)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::new(dir.path(), "mini", 3).unwrap();
    for &i in &rows {
        let r = &manifest.records[i];
        let bytes = std::fs::read(&r.image).unwrap();
        w.write(
            &sample_key(&r.image),
            "png",
            &bytes,
            &record_json(&manifest, r),
        )
        .unwrap();
    }
    assert_eq!(w.finish().unwrap().len(), 3);
    let index = ShardIndex::from_dir(dir.path()).unwrap();
    let first = index.read(0).unwrap();
    assert_eq!(
        first.meta["patient"],
        manifest.records[rows[0]].patient.as_str()
    );
    assert_eq!(first.meta["split"], "train");
    assert_eq!(first.meta["labels"].as_object().unwrap().len(), 4);

    let files: Vec<PathBuf> = rows
        .iter()
        .map(|&i| manifest.records[i].image.clone())
        .collect();
    let from_files = MultiCropSource::new(files, &cfg, 4, [0.5; 3], [0.25; 3]).unwrap();
    let from_shards = MultiCropSource::new(index, &cfg, 4, [0.5; 3], [0.25; 3]).unwrap();
    assert_eq!(from_shards.len(), 7);
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // batch 2 over 7 images: step 3 straddles the first and second epochs
    for step in [0, 3, 5] {
        let a = from_files.batch(step, &Device::Cpu).unwrap();
        let b = from_shards.batch(step, &Device::Cpu).unwrap();
        assert_eq!(a.indices, b.indices, "step {step}");
        assert_eq!(flat(&a.global), flat(&b.global), "step {step}");
        assert_eq!(
            flat(a.local.as_ref().unwrap()),
            flat(b.local.as_ref().unwrap())
        );
        let masks = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        assert_eq!(masks(&a.masks), masks(&b.masks));
    }
}
