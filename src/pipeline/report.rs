//! Stage 4: LLaVA-style report generation on cxr-mini, scored with ROUGE-L, BLEU-4 and
//! CheXpert-label F1 beside the most-common-training-text baseline.
//!
//! cxr-mini has no reports, so each target is one fixed sentence pattern filled from the
//! image's metadata (the `cxr_mini_eval` example's template: view, sex, modality, ICU stay).
//! No finding is ever stated, so label F1 only measures whether a generated text stays free
//! of finding mentions (macro-F1-14 is at most 1/14); exact match tells systems apart.
//! The decoder is a tiny llama trained from scratch together with the projector.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use cxr_core::{Encoder, FeatureRequest};
use cxr_data::{decode_file, DecodeOptions, ImageProcessor, Manifest, ManifestSpec, Split};
use indicatif::{ProgressBar, ProgressStyle};
use llava_bridge::generate::finish_text;
use llava_bridge::init::{random_llama, save_llama_dir};
use llava_bridge::template::{Conversation, PromptEncoder, FINDINGS_PROMPT};
use llava_bridge::train::{ShuffledBatches, TrainConfig, Trainer};
use llava_bridge::{
    GenerationConfig, Llama, LlamaConfig, LlamaKeys, Projector, ReportGenerator, TextTokenizer,
    Weights,
};
use metrics::bootstrap::{group_rows, BootstrapConfig, Interval};
use rand::SeedableRng;
use report_labeler::score::report_scores_with_ci;
use report_labeler::Labeler;
use serde_json::json;

use super::error::{Context, Error, Result};
use super::summary::{path_string, show_interval, Headline, StageSummary};
use super::PipelineConfig;

/// The metadata report of one cxr-mini record.
pub(crate) fn template(meta: &BTreeMap<String, String>, icu: Option<f32>) -> Option<String> {
    let view = match meta.get("view")?.as_str() {
        v @ ("AP" | "PA") => v,
        _ => return None,
    };
    let sex = match meta.get("sex")?.as_str() {
        "m" => "male",
        "f" => "female",
        _ => return None,
    };
    let modality = match meta.get("modality")?.as_str() {
        "CR" => "computed",
        "DX" => "digital",
        _ => return None,
    };
    let icu = match icu? {
        v if v > 0.5 => "was",
        _ => "was not",
    };
    Some(format!(
        "Frontal {view} chest radiograph of a {sex} patient, {modality} radiography. \
         The patient {icu} admitted to the intensive care unit during this hospital stay."
    ))
}

struct Split3 {
    ids: Vec<String>,
    patients: Vec<String>,
    reports: Vec<String>,
    images: Vec<std::path::PathBuf>,
}

fn split_data(m: &Manifest, split: Split) -> Result<Split3> {
    let icu = m
        .label_index("icu")
        .ok_or_else(|| Error::stage("report", "cxr-mini labels.csv has no icu column"))?;
    let mut s = Split3 {
        ids: vec![],
        patients: vec![],
        reports: vec![],
        images: vec![],
    };
    for i in m.indices_in(split) {
        let r = &m.records[i];
        let Some(text) = template(&r.meta, r.labels[icu]) else {
            continue;
        };
        s.ids.push(
            r.image
                .file_stem()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        s.patients.push(r.patient.clone());
        s.reports.push(text);
        s.images.push(r.image.clone());
    }
    Ok(s)
}

/// Final patch tokens `[N, T, D]` of `images`, detached (the encoder is frozen).
fn image_tokens(encoder: &dyn Encoder, images: &[std::path::PathBuf]) -> Result<Tensor> {
    let stage = "report features";
    let proc = ImageProcessor::from_preprocessing(&encoder.preprocessing());
    let mut out = Vec::new();
    for chunk in images.chunks(16) {
        let mut px = Vec::new();
        for p in chunk {
            let img = decode_file(p, &DecodeOptions::default()).ctx(stage)?;
            px.push(proc.apply_tensor(&img, encoder.device()).ctx(stage)?);
        }
        let x = Tensor::stack(&px, 0).ctx(stage)?;
        let f = encoder
            .forward_features(&x, &FeatureRequest::default())
            .ctx(stage)?;
        out.push(f.patch_tokens.contiguous().ctx(stage)?.detach());
    }
    Tensor::cat(&out, 0).ctx(stage)
}

/// The decoder of `dir` built on `Var`s, so that every weight trains.
fn trainable_llama(dir: &Path) -> Result<(Llama, Vec<(String, Var)>)> {
    let stage = "report decoder";
    let cfg = LlamaConfig::from_file(dir.join("config.json")).ctx(stage)?;
    let mut vars = Vec::new();
    let mut tensors = HashMap::new();
    for file in llava_bridge::weights::model_files(dir).ctx(stage)? {
        for (name, t) in candle_core::safetensors::load(&file, &Device::Cpu).ctx(stage)? {
            let v = Var::from_tensor(&t.to_dtype(DType::F32).ctx(stage)?).ctx(stage)?;
            tensors.insert(name.clone(), v.as_tensor().clone());
            vars.push((name, v));
        }
    }
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let w = Weights::from_map(dir.display().to_string(), tensors);
    let keys = LlamaKeys::detect(&w).ctx(stage)?;
    let lm = Llama::new(&cfg, &w, &keys).ctx(stage)?;
    Ok((lm, vars))
}

fn bar(len: u64, msg: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    if let Ok(s) = ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed} < {eta}]") {
        b.set_style(s);
    }
    b.set_message(msg.to_string());
    b
}

