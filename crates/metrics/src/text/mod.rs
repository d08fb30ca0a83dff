//! Report-generation text metrics: corpus BLEU-1..4 and ROUGE-L.
//!
//! - [`bleu`]: the arithmetic of pycocoevalcap's `Bleu(4)` (the radiology
//!   report-generation convention: R2Gen and its successors), on [`tokenize_bleu`] tokens.
//!   pycocoevalcap normally runs Stanford's Java PTBTokenizer first; this crate does not
//!   reproduce PTB tokenisation, and instead defines its own (below). The parity fixtures
//!   feed the same pre-tokenised, space-joined strings to pycocoevalcap's `Bleu(4)`, so
//!   the scorer arithmetic (clipped counts, "closest" reference length, its `tiny = 1e-15`
//!   and `small = 1e-9` guards, brevity penalty) matches exactly.
//! - [`rouge`]: ROUGE-L F-measure as Google's `rouge-score`
//!   (`RougeScorer(["rougeL"], use_stemmer=False|True)`), with its default tokenizer.
//!   With `use_stemmer=True` tokens longer than 3 characters go through NLTK's Porter
//!   stemmer ([`porter::porter_stem`]). pycocoevalcap's own
//!   ROUGE-L (β = 1.2 F-score on the BLEU tokens) is [`coco_rouge_l`].

pub mod bleu;
pub mod porter;
pub mod rouge;

pub use bleu::{corpus_bleu, BleuState, BleuStats};
pub use porter::porter_stem;
pub use rouge::{
    coco_rouge_l, rouge_l, rouge_l_multi, rouge_l_multi_with, RougeLState, RougeScore,
};

/// The BLEU tokenisation: lowercase (Unicode), then every maximal run of alphanumeric
/// characters (`char::is_alphanumeric`) is a token; everything else (whitespace,
/// punctuation, symbols) separates tokens and is dropped. So `"No pleural effusion."`
/// gives `["no", "pleural", "effusion"]` and `"T-12"` gives `["t", "12"]`.
/// In Python: `re.findall(r"[^\W_]+", text.lower())`.
pub fn tokenize_bleu(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `rouge-score` default tokenisation: lowercase, every character outside `[a-z0-9]`
/// becomes a separator (so non-ASCII letters are dropped), tokens are the remaining runs.
pub fn tokenize_rouge(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// [`tokenize_rouge`] followed, with `use_stemmer`, by the Porter stemmer on every token
/// longer than 3 characters, as `rouge-score`'s `DefaultTokenizer(use_stemmer=True)`.
pub fn tokenize_rouge_with(text: &str, use_stemmer: bool) -> Vec<String> {
    let tokens = tokenize_rouge(text);
    if !use_stemmer {
        return tokens;
    }
    tokens
        .into_iter()
        .map(|t| {
            if t.len() > 3 {
                porter::porter_stem(&t)
            } else {
                t
            }
        })
        .filter(|t| !t.is_empty())
        .collect()
}
