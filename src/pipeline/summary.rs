//! `summary.json`: the settings, and one section per stage with its headline number.
use std::collections::BTreeMap;
use std::path::Path;

use metrics::bootstrap::Interval;
use serde::Serialize;

use super::error::{Error, Result};
use super::PipelineConfig;

/// The number a stage is judged by.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Headline {
    /// Metric name, e.g. `macro AUROC (test)`.
    pub metric: String,
    /// Point estimate (`None` when undefined on this data).
    pub value: Option<f64>,
    /// 95% bootstrap interval.
    pub ci: Option<(f64, f64)>,
    /// Evaluation samples.
    pub n: usize,
}

impl Headline {
    /// From a bootstrap interval.
    pub fn from_interval(metric: impl Into<String>, iv: &Interval, n: usize) -> Self {
        Self {
            metric: metric.into(),
            value: iv.estimate,
            ci: iv.ci,
            n,
        }
    }

    /// `metric value [lo, hi] (n = …)`.
    pub fn show(&self) -> String {
        format!(
            "{} {} (n = {})",
            self.metric,
            show_interval(self.value, self.ci),
            self.n
        )
    }
}

/// `0.512 [0.456, 0.568]`, `-` when undefined.
pub fn show_interval(value: Option<f64>, ci: Option<(f64, f64)>) -> String {
    let v = value.map_or("-".to_string(), |v| format!("{v:.3}"));
    match ci {
        Some((lo, hi)) => format!("{v} [{lo:.3}, {hi:.3}]"),
        None => v,
    }
}

/// One stage's section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSummary {
    /// Wall-clock seconds of the stage.
    pub seconds: f64,
    /// The headline number.
    pub headline: Headline,
    /// Further numbers of the stage (per label, baselines, settings).
    pub details: serde_json::Value,
    /// Files the stage wrote.
    pub outputs: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The settings of the run.
    pub config: PipelineConfig,
    /// Wall-clock seconds so far (all stages run).
    pub seconds: f64,
    /// Finished stages by name.
    pub stages: BTreeMap<String, StageSummary>,
}

impl Summary {
    pub(crate) fn new(cfg: &PipelineConfig) -> Self {
        Self {
            config: cfg.clone(),
            seconds: 0.0,
            stages: BTreeMap::new(),
        }
    }

    /// Writes `dir/summary.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let p = dir.join("summary.json");
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::io(&p, e))?;
        train_utils::write_atomic(&p, &text).map_err(|e| Error::io(&p, e))
    }
}

pub(crate) fn path_string(p: &Path) -> String {
    p.display().to_string()
}