pub(crate) fn run(
    cfg: &PipelineConfig,
    encoder: &dyn Encoder,
    log: &mut dyn FnMut(&str),
) -> Result<StageSummary> {
    let stage = "report";
    let rs = &cfg.report;
    let dir = cfg.out.join("report");
    let lm_dir = dir.join("lm");
    let m =
        Manifest::from_csv(cfg.mini.join("labels.csv"), &ManifestSpec::cxr_mini()).ctx(stage)?;
    let (train, test) = (split_data(&m, Split::Train)?, split_data(&m, Split::Test)?);
    if train.ids.is_empty() || test.ids.is_empty() {
        return Err(Error::stage(stage, "no train or no test reports"));
    }
    // tokenizer and a random tiny llama, saved so that the run can be inspected
    let tok = TextTokenizer::train_bpe(train.reports.iter(), rs.vocab, 2).ctx(stage)?;
    let mut lcfg = LlamaConfig::tiny(tok.vocab_size(), rs.width, rs.layers, 4);
    lcfg.bos_token_id = tok.token_to_id("<s>");
    lcfg.eos_token_id = tok
        .token_to_id("</s>")
        .map(llava_bridge::config::TokenIds::One);
    lcfg.pad_token_id = tok.token_to_id("<pad>");
    let init = random_llama(&lcfg, 0.02, cfg.seed, &Device::Cpu).ctx(stage)?;
    save_llama_dir(&lm_dir, &lcfg, &init).ctx(stage)?;
    tok.save(lm_dir.join("tokenizer.json")).ctx(stage)?;
    let (lm, lm_vars) = trainable_llama(&lm_dir)?;
    let prompts = PromptEncoder {
        tokenizer: tok.clone(),
        conversation: Conversation::vicuna_v1(),
        question: FINDINGS_PROMPT.into(),
        bos: lm.config().bos_token_id,
        eos: lm.config().eos_ids().first().copied(),
    };
    let vm = VarMap::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let d_vision = encoder.feature_info().embed_dim;
    let projector = Projector::init(
        d_vision,
        lm.hidden_size(),
        &vm,
        "multi_modal_projector",
        &mut rng,
        &Device::Cpu,
    )
    .ctx(stage)?;
    let eos = lm.config().eos_ids();
    let gen = ReportGenerator::new(projector, lm).ctx(stage)?;
    let ftrain = image_tokens(encoder, &train.images)?;
    let ftest = image_tokens(encoder, &test.images)?;
    let examples: Vec<_> = train
        .reports
        .iter()
        .map(|r| prompts.example(r))
        .collect::<std::result::Result<_, _>>()
        .ctx(stage)?;
    let mut vars = gen.projector.named_vars("multi_modal_projector");
    vars.extend(lm_vars.iter().cloned());
    let n_params: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    log(&format!(
        "{} train / {} test images; {}-token byte-level BPE; projector + {}-layer width-{} llama ({:.2} M weights, all trained) for {} steps of {}",
        train.ids.len(),
        test.ids.len(),
        tok.vocab_size(),
        rs.layers,
        rs.width,
        n_params as f64 / 1e6,
        rs.steps,
        rs.batch
    ));
    let mut trainer = Trainer::new(
        vars,
        TrainConfig {
            lr: rs.lr,
            ..TrainConfig::stage1(rs.steps)
        },
    )
    .ctx(stage)?;
    let mut batches = ShuffledBatches::new(examples.len());
    let mut losses = Vec::new();
    let pb = bar(rs.steps as u64, "report training", cfg.progress);
    for _ in 0..rs.steps {
        let idx = batches.next_batch(rs.batch, &mut rng);
        let rows = Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            idx.len(),
            &Device::Cpu,
        )
        .ctx(stage)?;
        let batch: Vec<_> = idx.iter().map(|&i| examples[i].clone()).collect();
        let loss = gen
            .loss(&ftrain.index_select(&rows, 0).ctx(stage)?, &batch)
            .ctx(stage)?;
        let s = trainer.step(&loss).ctx(stage)?;
        losses.push(s.loss);
        pb.set_message(format!("report training, loss {:.3}", s.loss));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let head = |v: &[f64]| v.iter().take(5).sum::<f64>() / v.len().clamp(1, 5) as f64;
    let tail = |v: &[f64]| v.iter().rev().take(5).sum::<f64>() / v.len().clamp(1, 5) as f64;
    log(&format!(
        "training loss {:.3} → {:.3} (mean of the first / last 5 steps; uniform guess ln {} = {:.2})",
        head(&losses),
        tail(&losses),
        tok.vocab_size(),
        (tok.vocab_size() as f64).ln()
    ));
    // greedy generation for the test split
    let mut gcfg = GenerationConfig::greedy(rs.max_new_tokens, eos);
    gcfg.stop_strings = vec!["</s>".into()];
    let prompt = prompts.prompt().ctx(stage)?;
    let mut generated = Vec::new();
    let pb = bar(test.ids.len() as u64, "report generation", cfg.progress);
    for start in (0..test.ids.len()).step_by(8) {
        let end = (start + 8).min(test.ids.len());
        let f = ftest.narrow(0, start, end - start).ctx(stage)?;
        for toks in gen.generate(&f, &prompt, &gcfg, Some(&tok)).ctx(stage)? {
            generated.push(finish_text(&tok, &toks, &gcfg).ctx(stage)?);
        }
        pb.inc((end - start) as u64);
    }
    pb.finish_and_clear();
    // baseline: the most common training text (ties broken by the text)
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &train.reports {
        *counts.entry(t.as_str()).or_insert(0) += 1;
    }
    let baseline = counts
        .iter()
        .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
        .map(|(t, _)| t.to_string())
        .unwrap_or_default();
    let labeler = Labeler::new();
    let ref_labels = labeler.label_all(&test.reports);
    let groups = group_rows(&test.patients);
    let boot = BootstrapConfig {
        n_resamples: cfg.bootstrap,
        seed: cfg.seed,
        ..Default::default()
    };
    let model_scores =
        report_scores_with_ci(&generated, &test.reports, &ref_labels, &groups, &boot)
            .ctx("report scoring")?;
    let base_gen = vec![baseline.clone(); test.ids.len()];
    let base_scores = report_scores_with_ci(&base_gen, &test.reports, &ref_labels, &groups, &boot)
        .ctx("report scoring")?;
    let exact = |g: &[String]| g.iter().zip(&test.reports).filter(|(a, b)| a == b).count();
    let names = [
        "ROUGE-L F",
        "BLEU-4",
        "label macro-F1-14",
        "label micro-F1-14",
    ];
    log(&format!(
        "test split, {} reports of {} patients (95% CI over patients):",
        test.ids.len(),
        groups.len()
    ));
    log(&format!(
        "  {:<34} {:<22} {:<22} {:<22} {:<22} exact",
        "system", names[0], names[1], names[2], names[3]
    ));
    for (name, s, g) in [
        ("trained projector + tiny llama", &model_scores, &generated),
        ("most common training text", &base_scores, &base_gen),
    ] {
        let cells: Vec<String> = s.iter().map(|i| show_interval(i.estimate, i.ci)).collect();
        log(&format!(
            "  {name:<34} {:<22} {:<22} {:<22} {:<22} {}/{}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            exact(g),
            g.len()
        ));
    }
    if let (Some(g), Some(r)) = (generated.first(), test.reports.first()) {
        log(&format!(
            "  e.g. {}: {g:?}\n       reference: {r:?}",
            test.ids[0]
        ));
    }
    log("  (targets come from metadata and name no finding: label F1 only checks that no finding is invented; see docs/results.md)");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let out = dir.join("generated-test.json");
    let rows: Vec<_> = test
        .ids
        .iter()
        .zip(&generated)
        .zip(&test.reports)
        .map(|((id, g), r)| json!({"id": id, "generated": g, "reference": r}))
        .collect();
    std::fs::write(
        &out,
        serde_json::to_vec_pretty(&rows).map_err(|e| Error::io(&out, e))?,
    )
    .map_err(|e| Error::io(&out, e))?;
    let as_json = |s: &[Interval]| -> serde_json::Value {
        names
            .iter()
            .zip(s)
            .map(|(n, i)| (n.to_string(), json!({"value": i.estimate, "ci": i.ci})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    Ok(StageSummary {
        seconds: 0.0,
        headline: Headline::from_interval("ROUGE-L F (test)", &model_scores[0], test.ids.len()),
        details: json!({
            "model": as_json(&model_scores),
            "baseline_most_common_text": as_json(&base_scores),
            "exact_match": exact(&generated),
            "baseline_exact_match": exact(&base_gen),
            "loss_first": head(&losses),
            "loss_last": tail(&losses),
            "vocab": tok.vocab_size(),
            "train": train.ids.len(),
            "test": test.ids.len(),
        }),
        outputs: vec![path_string(&out), path_string(&lm_dir)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_reads_the_metadata_and_rejects_unknown_values() {
        let mut m: BTreeMap<String, String> = [("view", "PA"), ("sex", "f"), ("modality", "DX")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        assert_eq!(
            template(&m, Some(0.0)).unwrap(),
            "Frontal PA chest radiograph of a female patient, digital radiography. The patient \
             was not admitted to the intensive care unit during this hospital stay."
        );
        assert!(template(&m, Some(1.0))
            .unwrap()
            .contains("patient was admitted"));
        assert!(template(&m, None).is_none());
        m.insert("view".into(), "LL".into());
        assert!(template(&m, Some(0.0)).is_none());
    }
}
