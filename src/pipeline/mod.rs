//! The whole toolkit in one run: embed → probe → segment → report → scaling, on the real
//! chest X-ray packs, with one encoder seen only through [`cxr_core::Encoder`].
//!
//! Each stage calls the library crates directly, prints what it did and its headline
//! number with a 95% bootstrap interval, and adds a section to `summary.json` in
//! [`PipelineConfig::out`]:
//!
//! | stage | what | headline |
//! |---|---|---|
//! | [`Stage::Embed`] | cxr-mini images → pooled embeddings (`embeddings.safetensors`) | same-patient minus different-patient cosine similarity |
//! | [`Stage::Probe`] | frozen features of cxr-findings → L2 logistic regression per finding, `C` on val; F1 at the threshold chosen on val | macro test AUROC |
//! | [`Stage::Segment`] | linear head on frozen patch tokens, cxr-mini lung masks | mean test Dice |
//! | [`Stage::Report`] | LLaVA-style projector + tiny llama trained on cxr-mini's metadata reports, greedy generation | ROUGE-L, BLEU-4, clinical F1 |
//! | [`Stage::Scaling`] | continual DINOv2 pretraining of the encoder on nested subsets, probe + lung-seg per subset, power-law fits | fitted exponent per task, figure |
//!
//! Numbers at the default settings are small-data, small-model numbers: they show that the
//! pipeline runs and that its intervals are honest, not that the demo encoder is good.
mod embed;
mod error;
mod probe;
mod report;
mod scaling;
mod segment;
mod summary;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use cxr_core::Encoder;
use vit_backbone::{encoder_kind, open_encoder, EncoderKind};

pub use error::{Error, Result};
pub use summary::{Headline, StageSummary, Summary};

/// One step of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Stage {
    /// Embed cxr-mini and compare same-patient with different-patient similarity.
    Embed,
    /// Logistic-regression probes of the 14 findings + No Finding on cxr-findings.
    Probe,
    /// Linear lung-segmentation head on cxr-mini.
    Segment,
    /// Report generation and scoring on cxr-mini.
    Report,
    /// Nested-subset continual-pretraining study with power-law fits.
    Scaling,
}

impl Stage {
    /// Every stage, in run order.
    pub const ALL: [Stage; 5] = [
        Stage::Embed,
        Stage::Probe,
        Stage::Segment,
        Stage::Report,
        Stage::Scaling,
    ];

    /// The stage's name on the command line and in `summary.json`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Embed => "embed",
            Stage::Probe => "probe",
            Stage::Segment => "segment",
            Stage::Report => "report",
            Stage::Scaling => "scaling",
        }
    }

    /// Parses a stage name.
    pub fn parse(s: &str) -> Result<Self> {
        Stage::ALL
            .into_iter()
            .find(|st| st.name() == s.trim())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown stage {s:?} (embed, probe, segment, report, scaling)"
                ))
            })
    }
}

/// Settings of the report-generation stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportSettings {
    /// Optimizer steps (projector and the whole tiny decoder).
    pub steps: usize,
    /// Reports per step.
    pub batch: usize,
    /// Decoder width.
    pub width: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Byte-level BPE vocabulary size learned on the training reports.
    pub vocab: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// New-token budget of greedy generation.
    pub max_new_tokens: usize,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            steps: 60,
            batch: 8,
            width: 128,
            layers: 2,
            vocab: 400,
            lr: 2e-3,
            max_new_tokens: 48,
        }
    }
}

/// Settings of the scaling stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScalingSettings {
    /// Nested subset sizes (distinct pretraining images), ascending.
    pub sizes: Vec<usize>,
    /// Pretraining steps per subset (the fixed compute budget).
    pub steps: u64,
    /// Images per step.
    pub batch: usize,
    /// Global crop size (a multiple of 14); local crops are half.
    pub crop: usize,
    /// Finding columns of cxr-findings probed per subset.
    pub labels: Vec<String>,
    /// Epochs of the linear lung head per subset.
    pub seg_epochs: usize,
    /// DINOv2 TOML the cells start from.
    pub config: PathBuf,
    /// Sizes the fitted curves are extrapolated to.
    pub extrapolate: Vec<f64>,
}

impl Default for ScalingSettings {
    fn default() -> Self {
        Self {
            sizes: vec![16, 32, 64, 128],
            steps: 16,
            batch: 8,
            crop: 56,
            labels: vec!["effusion".into(), "cardiomegaly".into()],
            seg_epochs: 20,
            config: repo_root().join("crates/dino-pretrain/configs/vit_tiny_cxr.toml"),
            extrapolate: vec![1_000.0, 10_000.0],
        }
    }
}

/// Everything the pipeline needs; [`Default`] is the README's run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineConfig {
    /// Encoder folder: Hugging Face DINOv2 (the demo encoder by default), DaViT or MI2; the
    /// scaling stage needs DINOv2.
    pub model: PathBuf,
    /// The cxr-mini pack (images, masks, labels.csv).
    pub mini: PathBuf,
    /// The cxr-findings pack.
    pub findings: PathBuf,
    /// Output folder (`summary.json`, tables, plots, checkpoints).
    pub out: PathBuf,
    /// Stages to run, in pipeline order.
    pub stages: Vec<Stage>,
    /// Bootstrap resamples of every interval.
    pub bootstrap: usize,
    /// Seed of bootstraps, heads and training.
    pub seed: u64,
    /// Epochs of the segmentation stage's linear head.
    pub seg_epochs: usize,
    /// Report stage settings.
    pub report: ReportSettings,
    /// Scaling stage settings.
    pub scaling: ScalingSettings,
    /// Show progress bars.
    pub progress: bool,
}

