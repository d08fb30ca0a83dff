//! UniCL (or CLIP) continual pretraining of a small dual encoder on a chest X-ray manifest,
//! then zero-shot AUROC per finding on the test split with patient-level bootstrap CIs.
//!
//! `cargo run --release -p unicl-pretrain --example pretrain_unicl -- --help`
//!
//! `train` learns a CLIP-style BPE tokenizer from the prompt corpus (saved as
//! `OUT/tokenizer/tokenizer.json`), trains ViT-tiny/14 + a 128-wide 4-layer text tower with
//! the chosen objective, validates zero-shot on the val split every `--val-every` steps and
//! writes `OUT/test_step0.json` (the untrained model's test scores, when starting from step
//! 0), `OUT/test_final.json` and their AUROC reports. `compare` prints a markdown table of
//! several score files and paired bootstrap differences of macro AUROC.
//!
//! With a pretrained image tower, `--init-image DIR --lock-image` trains only the text side
//! (LiT); `--mention-absent 2` adds negated findings to the label prompts ("…, no
//! pneumothorax"), the phrasing the zero-shot negative prompts use; `--text-unit finding`
//! makes each text one statement about one finding ("chest x-ray with effusion" / "no
//! mass"), labelled by that statement; `--absent-template T` (repeatable) sets how absent
//! findings are phrased, so that every word of the zero-shot negative prompts is one the
//! text tower has trained on; `--score-train` scores
//! the training split too, to tell memorisation from learning. `--shards DIR` reads the pairs
//! from tar shards that cxr-data's `write_shards --split all` made of such a pack.
//!
//! Expect on cxr-findings (322 training images, 2 CPU cores): roughly 1–3 s per step at
//! batch 32 and 84 px; the loss falls from about ln(32) ≈ 3.5; zero-shot AUROCs stay close
//! to 0.5–0.6 with ±0.15 intervals: this is a pipeline proof on small data, not a model.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use candle_core::{Device, Tensor};
use clap::{Parser, Subcommand, ValueEnum};
use cxr_core::ranges::at_least_one;
use cxr_core::{FeatureRequest, Preprocessing, Resample};
use cxr_data::{ImageProcessor, Manifest, ManifestSpec, ShardIndex, Split, NIH_FINDINGS};
use dual_encoder::{Mi2Files, Templates};
use metrics::bootstrap::BootstrapConfig;
use train_utils::{fingerprint, record_run_input};
use unicl_loss::{LossKind, PromptTemplates, TextUnit};
use unicl_pretrain::eval::{
    auroc_report, display_name, paired_mean_macro_auroc, zero_shot_scores, AurocReport, ScoreFile,
};
use unicl_pretrain::{
    run, train_clip_bpe, untrained_tokens, ImageTowerConfig, LoopOptions, PairDataset, PairSource,
    RunOptions, TrainConfig, UniclTrainer, Validation,
};

#[derive(Parser, Debug)]
#[command(
    about = "UniCL / CLIP image-text pretraining of a small dual encoder on chest X-rays, with zero-shot AUROC evaluation"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Objective {
    /// UniCL: images whose texts carry the same label (equal finding sets, or with
    /// `--text-unit finding` the same finding statement) are each other's positives.
    Unicl,
    /// CLIP InfoNCE: every image's own text is its only positive.
    Clip,
}

