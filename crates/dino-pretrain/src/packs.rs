//! The two open data packs of the workspace (`cxr-mini`, `cxr-findings`) by directory.

use std::path::{Path, PathBuf};

use cxr_data::{Manifest, ManifestSpec, Split};

use crate::{Error, Result};

/// Reads `dir/labels.csv` with the preset its header calls for (`cxr-findings` when it has
/// finding columns, else `cxr-mini`).
pub fn read_pack(dir: &Path) -> Result<Manifest> {
    let csv = dir.join("labels.csv");
    let header = std::fs::read_to_string(&csv).map_err(|e| Error::io(&csv, e))?;
    let first = header.lines().next().unwrap_or_default();
    let spec = if first.split(',').any(|c| c == "atelectasis") {
        ManifestSpec::cxr_findings()
    } else {
        ManifestSpec::cxr_mini()
    };
    Ok(Manifest::from_csv(&csv, &spec)?)
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
