//! LLaVA-style report generation on a frozen encoder: stage-1 training of the projector (or
//! stage 2 with `--lora-rank`: projector + LoRA on the decoder's q/v projections) on a
//! manifest + report CSV, then generation for a split.
//!
//! ```text
//! # stage 1 (projector only) with a random tiny llama and a BPE tokenizer trained on the
//! # training reports (a smoke test; pass --lm DIR for a real LlamaForCausalLM + tokenizer.json)
//! cargo run --release -p llava-bridge --example report_gen -- train \
//!     --manifest ../shared/data/cxr-mini/labels.csv --reports reports.csv \
//!     --encoder models/cxr-dino-vit-tiny --tiny-lm --steps 50 --out target/report-gen
//! cargo run --release -p llava-bridge --example report_gen -- generate \
//!     --manifest ../shared/data/cxr-mini/labels.csv --reports reports.csv \
//!     --encoder models/cxr-dino-vit-tiny --out target/report-gen --split test
//! ```
//! `reports.csv` has columns `id,report`; `id` is the manifest's path-column value (the image
//! file stem). `train` prints the loss every few steps and writes `<out>/projector.safetensors`
//! (transformers' `multi_modal_projector.*` names), `<out>/checkpoints/`, and with `--tiny-lm`
//! `<out>/lm/` (config.json, model.safetensors, tokenizer.json). `generate` writes
//! `<out>/generated-<split>.csv` (id, generated, reference) and prints the first reports.
//! A random frozen llama generates fluent-looking nonsense at best: the smoke test checks
//! plumbing. With `--tiny-lm --train-lm` every decoder weight trains too (from scratch, same
//! optimizer and learning rate as the projector) and the trained decoder replaces
//! `<out>/lm/model.safetensors`, so `generate` picks it up; `cxr_mini_eval` uses this for the
//! cxr-mini end-to-end run.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use clap::{Args, Parser, Subcommand};
use cxr_core::ranges::at_least_one;
use cxr_core::Encoder;
use cxr_data::{decode_file, DecodeOptions, ImageProcessor, Manifest, ManifestSpec, Split};
use llava_bridge::generate::finish_text;
use llava_bridge::init::{random_llama, save_llama_dir};
use llava_bridge::lora::{add_lora, LoraConfig};
use llava_bridge::template::{Conversation, PromptEncoder, FINDINGS_PROMPT};
use llava_bridge::train::{load_vars, ShuffledBatches, TrainConfig, Trainer};
use llava_bridge::{
    Decoding, GenerationConfig, Llama, LlamaConfig, LlamaKeys, LlavaModel, Projector,
    ReportGenerator, TextTokenizer, VisionFeatures, Weights,
};
use rand::SeedableRng;
use vit_backbone::open_encoder;

