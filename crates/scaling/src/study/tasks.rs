//! Evaluation tasks of a study: anything that scores a frozen encoder and keeps its
//! per-sample predictions, so that bootstrap intervals and refits can resample them.

use std::path::{Path, PathBuf};

use candle_core::Device;
use cxr_core::Encoder;
use cxr_data::{Manifest, ManifestSpec, Split};
use metrics::bootstrap::group_rows;
use probe_heads::eval::logreg_probe;
use probe_heads::extract::{extract_features, ExtractConfig};
use probe_heads::logreg::default_c_grid;
use probe_heads::Targets;
use seg_decoders::loss::Activation;
use seg_decoders::{evaluate, lung, train_segmentation, HeadConfig, TrainOptions};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Per-sample predictions of one task on its evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Predictions {
    /// Binary labels and scores; the metric is AUROC.
    Binary {
        /// Label of each sample.
        y: Vec<bool>,
        /// Score of each sample.
        scores: Vec<f64>,
    },
    /// A per-sample metric (e.g. Dice); the metric is the mean.
    PerSample {
        /// Value of each sample.
        values: Vec<f64>,
    },
}

/// The outcome of one task on one encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Task name (a curve of the study), e.g. `findings/effusion`.
    pub task: String,
    /// Metric name, e.g. `AUROC`.
    pub metric: String,
    /// Evaluation sample ids, in prediction order (identical across cells of a study).
    pub ids: Vec<String>,
    /// Patient of each sample (bootstrap clusters).
    pub groups: Vec<String>,
    /// The predictions.
    pub predictions: Predictions,
}

impl TaskResult {
    /// Number of evaluation samples.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The metric on the samples `rows` (repeats allowed, as a bootstrap draws them).
    pub fn metric_on(&self, rows: &[usize]) -> metrics::Result<f64> {
        match &self.predictions {
            Predictions::Binary { y, scores } => {
                let yy: Vec<bool> = rows.iter().map(|&r| y[r]).collect();
                let ss: Vec<f64> = rows.iter().map(|&r| scores[r]).collect();
                metrics::classification::auroc(&yy, &ss)
            }
            Predictions::PerSample { values } => {
                if rows.is_empty() {
                    return Err(metrics::MetricsError::Empty { metric: "mean" });
                }
                Ok(rows.iter().map(|&r| values[r]).sum::<f64>() / rows.len() as f64)
            }
        }
    }

    /// The metric on every sample.
    pub fn metric(&self) -> metrics::Result<f64> {
        self.metric_on(&(0..self.len()).collect::<Vec<_>>())
    }

    /// Row indices per patient, for patient-clustered resampling.
    pub fn clusters(&self) -> Vec<Vec<usize>> {
        group_rows(&self.groups)
    }
}

/// A way to score a frozen encoder. Implementations must be deterministic for a given
/// encoder (seeded), so that cells differ only by their encoders.
pub trait EvalTask: std::fmt::Debug {
    /// A short name, used in file names and logs.
    fn name(&self) -> String;

    /// Scores `encoder`; one result per curve this task contributes.
    fn evaluate(&self, encoder: &dyn Encoder) -> Result<Vec<TaskResult>>;
}

/// Frozen-feature logistic-regression probes on a labelled pack (cxr-findings layout), as
/// probe-heads runs them: CLS + mean patch features, L2 logistic regression per label with
/// `C` chosen on val by AUROC, test AUROC.
#[derive(Debug, Clone)]
pub struct ProbeTask {
    /// The pack directory (`labels.csv` with finding columns and a split column).
    pub data: PathBuf,
    /// Finding columns to probe, e.g. `effusion`.
    pub labels: Vec<String>,
}

impl EvalTask for ProbeTask {
    fn name(&self) -> String {
        format!("probe[{}]", self.labels.join(","))
    }

