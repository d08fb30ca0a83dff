//! The whole toolkit end to end on the real chest X-rays in `../shared/data`:
//!
//! ```text
//! cargo run --release --example pipeline
//! cargo run --release --example pipeline -- --stages probe,segment --out out/quick
//! ```
//!
//! One encoder (the demo `models/cxr-dino-vit-tiny` unless `--model` names another DINOv2,
//! DaViT or MI2 folder) runs through every stage via the `cxr_core::Encoder` trait; each
//! stage prints what it did and its headline number with a 95% bootstrap interval, and
//! `summary.json`, the tables and the plots land in `--out`. About 30 s on 2 CPU cores with
//! the demo encoder.
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use cxr::pipeline::{self, describe, PipelineConfig, Stage};
use cxr_core::ranges::at_least_one;

#[derive(Parser, Debug)]
#[command(
    about = "End-to-end run: embed → probe → segment → report → scaling, on cxr-mini and cxr-findings",
    long_about = "Runs one DINOv2-family encoder through the whole toolkit on the real data packs and \
writes summary.json, tables and plots into --out. Stages (choose with --stages, comma-separated):\n\
\n  embed    embed every cxr-mini image (embeddings.safetensors); how much more cosine-similar a patient's\n           own images are than other patients' (mean over patients, bootstrap CI over patients)\
\n  probe    frozen CLS + mean-patch features of cxr-findings; L2 logistic regression per finding with C\n           chosen on val; test AUROC and F1 (threshold chosen on val) per finding and macro,\n           patient-level bootstrap CI\
\n  segment  linear (1x1) lung-segmentation head on the frozen patch tokens, trained on cxr-mini's\n           train masks; mean test Dice with a patient-level bootstrap CI\
\n  report   LLaVA-style report generation: mlp2x_gelu projector + a tiny llama trained from scratch on\n           cxr-mini's metadata-template reports; greedy generation on the test split; ROUGE-L,\n           BLEU-4 and CheXpert-label F1 beside the most-common-text baseline\
\n  scaling  continual DINOv2 pretraining of the encoder on nested subsets of the train splits (same\n           steps x batch per subset), probe + lung Dice per subset, power-law fit a - b*n^(-c) with\n           bootstrap refits, scaling.png/.svg; the study folder resumes\n\
\nNumbers at these settings test the machinery on small data with a small encoder; they say nothing \
about clinical quality. Every stage prints its numbers as they come out."
)]
struct Args {
    /// Stages to run, comma-separated (embed, probe, segment, report, scaling).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "embed,probe,segment,report,scaling"
    )]
    stages: Vec<String>,
    /// Encoder folder: Hugging Face DINOv2/RAD-DINO, DaViT or MI2 (its image tower), told apart
    /// by config.json; the scaling stage needs DINOv2. Default: the demo encoder in models/.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The cxr-mini pack (default: shared/data/cxr-mini beside the checkout, or $CXR_SHARED).
    #[arg(long)]
    mini: Option<PathBuf>,
    /// The cxr-findings pack.
    #[arg(long)]
    findings: Option<PathBuf>,
    /// Output folder: summary.json, embeddings, report/, scaling/ (tables, figure, cells).
    #[arg(long, default_value = "out/pipeline")]
    out: PathBuf,
    /// Bootstrap resamples of every interval.
    #[arg(long, default_value_t = 500, value_parser = at_least_one::<usize>)]
    bootstrap: usize,
    /// Seed of bootstraps, heads, training and subsets.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// segment: epochs of the linear head.
    #[arg(long, default_value_t = 40, value_parser = at_least_one::<usize>)]
    seg_epochs: usize,
    /// report: optimizer steps (projector + whole tiny decoder).
    #[arg(long, default_value_t = 60, value_parser = at_least_one::<usize>)]
    report_steps: usize,
    /// report: decoder width (4 heads).
    #[arg(long, default_value_t = 128, value_parser = at_least_one::<usize>)]
    report_width: usize,
    /// report: decoder layers.
    #[arg(long, default_value_t = 2, value_parser = at_least_one::<usize>)]
    report_layers: usize,
    /// report: new-token budget of greedy generation.
    #[arg(long, default_value_t = 48, value_parser = at_least_one::<usize>)]
    report_max_new_tokens: usize,
    /// scaling: nested subset sizes, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [16usize, 32, 64, 128],
        value_parser = at_least_one::<usize>
    )]
    scaling_sizes: Vec<usize>,
    /// scaling: pretraining steps per subset (fixed compute).
    #[arg(long, default_value_t = 16, value_parser = at_least_one::<u64>)]
    scaling_steps: u64,
    /// scaling: images per pretraining step.
    #[arg(long, default_value_t = 8, value_parser = at_least_one::<usize>)]
    scaling_batch: usize,
    /// scaling: global crop in pixels (multiple of 14; local crops are half).
    #[arg(long, default_value_t = 56, value_parser = at_least_one::<usize>)]
    scaling_crop: usize,
    /// scaling: epochs of the lung head per subset.
    #[arg(long, default_value_t = 20, value_parser = at_least_one::<usize>)]
    scaling_seg_epochs: usize,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
}

fn main() -> anyhow::Result<()> {
    // the stages allocate and free the same large tensors over and over: keep them in the heap
    train_utils::retain_freed_heap_memory();
    let a = Args::parse();
    let d = PipelineConfig::default();
    let mut cfg = PipelineConfig {
        stages: a
            .stages
            .iter()
            .map(|s| Stage::parse(s))
            .collect::<Result<_, _>>()?,
        model: a.model.unwrap_or(d.model),
        mini: a.mini.unwrap_or(d.mini),
        findings: a.findings.unwrap_or(d.findings),
        out: a.out,
        bootstrap: a.bootstrap,
        seed: a.seed,
        seg_epochs: a.seg_epochs,
        progress: !a.quiet,
        ..d
    };
    cfg.report.steps = a.report_steps;
    cfg.report.width = a.report_width;
    cfg.report.layers = a.report_layers;
    cfg.report.max_new_tokens = a.report_max_new_tokens;
    cfg.scaling.sizes = a.scaling_sizes;
    cfg.scaling.steps = a.scaling_steps;
    cfg.scaling.batch = a.scaling_batch;
    cfg.scaling.crop = a.scaling_crop;
    cfg.scaling.seg_epochs = a.scaling_seg_epochs;
    for s in &cfg.stages {
        println!("  {:<8} {}", s.name(), describe(*s));
    }
    let t0 = Instant::now();
    let summary = pipeline::run(&cfg, &mut |l| println!("{l}"))?;
    println!("\nsummary ({:.0} s in all):", t0.elapsed().as_secs_f64());
    for stage in Stage::ALL {
        if let Some(s) = summary.stages.get(stage.name()) {
            println!(
                "  {:<8} {:>5.0} s  {}",
                stage.name(),
                s.seconds,
                s.headline.show()
            );
        }
    }
    println!("written: {}", cfg.out.join("summary.json").display());
    for s in summary.stages.values() {
        for o in &s.outputs {
            println!("         {o}");
        }
    }
    Ok(())
}