/// The repository root (where `models/` and `crates/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared data folder: `$CXR_SHARED`, else `shared/` beside the checkout, else two
/// levels up (worktrees under `wt/<name>`).
pub fn shared_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CXR_SHARED") {
        return PathBuf::from(p);
    }
    let root = repo_root();
    let beside = root.join("../shared");
    if beside.is_dir() {
        beside
    } else {
        root.join("../../shared")
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        let data = shared_dir().join("data");
        Self {
            model: repo_root().join("models/cxr-dino-vit-tiny"),
            mini: data.join("cxr-mini"),
            findings: data.join("cxr-findings"),
            out: PathBuf::from("out/pipeline"),
            stages: Stage::ALL.to_vec(),
            bootstrap: 500,
            seed: 0,
            seg_epochs: 40,
            report: ReportSettings::default(),
            scaling: ScalingSettings::default(),
            progress: true,
        }
    }
}

/// Loads the encoder of `dir` on the CPU: a DINOv2, DaViT or MI2 folder, as its
/// `config.json` says ([`vit_backbone::open_encoder`]).
pub fn load_encoder(dir: &Path) -> Result<Box<dyn Encoder>> {
    open_encoder(dir, DType::F32, &Device::Cpu)
        .map_err(|e| Error::stage("load encoder", format!("{}: {e}", dir.display())))
}

/// The scaling stage continues DINOv2 pretraining from the encoder's weights, which only a
/// DINOv2 folder can give; say so before any stage runs.
fn check_scaling_encoder(cfg: &PipelineConfig) -> Result<()> {
    if !cfg.stages.contains(&Stage::Scaling) {
        return Ok(());
    }
    match encoder_kind(&cfg.model) {
        Ok(EncoderKind::Dinov2) => Ok(()),
        Ok(kind) => Err(Error::stage(
            "scaling",
            format!(
                "{} holds a {kind} encoder, and the scaling stage continues DINOv2 \
                 pretraining: leave `scaling` out of --stages for this encoder",
                cfg.model.display()
            ),
        )),
        Err(e) => Err(Error::stage(
            "load encoder",
            format!("{}: {e}", cfg.model.display()),
        )),
    }
}

/// Runs the chosen stages, printing one block per stage through `log`, and writes
/// `summary.json` (after every stage, so that an interrupted run keeps what it finished).
pub fn run(cfg: &PipelineConfig, log: &mut dyn FnMut(&str)) -> Result<Summary> {
    let t0 = Instant::now();
    check_scaling_encoder(cfg)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    let encoder = load_encoder(&cfg.model)?;
    let info = encoder.feature_info();
    log(&format!(
        "encoder {}: {} blocks, width {}, patch {}, input {:?}",
        cfg.model.display(),
        info.num_layers(),
        info.embed_dim,
        info.patch_stride,
        encoder.preprocessing().crop
    ));
    let mut stages: Vec<Stage> = cfg.stages.clone();
    stages.sort();
    stages.dedup();
    let mut summary = Summary::new(cfg);
    for (i, &stage) in stages.iter().enumerate() {
        log(&format!(
            "\n[{}/{}] {} — {}",
            i + 1,
            stages.len(),
            stage.name(),
            describe(stage)
        ));
        let t = Instant::now();
        let mut s = match stage {
            Stage::Embed => embed::run(cfg, encoder.as_ref(), log)?,
            Stage::Probe => probe::run(cfg, encoder.as_ref(), log)?,
            Stage::Segment => segment::run(cfg, encoder.as_ref(), log)?,
            Stage::Report => report::run(cfg, encoder.as_ref(), log)?,
            Stage::Scaling => scaling::run(cfg, log)?,
        };
        s.seconds = t.elapsed().as_secs_f64();
        log(&format!(
            "{} done in {:.0} s: {}",
            stage.name(),
            s.seconds,
            s.headline.show()
        ));
        summary.stages.insert(stage.name().to_string(), s);
        summary.seconds = t0.elapsed().as_secs_f64();
        summary.write(&cfg.out)?;
    }
    Ok(summary)
}

/// One line per stage, for logs and `--help`.
pub fn describe(stage: Stage) -> &'static str {
    match stage {
        Stage::Embed => "embed every cxr-mini image; same- vs different-patient cosine similarity",
        Stage::Probe => {
            "logistic-regression probes (C on val) of 15 findings on cxr-findings; test AUROC and F1"
        }
        Stage::Segment => "linear lung-segmentation head on frozen patch tokens; test Dice",
        Stage::Report => {
            "projector + tiny llama trained on cxr-mini's metadata reports; ROUGE-L, BLEU-4, clinical F1"
        }
        Stage::Scaling => {
            "continual DINOv2 pretraining on nested subsets; probe + lung Dice per subset; power-law fit and plot"
        }
    }
}