    fn evaluate(&self, encoder: &dyn Encoder) -> Result<Vec<TaskResult>> {
        let manifest =
            Manifest::from_csv(self.data.join("labels.csv"), &ManifestSpec::cxr_findings())?;
        let cols: Vec<usize> = self
            .labels
            .iter()
            .map(|l| {
                manifest.label_index(l).ok_or_else(|| {
                    Error::invalid(
                        "probe task",
                        format!("{} has no label `{l}`", self.data.display()),
                    )
                })
            })
            .collect::<Result<_>>()?;
        let (tr, va, te) = (
            manifest.indices_in(Split::Train),
            manifest.indices_in(Split::Val),
            manifest.indices_in(Split::Test),
        );
        let targets = |rows: &[usize]| Targets::MultiLabel {
            names: self.labels.clone(),
            y: rows
                .iter()
                .flat_map(|&i| cols.iter().map(move |&c| (i, c)))
                .map(|(i, c)| manifest.records[i].labels[c].map(|v| v > 0.5))
                .collect(),
        };
        let cfg = ExtractConfig {
            progress: false,
            ..Default::default()
        };
        let feats = |rows: &[usize]| -> Result<_> {
            Ok(extract_features(encoder, "study", &manifest, rows, &cfg)?.cls_and_patch_mean()?)
        };
        let (ftr, fva, fte) = (feats(&tr)?, feats(&va)?, feats(&te)?);
        let (ytr, yva, yte) = (targets(&tr), targets(&va), targets(&te));
        let (scores, _) = logreg_probe((&ftr, &ytr), (&fva, &yva), &fte, &default_c_grid())?;
        let k = cols.len();
        let ids: Vec<String> = te
            .iter()
            .map(|&i| probe_heads::extract::record_id(&manifest, i))
            .collect();
        let groups: Vec<String> = te
            .iter()
            .map(|&i| manifest.records[i].patient.clone())
            .collect();
        let mut out = Vec::new();
        for (j, name) in self.labels.iter().enumerate() {
            let col = yte.column(j);
            let keep: Vec<usize> = (0..te.len()).filter(|&i| col[i].is_some()).collect();
            out.push(TaskResult {
                task: format!("probe/{name}"),
                metric: "AUROC".into(),
                ids: keep.iter().map(|&i| ids[i].clone()).collect(),
                groups: keep.iter().map(|&i| groups[i].clone()).collect(),
                predictions: Predictions::Binary {
                    y: keep.iter().map(|&i| col[i] == Some(true)).collect(),
                    scores: keep.iter().map(|&i| scores[i * k + j]).collect(),
                },
            });
        }
        Ok(out)
    }
}

/// Lung segmentation on the cxr-mini masks with seg-decoders' linear head on the frozen
/// encoder (whole image resized to the encoder's square input, BCE + Dice, Adam), scored by
/// per-image Dice on the test split at the input resolution.
#[derive(Debug, Clone)]
pub struct LungSegTask {
    /// The cxr-mini pack.
    pub data: PathBuf,
    /// Head training epochs.
    pub epochs: usize,
    /// Peak learning rate of the head.
    pub lr: f64,
    /// Images per batch.
    pub batch: usize,
    /// Seed of head initialisation order and augmentation.
    pub seed: u64,
}

impl LungSegTask {
    /// The linear-head protocol of the `lung_segmentation` example (lr 1e-2, batch 8) with
    /// `epochs` passes.
    pub fn new(data: impl AsRef<Path>, epochs: usize) -> Self {
        Self {
            data: data.as_ref().to_path_buf(),
            epochs,
            lr: 1e-2,
            batch: 8,
            seed: 0,
        }
    }
}

impl EvalTask for LungSegTask {
    fn name(&self) -> String {
        "lung-seg[linear]".into()
    }

    fn evaluate(&self, encoder: &dyn Encoder) -> Result<Vec<TaskResult>> {
        let size = encoder.preprocessing().crop.0;
        let processor = lung::square_processor(&encoder.preprocessing(), size);
        let samples = lung::load(&self.data, &processor, size)?;
        let pick =
            |s: Split| -> Vec<&lung::Sample> { samples.iter().filter(|x| x.split == s).collect() };
        let (train, test) = (pick(Split::Train), pick(Split::Test));
        if train.is_empty() || test.is_empty() {
            return Err(Error::invalid(
                "lung segmentation task",
                format!("{}: no train or test masks", self.data.display()),
            ));
        }
        let dev: Device = encoder.device().clone();
        let train_b = lung::batches(&train, size, self.batch, &dev)?;
        let test_b = lung::batches(&test, size, self.batch, &dev)?;
        let cfg = HeadConfig::linear(&encoder.feature_info(), 1);
        let opts = TrainOptions {
            epochs: self.epochs,
            lr: self.lr,
            seed: self.seed,
            ..Default::default()
        };
        let (trained, _) = train_segmentation(encoder, &cfg, &train_b, &[], &opts)?;
        let dice = evaluate(encoder, &trained.head, &test_b, Activation::Sigmoid)?;
        Ok(vec![TaskResult {
            task: "lung-seg/dice".into(),
            metric: "Dice".into(),
            ids: test.iter().map(|s| s.id.clone()).collect(),
            groups: test.iter().map(|s| s.patient.clone()).collect(),
            predictions: Predictions::PerSample {
                values: dice.iter().map(|d| d.mean).collect(),
            },
        }])
    }
}
