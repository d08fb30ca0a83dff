//! A CLIP-style byte-level BPE vocabulary learned from the run's own text corpus.
//!
//! No pretrained tokenizer file can be fetched, so the run learns one: the corpus (every
//! prompt the templates can render for the training label sets, the zero-shot prompts and
//! any reports) goes through exactly the normalisation and pre-tokenisation of
//! [`TextTokenizer::clip_from_vocab_merges`] (NFC, whitespace, lower case, CLIP's regex,
//! byte-level mapping), and BPE merges are learned on the words with a `</w>` end-of-word
//! mark, as CLIP's vocabulary has them. The result is written as CLIP's `vocab.json` +
//! `merges.txt` (all 256 byte symbols in both forms, then merge products in merge order,
//! then `<|startoftext|>` and `<|endoftext|>` as the two highest ids, so end-of-text
//! pooling by arg-max works) and saved as one `tokenizer.json`.
//!
//! The merges are learned here rather than with the `tokenizers` crate's `BpeTrainer`:
//! that trainer breaks count ties by ids it assigns in hash-map order, so two runs on the
//! same corpus can learn different vocabularies, which breaks resuming and comparing runs.
//! Here ties go to the lexicographically smallest pair: one corpus, one tokenizer.

use std::collections::BTreeMap;
use std::path::Path;

use dual_encoder::TextTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
    Tokenizer,
};

use crate::{Error, Result};

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
const EOW: &str = "</w>";

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(tok_err)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn byte_symbols() -> Vec<String> {
    let mut s: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    s.sort_unstable();
    s.into_iter().map(String::from).collect()
}

/// Writes a CLIP `vocab.json` / `merges.txt` pair for `merges` and loads it.
fn write_clip_files(
    dir: &Path,
    merges: &[(String, String)],
    context: usize,
) -> Result<TextTokenizer> {
    let mut vocab: BTreeMap<String, u32> = BTreeMap::new();
    let push = |t: String, vocab: &mut BTreeMap<String, u32>| {
        let n = vocab.len() as u32;
        vocab.entry(t).or_insert(n);
    };
    let base = byte_symbols();
    for s in &base {
        push(s.clone(), &mut vocab);
    }
    for s in &base {
        push(format!("{s}{EOW}"), &mut vocab);
    }
    let mut lines = String::from("#version: 0.2\n");
    for (a, b) in merges {
        push(format!("{a}{b}"), &mut vocab);
        lines.push_str(&format!("{a} {b}\n"));
    }
    push(BOS.into(), &mut vocab);
    push(EOS.into(), &mut vocab);
    let (v, m) = (dir.join("vocab.json"), dir.join("merges.txt"));
    write_json(&v, &vocab)?;
    std::fs::write(&m, lines).map_err(|e| Error::io(&m, e))?;
    Ok(TextTokenizer::clip_from_vocab_merges(&v, &m, context)?)
}

/// The byte-level words of `text` under `tok`'s normaliser and pre-tokeniser.
fn words(tok: &Tokenizer, text: &str) -> Result<Vec<String>> {
    let mut n = NormalizedString::from(text);
    if let Some(norm) = tok.get_normalizer() {
        norm.normalize(&mut n).map_err(tok_err)?;
    }
    let mut p = PreTokenizedString::from(n);
    if let Some(pre) = tok.get_pre_tokenizer() {
        pre.pre_tokenize(&mut p).map_err(tok_err)?;
    }
    Ok(p.get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(s, _, _)| s.to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Learns up to `max_merges` BPE merges: the most frequent adjacent pair (ties to the
/// lexicographically smallest) is merged everywhere, until no pair is left.
fn learn_merges(counts: BTreeMap<Vec<String>, u64>, max_merges: usize) -> Vec<(String, String)> {
    let mut words: Vec<(Vec<String>, u64)> = counts.into_iter().collect();
    let mut merges = Vec::new();
    while merges.len() < max_merges {
        let mut pairs: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (syms, c) in &words {
            for w in syms.windows(2) {
                *pairs.entry((w[0].as_str(), w[1].as_str())).or_insert(0) += c;
            }
        }
        // max count; among equal counts the first (smallest) pair, since BTreeMap iterates in order
        let mut best: Option<((&str, &str), u64)> = None;
        for (p, &c) in &pairs {
            if best.is_none_or(|(_, bc)| c > bc) {
                best = Some((*p, c));
            }
        }
        let Some(((a, b), _)) = best else { break };
        let (a, b) = (a.to_string(), b.to_string());
        for (syms, _) in &mut words {
            let mut out = Vec::with_capacity(syms.len());
            let mut i = 0;
            while i < syms.len() {
                if i + 1 < syms.len() && syms[i] == a && syms[i + 1] == b {
                    out.push(format!("{a}{b}"));
                    i += 2;
                } else {
                    out.push(std::mem::take(&mut syms[i]));
                    i += 1;
                }
            }
            *syms = out;
        }
        merges.push((a, b));
    }
    merges
}

/// The words (tokens, end-of-word mark dropped) of `prompts` that no text of
/// `training_texts` contains. In a text tower trained from scratch their embeddings never
/// get a gradient, so a zero-shot prompt that uses one is scored partly by a random vector:
/// the training texts should say what the prompts say.
pub fn untrained_tokens<S: AsRef<str>, P: AsRef<str>>(
    tok: &TextTokenizer,
    training_texts: &[S],
    prompts: &[P],
) -> Result<Vec<String>> {
    let mut trained = std::collections::BTreeSet::new();
    for t in training_texts {
        trained.extend(tok.encode_unpadded(t.as_ref())?);
    }
    let mut out = std::collections::BTreeSet::new();
    for p in prompts {
        for id in tok.encode_unpadded(p.as_ref())? {
            if trained.contains(&id) {
                continue;
            }
            let token = tok
                .inner()
                .id_to_token(id)
                .ok_or_else(|| Error::Tokenizer(format!("id {id} is not in the vocabulary")))?;
            out.insert(token.trim_end_matches(EOW).to_string());
        }
    }
    Ok(out.into_iter().collect())
}

/// Learns a CLIP-style BPE of at most `vocab_size` tokens (the 512 byte symbols and the two
/// special tokens included) from `corpus`, writes `vocab.json`, `merges.txt` and
/// `tokenizer.json` into `dir`, and returns the tokenizer padded / truncated to
/// `context_length`. The same corpus always gives the same files.
pub fn train_clip_bpe<S: AsRef<str>>(
    corpus: &[S],
    vocab_size: usize,
    context_length: usize,
    dir: &Path,
) -> Result<TextTokenizer> {
    if corpus.is_empty() {
        return Err(Error::Tokenizer("empty corpus".into()));
    }
    let base = 2 * 256 + 2;
    if vocab_size < base {
        return Err(Error::Tokenizer(format!(
            "vocab_size {vocab_size} is below the {base} byte symbols and special tokens"
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // the pipeline without merges gives the words exactly as the final tokenizer sees them
    let seed = write_clip_files(dir, &[], 2)?;
    let mut counts: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for text in corpus {
        for w in words(seed.inner(), text.as_ref())? {
            let mut syms: Vec<String> = w.chars().map(String::from).collect();
            if let Some(last) = syms.last_mut() {
                last.push_str(EOW);
            }
            *counts.entry(syms).or_insert(0) += 1;
        }
    }
    let merges = learn_merges(counts, vocab_size - base);
    let tok = write_clip_files(dir, &merges, context_length)?;
    tok.inner()
        .save(dir.join("tokenizer.json"), true)
        .map_err(tok_err)?;
    Ok(tok)
}
