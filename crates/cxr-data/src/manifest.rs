//! CSV manifests: one row per image with its path, patient, labels and metadata.
//!
//! Labels are numbers; `-1`, an empty cell, `nan` or `NA` mean *missing* (`None`). Every
//! parse error names the manifest file and the 1-based line (the header is line 1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The 14 NIH ChestX-ray14 findings, as `cxr-findings/labels.csv` names its columns, in the
/// order of its header (`no_finding` follows them there).
pub const NIH_FINDINGS: [&str; 14] = [
    "atelectasis",
    "cardiomegaly",
    "consolidation",
    "edema",
    "effusion",
    "emphysema",
    "fibrosis",
    "hernia",
    "infiltration",
    "mass",
    "nodule",
    "pleural_thickening",
    "pneumonia",
    "pneumothorax",
];

/// Where each column of a manifest goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestSpec {
    /// Column holding the image path or id.
    pub path_column: String,
    /// Template turning that cell into a path relative to `root`: `{}` is replaced by the
    /// cell (e.g. `images/{}.png`); `"{}"` uses the cell as is.
    pub path_template: String,
    /// Column holding the patient id.
    pub patient_column: String,
    /// Numeric label columns, in output order.
    pub label_columns: Vec<String>,
    /// Column with the data set's own `train`/`val`/`test` assignment, if any.
    pub split_column: Option<String>,
}

impl ManifestSpec {
    /// `cxr-mini/labels.csv`: `images/<id>.png`, labels `icu`, `death`, `has_mask`,
    /// `mask_complete`, split from `split`; the other columns stay metadata.
    pub fn cxr_mini() -> Self {
        Self {
            path_column: "id".into(),
            path_template: "images/{}.png".into(),
            patient_column: "patient_id".into(),
            label_columns: ["icu", "death", "has_mask", "mask_complete"]
                .map(String::from)
                .to_vec(),
            split_column: Some("split".into()),
        }
    }

    /// `cxr-findings/labels.csv`: `images/<id>.png`, the 14 NIH findings and `no_finding`.
    pub fn cxr_findings() -> Self {
        Self {
            path_column: "id".into(),
            path_template: "images/{}.png".into(),
            patient_column: "patient_id".into(),
            label_columns: NIH_FINDINGS
                .iter()
                .chain(&["no_finding"])
                .map(|s| s.to_string())
                .collect(),
            split_column: Some("split".into()),
        }
    }
}

/// A data set's own split assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// Training.
    Train,
    /// Validation.
    Val,
    /// Test.
    Test,
}

impl Split {
    /// `"train"`, `"val"` or `"test"`: how manifests and shard metadata spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// Reads a split name as manifests spell it (`train`/`training`, `val`/`valid`/
    /// `validation`, `test`, any case); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "val" | "valid" | "validation" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

/// One manifest row.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The image file (root joined with the templated path).
    pub image: PathBuf,
    /// Patient id.
    pub patient: String,
    /// Labels in [`ManifestSpec::label_columns`] order; `None` = missing.
    pub labels: Vec<Option<f32>>,
    /// The data set's split, when the spec names a split column.
    pub split: Option<Split>,
    /// Every other column, by name.
    pub meta: BTreeMap<String, String>,
    /// 1-based line in the manifest.
    pub line: u64,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Label names, in [`Record::labels`] order.
    pub label_names: Vec<String>,
    /// The rows.
    pub records: Vec<Record>,
}

