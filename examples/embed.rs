//! Embed chest X-rays (PNG, JPEG or DICOM) with a DINOv2-family or MI2 encoder and write the
//! embeddings to safetensors.
//!
//! ```text
//! cargo run --release --example embed -- --images ../shared/data/cxr-mini/images
//! cargo run --release --example embed -- --hub microsoft/rad-dino --images DIR  # from the HF cache
//! cargo run --release --example embed -- --shards DIR   # tar shards from cxr-data's write_shards
//! ```
//!
//! Prints how many images were embedded, the embedding width and speed, and — when the image
//! folder sits beside a `labels.csv` with a `patient_id` column — how much more similar two
//! images of the same patient are than two images of different patients, a quick sign that the
//! encoder sees anatomy rather than noise (on the first 2000 images; with --shards the patients
//! come from each sample's metadata).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use cxr::core::{Encoder, FeatureRequest};
use cxr::data::{DecodeOptions, ImageProcessor, ImageSource, ShardIndex};
use cxr::vit::{open_cached_encoder, open_encoder};
use cxr_core::ranges::at_least_one;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// The model shipped in this repository, used when neither --model nor --hub is given.
const DEFAULT_MODEL: &str = "models/cxr-dino-vit-tiny";

/// The same-patient summary compares every pair: at most this many images (the first).
const SUMMARY_IMAGES: usize = 2000;

#[derive(Parser, Debug)]
#[command(about = "Embed chest X-rays with a DINOv2 / RAD-DINO or MI2 encoder", long_about = None)]
struct Args {
    /// Folder of images (PNG, JPEG, DICOM) or a single image file.
    #[arg(long, default_value = "../shared/data/cxr-mini/images")]
    images: PathBuf,
    /// Instead of --images: a folder of tar shards (cxr-data's write_shards), every sample.
    #[arg(long)]
    shards: Option<PathBuf>,
    /// Model directory: Hugging Face DINOv2/RAD-DINO layout (config.json, model.safetensors
    /// and, ideally, preprocessor_config.json), or a DaViT / MI2 folder (its image tower).
    /// Defaults to the small model shipped in models/.
    #[arg(long, conflicts_with = "hub")]
    model: Option<PathBuf>,
    /// Hugging Face repository to load from the local cache (HF_HOME), e.g. microsoft/rad-dino
    /// or lion-ai/MedImageInsights (its image tower). Nothing is downloaded: fetch it
    /// beforehand with `huggingface-cli download`.
    #[arg(long)]
    hub: Option<String>,
    /// Output file: `embeddings` [N, D] (pooled CLS) and `patch_mean` [N, D]; the file names
    /// (or shard sample keys) are in the safetensors metadata under `files` (JSON list).
    #[arg(long, default_value = "out/embeddings.safetensors")]
    out: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8, value_parser = at_least_one::<usize>)]
    batch: usize,
    /// Stop after this many images (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

fn list_images(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            matches!(ext.as_str(), "png" | "jpg" | "jpeg" | "dcm" | "dicom")
        })
        .collect();
    files.sort();
    Ok(files)
}

fn load_model(args: &Args) -> anyhow::Result<Box<dyn Encoder>> {
    let device = Device::Cpu;
    if let Some(repo) = &args.hub {
        return Ok(open_cached_encoder(repo, None, DType::F32, &device)?);
    }
    let dir = args
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    open_encoder(&dir, DType::F32, &device).with_context(|| {
        format!("cannot load the model: give --model DIR or --hub REPO (the default is {DEFAULT_MODEL})")
    })
}

