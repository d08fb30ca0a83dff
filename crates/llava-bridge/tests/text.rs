//! Tokenizer training, the Vicuna v1 template, label masking, sampling and stop strings.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use crate::common;

use std::collections::HashMap;

use common::load;
use llava_bridge::generate::{finish_text, Decoding, GenerationConfig};
use llava_bridge::template::{Conversation, PromptEncoder, FINDINGS_PROMPT, IGNORE_INDEX};
use llava_bridge::TextTokenizer;

const REPORTS: [&str; 6] = [
    "The lungs are clear. No pleural effusion or pneumothorax.",
    "Heart size is normal. No focal consolidation.",
    "Small left pleural effusion with basilar atelectasis.",
    "Cardiomegaly with mild pulmonary edema. No pneumothorax.",
    "Right lower lobe consolidation concerning for pneumonia.",
    "No acute cardiopulmonary process. The lungs are clear.",
];

fn trained() -> TextTokenizer {
    TextTokenizer::train_bpe(REPORTS.iter().cycle().take(60), 400, 2).unwrap()
}

#[test]
fn bpe_training_round_trips_through_tokenizer_json() {
    let tok = trained();
    assert!(
        tok.vocab_size() > 256 && tok.vocab_size() <= 400,
        "{}",
        tok.vocab_size()
    );
    for (i, s) in llava_bridge::tokenizer::SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tok.token_to_id(s), Some(i as u32));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    tok.save(&path).unwrap();
    let back = TextTokenizer::from_file(&path).unwrap();
    let text = "Small right pleural effusion. Lungs otherwise clear.";
    let ids = back.encode(text).unwrap();
    assert_eq!(ids, tok.encode(text).unwrap());
    // merges learned: frequent words are single tokens, fewer tokens than bytes
    assert!(ids.len() < text.len() / 2, "{} tokens", ids.len());
    assert_eq!(back.decode(&ids).unwrap().trim(), text);
    assert!(TextTokenizer::from_file(dir.path().join("missing.json")).is_err());
}

#[test]
fn vicuna_prompt_and_label_mask() {
    let conv = Conversation::vicuna_v1();
    assert_eq!(
        conv.prompt(FINDINGS_PROMPT),
        "A chat between a curious user and an artificial intelligence assistant. The assistant \
         gives helpful, detailed, and polite answers to the user's questions. USER: <image>\n\
         Provide a description of the findings in the radiology image. ASSISTANT:"
    );
    let enc = PromptEncoder {
        tokenizer: trained(),
        conversation: conv,
        question: FINDINGS_PROMPT.into(),
        bos: Some(1),
        eos: Some(2),
    };
    let report = "Heart size is normal. No focal consolidation.";
    let ex = enc.example(report).unwrap();
    let prompt = enc.prompt().unwrap();
    assert_eq!(ex.before, prompt.before);
    assert_eq!(ex.after, prompt.after);
    assert_eq!(ex.before[0], 1);
    assert_eq!(*ex.target.last().unwrap(), 2);
    let text = enc.tokenizer.decode(&ex.target).unwrap();
    assert_eq!(text.trim(), report);
    let after = enc.tokenizer.decode(&ex.after).unwrap();
    assert!(after.trim_end().ends_with("ASSISTANT:"), "{after:?}");
    let n_image = 5;
    let labels = ex.labels(n_image, ex.len(n_image) + 3);
    let prefix = ex.before.len() + n_image + ex.after.len();
    assert!(labels[..prefix].iter().all(|&l| l == IGNORE_INDEX));
    let target: Vec<i64> = ex.target.iter().map(|&t| t as i64).collect();
    assert_eq!(&labels[prefix..prefix + ex.target.len()], target.as_slice());
    assert!(labels[prefix + ex.target.len()..]
        .iter()
        .all(|&l| l == IGNORE_INDEX));
}

/// A word-level tokenizer naming the fixture's 96 ids `t0`..`t95`.
fn id_tokenizer() -> TextTokenizer {
    use tokenizers::models::wordlevel::WordLevel;
    let vocab: HashMap<String, u32> = (0..96u32).map(|i| (format!("t{i}"), i)).collect();
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("t0".into())
        .build()
        .unwrap();
    TextTokenizer::new(tokenizers::Tokenizer::new(model))
}

#[test]
fn sampling_is_seeded_and_top_p_narrows_to_greedy() {
    let f = load();
    let feats = f.t("image_features");
    let prompt = f.example(0, false);
    let run = |decoding| {
        let cfg = GenerationConfig {
            max_new_tokens: 12,
            decoding,
            eos_token_ids: vec![2],
            stop_strings: vec![],
        };
        f.generator.generate(feats, &prompt, &cfg, None).unwrap()
    };
    let s = |seed| Decoding::Sample {
        temperature: 1.0,
        top_p: 0.95,
        seed,
    };
    assert_eq!(run(s(7)), run(s(7)));
    assert_ne!(run(s(7)), run(s(8)));
    let nucleus_of_one = Decoding::Sample {
        temperature: 0.7,
        top_p: 1e-9,
        seed: 3,
    };
    assert_eq!(run(nucleus_of_one), run(Decoding::Greedy));
    assert_eq!(run(nucleus_of_one)[0], f.tokens("greedy_0"));
}

#[test]
fn stop_strings_and_budget_end_generation() {
    let f = load();
    let tok = id_tokenizer();
    let feats = f.t("image_features").narrow(0, 0, 1).unwrap();
    let prompt = f.example(0, false);
    // greedy sample 0 is 63 63 63 18 64 ...: stop at the text "t18"
    let cfg = GenerationConfig {
        max_new_tokens: 12,
        decoding: Decoding::Greedy,
        eos_token_ids: vec![2],
        stop_strings: vec!["t18".into()],
    };
    let out = f
        .generator
        .generate(&feats, &prompt, &cfg, Some(&tok))
        .unwrap();
    assert_eq!(out[0], vec![63, 63, 63, 18]);
    assert_eq!(finish_text(&tok, &out[0], &cfg).unwrap(), "t63 t63 t63");
    let cfg = GenerationConfig::greedy(3, vec![2]);
    let out = f.generator.generate(&feats, &prompt, &cfg, None).unwrap();
    assert_eq!(out[0], vec![63, 63, 63]);
    // stop strings without a tokenizer are refused
    let cfg = GenerationConfig {
        stop_strings: vec!["x".into()],
        ..GenerationConfig::greedy(3, vec![])
    };
    assert!(f.generator.generate(&feats, &prompt, &cfg, None).is_err());
}
