//! Weighted kNN (cosine, k = 20, T = 0.07, as DINO's eval_knn) of frozen CLS features on the
//! cxr-findings findings: the train split is the memory bank, val and test are scored with
//! per-finding AUROC.
//!
//! ```text
//! cargo run --release -p dino-pretrain --example knn_eval -- \
//!     --model models/cxr-dino-vit-tiny --data ../shared/data/cxr-findings
//! cargo run --release -p dino-pretrain --example knn_eval -- \
//!     --model models/cxr-dino-vit-tiny --random-init --data ../shared/data/cxr-findings
//! ```
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Parser;
use cxr_core::ranges::at_least_one;
use cxr_data::{decode_file, DecodeOptions, ImageProcessor, Split};
use dino_pretrain::knn::{auroc, knn_scores};
use dino_pretrain::packs;
use vit_backbone::{Dinov2Config, Dinov2Model, ForwardOptions};

#[derive(Parser, Debug)]
#[command(about = "kNN probe (DINO-style weighted votes) of an encoder on cxr-findings findings")]
struct Args {
    /// Hugging Face model directory (config.json, model.safetensors, preprocessor_config.json).
    #[arg(long)]
    model: PathBuf,
    /// Use the directory's architecture and preprocessing with random weights (the baseline).
    #[arg(long)]
    random_init: bool,
    /// The cxr-findings pack.
    #[arg(long)]
    data: PathBuf,
    /// Neighbours.
    #[arg(long, default_value_t = 20, value_parser = at_least_one::<usize>)]
    k: usize,
    /// Vote temperature.
    #[arg(long, default_value_t = 0.07)]
    temperature: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn embed(model: &Dinov2Model, proc: &ImageProcessor, files: &[PathBuf]) -> anyhow::Result<Tensor> {
    let dev = Device::Cpu;
    let mut out = Vec::new();
    for chunk in files.chunks(32) {
        let px = chunk
            .iter()
            .map(|f| -> anyhow::Result<Tensor> {
                let img = decode_file(f, &DecodeOptions::default())?;
                Ok(proc.apply_tensor(&img, &dev)?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let px = Tensor::stack(&px, 0)?;
        let o = model.forward(&px, &ForwardOptions::default())?;
        out.push(o.pooler_output.detach());
    }
    Ok(Tensor::cat(&out, 0)?)
}

fn load(dir: &Path, random: bool) -> anyhow::Result<Dinov2Model> {
    if !random {
        return Ok(Dinov2Model::from_dir(dir, DType::F32, &Device::Cpu)?);
    }
    let cfg = Dinov2Config::from_file(&dir.join("config.json"))?;
    let vm = VarMap::new();
    // the VarMap keeps the variables alive inside the model's tensors
    Ok(Dinov2Model::new(
        &cfg,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?)
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let args = Args::parse();
    let manifest = packs::read_pack(&args.data)?;
    let proc = ImageProcessor::from_file(args.model.join("preprocessor_config.json"))?;
    let model = load(&args.model, args.random_init)?;
    let files = |split| -> Vec<PathBuf> {
        manifest
            .indices_in(split)
            .into_iter()
            .map(|i| args.data.join(&manifest.records[i].image))
            .collect()
    };
    let labels = |split| -> Vec<Vec<f32>> {
        manifest
            .indices_in(split)
            .into_iter()
            .map(|i| {
                manifest.records[i]
                    .labels
                    .iter()
                    .map(|l| l.unwrap_or(0.0))
                    .collect()
            })
            .collect()
    };
    let bank = embed(&model, &proc, &files(Split::Train))?;
    let bank_labels = labels(Split::Train);
    println!(
        "{} ({}): memory bank {} train images, {} findings, k = {}, T = {}",
        args.model.display(),
        if args.random_init {
            "random init"
        } else {
            "trained"
        },
        bank_labels.len(),
        manifest.label_names.len(),
        args.k,
        args.temperature
    );
    let mut results = serde_json::Map::new();
    for (name, split) in [("val", Split::Val), ("test", Split::Test)] {
        let q = embed(&model, &proc, &files(split))?;
        let y = labels(split);
        let scores = knn_scores(&bank, &bank_labels, &q, args.k, args.temperature)?;
        let mut per = serde_json::Map::new();
        let mut aucs = Vec::new();
        for (j, label) in manifest.label_names.iter().enumerate() {
            let s: Vec<f64> = scores.iter().map(|r| r[j]).collect();
            let p: Vec<bool> = y.iter().map(|r| r[j] > 0.5).collect();
            if let Some(a) = auroc(&s, &p) {
                per.insert(label.clone(), serde_json::json!(a));
                aucs.push(a);
            }
        }
        let mean = aucs.iter().sum::<f64>() / aucs.len().max(1) as f64;
        println!(
            "{name}: {} images, macro AUROC over {} findings = {mean:.4}",
            y.len(),
            aucs.len()
        );
        for (k, v) in &per {
            println!("  {k:20} {:.3}", v.as_f64().unwrap_or(f64::NAN));
        }
        results.insert(
            name.into(),
            serde_json::json!({"n": y.len(), "macro_auroc": mean, "per_finding": per}),
        );
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
