//! KV-cached decoding from prompt embeddings: greedy, temperature/top-p sampling (seeded) and
//! beam search (transformers' algorithm and length penalty), with EOS ids, stop strings and a
//! new-token budget.

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::llama::{Kernels, KvCache, Llama};
use crate::tokenizer::TextTokenizer;
use crate::{Error, Result};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// The most likely token (first index on ties, as `torch.argmax`).
    Greedy,
    /// Sampling from `softmax(logits / temperature)` restricted to the smallest set of tokens
    /// whose probability reaches `top_p` (transformers' warper order), from a seeded ChaCha8.
    Sample {
        /// Temperature (> 0).
        temperature: f64,
        /// Nucleus mass in (0, 1].
        top_p: f64,
        /// RNG seed.
        seed: u64,
    },
    /// Beam search as transformers' `_beam_search` (scores are summed log-probs divided by
    /// `generated_length ^ length_penalty` when a hypothesis finishes).
    Beam {
        /// Beams kept.
        num_beams: usize,
        /// Exponent of the length normalisation (transformers' default 1.0).
        length_penalty: f64,
        /// Stop as soon as `num_beams` hypotheses are finished (transformers' `True`);
        /// otherwise transformers' default heuristic (`False`).
        early_stopping: bool,
    },
}

/// What to generate and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// At most this many new tokens.
    pub max_new_tokens: usize,
    /// Token choice.
    pub decoding: Decoding,
    /// Generation ends after any of these tokens (included in the output).
    pub eos_token_ids: Vec<u32>,
    /// Generation ends once the decoded text contains any of these (needs a tokenizer).
    pub stop_strings: Vec<String>,
}

impl GenerationConfig {
    /// Greedy decoding of up to `max_new_tokens`, stopping at `eos`.
    pub fn greedy(max_new_tokens: usize, eos: Vec<u32>) -> Self {
        Self {
            max_new_tokens,
            decoding: Decoding::Greedy,
            eos_token_ids: eos,
            stop_strings: Vec::new(),
        }
    }
}

struct Stopper<'a> {
    cfg: &'a GenerationConfig,
    tokenizer: Option<&'a TextTokenizer>,
}