#[derive(Parser, Debug)]
#[command(about = "LLaVA-1.5-style report generation: train the projector (stage 1), generate")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Stage 1: train the projector (encoder and decoder frozen).
    Train(TrainArgs),
    /// Generate reports for one split with a trained projector.
    Generate(GenArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// Manifest CSV (cxr-data layout: id, patient_id, split columns).
    #[arg(long)]
    manifest: PathBuf,
    /// Report CSV with columns `id,report`.
    #[arg(long)]
    reports: PathBuf,
    /// Frozen encoder folder: HF-layout DINOv2 (config.json, model.safetensors,
    /// preprocessor_config.json), or a DaViT / MI2 folder.
    #[arg(long, default_value = "models/cxr-dino-vit-tiny")]
    encoder: PathBuf,
    /// LlamaForCausalLM directory with tokenizer.json; default `<out>/lm` (from --tiny-lm).
    #[arg(long)]
    lm: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "target/report-gen")]
    out: PathBuf,
    /// Manifest column with the image id.
    #[arg(long, default_value = "id")]
    path_column: String,
    /// Image path template relative to the manifest's folder.
    #[arg(long, default_value = "images/{}.png")]
    path_template: String,
    /// Use only the first N records of the split (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    common: Common,
    /// Build a random tiny llama (4 layers, width 256) and train a BPE tokenizer on the
    /// training reports, saved to `<out>/lm`.
    #[arg(long)]
    tiny_lm: bool,
    /// BPE vocabulary size for --tiny-lm.
    #[arg(long, default_value_t = 2000, value_parser = at_least_one::<usize>)]
    vocab: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 100, value_parser = at_least_one::<usize>)]
    steps: usize,
    /// Images per step.
    #[arg(long, default_value_t = 4, value_parser = at_least_one::<usize>)]
    batch: usize,
    /// Peak learning rate (LLaVA-1.5 stage 1: 1e-3).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed (shuffling, projector init, random llama).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stage 2: LoRA rank on the decoder's q/v projections (0 = stage 1, projector only).
    #[arg(long, default_value_t = 0)]
    lora_rank: usize,
    /// LoRA alpha (update scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// Also train every weight of the --tiny-lm decoder (from scratch, with the projector);
    /// the trained decoder replaces `<out>/lm/model.safetensors`. A random frozen decoder
    /// cannot learn a report language, so this is the way to get readable text from --tiny-lm.
    #[arg(long, requires = "tiny_lm")]
    train_lm: bool,
}

#[derive(Args, Debug)]
struct GenArgs {
    #[command(flatten)]
    common: Common,
    /// Split to generate for.
    #[arg(long, default_value = "test")]
    split: String,
    /// Projector weights; default `<out>/projector.safetensors`.
    #[arg(long)]
    projector: Option<PathBuf>,
    /// New-token budget.
    #[arg(long, default_value_t = 64, value_parser = at_least_one::<usize>)]
    max_new_tokens: usize,
    /// Beams (1 = greedy).
    #[arg(long, default_value_t = 1, value_parser = at_least_one::<usize>)]
    num_beams: usize,
}

struct Data {
    ids: Vec<String>,
    images: Vec<PathBuf>,
    reports: Vec<String>,
}

fn read_reports(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let reading = || format!("reading {}", path.display());
    let mut rdr = csv::Reader::from_path(path).with_context(reading)?;
    let headers = rdr.headers().with_context(reading)?.clone();
    let col = |n: &str| {
        headers
            .iter()
            .position(|h| h == n)
            .ok_or_else(|| anyhow!("{}: no `{n}` column", path.display()))
    };
    let (ic, rc) = (col("id")?, col("report")?);
    let mut out = HashMap::new();
    for row in rdr.records() {
        let row = row.with_context(reading)?;
        out.insert(row[ic].to_owned(), row[rc].to_owned());
    }
    Ok(out)
}

fn load_split(c: &Common, split: Split) -> anyhow::Result<Data> {
    let spec = ManifestSpec {
        path_column: c.path_column.clone(),
        path_template: c.path_template.clone(),
        patient_column: "patient_id".into(),
        label_columns: vec![],
        split_column: Some("split".into()),
    };
    let manifest = Manifest::from_csv(&c.manifest, &spec)?;
    let reports = read_reports(&c.reports)?;
    let mut d = Data {
        ids: vec![],
        images: vec![],
        reports: vec![],
    };
    for i in manifest.indices_in(split) {
        let r = &manifest.records[i];
        let id = r
            .image
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(report) = reports.get(&id) else {
            continue;
        };
        d.ids.push(id);
        d.images.push(r.image.clone());
        d.reports.push(report.clone());
        if c.limit > 0 && d.ids.len() == c.limit {
            break;
        }
    }
    if d.ids.is_empty() {
        bail!("no {split:?} record of the manifest has a report");
    }
    Ok(d)
}

fn pixels(proc: &ImageProcessor, paths: &[PathBuf]) -> anyhow::Result<Tensor> {
    let mut v = Vec::new();
    for p in paths {
        let img = decode_file(p, &DecodeOptions::default())?;
        v.push(proc.apply_tensor(&img, &Device::Cpu)?);
    }
    Ok(Tensor::stack(&v, 0)?)
}

