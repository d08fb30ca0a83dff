//! One UniCL text batch: label-set prompts and free-text reports side by side.

use crate::{BatchTargets, LabelSet, PromptSampler, Result};

/// What the text side of one batch sample is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchItem<'a> {
    /// Structured labels, rendered through the prompt templates; texts with equal labels
    /// (equal sets, or equal finding statements) are positives of each other.
    Labels(&'a LabelSet),
    /// A radiology report, used verbatim; positive only for its own image.
    Report(&'a str),
}

/// The texts to encode and the targets for the loss, in batch order.
#[derive(Debug, Clone, PartialEq)]
pub struct TextBatch {
    /// One text per sample.
    pub texts: Vec<String>,
    /// The label-equality grouping of the samples.
    pub targets: BatchTargets,
}

impl PromptSampler {
    /// Renders the batch of training step `step` (sample `i` draws with index `i`).
    pub fn assemble(&self, items: &[BatchItem<'_>], step: u64) -> Result<TextBatch> {
        let mut builder = BatchTargets::builder();
        let mut texts = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                BatchItem::Labels(set) => {
                    let (text, label) = self.labelled_text(set, step, i as u64)?;
                    texts.push(text);
                    builder.push_text_label(&label);
                }
                BatchItem::Report(r) => {
                    texts.push((*r).to_string());
                    builder.push_report();
                }
            }
        }
        Ok(TextBatch {
            texts,
            targets: builder.build(),
        })
    }
}
