//! Zero-shot finding detection on cxr-findings with a UniCL-style dual encoder (MI2 /
//! MedImageInsight: DaViT image tower, or a DINOv2 one): for each finding, the positive
//! prompt ensemble ("chest x-ray showing {}") against the negative one ("no {}"), scored by
//! AUROC on the pack's test split, and finding-prompt → image retrieval recall@k (a query is
//! a hit when an image with that finding ranks in the top k).
//!
//! `cargo run --release --example zero_shot_findings -- --help`
//!
//! - `--mi2 DIR`: a MedImageInsight release folder (`vision_model/medimageinsigt-v1.0.0.pt`,
//!   `language_model/clip_tokenizer_4.16.2/`, see `dual_encoder::mi2`): the real MI2
//!   zero-shot evaluation (≈0.6 B parameters at 480 px: minutes on a CPU).
//! - `--checkpoint FILE` with `--image-tower davit`: one UniCL safetensors with every key,
//!   the MI2 preset or `--mi2-config`, and `--tokenizer`. With `--image-tower dinov2`: a
//!   DINOv2-layout `image_encoder.*` as given by `--image-config`.
//! - Neither: both towers are random (DaViT-tiny at 64 px with MI2's structure, or a
//!   ViT-tiny/14 at 224 px, and a tiny text tower over the test fixture's 674-token
//!   vocabulary): expect AUROCs scattered around 0.5 and chance-level recall — the pipeline
//!   runs, but nothing was learned. The random DaViT-tiny model needs a few seconds for the
//!   107 test images.
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Parser;
use cxr_core::ranges::at_least_one;
use cxr_data::{decode_file, DecodeOptions, ImageProcessor, Manifest, ManifestSpec, Split};
use dual_encoder::{
    per_finding_auroc, recall_at_k, unicl_var_builder, DualEncoder, Mi2, Mi2Config, Mi2Files,
    Templates, TextConfig, TextTokenizer, TextTransformer, TokenizerFiles, ZeroShotClassifier,
};
use vit_backbone::{DavitConfig, Dinov2Config, Dinov2Model};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Tower {
    /// MI2's DaViT (`image_encoder.convs.*`, `image_encoder.blocks.*`).
    Davit,
    /// DINOv2 / RAD-DINO (`image_encoder.embeddings.*`, `image_encoder.encoder.*`).
    Dinov2,
}

#[derive(Parser, Debug)]
#[command(about = "Zero-shot AUROC per finding on cxr-findings with a UniCL-style dual encoder")]
struct Args {
    /// A MedImageInsight (MI2) folder: weights, tokenizer and optional config.json in it.
    #[arg(long, conflicts_with = "checkpoint")]
    mi2: Option<PathBuf>,
    /// UniCL-layout safetensors checkpoint; random init when absent (and no --mi2).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Image tower architecture.
    #[arg(long, value_enum, default_value = "davit")]
    image_tower: Tower,
    /// Mi2Config JSON for `--checkpoint` with the DaViT tower (default: the MI2 preset).
    #[arg(long)]
    mi2_config: Option<PathBuf>,
    /// CLIP tokenizer.json (default: the crate's tiny test tokenizer).
    #[arg(
        long,
        default_value = "crates/dual-encoder/tests/fixtures/tokenizer/tokenizer.json"
    )]
    tokenizer: PathBuf,
    /// Text tower of the DINOv2 model: a JSON config file, or `mi2`, `unicl-base`, `tiny`.
    #[arg(long, default_value = "tiny")]
    text_config: String,
    /// DINOv2 config.json of the image tower under `image_encoder.` (default ViT-tiny/14, 224 px).
    #[arg(long)]
    image_config: Option<PathBuf>,
    /// The cxr-findings pack.
    #[arg(long, default_value = "../shared/data/cxr-findings")]
    // (relative to the workspace root: a checkout beside /work/shared; pass an absolute path
    // from elsewhere)
    data: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16, value_parser = at_least_one::<usize>)]
    batch: usize,
    /// Evaluate at most this many test images.
    #[arg(long, value_parser = at_least_one::<usize>)]
    limit: Option<usize>,
}

