//! The JSON side of a checkpoint: step, data position, RNG and optimizer step counts.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The exact position of a `ChaCha8Rng` stream (seed, stream, word position), so a resumed run
/// draws the same numbers as an uninterrupted one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The 32-byte seed, hex.
    pub seed: String,
    /// The stream id.
    pub stream: u64,
    /// The word position, as a decimal string (a u128).
    pub word_pos: String,
}

impl RngState {
    /// Captures `rng`'s position.
    pub fn capture(rng: &ChaCha8Rng) -> Self {
        Self {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// A generator at the captured position; `None` when the strings are malformed.
    pub fn restore(&self) -> Option<ChaCha8Rng> {
        if self.seed.len() != 64 {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(self.seed.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().ok()?);
        Some(rng)
    }
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps completed (the next step to run; also the schedule position).
    pub step: u64,
    /// Samples (or batches) the data loader has handed out, to skip on resume.
    pub data_position: u64,
    /// The training RNG (augmentations, masks, stochastic depth).
    pub rng: RngState,
    /// AdamW's per-parameter step counts ([`crate::AdamW::state`]).
    pub optimizer_steps: BTreeMap<String, u64>,
    /// Anything else the trainer keeps (config digest, best metrics, …).
    #[serde(default)]
    pub extra: serde_json::Value,
}
