//! The text-tower contract: token ids and attention mask in, sentence embedding out.

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// A tokenized batch: `input_ids` and `attention_mask`, both `[B, L]` `u32` on one device.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Token ids.
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

impl TokenBatch {
    /// Builds a batch from rows of equal length; the mask marks every token as real unless
    /// `mask` is given.
    pub fn from_rows(ids: &[Vec<u32>], mask: Option<&[Vec<u32>]>, device: &Device) -> Result<Self> {
        let b = ids.len();
        let l = ids.first().map_or(0, Vec::len);
        if b == 0 || l == 0 || ids.iter().any(|r| r.len() != l) {
            return Err(Error::arg(
                "ids",
                "a non-empty batch of non-empty rows of one length",
            ));
        }
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let input_ids = Tensor::from_vec(flat, (b, l), device)?;
        let attention_mask = match mask {
            Some(m) => {
                if m.len() != b || m.iter().any(|r| r.len() != l) {
                    return Err(Error::arg("mask", format!("{b} rows of length {l}")));
                }
                let flat: Vec<u32> = m.iter().flatten().copied().collect();
                Tensor::from_vec(flat, (b, l), device)?
            }
            None => Tensor::ones((b, l), DType::U32, device)?,
        };
        Ok(Self {
            input_ids,
            attention_mask,
        })
    }

    /// `(batch, length)`, after checking that ids and mask agree.
    pub fn dims(&self) -> Result<(usize, usize)> {
        let dims = self.input_ids.dims2().map_err(|_| {
            Error::bad_input("input_ids", "[B, L] token ids", self.input_ids.dims())
        })?;
        if self.attention_mask.dims() != [dims.0, dims.1] {
            return Err(Error::bad_input(
                "attention_mask",
                format!("[{}, {}] like input_ids", dims.0, dims.1),
                self.attention_mask.dims(),
            ));
        }
        Ok(dims)
    }
}

/// What a text tower returns for a batch.
#[derive(Debug, Clone)]
pub struct TextEmbedding {
    /// `[B, width]`: the pooled hidden state, before any projection.
    pub pooled: Tensor,
    /// `[B, embed_dim]`: the pooled state in the joint image–text space, not normalised.
    pub projected: Tensor,
}

/// A text encoder of a dual encoder (CLIP/UniCL transformer, BERT-family models).
pub trait TextEncoder: Send + Sync {
    /// Encodes a tokenized batch.
    fn encode(&self, batch: &TokenBatch) -> Result<TextEmbedding>;

    /// Width of [`TextEmbedding::projected`].
    fn embed_dim(&self) -> usize;

    /// Width of [`TextEmbedding::pooled`].
    fn hidden_dim(&self) -> usize;

    /// The longest token sequence the encoder takes.
    fn max_length(&self) -> usize;

    /// The device the weights live on.
    fn device(&self) -> &Device;
}
