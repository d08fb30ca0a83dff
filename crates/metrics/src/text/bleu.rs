//! Corpus BLEU-1..4 with pycocoevalcap's `BleuScorer` arithmetic (`option="closest"`).
//!
//! Per hypothesis: n-gram counts (n = 1..4) clipped by the maximum count in any
//! reference; `guess[n] = max(0, len - n + 1)`; the reference length is the one closest to
//! the hypothesis length (ties to the shorter). Corpus BLEU-N sums `correct`, `guess`,
//! hypothesis and reference lengths over the corpus, then
//! `BLEU-N = (Π_{k≤N} (correct_k + 1e-15) / (guess_k + 1e-9))^(1/N) · BP` with
//! `BP = exp(1 - 1/r)` when `r = (testlen + 1e-15) / (reflen + 1e-9) < 1`, else 1.

use std::collections::HashMap;

use super::tokenize_bleu;
use crate::error::{MetricsError, Result};

const TINY: f64 = 1e-15;
const SMALL: f64 = 1e-9;
const N: usize = 4;

/// Sufficient statistics of one hypothesis or of a corpus (they add).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BleuStats {
    /// Hypothesis length in tokens.
    pub testlen: u64,
    /// Closest reference length.
    pub reflen: u64,
    /// Hypothesis n-grams, n = 1..4.
    pub guess: [u64; N],
    /// Clipped matching n-grams, n = 1..4.
    pub correct: [u64; N],
}

fn ngram_counts(tokens: &[String]) -> HashMap<&[String], u64> {
    let mut counts = HashMap::new();
    for n in 1..=N {
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

impl BleuStats {
    /// Statistics of one tokenised hypothesis against its tokenised references.
    pub fn of_tokens(hypothesis: &[String], references: &[Vec<String>]) -> Result<Self> {
        if references.is_empty() {
            return Err(MetricsError::InvalidArgument(
                "BLEU needs at least one reference per hypothesis".into(),
            ));
        }
        let mut max_ref: HashMap<&[String], u64> = HashMap::new();
        for r in references {
            for (g, c) in ngram_counts(r) {
                let e = max_ref.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        let testlen = hypothesis.len() as u64;
        let reflen = references
            .iter()
            .map(|r| r.len() as u64)
            .min_by_key(|&l| (l.abs_diff(testlen), l))
            .unwrap_or(0);
        let mut s = Self {
            testlen,
            reflen,
            ..Self::default()
        };
        for k in 0..N {
            s.guess[k] = (testlen + 1).saturating_sub(k as u64 + 1);
        }
        for (g, c) in ngram_counts(hypothesis) {
            s.correct[g.len() - 1] += c.min(max_ref.get(g).copied().unwrap_or(0));
        }
        Ok(s)
    }

    /// Statistics of one raw hypothesis and references, tokenised by [`tokenize_bleu`].
    pub fn of_text(hypothesis: &str, references: &[&str]) -> Result<Self> {
        let refs: Vec<Vec<String>> = references.iter().map(|r| tokenize_bleu(r)).collect();
        Self::of_tokens(&tokenize_bleu(hypothesis), &refs)
    }

    /// Adds another set (corpus accumulation).
    pub fn add(&mut self, o: &Self) {
        self.testlen += o.testlen;
        self.reflen += o.reflen;
        for k in 0..N {
            self.guess[k] += o.guess[k];
            self.correct[k] += o.correct[k];
        }
    }

    /// BLEU-1..4 from these statistics (corpus BLEU for summed stats, pycocoevalcap's
    /// per-sentence score for one hypothesis).
    pub fn scores(&self) -> [f64; N] {
        let mut out = [0.0; N];
        let mut prod = 1.0f64;
        for (k, o) in out.iter_mut().enumerate() {
            prod *= (self.correct[k] as f64 + TINY) / (self.guess[k] as f64 + SMALL);
            *o = prod.powf(1.0 / (k + 1) as f64);
        }
        let ratio = (self.testlen as f64 + TINY) / (self.reflen as f64 + SMALL);
        if ratio < 1.0 {
            let bp = (1.0 - 1.0 / ratio).exp();
            out.iter_mut().for_each(|o| *o *= bp);
        }
        out
    }
}

/// Corpus BLEU-1..4 of raw texts: `references[i]` are the references of `hypotheses[i]`.
pub fn corpus_bleu(hypotheses: &[&str], references: &[Vec<&str>]) -> Result<[f64; N]> {
    let mut state = BleuState::default();
    state.update(hypotheses, references)?;
    state.compute()
}

/// Accumulates corpus BLEU statistics.
#[derive(Debug, Clone, Copy, Default)]
pub struct BleuState {
    stats: BleuStats,
    n: usize,
}

impl BleuState {
    /// Adds a batch of hypotheses with their references.
    pub fn update(&mut self, hypotheses: &[&str], references: &[Vec<&str>]) -> Result<()> {
        crate::error::check_len(
            "hypotheses vs references",
            hypotheses.len(),
            references.len(),
        )?;
        for (h, r) in hypotheses.iter().zip(references) {
            self.stats.add(&BleuStats::of_text(h, r)?);
            self.n += 1;
        }
        Ok(())
    }

    /// Corpus BLEU-1..4; errors when nothing was added.
    pub fn compute(&self) -> Result<[f64; N]> {
        if self.n == 0 {
            return Err(MetricsError::Empty { metric: "BLEU" });
        }
        Ok(self.stats.scores())
    }
}
