//! Text tokenization through the `tokenizers` crate, padded and truncated to a fixed length.
//!
//! [`TextTokenizer::clip_from_vocab_merges`] builds the CLIP byte-level BPE pipeline as
//! `transformers`' `CLIPTokenizer` does: NFC, whitespace runs collapsed to one space,
//! lower case; CLIP's split regex and byte-level mapping; BPE whose word-final pieces end in
//! `</w>`; `<|startoftext|> … <|endoftext|>` around every sentence. Batches are padded to
//! the context length with the pad token (`<|endoftext|>` for CLIP, as MedImageInsight's
//! tokenizer files say) and truncated so that the end-of-text token is kept.

use std::path::Path;

use candle_core::Device;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{
    Lowercase, NormalizerWrapper, Replace, Sequence as NormSequence, NFC,
};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    AddedToken, PaddingDirection, PaddingParams, PaddingStrategy, SplitDelimiterBehavior,
    Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::text_encoder::TokenBatch;
use crate::{Error, Result};

/// CLIP's start-of-text token.
pub const CLIP_BOS: &str = "<|startoftext|>";
/// CLIP's end-of-text token (also its unknown and padding token).
pub const CLIP_EOS: &str = "<|endoftext|>";
/// CLIP's pre-tokenization pattern (contractions, letter runs, single digits, other runs).
const CLIP_SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A tokenizer that turns sentences into fixed-length [`TokenBatch`]es.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    context_length: usize,
    source: String,
}

fn tok_err(source: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer {
        source_name: source.into(),
        reason: e.to_string(),
    }
}

impl TextTokenizer {
    /// Loads a `tokenizer.json` and pads / truncates to `context_length`. The pad token is
    /// the file's padding token when it names one, else `<|endoftext|>` (CLIP) or `[PAD]`
    /// (BERT), whichever the vocabulary holds.
    pub fn from_file(path: &Path, context_length: usize) -> Result<Self> {
        let source = path.display().to_string();
        if !path.is_file() {
            return Err(Error::Core(cxr_core::Error::NotFound(format!(
                "tokenizer file {source}"
            ))));
        }
        let inner = Tokenizer::from_file(path).map_err(|e| tok_err(&source, e))?;
        Self::with_inner(inner, context_length, source)
    }

    /// Builds CLIP's byte-level BPE tokenizer from a `vocab.json` and a `merges.txt`.
    pub fn clip_from_vocab_merges(
        vocab: &Path,
        merges: &Path,
        context_length: usize,
    ) -> Result<Self> {
        let source = format!("{} + {}", vocab.display(), merges.display());
        for p in [vocab, merges] {
            if !p.is_file() {
                return Err(Error::Core(cxr_core::Error::NotFound(format!(
                    "tokenizer file {}",
                    p.display()
                ))));
            }
        }
        let path_str = |p: &Path| {
            p.to_str()
                .map(str::to_owned)
                .ok_or_else(|| tok_err(&source, "path is not UTF-8"))
        };
        let bpe = BPE::from_file(&path_str(vocab)?, &path_str(merges)?)
            .unk_token(CLIP_EOS.into())
            .end_of_word_suffix("</w>".into())
            .build()
            .map_err(|e| tok_err(&source, e))?;
        let id = |t: &str| {
            bpe_token_id(&bpe, t).ok_or_else(|| tok_err(&source, format!("vocabulary lacks `{t}`")))
        };
        let (bos, eos) = (id(CLIP_BOS)?, id(CLIP_EOS)?);
        let mut inner = Tokenizer::new(bpe);
        let normalizer = NormSequence::new(vec![
            NormalizerWrapper::NFC(NFC),
            NormalizerWrapper::Replace(
                Replace::new(
                    tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
                    " ",
                )
                .map_err(|e| tok_err(&source, e))?,
            ),
            NormalizerWrapper::Lowercase(Lowercase),
        ]);
        inner
            .with_normalizer(Some(normalizer))
            .map_err(|e| tok_err(&source, e))?;
        let split = Split::new(
            SplitPattern::Regex(CLIP_SPLIT.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| tok_err(&source, e))?;
        inner.with_pre_tokenizer(Some(PreSequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ])));
        inner.with_post_processor(Some(
            RobertaProcessing::new((CLIP_EOS.into(), eos), (CLIP_BOS.into(), bos))
                .trim_offsets(false)
                .add_prefix_space(false),
        ));
        inner.with_decoder(Some(ByteLevel::default()));
        inner
            .add_special_tokens(vec![
                AddedToken::from(CLIP_BOS, true),
                AddedToken::from(CLIP_EOS, true),
            ])
            .map_err(|e| tok_err(&source, e))?;
        Self::with_inner(inner, context_length, source)
    }

    fn with_inner(mut inner: Tokenizer, context_length: usize, source: String) -> Result<Self> {
        if context_length < 2 {
            return Err(Error::arg(
                "context_length",
                "at least 2 (start and end tokens)",
            ));
        }
        let (pad_token, pad_id) = match inner.get_padding() {
            Some(p) => (p.pad_token.clone(), p.pad_id),
            None => {
                let found = [CLIP_EOS, "[PAD]", "<pad>"]
                    .iter()
                    .find_map(|t| inner.token_to_id(t).map(|id| (t.to_string(), id)));
                found.ok_or_else(|| {
                    tok_err(
                        &source,
                        "no padding token (`<|endoftext|>`, `[PAD]`, `<pad>`)",
                    )
                })?
            }
        };
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(context_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token,
        }));
        inner
            .with_truncation(Some(TruncationParams {
                max_length: context_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| tok_err(&source, e))?;
        Ok(Self {
            inner,
            context_length,
            source,
        })
    }

    /// The fixed row length of every batch.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The id of `token`, if the vocabulary holds it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of one sentence with the special tokens, neither padded nor truncated.
    pub fn encode_unpadded(&self, text: &str) -> Result<Vec<u32>> {
        let mut plain = self.inner.clone();
        plain.with_padding(None);
        plain
            .with_truncation(None)
            .map_err(|e| tok_err(&self.source, e))?;
        let enc = plain
            .encode(text, true)
            .map_err(|e| tok_err(&self.source, e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Tokenizes `texts` into `[B, context_length]` ids and attention mask on `device`.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S], device: &Device) -> Result<TokenBatch> {
        if texts.is_empty() {
            return Err(Error::arg("texts", "at least one sentence"));
        }
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let encs = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| tok_err(&self.source, e))?;
        let ids: Vec<Vec<u32>> = encs.iter().map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<Vec<u32>> = encs
            .iter()
            .map(|e| e.get_attention_mask().to_vec())
            .collect();
        TokenBatch::from_rows(&ids, Some(&mask), device)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

fn bpe_token_id(bpe: &BPE, token: &str) -> Option<u32> {
    use tokenizers::Model;
    bpe.token_to_id(token)
}
