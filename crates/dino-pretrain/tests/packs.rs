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
