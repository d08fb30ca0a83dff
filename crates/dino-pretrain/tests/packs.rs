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
