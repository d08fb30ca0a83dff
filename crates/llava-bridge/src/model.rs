//! The report generator: frozen encoder → projector → decoder, with the image tokens spliced
//! into the prompt where `<image>` stands, and the next-token loss on report tokens only.

use candle_core::{DType, Tensor};
use cxr_core::{Encoder, FeatureRequest};

use crate::generate::{generate, GenerationConfig};
use crate::llama::{Kernels, Llama};
use crate::projector::Projector;
use crate::template::{Example, IGNORE_INDEX};
use crate::tokenizer::TextTokenizer;
use crate::{Error, Result};

/// Projector + decoder, working on image features already extracted by an encoder.
#[derive(Debug, Clone)]
pub struct ReportGenerator {
    /// The trainable projector.
    pub projector: Projector,
    /// The decoder (frozen, or with LoRA adapters).
    pub lm: Llama,
}

/// Input embeddings of a batch and its labels.
#[derive(Debug, Clone)]
pub struct SplicedBatch {
    /// `[B, T, d_lm]`, right-padded with zeros.
    pub embeds: Tensor,
    /// `[B][T]` labels, [`IGNORE_INDEX`] except at report tokens.
    pub labels: Vec<Vec<i64>>,
}

impl ReportGenerator {
    /// Joins a projector and a decoder of matching widths.
    pub fn new(projector: Projector, lm: Llama) -> Result<Self> {
        if projector.d_lm() != lm.hidden_size() {
            return Err(Error::bad_input(
                "projector",
                format!(
                    "output width {} but the decoder is {} wide",
                    projector.d_lm(),
                    lm.hidden_size()
                ),
            ));
        }
        Ok(Self { projector, lm })
    }

    /// Splices projected image tokens `image_embeds` (`[B, N, d_lm]`) into the token
    /// embeddings of `examples` (one per image) at the image position, as LLaVA's
    /// `masked_scatter` does, and right-pads to the longest example.
    pub fn splice(&self, image_embeds: &Tensor, examples: &[Example]) -> Result<SplicedBatch> {
        let (b, n, d) = image_embeds.dims3()?;
        if b != examples.len() {
            return Err(Error::bad_input(
                "examples",
                format!("{} examples for {b} images", examples.len()),
            ));
        }
        let max_len = examples.iter().map(|e| e.len(n)).max().unwrap_or(0);
        let dev = image_embeds.device();
        let dtype = image_embeds.dtype();
        let embed = |ids: &[u32]| -> Result<Option<Tensor>> {
            if ids.is_empty() {
                return Ok(None);
            }
            let t = Tensor::from_slice(ids, (1, ids.len()), dev)?;
            Ok(Some(self.lm.embed(&t)?.squeeze(0)?.to_dtype(dtype)?))
        };
        let mut rows = Vec::with_capacity(b);
        let mut labels = Vec::with_capacity(b);
        for (i, ex) in examples.iter().enumerate() {
            let tail: Vec<u32> = ex.after.iter().chain(&ex.target).copied().collect();
            let mut parts: Vec<Tensor> = Vec::new();
            parts.extend(embed(&ex.before)?);
            parts.push(image_embeds.get(i)?);
            parts.extend(embed(&tail)?);
            let len = ex.len(n);
            if len < max_len {
                parts.push(Tensor::zeros((max_len - len, d), dtype, dev)?);
            }
            rows.push(Tensor::cat(&parts, 0)?);
            labels.push(ex.labels(n, max_len));
        }
        Ok(SplicedBatch {
            embeds: Tensor::stack(&rows, 0)?,
            labels,
        })
    }

    /// Mean next-token cross-entropy over the report tokens (transformers' causal-LM loss:
    /// position `t` predicts label `t + 1`), through the differentiable decoder, from image
    /// features `[B, N, d_vision]`. Gradients reach the projector and any LoRA variables.
    pub fn loss(&self, image_features: &Tensor, examples: &[Example]) -> Result<Tensor> {
        let image_embeds = self.projector.forward(image_features)?;
        let batch = self.splice(&image_embeds, examples)?;
        let hidden = self
            .lm
            .forward_hidden(&batch.embeds, None, Kernels::Differentiable)?;
        causal_lm_loss(&self.lm, &hidden, &batch.labels)
    }

    /// Generates one report token sequence per image from features `[B, N, d_vision]` and
    /// one generation prompt (the same for every image).
    pub fn generate(
        &self,
        image_features: &Tensor,
        prompt: &Example,
        cfg: &GenerationConfig,
        tokenizer: Option<&TextTokenizer>,
    ) -> Result<Vec<Vec<u32>>> {
        if !prompt.target.is_empty() {
            return Err(Error::bad_input("prompt", "has target tokens"));
        }
        let image_embeds = self.projector.forward(image_features)?;
        let b = image_embeds.dim(0)?;
        let batch = self.splice(&image_embeds, &vec![prompt.clone(); b])?;
        generate(&self.lm, &batch.embeds, cfg, tokenizer)
    }
}