fn text_config(name: &str, vocab: usize) -> anyhow::Result<TextConfig> {
    Ok(match name {
        "mi2" => TextConfig::mi2(),
        "unicl-base" => TextConfig::unicl_base(),
        // the prompts need more than the tiny preset's 16 tokens with the tiny vocabulary
        "tiny" => TextConfig {
            context_length: 77,
            ..TextConfig::tiny(vocab)
        },
        path => TextConfig::from_file(path.as_ref())?,
    })
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let args = Args::parse();
    let t0 = Instant::now();
    let dev = Device::Cpu;
    let manifest = Manifest::from_csv(args.data.join("labels.csv"), &ManifestSpec::cxr_findings())?;
    let mut test = manifest.indices_in(Split::Test);
    if let Some(n) = args.limit {
        test.truncate(n);
    }
    // every finding but the "no_finding" column
    let findings: Vec<(usize, String)> = manifest
        .label_names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.as_str() != "no_finding")
        .map(|(i, n)| (i, n.replace('_', " ")))
        .collect();

    let (model, tok, what) = build(&args, &dev)?;
    let processor = ImageProcessor::from_preprocessing(&model.image_encoder().preprocessing());
    println!("model: {what}; {} test images", test.len());
    if args.mi2.is_none() && args.checkpoint.is_none() {
        println!("(random weights: no checkpoint given, so expect AUROC ≈ 0.5 and chance recall)");
    }

    let names: Vec<&str> = findings.iter().map(|(_, n)| n.as_str()).collect();
    let zs = ZeroShotClassifier::new(
        &model,
        &tok,
        &names,
        &Templates::cxr_positive(),
        Some(&Templates::cxr_negative()),
    )?;
    let mut scores = Vec::new();
    let mut logits = Vec::new();
    for chunk in test.chunks(args.batch) {
        let pixels = chunk
            .iter()
            .map(|&i| {
                let img = decode_file(&manifest.records[i].image, &DecodeOptions::default())?;
                Ok(processor.apply_tensor(&img, &dev)?)
            })
            .collect::<anyhow::Result<Vec<Tensor>>>()?;
        let emb = model.encode_image(&Tensor::stack(&pixels, 0)?, false)?;
        scores.push(zs.binary_scores(&model, &emb)?);
        logits.push(zs.logits(&model, &emb)?);
    }
    let scores = Tensor::cat(&scores, 0)?;
    // [C, N]: each finding's positive prompt ensemble as a query over the test images
    let by_finding: Vec<Vec<f32>> = Tensor::cat(&logits, 0)?.t()?.to_vec2()?;
    let labels: Vec<Vec<Option<bool>>> = test
        .iter()
        .map(|&i| {
            findings
                .iter()
                .map(|(j, _)| manifest.records[i].labels[*j].map(|v| v > 0.5))
                .collect()
        })
        .collect();
    let aurocs = per_finding_auroc(&scores, &labels)?;
    println!("{:<20} {:>9} {:>7}", "finding", "positives", "AUROC");
    let mut defined = Vec::new();
    for ((_, name), (j, a)) in findings.iter().zip(aurocs.iter().enumerate()) {
        let pos = labels.iter().filter(|l| l[j] == Some(true)).count();
        match a {
            Some(a) => {
                defined.push(*a);
                println!("{name:<20} {pos:>9} {a:>7.3}");
            }
            None => println!("{name:<20} {pos:>9} {:>7}", "n/a"),
        }
    }
    let mean = defined.iter().sum::<f64>() / defined.len().max(1) as f64;
    println!("macro AUROC over {} findings: {mean:.3}", defined.len());

    let (queries, relevant): (Vec<Vec<f32>>, Vec<Vec<usize>>) = by_finding
        .into_iter()
        .enumerate()
        .map(|(j, row)| {
            let pos: Vec<usize> = (0..labels.len())
                .filter(|&i| labels[i][j] == Some(true))
                .collect();
            (row, pos)
        })
        .filter(|(_, pos)| !pos.is_empty())
        .unzip();
    let recalls = [1, 5, 10]
        .iter()
        .map(|&k| Ok(format!("R@{k} {:.3}", recall_at_k(&queries, &relevant, k)?)))
        .collect::<anyhow::Result<Vec<String>>>()?;
    println!(
        "finding prompt → image retrieval over {} findings with positives: {}",
        queries.len(),
        recalls.join(", ")
    );
    println!("({:.1} s)", t0.elapsed().as_secs_f64());
    Ok(())
}

