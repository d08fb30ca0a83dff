//! The CLIP BPE tokenizer gives transformers' ids (tokenizer.json and vocab + merges).
#![allow(clippy::unwrap_used)]

use crate::common;

use candle_core::Device;
use common::{fixture, json};
use dual_encoder::{Error, TextTokenizer};

fn check(tok: &TextTokenizer) {
    let exp = json("tokenizer/expected.json");
    let sentences: Vec<String> = exp["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    let rows = |key: &str| -> Vec<Vec<u32>> { serde_json::from_value(exp[key].clone()).unwrap() };
    let batch = tok.encode_batch(&sentences, &Device::Cpu).unwrap();
    assert_eq!(batch.input_ids.to_vec2::<u32>().unwrap(), rows("input_ids"));
    assert_eq!(
        batch.attention_mask.to_vec2::<u32>().unwrap(),
        rows("attention_mask")
    );
    let unpadded = rows("unpadded_ids");
    assert!(!sentences.is_empty());
    assert_eq!(
        unpadded.len(),
        sentences.len(),
        "one unpadded row per sentence"
    );
    for (s, want) in sentences.iter().zip(unpadded) {
        assert_eq!(tok.encode_unpadded(s).unwrap(), want, "sentence {s:?}");
    }
    assert_eq!(
        tok.vocab_size(),
        exp["vocab_size"].as_u64().unwrap() as usize
    );
}

#[test]
fn tokenizer_json_matches_transformers() {
    check(&common::tokenizer());
}

#[test]
fn vocab_and_merges_match_transformers() {
    let tok = TextTokenizer::clip_from_vocab_merges(
        &fixture("tokenizer/vocab.json"),
        &fixture("tokenizer/merges.txt"),
        16,
    )
    .unwrap();
    check(&tok);
}

#[test]
fn end_of_text_is_the_largest_id_and_pads() {
    let tok = common::tokenizer();
    let eot = tok.token_to_id("<|endoftext|>").unwrap();
    assert_eq!(eot as usize, tok.vocab_size() - 1);
    let b = tok.encode_batch(&["no effusion"], &Device::Cpu).unwrap();
    let ids = b.input_ids.to_vec2::<u32>().unwrap();
    assert_eq!(ids[0].len(), 16);
    assert!(ids[0][5..].iter().all(|&t| t == eot));
}

#[test]
fn missing_files_and_bad_arguments_are_clear_errors() {
    let e = TextTokenizer::from_file(&fixture("tokenizer/nope.json"), 16).unwrap_err();
    assert!(e.to_string().contains("nope.json"), "{e}");
    let e = TextTokenizer::from_file(&fixture("tokenizer/expected.json"), 16).unwrap_err();
    assert!(matches!(e, Error::Tokenizer { .. }), "{e}");
    let e = TextTokenizer::from_file(&fixture("tokenizer/tokenizer.json"), 1).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    let empty: [&str; 0] = [];
    assert!(common::tokenizer()
        .encode_batch(&empty, &Device::Cpu)
        .is_err());
}