/// Where the image–label rows come from.
enum Rows {
    Manifest(Manifest),
    Shards(std::sync::Arc<ShardIndex>),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TextUnitArg {
    /// One text names the whole finding set ("chest x-ray with effusion and mass").
    LabelSet,
    /// One text states one finding, present or absent ("chest x-ray with effusion", "no
    /// mass"): the phrasing of per-finding zero-shot prompts.
    Finding,
    /// Every text of a step states the same finding, drawn per step: "chest x-ray with X"
    /// for the images with X, "no X" for the rest, so each step contrasts one finding's two
    /// statements across the batch.
    BatchFinding,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DeviceArg {
    /// The CPU (always available).
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

impl DeviceArg {
    fn device(self) -> anyhow::Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda => {
                let device = Device::new_cuda(0).map_err(|e| {
                    anyhow!(
                        "--device cuda: {e} (build the example with `--features cuda` on a machine with the CUDA toolkit)"
                    )
                })?;
                // keep freed GPU memory pooled across synchronised steps
                if let Err(e) = fused_ops::retain_freed_gpu_memory(&device) {
                    eprintln!(
                        "warning: freed GPU memory goes back to the driver at each sync: {e}"
                    );
                }
                Ok(device)
            }
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Train, validate zero-shot every N steps, evaluate the test split before and after.
    Train(Box<TrainArgs>),
    /// Markdown table of score files (NAME=PATH) and paired bootstrap of macro AUROC.
    Compare(CompareArgs),
}

#[derive(Parser, Debug)]
struct TrainArgs {
    /// Data pack with labels.csv (cxr-findings layout: id, patient_id, 14 findings, split).
    #[arg(long, default_value = "../shared/data/cxr-findings")]
    data: PathBuf,
    /// Instead of --data: a folder of tar shards written by cxr-data's write_shards from such
    /// a pack (`--split all`); train, val and test come from each sample's `split`.
    #[arg(long)]
    shards: Option<PathBuf>,
    /// Manifest column with report text; absent here, used verbatim when given.
    #[arg(long)]
    text_column: Option<String>,
    /// Output directory (config, tokenizer, logs, checkpoints, scores).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = Objective::Unicl)]
    objective: Objective,
    /// Where the model, batches, loss and optimizer live; evaluation scores and probe
    /// features are copied back to the CPU.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Optimizer steps.
    #[arg(long, default_value_t = 400, value_parser = at_least_one::<u64>)]
    steps: u64,
    /// Contrastive batch (images and texts per step).
    #[arg(long, default_value_t = 32, value_parser = at_least_one::<usize>)]
    batch: usize,
    /// GradCache chunk: encode at most this many samples with a graph at a time (same
    /// gradient as the full batch, less memory, one extra forward).
    #[arg(long, value_parser = at_least_one::<usize>)]
    micro_batch: Option<usize>,
    /// Image side (ViT-tiny/14; the shipped models/cxr-dino-vit-tiny was trained at 112).
    #[arg(long, default_value_t = 84, value_parser = at_least_one::<usize>)]
    image_size: usize,
    /// Transformer blocks of the image tower (ViT-tiny has 12; fewer for CPU-sized runs).
    #[arg(long, default_value_t = 12, value_parser = at_least_one::<usize>)]
    image_layers: usize,
    /// Text context length in tokens (the prompts need about 20).
    #[arg(long, default_value_t = 32, value_parser = at_least_one::<usize>)]
    context: usize,
    /// Initialise the image tower from a DINOv2 directory (e.g. models/cxr-dino-vit-tiny).
    #[arg(long, conflicts_with = "mi2")]
    init_image: Option<PathBuf>,
    /// Continue pretraining MI2 from its folder (the lion-ai/MedImageInsights release, or a
    /// folder with config.json, model.safetensors and the tokenizer): both towers, both
    /// projections and the logit scale start from the checkpoint, the text goes through MI2's
    /// own tokenizer and the images through its preprocessing. --image-size, --image-layers,
    /// --context and --vocab-size are then the checkpoint's.
    #[arg(long)]
    mi2: Option<PathBuf>,
    /// Locked-image tuning (LiT): keep the `--init-image` (or `--mi2`) tower frozen and train only the
    /// image projection, the text tower and the logit scale.
    #[arg(long)]
    lock_image: bool,
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Warm-up steps (default: 10% of the steps; 0: none).
    #[arg(long)]
    warmup: Option<u64>,
    #[arg(long, default_value_t = 0.05)]
    weight_decay: f64,
    /// Initial log logit scale θ (default: the objective's reference init).
    #[arg(long)]
    init_log_scale: Option<f64>,
    /// Name up to this many absent findings in each label prompt ("…, no pneumothorax"), so
    /// the text tower meets the negations that zero-shot prompts use (0 = never).
    #[arg(long, default_value_t = 0)]
    mention_absent: usize,
    /// What one label text says: the whole finding set, one statement about one finding
    /// (with `unicl`, equal statements are positives of each other), or a statement about
    /// the one finding the step's batch shares.
    #[arg(long, value_enum, default_value_t = TextUnitArg::LabelSet)]
    text_unit: TextUnitArg,
    /// With `--text-unit finding`: how often a statement names a present finding (a normal
    /// text for an image without findings) rather than an absent one.
    #[arg(long, default_value_t = 0.5)]
    present_probability: f64,
    /// How an absent finding is named, with `{finding}` where its name goes; repeat the flag
    /// for several phrasings, drawn uniformly (default: "no {finding}"). A text tower trained
    /// from scratch learns only the words its texts use, so the negative zero-shot prompts
    /// ("no {}", "chest x-ray without {}", "no evidence of {}") are best covered.
    #[arg(long = "absent-template", value_name = "TEMPLATE")]
    absent_templates: Vec<String>,
    /// BPE vocabulary size (upper bound; a small corpus gives fewer tokens).
    #[arg(long, default_value_t = 1000, value_parser = at_least_one::<usize>)]
    vocab_size: usize,
    /// Zero-shot validation every N steps (and after the last).
    #[arg(long, default_value_t = 100, value_parser = at_least_one::<u64>)]
    val_every: u64,
    /// Checkpoint every this many steps (and after the last).
    #[arg(long, default_value_t = 100, value_parser = at_least_one::<u64>)]
    checkpoint_every: u64,
    /// Keep this many of the newest checkpoints, deleting older ones (at least 1).
    #[arg(long, default_value_t = 2, value_parser = at_least_one::<usize>)]
    keep: usize,
    /// Continue from OUT/checkpoints.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Bootstrap resamples for the test CIs.
    #[arg(long, default_value_t = 1000, value_parser = at_least_one::<usize>)]
    resamples: usize,
    /// Also fit logistic-regression probes on frozen image-tower features (train, C on val).
    #[arg(long)]
    probe: bool,
    /// Also score the training split zero-shot at the end (`OUT/train_final.json`): far above
    /// the test score means the towers memorised their pairs instead of learning findings.
    #[arg(long)]
    score_train: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Parser, Debug)]
struct CompareArgs {
    /// `NAME=PATH` of a score file (test_step0.json / test_final.json); repeat.
    #[arg(long = "score", required = true)]
    scores: Vec<String>,
    /// `A,B`: paired bootstrap of macro AUROC A − B; repeat. `A1,B1+A2,B2+…` (say, seeds of
    /// one recipe, each against its own untrained model): the mean paired difference over
    /// the pairs, each resample shared by all of them.
    #[arg(long = "diff")]
    diffs: Vec<String>,
    #[arg(long, default_value_t = 1000, value_parser = at_least_one::<usize>)]
    resamples: usize,
}

fn processor(size: usize) -> ImageProcessor {
    ImageProcessor::from_preprocessing(&Preprocessing {
        shortest_edge: Some(size),
        crop: (size, size),
        resample: Resample::Bicubic,
        rescale_factor: 1.0 / 255.0,
        mean: [0.5307; 3],
        std: [0.2583; 3],
    })
}

/// The tokenizer corpus before the zero-shot prompts: the reports, the label prompts of the
/// training split's label sets and, for statement units, every finding statement.
fn corpus_texts(train: &PairDataset, templates: &PromptTemplates) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let sampler = unicl_loss::PromptSampler::new(templates.clone(), 12345)?;
    for s in &train.samples {
        if let Some(r) = &s.report {
            out.push(r.clone());
        }
        if !seen.insert(s.labels.clone()) {
            continue;
        }
        match templates.all_texts(&s.labels, 256) {
            Ok(t) => out.extend(t),
            Err(_) => {
                for i in 0..64 {
                    out.push(sampler.text(&s.labels, 0, i)?);
                }
            }
        }
    }
    if templates.unit.is_statement() {
        for i in 0..templates.findings.len() as u32 {
            out.extend(templates.statement_texts(i)?);
        }
    }
    Ok(out)
}

/// Every text the text tower can be trained on: the reports and the label prompts the text
/// unit draws. For label sets that is the corpus, plus the absent phrasings when
/// `--mention-absent` appends them; for statements, every finding statement, plus for
/// `finding` the normal texts of images without findings.
fn trainable_texts(
    train: &PairDataset,
    templates: &PromptTemplates,
    corpus: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = match templates.unit {
        TextUnit::LabelSet if templates.mention_absent == 0 => return Ok(corpus.to_vec()),
        TextUnit::LabelSet => corpus.to_vec(),
        TextUnit::Finding => templates.negative_texts.clone(),
        _ => Vec::new(),
    };
    out.extend(train.samples.iter().filter_map(|s| s.report.clone()));
    for i in 0..templates.findings.len() as u32 {
        out.extend(templates.statement_texts(i)?);
    }
    Ok(out)
}

/// The positive and negative zero-shot prompts of every finding.
fn zero_shot_prompts() -> Vec<String> {
    let mut out = Vec::new();
    for f in NIH_FINDINGS {
        let name = display_name(f);
        out.extend(Templates::cxr_positive().fill(&name));
        out.extend(Templates::cxr_negative().fill(&name));
    }
    out
}

fn save_json(path: &Path, v: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(v)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn fmt_iv(iv: &metrics::bootstrap::Interval) -> String {
    match (iv.estimate, iv.ci) {
        (Some(e), Some((lo, hi))) => format!("{e:.3} [{lo:.2}, {hi:.2}]"),
        (Some(e), None) => format!("{e:.3}"),
        _ => "n/a".into(),
    }
}

fn print_report(title: &str, r: &AurocReport) {
    println!("{title}: macro AUROC {}", fmt_iv(&r.macro_auroc));
    for f in &r.findings {
        println!(
            "  {:<20} n+={:<3} {}",
            f.finding,
            f.positives,
            fmt_iv(&f.auroc)
        );
    }
}

fn evaluate(
    trainer: &UniclTrainer,
    tok: &dual_encoder::TextTokenizer,
    test: &PairDataset,
    out: &Path,
    stem: &str,
    boot: &BootstrapConfig,
    dev: &Device,
) -> anyhow::Result<()> {
    let scores = zero_shot_scores(trainer.model(), tok, test, 64, dev)?;
    save_json(&out.join(format!("{stem}.json")), &scores)?;
    let report = auroc_report(&scores, boot)?;
    save_json(&out.join(format!("{stem}_report.json")), &report)?;
    print_report(&format!("zero-shot test ({stem})"), &report);
    Ok(())
}

/// Pooled image-tower features (before the projection) of every sample.
fn features(
    trainer: &UniclTrainer,
    d: &PairDataset,
    dev: &Device,
) -> anyhow::Result<probe_heads::Matrix> {
    let idx: Vec<usize> = (0..d.len()).collect();
    let mut rows = Vec::new();
    for c in idx.chunks(64) {
        let f = trainer
            .model()
            .image_encoder()
            .forward_features(&d.pixels(c, dev)?, &FeatureRequest::default())?;
        rows.push(f.pooled.detach());
    }
    // the probe code reads plain host memory
    let t = Tensor::cat(&rows, 0)?.to_device(&Device::Cpu)?;
    let (n, k) = t.dims2()?;
    Ok(probe_heads::Matrix::new(n, k, t.flatten_all()?.to_vec1()?)?)
}

fn probe(
    trainer: &UniclTrainer,
    sets: [&PairDataset; 3],
    out: &Path,
    boot: &BootstrapConfig,
    dev: &Device,
) -> anyhow::Result<()> {
    let [train, val, test] = sets;
    let targets = |d: &PairDataset| probe_heads::Targets::MultiLabel {
        names: d.findings.clone(),
        y: d.flags().into_iter().flatten().collect(),
    };
    let (xtr, xva, xte) = (
        features(trainer, train, dev)?,
        features(trainer, val, dev)?,
        features(trainer, test, dev)?,
    );
    let (scores, _) = probe_heads::eval::logreg_probe(
        (&xtr, &targets(train)),
        (&xva, &targets(val)),
        &xte,
        &probe_heads::logreg::default_c_grid(),
    )?;
    let c = test.findings.len();
    let file = ScoreFile {
        findings: test.findings.clone(),
        patients: test.patients(),
        labels: test.flags(),
        scores: scores.chunks(c).map(<[f64]>::to_vec).collect(),
    };
    save_json(&out.join("probe_test.json"), &file)?;
    let report = auroc_report(&file, boot)?;
    save_json(&out.join("probe_test_report.json"), &report)?;
    print_report(
        "logreg probe on frozen image-tower features (test)",
        &report,
    );
    Ok(())
}

fn train(a: TrainArgs) -> anyhow::Result<()> {
    let dev = a.device.device()?;
    println!("device: {dev:?}");
    let t0 = Instant::now();
    if a.lock_image && a.init_image.is_none() && a.mi2.is_none() {
        bail!("--lock-image freezes a pretrained tower: give --init-image DIR or --mi2 DIR");
    }
    let rows = match &a.shards {
        Some(dir) => Rows::Shards(std::sync::Arc::new(ShardIndex::from_dir(dir)?)),
        None => Rows::Manifest(Manifest::from_csv(
            a.data.join("labels.csv"),
            &ManifestSpec::cxr_findings(),
        )?),
    };
    let findings: Vec<String> = NIH_FINDINGS.iter().map(|s| s.to_string()).collect();
    let objective = match a.objective {
        Objective::Unicl => LossKind::Unicl,
        Objective::Clip => LossKind::Clip,
    };
    // the settings every run takes from the command line; the towers are the checkpoint's
    // with --mi2, else a ViT-tiny and a small text transformer
    let optimisation = |mut cfg: TrainConfig| {
        cfg.batch_size = a.batch;
        cfg.micro_batch = a.micro_batch;
        cfg.lr = a.lr;
        cfg.warmup_steps = a.warmup.unwrap_or(a.steps / 10);
        cfg.weight_decay = a.weight_decay;
        cfg.init_log_scale = a.init_log_scale;
        cfg.seed = a.seed;
        cfg.lock_image = a.lock_image;
        cfg
    };
    let mi2 = match &a.mi2 {
        Some(dir) => {
            let base = optimisation(TrainConfig::small(objective, a.image_size, 1, a.steps));
            let (trainer, tok) = UniclTrainer::from_mi2(&Mi2Files::in_dir(dir)?, base, &dev)?;
            println!(
                "MI2 from {}: every tower, projection and the logit scale {:.2}{}; its tokenizer \
                 ({} tokens, context {})",
                dir.display(),
                trainer.model().scale()?.to_scalar::<f32>()?,
                if a.lock_image {
                    " (image tower locked)"
                } else {
                    ""
                },
                tok.vocab_size(),
                tok.context_length()
            );
            Some((trainer, tok))
        }
        None => None,
    };
    let proc = match &mi2 {
        Some((t, _)) => {
            ImageProcessor::from_preprocessing(&t.model().image_encoder().preprocessing())
        }
        None => processor(a.image_size),
    };
    let text = a.text_column.as_deref();
    let load = |split| match &rows {
        Rows::Shards(index) => {
            PairDataset::from_shards(index.clone(), split, &findings, text, &proc)
        }
        Rows::Manifest(m) => PairDataset::from_manifest(m, split, &findings, text, &proc),
    };
    let (train_set, val_set, test_set) =
        (load(Split::Train)?, load(Split::Val)?, load(Split::Test)?);
    println!(
        "data: {} train / {} val / {} test images at {:?} px ({:.1} s)",
        train_set.len(),
        val_set.len(),
        test_set.len(),
        proc.crop_size,
        t0.elapsed().as_secs_f64()
    );
    let mut templates = PromptTemplates {
        mention_absent: a.mention_absent,
        unit: match a.text_unit {
            TextUnitArg::LabelSet => TextUnit::LabelSet,
            TextUnitArg::Finding => TextUnit::Finding,
            TextUnitArg::BatchFinding => TextUnit::BatchFinding,
        },
        present_probability: a.present_probability,
        ..PromptTemplates::nih_chestxray14()
    };
    if !a.absent_templates.is_empty()
        && templates.mention_absent == 0
        && !templates.unit.is_statement()
    {
        bail!(
            "--absent-template names absent findings, which only --text-unit finding, \
             batch-finding or --mention-absent N > 0 texts do"
        );
    }
    if let Some((first, rest)) = a.absent_templates.split_first() {
        templates.absent_template = first.clone();
        templates.extra_absent_templates = rest.to_vec();
    }
    templates.validate()?;
    let (mut trainer, tok) = match mi2 {
        Some(pair) => pair,
        None => {
            let texts = corpus_texts(&train_set, &templates)?;
            let prompts = zero_shot_prompts();
            // the tokenizer knows the prompts' words; the text tower learns only those the
            // training texts use
            let corpus: Vec<String> = texts.iter().chain(&prompts).cloned().collect();
            let tok_json = a.out.join("tokenizer/tokenizer.json");
            // a resumed run keeps the tokenizer its checkpoint was trained with
            let tok = if a.resume && tok_json.is_file() {
                dual_encoder::TextTokenizer::from_file(&tok_json, a.context)?
            } else {
                train_clip_bpe(&corpus, a.vocab_size, a.context, &a.out.join("tokenizer"))?
            };
            println!(
                "tokenizer: {} tokens learned from {} corpus texts -> {}",
                tok.vocab_size(),
                corpus.len(),
                tok_json.display()
            );
            let trainable = trainable_texts(&train_set, &templates, &texts)?;
            let untrained = untrained_tokens(&tok, &trainable, &prompts)?;
            if !untrained.is_empty() {
                println!(
                    "warning: the zero-shot prompts use words no training text has ({}); \
                     their embeddings get no gradient (phrase absent findings that way with \
                     --absent-template)",
                    untrained.join(", ")
                );
            }
            let mut cfg = optimisation(TrainConfig::small(
                objective,
                a.image_size,
                tok.vocab_size(),
                a.steps,
            ));
            if let ImageTowerConfig::Dinov2(image) = &mut cfg.image {
                image.num_hidden_layers = a.image_layers;
            }
            cfg.text.context_length = a.context;
            let mut trainer = UniclTrainer::new(cfg, &dev)?;
            if let Some(dir) = &a.init_image {
                let n = trainer.init_image_tower(dir)?;
                println!(
                    "image tower: {n} tensors from {}{}",
                    dir.display(),
                    if a.lock_image { " (locked)" } else { "" }
                );
            }
            (trainer, tok)
        }
    };
    let boot = BootstrapConfig {
        n_resamples: a.resamples,
        ..BootstrapConfig::default()
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let resuming = a.resume && a.out.join("checkpoints/latest.json").exists();
    // how labels became texts, and which images, are part of the run: recorded beside
    // config.json, and a resume must use the same (--text-unit, --mention-absent,
    // --present-probability, --absent-template; --data or --shards)
    record_run_input(
        &a.out,
        "prompts",
        &serde_json::to_value(&templates)?,
        resuming,
    )?;
    let split_record = |d: &PairDataset| {
        // folder-free ids: a relative or an absolute path to the same data is the same data
        let names: Vec<String> = (0..d.len()).map(|i| d.image_id(i)).collect();
        serde_json::json!({
            "images": d.len(),
            "fingerprint": fingerprint(names.iter().map(String::as_str)).to_string(),
        })
    };
    let data = serde_json::json!({
        "train": split_record(&train_set),
        "val": split_record(&val_set),
        "test": split_record(&test_set),
    });
    record_run_input(&a.out, "data", &data, resuming)?;
    if !resuming {
        evaluate(&trainer, &tok, &test_set, &a.out, "test_step0", &boot, &dev)?;
    }
    let source = PairSource::new(
        train_set.clone(),
        templates,
        tok.clone(),
        a.batch,
        a.seed,
        matches!(a.objective, Objective::Clip),
    )?;
    let opts = RunOptions {
        run: LoopOptions {
            out: a.out.clone(),
            steps: a.steps,
            checkpoint_every: a.checkpoint_every,
            keep: a.keep,
            resume: a.resume,
            progress: !a.quiet,
        },
        validation: Some(Validation {
            data: val_set.clone(),
            tokenizer: tok.clone(),
            every: a.val_every,
        }),
    };
    let t1 = Instant::now();
    let summary = run(&mut trainer, &source, &dev, &opts)?;
    println!(
        "trained steps {}..{} in {:.0} s ({:.1} pairs/s); loss {:.3} -> {:.3}; val macro AUROC {:?}",
        summary.start_step,
        summary.end_step,
        t1.elapsed().as_secs_f64(),
        summary.pairs_per_second,
        summary.losses.first().copied().unwrap_or(f64::NAN),
        summary.losses.last().copied().unwrap_or(f64::NAN),
        summary.val_macro_auroc.iter().map(|(s, m)| format!("{s}:{m:.3}")).collect::<Vec<_>>()
    );
    evaluate(&trainer, &tok, &test_set, &a.out, "test_final", &boot, &dev)?;
    if a.score_train {
        evaluate(
            &trainer,
            &tok,
            &train_set,
            &a.out,
            "train_final",
            &boot,
            &dev,
        )?;
    }
    if a.probe {
        probe(
            &trainer,
            [&train_set, &val_set, &test_set],
            &a.out,
            &boot,
            &dev,
        )?;
    }
    println!(
        "total {:.0} s; outputs in {}",
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let boot = BootstrapConfig {
        n_resamples: a.resamples,
        ..BootstrapConfig::default()
    };
    let mut runs: Vec<(String, ScoreFile, AurocReport)> = Vec::new();
    for s in &a.scores {
        let (name, path) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("--score {s}: expected NAME=PATH"))?;
        let reading = || format!("reading {path}");
        let file: ScoreFile = serde_json::from_slice(&std::fs::read(path).with_context(reading)?)
            .with_context(reading)?;
        let report = auroc_report(&file, &boot).with_context(|| format!("scoring {path}"))?;
        runs.push((name.to_string(), file, report));
    }
    let Some((_, first, _)) = runs.first() else {
        return Ok(());
    };
    print!("| finding | test n+ |");
    for (n, _, _) in &runs {
        print!(" {n} |");
    }
    println!();
    println!("|---|---|{}", "---|".repeat(runs.len()));
    print!("| **macro** | |");
    for (_, _, r) in &runs {
        print!(" **{}** |", fmt_iv(&r.macro_auroc));
    }
    println!();
    for (j, f) in first.findings.iter().enumerate() {
        print!("| {f} | {} |", runs[0].2.findings[j].positives);
        for (_, _, r) in &runs {
            print!(" {} |", fmt_iv(&r.findings[j].auroc));
        }
        println!();
    }
    let get = |n: &str| {
        runs.iter()
            .find(|r| r.0 == n)
            .map(|r| &r.1)
            .ok_or_else(|| anyhow!("no score named {n}"))
    };
    for d in &a.diffs {
        let mut pairs = Vec::new();
        for pair in d.split('+') {
            let (x, y) = pair
                .split_once(',')
                .ok_or_else(|| anyhow!("--diff {d}: expected A,B or A1,B1+A2,B2+…"))?;
            pairs.push((get(x)?, get(y)?));
        }
        let p = paired_mean_macro_auroc(&pairs, &boot)?;
        let what = if pairs.len() == 1 {
            format!("macro AUROC {}", d.replace(',', " − "))
        } else {
            format!(
                "mean over {} pairs ({}) of the macro AUROC difference",
                pairs.len(),
                d.replace(',', " − ").replace('+', ", ")
            )
        };
        println!(
            "\npaired bootstrap (patients, {} resamples), {what}: {} ; fraction of resamples with a difference ≤ 0: {:.3}",
            a.resamples,
            fmt_iv(&p.difference),
            p.fraction_a_not_better.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // every step frees and reallocates the same large tensors: keep them in the heap
    train_utils::retain_freed_heap_memory();
    match Cli::parse().cmd {
        Cmd::Train(a) => train(*a),
        Cmd::Compare(a) => compare(a),
    }
}