/// The dual encoder, its tokenizer and a one-line description, as the arguments ask.
fn build(args: &Args, dev: &Device) -> anyhow::Result<(DualEncoder, TextTokenizer, String)> {
    if let Some(dir) = &args.mi2 {
        let m = Mi2::from_dir(dir, DType::F32, dev)?;
        let what = format!(
            "MI2 from {} (DaViT {:?} at {} px, text width {} × {} layers)",
            dir.display(),
            m.config().image.embed_dims,
            m.config().image.image_size,
            m.config().text.width,
            m.config().text.layers
        );
        let (model, tok, _) = m.into_parts();
        return Ok((model, tok, what));
    }
    let tok0 = TextTokenizer::from_file(&args.tokenizer, 2)?;
    if args.image_tower == Tower::Davit {
        if let Some(p) = &args.checkpoint {
            let files = Mi2Files {
                config: args.mi2_config.clone(),
                ..Mi2Files::single(p, TokenizerFiles::Json(args.tokenizer.clone()))
            };
            let (model, tok, cfg) = Mi2::load(&files, DType::F32, dev)?.into_parts();
            let what = format!(
                "MI2 checkpoint {} (DaViT {:?})",
                p.display(),
                cfg.image.embed_dims
            );
            return Ok((model, tok, what));
        }
        // random tiny MI2: prompts need more than the tiny preset's 16 tokens
        let mut cfg = Mi2Config::tiny(tok0.vocab_size());
        cfg.text.context_length = 77;
        let tok = TextTokenizer::from_file(&args.tokenizer, 77)?;
        let varmap = VarMap::new();
        let model = Mi2::build(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev))?;
        let what = format!(
            "random tiny MI2-architecture model (DaViT {:?} at {} px = DavitConfig::tiny, text width {} × {} layers)",
            cfg.image.embed_dims,
            DavitConfig::tiny().image_size,
            cfg.text.width,
            cfg.text.layers
        );
        return Ok((model, tok, what));
    }
    let cfg = text_config(&args.text_config, tok0.vocab_size())?;
    let tok = TextTokenizer::from_file(&args.tokenizer, cfg.context_length)?;
    let img_cfg = match &args.image_config {
        Some(p) => Dinov2Config::from_file(p)?,
        None => Dinov2Config::vit_tiny(224),
    };
    let varmap = VarMap::new();
    let vb = match &args.checkpoint {
        Some(p) => unicl_var_builder(p, DType::F32, dev)?,
        None => VarBuilder::from_varmap(&varmap, DType::F32, dev),
    };
    let image = Dinov2Model::new(&img_cfg, vb.pp("image_encoder"))?;
    let text = TextTransformer::new(&cfg, vb.clone())?;
    let model = DualEncoder::new(Box::new(image), Box::new(text), vb)?;
    let what = format!(
        "DINOv2 {0}x{0} px; text width {1}, {2} layers, context {3}",
        img_cfg.image_size, cfg.width, cfg.layers, cfg.context_length
    );
    let what = format!(
        "{}: {what}",
        args.checkpoint
            .as_ref()
            .map_or("random init".into(), |p| p.display().to_string())
    );
    Ok((model, tok, what))
}
