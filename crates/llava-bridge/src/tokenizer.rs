//! Hugging Face `tokenizer.json` loading, and BPE training on a report corpus for small
//! experiments (byte-level BPE as GPT-2's, saved as `tokenizer.json`).

use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::{Error, Result};

/// Special tokens of a trained tokenizer, ids 0..4 in this order.
pub const SPECIAL_TOKENS: [&str; 4] = ["<unk>", "<s>", "</s>", "<pad>"];

/// A text tokenizer (a `tokenizers::Tokenizer`).
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    /// Loads an HF `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let inner = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self { inner })
    }

    /// Wraps a tokenizer.
    pub fn new(inner: Tokenizer) -> Self {
        Self { inner }
    }

    /// The wrapped tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(Error::tokenizer)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` with their character offsets, without special tokens.
    pub fn encode_with_offsets(&self, text: &str) -> Result<Vec<(u32, (usize, usize))>> {
        let enc = self
            .inner
            .encode_char_offsets(text, false)
            .map_err(Error::tokenizer)?;
        Ok(enc
            .get_ids()
            .iter()
            .copied()
            .zip(enc.get_offsets().iter().copied())
            .collect())
    }

    /// Text of `ids`, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(Error::tokenizer)
    }

    /// The id of a token, if in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.inner
            .save(path, true)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
    }

    /// Trains a byte-level BPE tokenizer of at most `vocab_size` tokens on `texts`, with
    /// [`SPECIAL_TOKENS`] first (`<unk>`=0, `<s>`=1, `</s>`=2, `<pad>`=3). Merges need
    /// `min_frequency` occurrences.
    pub fn train_bpe<S: AsRef<str> + Send>(
        texts: impl Iterator<Item = S> + Send,
        vocab_size: usize,
        min_frequency: u64,
    ) -> Result<Self> {
        let specials: Vec<AddedToken> = SPECIAL_TOKENS
            .iter()
            .map(|t| AddedToken::from(*t, true))
            .collect();
        let trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(min_frequency)
            .show_progress(false)
            .special_tokens(specials)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut trainer = TrainerWrapper::BpeTrainer(trainer);
        let mut tok = Tokenizer::new(BPE::default());
        tok.with_pre_tokenizer(Some(ByteLevel::default()));
        tok.with_decoder(Some(ByteLevel::default()));
        tok.train(&mut trainer, texts).map_err(Error::tokenizer)?;
        Ok(Self { inner: tok })
    }
}