/// `patient_id` per image stem, from a `labels.csv` beside the image folder.
fn patients_of(images: &Path) -> HashMap<String, String> {
    let csv = images.parent().map(|p| p.join("labels.csv"));
    let Some(text) = csv.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let (Some(id), Some(pid)) = (
        header.iter().position(|h| *h == "id" || *h == "file"),
        header.iter().position(|h| *h == "patient_id"),
    ) else {
        return HashMap::new();
    };
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let stem = f.get(id)?.trim_end_matches(".png").to_string();
            Some((stem, f.get(pid)?.to_string()))
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let args = Args::parse();
    let model = load_model(&args)?;
    let processor = ImageProcessor::from_preprocessing(&model.preprocessing());
    let (images, names, patients, from): (Box<dyn ImageSource>, Vec<String>, _, String) =
        match &args.shards {
            Some(dir) => {
                let index = ShardIndex::from_dir(dir)?;
                let n = index.len().min(if args.limit > 0 {
                    args.limit
                } else {
                    usize::MAX
                });
                let metas = index.metas()?;
                let names: Vec<String> = (0..n)
                    .map(|i| index.key(i).map(String::from))
                    .collect::<Result<_, _>>()?;
                let patients: HashMap<String, String> = names
                    .iter()
                    .zip(&metas)
                    .filter_map(|(k, m)| Some((k.clone(), m["patient"].as_str()?.to_string())))
                    .collect();
                let keep: Vec<usize> = (0..n).collect();
                let sub = cxr::data::Subset::new(std::sync::Arc::new(index), keep)?;
                (Box::new(sub), names, patients, dir.display().to_string())
            }
            None => {
                let mut files = list_images(&args.images)
                    .with_context(|| format!("listing {}", args.images.display()))?;
                if args.limit > 0 {
                    files.truncate(args.limit);
                }
                let names = files
                    .iter()
                    .map(|p| {
                        p.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    })
                    .collect();
                let patients = patients_of(&args.images);
                (
                    Box::new(files),
                    names,
                    patients,
                    args.images.display().to_string(),
                )
            }
        };
    if images.is_empty() {
        bail!("no PNG/JPEG/DICOM images in {from}");
    }
    let info = model.feature_info();
    println!(
        "model: {} layers, width {}, patch {}, input {:?}; {} images from {}",
        info.num_layers(),
        info.embed_dim,
        info.patch_stride,
        model.preprocessing().crop,
        images.len(),
        from
    );
    let bar = ProgressBar::new(images.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} images [{elapsed_precise} < {eta_precise}] {msg}",
    )?);
    let start = Instant::now();
    let (mut pooled, mut patch_mean, mut kept, mut skipped) = (vec![], vec![], vec![], vec![]);
    let all: Vec<usize> = (0..images.len()).collect();
    for chunk in all.chunks(args.batch) {
        let decoded: Vec<_> = chunk
            .par_iter()
            .map(|&i| {
                let img = images
                    .decode(i, &DecodeOptions::default())
                    .map_err(|e| e.to_string())?;
                processor
                    .apply_tensor(&img, &Device::Cpu)
                    .map_err(|e| e.to_string())
            })
            .collect();
        let mut batch = vec![];
        for (&i, r) in chunk.iter().zip(decoded) {
            match r {
                Ok(t) => {
                    batch.push(t);
                    kept.push(i);
                }
                Err(e) => skipped.push(format!("{}: {e}", images.name(i))),
            }
        }
        if !batch.is_empty() {
            let x = Tensor::stack(&batch, 0)?;
            let feats = model.forward_features(&x, &FeatureRequest::default())?;
            pooled.push(feats.pooled);
            patch_mean.push(feats.patch_tokens.mean(1)?);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_with_message("done");
    let secs = start.elapsed().as_secs_f64();
    if kept.is_empty() {
        bail!("no image could be decoded: {skipped:?}");
    }
    let pooled = Tensor::cat(&pooled, 0)?;
    let patch_mean = Tensor::cat(&patch_mean, 0)?;

    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let names: Vec<String> = kept.iter().map(|&i| names[i].clone()).collect();
    let metadata: HashMap<String, String> =
        [("files".to_string(), serde_json::to_string(&names)?)].into();
    let tensors = [("embeddings", pooled.clone()), ("patch_mean", patch_mean)];
    let views: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    safetensors::serialize_to_file(views, Some(metadata), &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;

    let n = kept.len();
    println!(
        "embedded {n} images in {secs:.1} s ({:.2} s/image) → {} (embeddings [{n}, {}])",
        secs / n as f64,
        args.out.display(),
        info.embed_dim
    );
    for s in &skipped {
        println!("skipped {s}");
    }
    let m = names.len().min(SUMMARY_IMAGES);
    if m < names.len() {
        println!("patient summary on the first {m} of {} images", names.len());
    }
    summarise(&pooled.narrow(0, 0, m)?, &names[..m], &patients)?;
    Ok(())
}

/// Cosine similarity of same-patient vs different-patient pairs.
fn summarise(
    emb: &Tensor,
    names: &[String],
    patients: &HashMap<String, String>,
) -> anyhow::Result<()> {
    let norm = emb.broadcast_div(&emb.sqr()?.sum_keepdim(1)?.sqrt()?)?;
    let sim: Vec<Vec<f32>> = norm.matmul(&norm.t()?)?.to_vec2()?;
    let stem = |s: &String| {
        s.rsplit_once('.')
            .map(|(a, _)| a.to_string())
            .unwrap_or(s.clone())
    };
    let (mut same, mut diff, mut all) = ((0f64, 0usize), (0f64, 0usize), (0f64, 0usize));
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            let s = sim[i][j] as f64;
            all = (all.0 + s, all.1 + 1);
            match (
                patients.get(&stem(&names[i])),
                patients.get(&stem(&names[j])),
            ) {
                (Some(a), Some(b)) if a == b => same = (same.0 + s, same.1 + 1),
                (Some(_), Some(_)) => diff = (diff.0 + s, diff.1 + 1),
                _ => {}
            }
        }
    }
    if all.1 > 0 {
        println!(
            "mean pairwise cosine similarity: {:.3} over {} pairs",
            all.0 / all.1 as f64,
            all.1
        );
    }
    if same.1 > 0 && diff.1 > 0 {
        println!(
            "same patient: {:.3} ({} pairs) vs different patients: {:.3} ({} pairs)",
            same.0 / same.1 as f64,
            same.1,
            diff.0 / diff.1 as f64,
            diff.1
        );
    }
    Ok(())
}
