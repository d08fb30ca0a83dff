//! The two open data packs of the workspace (`cxr-mini`, `cxr-findings`) by directory.

use std::path::{Path, PathBuf};

use cxr_data::{Manifest, Split};

use crate::Result;

/// Reads `dir/labels.csv` with the preset its header calls for (`cxr-findings` when it has
/// finding columns, else `cxr-mini`): [`Manifest::from_pack`].
pub fn read_pack(dir: &Path) -> Result<Manifest> {
    Ok(Manifest::from_pack(dir)?)
}

/// Image paths of `split` in the pack at `dir`.
pub fn split_files(dir: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let m = read_pack(dir)?;
    // the manifest already resolves each image against the folder of its labels.csv
    Ok(m.indices_in(split)
        .into_iter()
        .map(|i| m.records[i].image.clone())
        .collect())
}
