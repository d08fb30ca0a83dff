//! Per-step logs in CSV and JSONL.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One logged step: losses, schedule values, throughput, … by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step.
    pub step: u64,
    /// The values.
    pub values: BTreeMap<String, f64>,
}

/// Appends every step to `steps.csv` and `steps.jsonl` in a directory (flushed per step).
/// The CSV columns are fixed by the first record; later records must have the same names.
#[derive(Debug)]
pub struct StepLog {
    csv_path: PathBuf,
    jsonl_path: PathBuf,
    csv: File,
    jsonl: File,
    columns: Option<Vec<String>>,
}

/// Reads the records of a `steps.jsonl`.
pub fn read_jsonl(path: &Path) -> Result<Vec<StepRecord>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?);
    }
    Ok(out)
}

impl StepLog {
    /// Opens the logs in `dir`. When resuming at `resume_step`, the records of steps at or
    /// after it (logged after the checkpoint, before an interruption) are dropped so the
    /// resumed run does not duplicate them; `None` starts fresh.
    pub fn open(dir: &Path, resume_step: Option<u64>) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let csv_path = dir.join("steps.csv");
        let jsonl_path = dir.join("steps.jsonl");
        let kept: Vec<StepRecord> = match resume_step {
            Some(step) if jsonl_path.exists() => read_jsonl(&jsonl_path)?
                .into_iter()
                .filter(|r| r.step < step)
                .collect(),
            _ => Vec::new(),
        };
        let create = |p: &Path| File::create(p).map_err(|e| Error::io(p, e));
        let mut log = Self {
            csv: create(&csv_path)?,
            jsonl: create(&jsonl_path)?,
            csv_path,
            jsonl_path,
            columns: None,
        };
        for r in &kept {
            log.append(r)?;
        }
        Ok(log)
    }

    /// Appends one record.
    pub fn append(&mut self, record: &StepRecord) -> Result<()> {
        let names: Vec<String> = record.values.keys().cloned().collect();
        match &self.columns {
            None => {
                let header = std::iter::once("step".to_string())
                    .chain(names.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(",");
                writeln!(self.csv, "{header}").map_err(|e| Error::io(&self.csv_path, e))?;
                self.columns = Some(names);
            }
            Some(cols) if *cols != names => {
                return Err(Error::Config(format!(
                    "step log: record for step {} has columns {names:?}, the log has {cols:?}",
                    record.step
                )))
            }
            Some(_) => {}
        }
        let row = std::iter::once(record.step.to_string())
            .chain(record.values.values().map(|v| format!("{v}")))
            .collect::<Vec<_>>()
            .join(",");
        writeln!(self.csv, "{row}").map_err(|e| Error::io(&self.csv_path, e))?;
        let json = serde_json::to_string(record).map_err(|e| Error::Json {
            path: self.jsonl_path.clone(),
            reason: e.to_string(),
        })?;
        writeln!(self.jsonl, "{json}").map_err(|e| Error::io(&self.jsonl_path, e))?;
        self.csv.flush().map_err(|e| Error::io(&self.csv_path, e))?;
        self.jsonl
            .flush()
            .map_err(|e| Error::io(&self.jsonl_path, e))?;
        Ok(())
    }

    /// The JSONL file (input of [`crate::plot_curves`]).
    pub fn jsonl_path(&self) -> &Path {
        &self.jsonl_path
    }
}