impl Stopper<'_> {
    /// True when `tokens` (all new tokens so far) end generation.
    fn hits(&self, tokens: &[u32]) -> Result<bool> {
        if let Some(&last) = tokens.last() {
            if self.cfg.eos_token_ids.contains(&last) {
                return Ok(true);
            }
        }
        if tokens.len() >= self.cfg.max_new_tokens {
            return Ok(true);
        }
        if !self.cfg.stop_strings.is_empty() {
            if let Some(tok) = self.tokenizer {
                let text = tok.decode(tokens)?;
                if self
                    .cfg
                    .stop_strings
                    .iter()
                    .any(|s| text.contains(s.as_str()))
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// The decoded text of generated `tokens`, cut before the first stop string.
pub fn finish_text(
    tokenizer: &TextTokenizer,
    tokens: &[u32],
    cfg: &GenerationConfig,
) -> Result<String> {
    let mut text = tokenizer.decode(tokens)?;
    for s in &cfg.stop_strings {
        if let Some(i) = text.find(s.as_str()) {
            text.truncate(i);
        }
    }
    Ok(text.trim().to_owned())
}

fn last_logits(lm: &Llama, hidden: &Tensor) -> Result<Vec<Vec<f32>>> {
    let t = hidden.dim(1)?;
    let last = hidden.narrow(1, t - 1, 1)?.squeeze(1)?;
    Ok(lm.logits(&last)?.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn log_softmax(v: &[f32]) -> Vec<f32> {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = v.iter().map(|&x| (x - max).exp()).sum::<f32>().ln();
    v.iter().map(|&x| x - max - lse).collect()
}

/// Samples from `logits` with temperature and nucleus filtering.
fn sample(logits: &[f32], temperature: f64, top_p: f64, rng: &mut ChaCha8Rng) -> u32 {
    let scaled: Vec<f32> = logits.iter().map(|&x| x / temperature as f32).collect();
    let probs: Vec<f32> = log_softmax(&scaled).iter().map(|x| x.exp()).collect();
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut kept = Vec::new();
    let mut mass = 0f64;
    for &i in &order {
        kept.push(i);
        mass += f64::from(probs[i]);
        if mass >= top_p {
            break;
        }
    }
    let u = rng.random::<f64>() * mass;
    let mut acc = 0f64;
    for &i in &kept {
        acc += f64::from(probs[i]);
        if u < acc {
            return i as u32;
        }
    }
    kept.last().copied().unwrap_or(0) as u32
}

/// Generates from prompt embeddings `[B, T, d]` (all rows share the prompt length, as
/// report prompts do). Returns the new tokens of each row, the EOS token included when one
/// ended it. Beam search decodes the rows one at a time.
pub fn generate(
    lm: &Llama,
    prompt_embeds: &Tensor,
    cfg: &GenerationConfig,
    tokenizer: Option<&TextTokenizer>,
) -> Result<Vec<Vec<u32>>> {
    let (b, t, _) = prompt_embeds.dims3()?;
    if t == 0 {
        return Err(Error::bad_input("prompt_embeds", "empty prompt"));
    }
    if cfg.max_new_tokens == 0 {
        return Ok(vec![Vec::new(); b]);
    }
    if !cfg.stop_strings.is_empty() && tokenizer.is_none() {
        return Err(Error::bad_input("stop_strings", "need a tokenizer"));
    }
    let stopper = Stopper { cfg, tokenizer };
    match cfg.decoding {
        Decoding::Beam {
            num_beams,
            length_penalty,
            early_stopping,
        } => {
            if num_beams == 0 {
                return Err(Error::bad_input("num_beams", "must be positive"));
            }
            (0..b)
                .map(|i| {
                    beam_search(
                        lm,
                        &prompt_embeds.narrow(0, i, 1)?,
                        num_beams,
                        length_penalty,
                        early_stopping,
                        &stopper,
                    )
                })
                .collect()
        }
        Decoding::Greedy => step_decode(lm, prompt_embeds, &stopper, None),
        Decoding::Sample {
            temperature,
            top_p,
            seed,
        } => {
            if temperature <= 0.0 || !(top_p > 0.0 && top_p <= 1.0) {
                return Err(Error::bad_input(
                    "sampling",
                    format!("temperature {temperature} must be > 0 and top_p {top_p} in (0, 1]"),
                ));
            }
            let rng = ChaCha8Rng::seed_from_u64(seed);
            step_decode(lm, prompt_embeds, &stopper, Some((temperature, top_p, rng)))
        }
    }
}

/// Greedy or sampled decoding of a batch, one cached step per token.
fn step_decode(
    lm: &Llama,
    prompt_embeds: &Tensor,
    stopper: &Stopper,
    mut sampling: Option<(f64, f64, ChaCha8Rng)>,
) -> Result<Vec<Vec<u32>>> {
    let b = prompt_embeds.dim(0)?;
    let mut cache = lm.new_cache();
    let hidden = lm.forward_hidden(prompt_embeds, Some(&mut cache), Kernels::Fused)?;
    let mut logits = last_logits(lm, &hidden)?;
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut done = vec![false; b];
    loop {
        let mut feed = Vec::with_capacity(b);
        for i in 0..b {
            if done[i] {
                // a finished row keeps running with its last token; its outputs are unused
                feed.push(out[i].last().copied().unwrap_or(0));
                continue;
            }
            let tok = match sampling.as_mut() {
                None => argmax(&logits[i]),
                Some((temp, top_p, rng)) => sample(&logits[i], *temp, *top_p, rng),
            };
            out[i].push(tok);
            feed.push(tok);
            if stopper.hits(&out[i])? {
                done[i] = true;
            }
        }
        if done.iter().all(|&d| d) {
            return Ok(out);
        }
        let ids = Tensor::from_vec(feed, (b, 1), lm.device())?;
        let emb = lm.embed(&ids)?.to_dtype(prompt_embeds.dtype())?;
        let hidden = lm.forward_hidden(&emb, Some(&mut cache), Kernels::Fused)?;
        logits = last_logits(lm, &hidden)?;
    }
}

/// Indices of the `k` largest values, largest first (lower index first on ties).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// transformers' vectorised beam search for one prompt (`[1, T, d]`).
fn beam_search(
    lm: &Llama,
    prompt: &Tensor,
    num_beams: usize,
    length_penalty: f64,
    early_stopping: bool,
    stopper: &Stopper,
) -> Result<Vec<u32>> {
    const NEG: f32 = -1.0e9;
    let n_eos = stopper.cfg.eos_token_ids.len();
    let keep = 2usize.max(1 + n_eos) * num_beams;
    let mut cache: KvCache = lm.new_cache();
    let hidden = lm.forward_hidden(prompt, Some(&mut cache), Kernels::Fused)?;
    let first = last_logits(lm, &hidden)?;
    let dev = lm.device().clone();
    cache.select(&Tensor::from_vec(vec![0u32; num_beams], num_beams, &dev)?)?;
    let mut logits: Vec<Vec<f32>> = vec![first[0].clone(); num_beams];
    let mut running: Vec<Vec<u32>> = vec![Vec::new(); num_beams];
    let mut running_scores: Vec<f32> = (0..num_beams)
        .map(|i| if i == 0 { 0.0 } else { NEG })
        .collect();
    let mut finished: Vec<(Vec<u32>, f32, bool)> = vec![(Vec::new(), NEG, false); num_beams];
    let mut improvable = true;
    let mut cur_len = 0usize;
    loop {
        let vocab = logits[0].len();
        let mut acc = Vec::with_capacity(num_beams * vocab);
        for (beam, l) in logits.iter().enumerate() {
            let s = running_scores[beam];
            acc.extend(log_softmax(l).into_iter().map(|x| x + s));
        }
        let cands: Vec<(usize, u32, f32)> = top_k(&acc, keep)
            .into_iter()
            .map(|i| (i / vocab, (i % vocab) as u32, acc[i]))
            .collect();
        let mut seqs = Vec::with_capacity(keep);
        let mut hits = Vec::with_capacity(keep);
        for &(beam, tok, _) in &cands {
            let mut s = running[beam].clone();
            s.push(tok);
            hits.push(stopper.hits(&s)?);
            seqs.push(s);
        }
        // running beams for the next step: best non-finished candidates
        let masked: Vec<f32> = cands
            .iter()
            .zip(&hits)
            .map(|(c, &h)| if h { c.2 + NEG } else { c.2 })
            .collect();
        let next = top_k(&masked, num_beams);
        // finished hypotheses: merge the old ones with the top-num_beams candidates that ended
        let all_full = finished.iter().all(|f| f.2) && early_stopping;
        let denom = ((cur_len + 1) as f32).powf(length_penalty as f32);
        let mut merged = finished.clone();
        for (k, c) in cands.iter().enumerate() {
            let just = hits[k] && k < num_beams;
            let mut score = c.2 / denom;
            if all_full {
                score += NEG;
            }
            if !improvable {
                score += NEG;
            }
            if !just {
                score += NEG;
            }
            merged.push((seqs[k].clone(), score, just));
        }
        let order = top_k(&merged.iter().map(|m| m.1).collect::<Vec<_>>(), num_beams);
        finished = order.iter().map(|&i| merged[i].clone()).collect();
        let origins: Vec<u32> = next.iter().map(|&k| cands[k].0 as u32).collect();
        running = next.iter().map(|&k| seqs[k].clone()).collect();
        running_scores = next.iter().map(|&k| masked[k]).collect();
        cur_len += 1;
        // transformers' early-stop heuristic (early_stopping=False: best running score at the
        // current length against the worst finished one)
        let best_running = running_scores[0] / (cur_len as f32).powf(length_penalty as f32);
        let worst_finished = finished.iter().map(|f| f.1).fold(f32::INFINITY, f32::min);
        improvable = improvable
            && finished
                .iter()
                .any(|f| best_running > if f.2 { worst_finished } else { NEG });
        let open = !(finished.iter().all(|f| f.2) && early_stopping);
        let continuable = !hits.iter().all(|&h| h);
        if !(improvable && open && continuable) {
            break;
        }
        cache.select(&Tensor::from_vec(origins, num_beams, &dev)?)?;
        let last: Vec<u32> = running
            .iter()
            .map(|s| s.last().copied().unwrap_or(0))
            .collect();
        let ids = Tensor::from_vec(last, (num_beams, 1), &dev)?;
        let emb = lm.embed(&ids)?.to_dtype(prompt.dtype())?;
        let hidden = lm.forward_hidden(&emb, Some(&mut cache), Kernels::Fused)?;
        logits = last_logits(lm, &hidden)?;
    }
    Ok(finished.into_iter().next().map(|f| f.0).unwrap_or_default())
}