impl Manifest {
    /// Reads `path`; image paths are resolved against the manifest's folder.
    pub fn from_csv(path: impl AsRef<Path>, spec: &ManifestSpec) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let root = path.parent().unwrap_or(Path::new("."));
        Self::from_csv_bytes(&bytes, path, root, spec)
    }

    /// The `labels.csv` of a data pack folder in the layout of this workspace's packs, with
    /// the preset its header calls for: [`ManifestSpec::cxr_findings`] when it has the NIH
    /// finding columns, else [`ManifestSpec::cxr_mini`].
    pub fn from_pack(dir: impl AsRef<Path>) -> Result<Self> {
        let csv = dir.as_ref().join("labels.csv");
        let text = std::fs::read(&csv).map_err(|e| Error::io(&csv, e))?;
        let header = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let spec = if header
            .split(|&b| b == b',')
            .any(|c| c.trim_ascii() == NIH_FINDINGS[0].as_bytes())
        {
            ManifestSpec::cxr_findings()
        } else {
            ManifestSpec::cxr_mini()
        };
        let root = csv.parent().unwrap_or(Path::new("."));
        Self::from_csv_bytes(&text, &csv, root, &spec)
    }

    /// Parses CSV text; `path` names it in errors, `root` resolves image paths.
    pub fn from_csv_bytes(
        bytes: &[u8],
        path: &Path,
        root: &Path,
        spec: &ManifestSpec,
    ) -> Result<Self> {
        let err = |line: u64, reason: String| Error::Manifest {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| err(1, format!("header: {e}")))?
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
            .collect();
        let col = |name: &str| {
            let mut at = header.iter().enumerate().filter(|(_, h)| *h == name);
            match (at.next(), at.next()) {
                (Some((i, _)), None) => Ok(i),
                // which of the two holds the values is anyone's guess
                (Some((i, _)), Some((j, _))) => Err(err(
                    1,
                    format!(
                        "column `{name}` appears twice (columns {} and {})",
                        i + 1,
                        j + 1
                    ),
                )),
                (None, _) => Err(err(
                    1,
                    format!("no column `{name}` (columns: {})", header.join(", ")),
                )),
            }
        };
        let path_idx = col(&spec.path_column)?;
        let patient_idx = col(&spec.patient_column)?;
        let label_idx = spec
            .label_columns
            .iter()
            .map(|c| col(c))
            .collect::<Result<Vec<_>>>()?;
        let split_idx = spec.split_column.as_deref().map(col).transpose()?;
        if !spec.path_template.contains("{}") {
            return Err(err(
                1,
                format!("path template `{}` lacks `{{}}`", spec.path_template),
            ));
        }
        let mut records = Vec::new();
        for row in reader.records() {
            let row = row.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                err(line, e.to_string())
            })?;
            let line = row.position().map_or(0, |p| p.line());
            let cell = |i: usize| row.get(i).unwrap_or("").trim();
            let id = cell(path_idx);
            if id.is_empty() {
                return Err(err(line, format!("empty `{}`", spec.path_column)));
            }
            let patient = cell(patient_idx);
            if patient.is_empty() {
                return Err(err(line, format!("empty `{}`", spec.patient_column)));
            }
            let labels = label_idx
                .iter()
                .zip(&spec.label_columns)
                .map(|(&i, name)| {
                    parse_label(cell(i)).map_err(|m| err(line, format!("`{name}`: {m}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let split = match split_idx {
                Some(i) => Some(Split::parse(cell(i)).ok_or_else(|| {
                    err(line, format!("split `{}` is not train/val/test", cell(i)))
                })?),
                None => None,
            };
            let used: Vec<usize> = [path_idx, patient_idx]
                .into_iter()
                .chain(label_idx.iter().copied())
                .chain(split_idx)
                .collect();
            let meta = header
                .iter()
                .enumerate()
                .filter(|(i, _)| !used.contains(i))
                .map(|(i, h)| (h.clone(), cell(i).to_string()))
                .collect();
            records.push(Record {
                image: root.join(spec.path_template.replace("{}", id)),
                patient: patient.to_string(),
                labels,
                split,
                meta,
                line,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            label_names: spec.label_columns.clone(),
            records,
        })
    }

    /// The index of a label by name.
    pub fn label_index(&self, name: &str) -> Option<usize> {
        self.label_names.iter().position(|n| n == name)
    }

    /// Indices of the rows in the data set's own `split`.
    pub fn indices_in(&self, split: Split) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&i| self.records[i].split == Some(split))
            .collect()
    }
}

fn parse_label(s: &str) -> std::result::Result<Option<f32>, String> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("na") {
        return Ok(None);
    }
    let v: f32 = t.parse().map_err(|_| format!("`{t}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("`{t}` is not finite"));
    }
    Ok(if v == -1.0 { None } else { Some(v) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ManifestSpec {
        ManifestSpec {
            path_column: "file".into(),
            path_template: "{}".into(),
            patient_column: "pid".into(),
            label_columns: vec!["a".into(), "b".into()],
            split_column: None,
        }
    }

    #[test]
    fn missing_values_and_metadata() {
        let csv = b"file,pid,a,b,age\nx.png,p1,1,-1,40\ny.png,p2,,0.5,\n";
        let m =
            Manifest::from_csv_bytes(csv, Path::new("m.csv"), Path::new("/r"), &spec()).unwrap();
        assert_eq!(m.records.len(), 2);
        assert_eq!(m.records[0].labels, vec![Some(1.0), None]);
        assert_eq!(m.records[1].labels, vec![None, Some(0.5)]);
        assert_eq!(m.records[0].meta["age"], "40");
        assert_eq!(m.records[0].image, PathBuf::from("/r/x.png"));
        assert_eq!(m.records[1].line, 3);
    }

    #[test]
    fn errors_name_file_and_line() {
        let csv = b"file,pid,a,b\nx.png,p1,1,0\ny.png,p2,yes,0\n";
        let e =
            Manifest::from_csv_bytes(csv, Path::new("m.csv"), Path::new("."), &spec()).unwrap_err();
        assert_eq!(e.to_string(), "m.csv:3: `a`: `yes` is not a number");
        let e =
            Manifest::from_csv_bytes(b"file,pid,a\n", Path::new("m.csv"), Path::new("."), &spec())
                .unwrap_err();
        assert!(e.to_string().starts_with("m.csv:1: no column `b`"), "{e}");
        let e = Manifest::from_csv_bytes(
            b"file,pid,a,b\nx,p,1\n",
            Path::new("m.csv"),
            Path::new("."),
            &spec(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("m.csv:2:"), "{e}");
    }
}