/// The causal-LM loss of final hidden states `[B, T, d]` against per-position labels:
/// only rows whose next label is not ignored go through the output head.
pub fn causal_lm_loss(lm: &Llama, hidden: &Tensor, labels: &[Vec<i64>]) -> Result<Tensor> {
    let (b, t, d) = hidden.dims3()?;
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (i, l) in labels.iter().enumerate().take(b) {
        if l.len() != t {
            return Err(Error::bad_input(
                "labels",
                format!("row {i} has {} labels for {t} positions", l.len()),
            ));
        }
        for p in 0..t.saturating_sub(1) {
            let y = l[p + 1];
            if y != IGNORE_INDEX {
                let y = u32::try_from(y)
                    .ok()
                    .filter(|&y| (y as usize) < lm.config().vocab_size)
                    .ok_or_else(|| Error::bad_input("labels", format!("label {y} out of range")))?;
                rows.push((i * t + p) as u32);
                targets.push(y);
            }
        }
    }
    if rows.is_empty() {
        return Err(Error::bad_input("labels", "no position carries a label"));
    }
    let dev = hidden.device();
    let r = rows.len();
    let rows = Tensor::from_vec(rows, r, dev)?;
    let targets = Tensor::from_vec(targets, (r, 1), dev)?;
    let h = hidden.reshape((b * t, d))?.index_select(&rows, 0)?;
    let logits = lm.logits(&h)?;
    // half-precision logits are upcast, as transformers' loss does; f32/f64 stay as they are
    let logits = match logits.dtype() {
        DType::F16 | DType::BF16 => logits.to_dtype(DType::F32)?,
        _ => logits,
    };
    let logp = cxr_core::ops::log_softmax_last_dim(&logits)?;
    Ok(logp.gather(&targets, 1)?.mean_all()?.neg()?)
}

/// Which encoder output feeds the projector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VisionFeatures {
    /// The final (normed) patch tokens.
    #[default]
    Final,
    /// The patch tokens of an intermediate block (LLaVA uses CLIP's penultimate layer).
    Layer(usize),
}

/// A frozen vision encoder in front of a [`ReportGenerator`].
#[derive(Debug)]
pub struct LlavaModel<E: Encoder> {
    /// The frozen encoder.
    pub encoder: E,
    /// Projector + decoder.
    pub generator: ReportGenerator,
    /// Which encoder tokens are projected.
    pub features: VisionFeatures,
}

impl<E: Encoder> LlavaModel<E> {
    /// Joins an encoder and a generator of matching widths.
    pub fn new(encoder: E, generator: ReportGenerator, features: VisionFeatures) -> Result<Self> {
        let info = encoder.feature_info();
        let width = match features {
            VisionFeatures::Final => info.embed_dim,
            VisionFeatures::Layer(l) => {
                info.layers
                    .get(l)
                    .ok_or_else(|| {
                        Error::bad_input("features", format!("encoder has no layer {l}"))
                    })?
                    .channels
            }
        };
        if width != generator.projector.d_vision() {
            return Err(Error::bad_input(
                "projector",
                format!(
                    "input width {} but the encoder gives {width}",
                    generator.projector.d_vision()
                ),
            ));
        }
        Ok(Self {
            encoder,
            generator,
            features,
        })
    }

    /// Patch tokens `[B, N, d_vision]` of preprocessed pixels, detached (the encoder is frozen).
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let request = match self.features {
            VisionFeatures::Final => FeatureRequest::default(),
            VisionFeatures::Layer(l) => FeatureRequest::with_layers(vec![l]),
        };
        let f = self.encoder.forward_features(pixels, &request)?;
        let tokens = match self.features {
            VisionFeatures::Final => f.patch_tokens,
            VisionFeatures::Layer(l) => f
                .intermediate(l)
                .map(|i| i.tokens.clone())
                .ok_or_else(|| Error::bad_input("features", format!("layer {l} not returned")))?,
        };
        Ok(tokens.contiguous()?.detach())
    }

    /// The training loss of a batch of images and their examples.
    pub fn loss(&self, pixels: &Tensor, examples: &[Example]) -> Result<Tensor> {
        self.generator.loss(&self.image_features(pixels)?, examples)
    }

    /// Generated token ids per image.
    pub fn generate(
        &self,
        pixels: &Tensor,
        prompt: &Example,
        cfg: &GenerationConfig,
        tokenizer: Option<&TextTokenizer>,
    ) -> Result<Vec<Vec<u32>>> {
        self.generator
            .generate(&self.image_features(pixels)?, prompt, cfg, tokenizer)
    }
}
