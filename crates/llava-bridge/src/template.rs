//! Prompt assembly: the Vicuna v1 conversation template of LLaVA-1.5, the position of the
//! image tokens, and the label mask (`-100` everywhere except the report tokens).

use crate::tokenizer::TextTokenizer;
use crate::{Error, Result};

/// The image placeholder in prompts.
pub const IMAGE_TOKEN: &str = "<image>";
/// The report-generation instruction of the RAD-DINO paper.
pub const FINDINGS_PROMPT: &str = "Provide a description of the findings in the radiology image.";
/// Label of positions that carry no loss (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// A two-role conversation template (LLaVA's `conv_vicuna_v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The system message.
    pub system: String,
    /// The user role name.
    pub user: String,
    /// The assistant role name.
    pub assistant: String,
    /// Separator after the system message and the user turn.
    pub sep: String,
}

impl Conversation {
    /// LLaVA-1.5's `vicuna_v1` template.
    pub fn vicuna_v1() -> Self {
        Self {
            system: "A chat between a curious user and an artificial intelligence assistant. \
                     The assistant gives helpful, detailed, and polite answers to the user's \
                     questions."
                .into(),
            user: "USER".into(),
            assistant: "ASSISTANT".into(),
            sep: " ".into(),
        }
    }

    /// The generation prompt: `"{system} USER: <image>\n{question} ASSISTANT:"`.
    pub fn prompt(&self, question: &str) -> String {
        format!(
            "{}{}{}: {IMAGE_TOKEN}\n{question}{}{}:",
            self.system, self.sep, self.user, self.sep, self.assistant
        )
    }

    /// The prompt split around the image token: text before and after it.
    pub fn split_at_image(&self, question: &str) -> (String, String) {
        let p = self.prompt(question);
        match p.split_once(IMAGE_TOKEN) {
            Some((a, b)) => (a.to_owned(), b.to_owned()),
            None => (p, String::new()),
        }
    }
}

/// One tokenized example: `bos? before <image tokens> after target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Tokens before the image (BOS included).
    pub before: Vec<u32>,
    /// Prompt tokens after the image.
    pub after: Vec<u32>,
    /// Report tokens followed by EOS (empty for generation prompts).
    pub target: Vec<u32>,
}

impl Example {
    /// Sequence length with `n_image` image tokens.
    pub fn len(&self, n_image: usize) -> usize {
        self.before.len() + n_image + self.after.len() + self.target.len()
    }

    /// Per-position labels: the target tokens at their positions, [`IGNORE_INDEX`] elsewhere
    /// (prompt, image, and padding up to `padded_len`).
    pub fn labels(&self, n_image: usize, padded_len: usize) -> Vec<i64> {
        let prefix = self.before.len() + n_image + self.after.len();
        let mut out = vec![IGNORE_INDEX; padded_len.max(self.len(n_image))];
        for (i, &t) in self.target.iter().enumerate() {
            out[prefix + i] = i64::from(t);
        }
        out.truncate(padded_len.max(self.len(n_image)));
        out
    }
}

/// Turns reports into tokenized [`Example`]s with one template and question.
#[derive(Debug, Clone)]
pub struct PromptEncoder {
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
    /// The template.
    pub conversation: Conversation,
    /// The instruction after the image.
    pub question: String,
    /// Prepended to every sequence.
    pub bos: Option<u32>,
    /// Appended to every target.
    pub eos: Option<u32>,
}

impl PromptEncoder {
    /// The generation prompt (empty target).
    pub fn prompt(&self) -> Result<Example> {
        let (before, after) = self.conversation.split_at_image(&self.question);
        let mut b: Vec<u32> = self.bos.into_iter().collect();
        b.extend(self.tokenizer.encode(&before)?);
        Ok(Example {
            before: b,
            after: self.tokenizer.encode(&after)?,
            target: Vec::new(),
        })
    }

    /// A training example: the prompt, then `" {report}"` and EOS as the target. The target
    /// tokens are those of `after + " " + report` whose span ends past the prompt text, so the
    /// tokenizer's handling of the joining space is respected; the prompt tokens are encoded
    /// alone exactly as at generation time.
    pub fn example(&self, report: &str) -> Result<Example> {
        let mut ex = self.prompt()?;
        let (_, after) = self.conversation.split_at_image(&self.question);
        let boundary = after.chars().count();
        let joined = format!("{after} {}", report.trim());
        let enc = self.tokenizer.encode_with_offsets(&joined)?;
        let target: Vec<u32> = enc
            .iter()
            .filter(|(_, (_, end))| *end > boundary)
            .map(|(id, _)| *id)
            .collect();
        if target.is_empty() {
            return Err(Error::bad_input("report", "empty after tokenization"));
        }
        ex.target = target;
        ex.target.extend(self.eos);
        Ok(ex)
    }
}