/// The frozen encoder of `dir` (DINOv2, DaViT or MI2) and its image processor.
fn load_encoder(dir: &Path) -> anyhow::Result<(Box<dyn Encoder>, ImageProcessor)> {
    let enc = open_encoder(dir, DType::F32, &Device::Cpu)?;
    // the HF processor file when the folder has one (MI2 folders do not: the encoder's own)
    let file = dir.join("preprocessor_config.json");
    let proc = if file.is_file() {
        ImageProcessor::from_file(file)?
    } else {
        ImageProcessor::from_preprocessing(&enc.preprocessing())
    };
    Ok((enc, proc))
}

fn prompt_encoder(lm: &Llama, tokenizer: TextTokenizer) -> PromptEncoder {
    PromptEncoder {
        tokenizer,
        conversation: Conversation::vicuna_v1(),
        question: FINDINGS_PROMPT.into(),
        bos: lm.config().bos_token_id,
        eos: lm.config().eos_ids().first().copied(),
    }
}

fn train(a: &TrainArgs) -> anyhow::Result<()> {
    let c = &a.common;
    let data = load_split(c, Split::Train)?;
    println!("{} training images with reports", data.ids.len());
    let lm_dir = c.lm.clone().unwrap_or_else(|| c.out.join("lm"));
    if a.tiny_lm {
        let tok = TextTokenizer::train_bpe(data.reports.iter(), a.vocab, 2)?;
        let mut cfg = LlamaConfig::tiny(tok.vocab_size(), 256, 4, 4);
        cfg.bos_token_id = tok.token_to_id("<s>");
        cfg.eos_token_id = tok
            .token_to_id("</s>")
            .map(llava_bridge::config::TokenIds::One);
        cfg.pad_token_id = tok.token_to_id("<pad>");
        save_llama_dir(
            &lm_dir,
            &cfg,
            &random_llama(&cfg, 0.02, a.seed, &Device::Cpu)?,
        )?;
        tok.save(lm_dir.join("tokenizer.json"))?;
        println!(
            "random llama ({} tokens BPE) written to {}",
            tok.vocab_size(),
            lm_dir.display()
        );
    }
    let (mut lm, lm_vars) = if a.train_lm {
        trainable_llama(&lm_dir)?
    } else {
        (
            Llama::from_dir(&lm_dir, DType::F32, &Device::Cpu)?,
            Vec::new(),
        )
    };
    if a.train_lm {
        println!("training the whole decoder ({} tensors)", lm_vars.len());
    }
    let enc = prompt_encoder(
        &lm,
        TextTokenizer::from_file(lm_dir.join("tokenizer.json"))?,
    );
    let (encoder, proc) = load_encoder(&c.encoder)?;
    let vm = VarMap::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let lora_cfg = LoraConfig {
        rank: a.lora_rank,
        alpha: a.lora_alpha,
    };
    let lora_vars = if a.lora_rank > 0 {
        println!(
            "stage 2: projector + LoRA (rank {}, alpha {})",
            a.lora_rank, a.lora_alpha
        );
        add_lora(&mut lm, &lora_cfg, &vm, &mut rng)?
    } else {
        if !a.train_lm {
            println!("stage 1: projector only");
        }
        Vec::new()
    };
    let d_vision = encoder.feature_info().embed_dim;
    let projector = Projector::init(
        d_vision,
        lm.hidden_size(),
        &vm,
        "multi_modal_projector",
        &mut rng,
        &Device::Cpu,
    )?;
    let model = LlavaModel::new(
        encoder,
        ReportGenerator::new(projector, lm)?,
        VisionFeatures::Final,
    )?;
    // the encoder is frozen and there is no augmentation: extract every image's tokens once
    let mut feats = Vec::new();
    for chunk in data.images.chunks(8) {
        feats.push(model.image_features(&pixels(&proc, chunk)?)?);
    }
    let feats = Tensor::cat(&feats, 0)?;
    println!("image tokens {:?}", feats.dims());
    let examples: Vec<_> = data
        .reports
        .iter()
        .map(|r| enc.example(r))
        .collect::<Result<_, _>>()?;
    let gen = &model.generator;
    let mut vars = gen.projector.named_vars("multi_modal_projector");
    vars.extend(lora_vars.iter().cloned());
    vars.extend(lm_vars.iter().cloned());
    let mut trainer = Trainer::new(
        vars,
        TrainConfig {
            lr: a.lr,
            ..TrainConfig::stage1(a.steps)
        },
    )?;
    let ckpt = train_utils::CheckpointDir::new(c.out.join("checkpoints"), 2)?;
    let mut batches = ShuffledBatches::new(examples.len());
    for step in 0..a.steps {
        let idx = batches.next_batch(a.batch, &mut rng);
        let rows = Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            idx.len(),
            &Device::Cpu,
        )?;
        let batch: Vec<_> = idx.iter().map(|&i| examples[i].clone()).collect();
        let loss = gen.loss(&feats.index_select(&rows, 0)?, &batch)?;
        let s = trainer.step(&loss)?;
        if step % 10 == 0 || step + 1 == a.steps {
            println!(
                "step {step:4}  loss {:.4}  grad-norm {:.3}  lr {:.2e}",
                s.loss, s.grad_norm, s.lr
            );
        }
    }
    trainer.save(&ckpt, &rng, a.steps as u64)?;
    let tensors: HashMap<String, Tensor> = gen
        .projector
        .named_vars("multi_modal_projector")
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let path = c.out.join("projector.safetensors");
    candle_core::safetensors::save(&tensors, &path)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("projector written to {}", path.display());
    let lora_path = c.out.join("lora.safetensors");
    if lora_vars.is_empty() {
        let _ = std::fs::remove_file(&lora_path);
    } else {
        let t: HashMap<String, Tensor> = lora_vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&t, &lora_path)
            .with_context(|| format!("writing {}", lora_path.display()))?;
        let lora_json = c.out.join("lora.json");
        std::fs::write(&lora_json, serde_json::to_string(&lora_cfg)?)
            .with_context(|| format!("writing {}", lora_json.display()))?;
        println!("LoRA adapters written to {}", lora_path.display());
    }
    if !lm_vars.is_empty() {
        let cfg = LlamaConfig::from_file(lm_dir.join("config.json"))?;
        let t = lm_vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        save_llama_dir(&lm_dir, &cfg, &Weights::from_map("trained tiny llama", t))?;
        println!("trained decoder written to {}", lm_dir.display());
    }
    Ok(())
}

