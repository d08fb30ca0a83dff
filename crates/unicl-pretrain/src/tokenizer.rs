//! A CLIP-style byte-level BPE vocabulary learned from the run's own text corpus.
//!
//! No pretrained tokenizer file can be fetched, so the run trains one: the corpus (every
//! prompt the templates can render for the training label sets, the zero-shot prompts and
//! any reports) goes through exactly the normalisation and pre-tokenisation of
//! [`TextTokenizer::clip_from_vocab_merges`] (CLIP's regex + byte-level mapping), the
//! `tokenizers` crate's `BpeTrainer` learns merges with `</w>` word ends, and the result is
//! written as CLIP's `vocab.json` + `merges.txt` with `<|startoftext|>` and
//! `<|endoftext|>` as the two highest ids (so end-of-text pooling by arg-max works), then
//! saved as one `tokenizer.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use dual_encoder::TextTokenizer;
use tokenizers::models::bpe::BpeTrainer;
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{Model, ModelWrapper};

use crate::{Error, Result};

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Tokenizer(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// The 256 byte-level symbols plus the two special tokens, with no merges: the pipeline
/// whose pre-tokenizer the trainer reuses.
fn seed_tokenizer(dir: &Path) -> Result<TextTokenizer> {
    let mut vocab: BTreeMap<String, u32> = BTreeMap::new();
    let mut symbols: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    symbols.sort_unstable();
    for c in symbols {
        let n = vocab.len() as u32;
        vocab.insert(c.to_string(), n);
    }
    for t in [BOS, EOS] {
        let n = vocab.len() as u32;
        vocab.insert(t.into(), n);
    }
    let (v, m) = (dir.join("seed-vocab.json"), dir.join("seed-merges.txt"));
    write_json(&v, &vocab)?;
    std::fs::write(&m, "#version: 0.2\n").map_err(|e| Error::io(&m, e))?;
    let tok = TextTokenizer::clip_from_vocab_merges(&v, &m, 2)?;
    let _ = std::fs::remove_file(&v);
    let _ = std::fs::remove_file(&m);
    Ok(tok)
}

/// Learns a CLIP-style BPE of at most `vocab_size` tokens (byte alphabet and the two special
/// tokens included) from `corpus`, writes `vocab.json`, `merges.txt` and `tokenizer.json`
/// into `dir`, and returns the tokenizer padded / truncated to `context_length`.
pub fn train_clip_bpe<S: AsRef<str> + Send>(
    corpus: &[S],
    vocab_size: usize,
    context_length: usize,
    dir: &Path,
) -> Result<TextTokenizer> {
    if corpus.is_empty() {
        return Err(Error::Tokenizer("empty corpus".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let seed = seed_tokenizer(dir)?;
    let mut inner = seed.inner().clone();
    let trainer = BpeTrainer::builder()
        .vocab_size(vocab_size.saturating_sub(2).max(257))
        .min_frequency(1)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .end_of_word_suffix("</w>".into())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let texts: Vec<String> = corpus.iter().map(|s| s.as_ref().to_string()).collect();
    inner
        .train(&mut trainer, texts.into_iter())
        .map_err(tok_err)?;
    let ModelWrapper::BPE(bpe) = inner.get_model() else {
        return Err(Error::Tokenizer(
            "the trainer did not produce a BPE model".into(),
        ));
    };
    bpe.save(dir, None).map_err(tok_err)?;
    // renumber: learned tokens keep their order, the special tokens go last
    let vocab_path = dir.join("vocab.json");
    let bytes = std::fs::read(&vocab_path).map_err(|e| Error::io(&vocab_path, e))?;
    let learned: HashMap<String, u32> = serde_json::from_slice(&bytes).map_err(tok_err)?;
    // the trainer's ids depend on hash-map order; the merges do not: number the
    // unmerged symbols in string order, then every merge product in merge order
    let merges_path = dir.join("merges.txt");
    let merges = std::fs::read_to_string(&merges_path).map_err(|e| Error::io(&merges_path, e))?;
    let mut rank: HashMap<String, usize> = HashMap::new();
    for (i, line) in merges
        .lines()
        .filter(|l| !l.starts_with("#version"))
        .enumerate()
    {
        if let Some((a, b)) = line.split_once(' ') {
            rank.entry(format!("{a}{b}")).or_insert(i);
        }
    }
    let mut ordered: Vec<(String, u32)> = learned
        .into_iter()
        .filter(|(t, _)| t != BOS && t != EOS)
        .collect();
    ordered.sort_by(|(a, _), (b, _)| {
        let key = |t: &String| (rank.get(t).map_or(0, |r| r + 1), t.clone());
        key(a).cmp(&key(b))
    });
    let mut vocab: BTreeMap<String, u32> = BTreeMap::new();
    for (t, _) in ordered {
        let n = vocab.len() as u32;
        vocab.insert(t, n);
    }
    for t in [BOS, EOS] {
        let n = vocab.len() as u32;
        vocab.insert(t.into(), n);
    }
    write_json(&vocab_path, &vocab)?;
    let tok = TextTokenizer::clip_from_vocab_merges(
        &vocab_path,
        &dir.join("merges.txt"),
        context_length,
    )?;
    let json = dir.join("tokenizer.json");
    tok.inner().save(&json, true).map_err(tok_err)?;
    Ok(tok)
}