/// The decoder of `dir` built on `Var`s, so that every weight gets a gradient.
fn trainable_llama(dir: &Path) -> anyhow::Result<(Llama, Vec<(String, candle_core::Var)>)> {
    let cfg = LlamaConfig::from_file(dir.join("config.json"))?;
    let mut vars = Vec::new();
    let mut tensors = HashMap::new();
    for file in llava_bridge::weights::model_files(dir)? {
        let tensors_of_file = candle_core::safetensors::load(&file, &Device::Cpu)
            .with_context(|| format!("reading {}", file.display()))?;
        for (name, t) in tensors_of_file {
            let v = candle_core::Var::from_tensor(&t.to_dtype(DType::F32)?)?;
            tensors.insert(name.clone(), v.as_tensor().clone());
            vars.push((name, v));
        }
    }
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let w = Weights::from_map(dir.display().to_string(), tensors);
    let lm = Llama::new(&cfg, &w, &LlamaKeys::detect(&w)?)?;
    Ok((lm, vars))
}

fn generate(a: &GenArgs) -> anyhow::Result<()> {
    let c = &a.common;
    let split = match a.split.as_str() {
        "train" => Split::Train,
        "val" => Split::Val,
        "test" => Split::Test,
        s => bail!("unknown split {s:?} (train, val, test)"),
    };
    let data = load_split(c, split)?;
    let lm_dir = c.lm.clone().unwrap_or_else(|| c.out.join("lm"));
    let mut lm = Llama::from_dir(&lm_dir, DType::F32, &Device::Cpu)?;
    let tok = TextTokenizer::from_file(lm_dir.join("tokenizer.json"))?;
    let lora_path = c.out.join("lora.safetensors");
    if lora_path.exists() {
        // stage-2 adapters saved next to the projector
        let lora_json = c.out.join("lora.json");
        let reading = || format!("reading {}", lora_json.display());
        let cfg: LoraConfig =
            serde_json::from_str(&std::fs::read_to_string(&lora_json).with_context(reading)?)
                .with_context(reading)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let vars = add_lora(&mut lm, &cfg, &VarMap::new(), &mut rng)?;
        let t = candle_core::safetensors::load(&lora_path, &Device::Cpu)
            .with_context(|| format!("reading {}", lora_path.display()))?;
        load_vars(&vars, &t, &lora_path.display().to_string())?;
        println!(
            "LoRA adapters (rank {}) from {}",
            cfg.rank,
            lora_path.display()
        );
    }
    let enc = prompt_encoder(&lm, tok.clone());
    let (encoder, proc) = load_encoder(&c.encoder)?;
    let ppath = a
        .projector
        .clone()
        .unwrap_or_else(|| c.out.join("projector.safetensors"));
    let w = Weights::read(&[ppath], DType::F32, &Device::Cpu)?;
    let vm = VarMap::new();
    let d_vision = encoder.feature_info().embed_dim;
    let projector = Projector::load(
        &w,
        "multi_modal_projector",
        d_vision,
        lm.hidden_size(),
        &vm,
        DType::F32,
    )?;
    let eos = lm.config().eos_ids();
    let model = LlavaModel::new(
        encoder,
        ReportGenerator::new(projector, lm)?,
        VisionFeatures::Final,
    )?;
    let cfg = GenerationConfig {
        max_new_tokens: a.max_new_tokens,
        decoding: if a.num_beams > 1 {
            Decoding::Beam {
                num_beams: a.num_beams,
                length_penalty: 1.0,
                early_stopping: false,
            }
        } else {
            Decoding::Greedy
        },
        eos_token_ids: eos,
        stop_strings: vec!["</s>".into()],
    };
    let prompt = enc.prompt()?;
    let out_path = c.out.join(format!("generated-{}.csv", a.split));
    std::fs::create_dir_all(&c.out).with_context(|| format!("creating {}", c.out.display()))?;
    let writing = || format!("writing {}", out_path.display());
    let mut w = csv::Writer::from_path(&out_path).with_context(writing)?;
    w.write_record(["id", "generated", "reference"])
        .with_context(writing)?;
    let start = std::time::Instant::now();
    let mut n_tokens = 0;
    for (k, chunk) in data.images.chunks(4).enumerate() {
        let outs = model.generate(&pixels(&proc, chunk)?, &prompt, &cfg, Some(&tok))?;
        for (j, toks) in outs.iter().enumerate() {
            let i = k * 4 + j;
            n_tokens += toks.len();
            let text = finish_text(&tok, toks, &cfg)?;
            if i < 3 {
                println!("{}: {text}\n   reference: {}", data.ids[i], data.reports[i]);
            }
            w.write_record([&data.ids[i], &text, &data.reports[i]])
                .with_context(writing)?;
        }
    }
    w.flush().with_context(writing)?;
    println!(
        "{} reports ({n_tokens} tokens, {:.1} s) written to {}",
        data.ids.len(),
        start.elapsed().as_secs_f64(),
        out_path.display()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    match Cli::parse().cmd {
        Cmd::Train(a) => train(&a),
        Cmd::Generate(a) => generate(&a),
    }
}
