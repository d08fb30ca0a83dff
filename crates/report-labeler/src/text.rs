//! Report text → sections → sentences of lower-cased tokens.
//!
//! Words are runs of alphanumeric characters (any script). A `.` stays inside a word between
//! two digits (`2.5`) and in one-letter abbreviations (`e.g`, `i.e`); an apostrophe stays
//! between two letters (`can't`). Hyphens, slashes and other symbols separate words
//! (`ground-glass` → `ground glass`). `,` `;` `:` `(` `)` are kept as punctuation tokens
//! because they bound negation and uncertainty scopes. Sentences end at `.` `!` `?` (not
//! after a known abbreviation such as `vs.`) and at blank lines.

/// One token of a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A lower-cased word.
    Word(String),
    /// One of `, ; : ( )`.
    Punct(char),
}

impl Token {
    pub(crate) fn word(&self) -> Option<&str> {
        match self {
            Token::Word(w) => Some(w),
            Token::Punct(_) => None,
        }
    }

    /// The token's text (punctuation as itself).
    pub(crate) fn text(&self) -> String {
        match self {
            Token::Word(w) => w.clone(),
            Token::Punct(c) => c.to_string(),
        }
    }
}

/// A sentence: its tokens (never empty).
pub(crate) type Sentence = Vec<Token>;

/// Abbreviations after which a period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "vs", "e.g", "i.e", "approx", "dr", "cf", "incl", "fig", "mr", "mrs", "ms", "pt", "st",
];

/// Section headers (written `NAME:`) whose text describes the request, not the image; their
/// sentences are skipped when section skipping is on.
const SKIPPED_SECTIONS: &[&str] = &[
    "indication",
    "indications",
    "history",
    "clinical history",
    "clinical information",
    "clinical indication",
    "reason for exam",
    "reason for examination",
    "reason for study",
    "comparison",
    "comparisons",
    "technique",
    "examination",
    "exam",
    "procedure",
    "notification",
    "recommendation",
    "recommendations",
];

/// Section headers whose text is labelled.
const KEPT_SECTIONS: &[&str] = &[
    "findings",
    "finding",
    "impression",
    "impressions",
    "conclusion",
    "conclusions",
    "summary",
    "report",
    "opinion",
];

#[derive(Debug, Clone, PartialEq)]
enum RawToken {
    Token(Token),
    SentenceEnd,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

fn lowercase_chars(text: &str) -> Vec<char> {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{02bc}' => '\'',
            c => c,
        })
        .collect()
}

fn raw_tokens(text: &str) -> Vec<RawToken> {
    let chars = lowercase_chars(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_word_char(c) {
            let mut word = String::new();
            // length of the current dot-separated segment, for one-letter abbreviations
            let mut segment = 0usize;
            while i < chars.len() {
                let c = chars[i];
                if is_word_char(c) {
                    word.push(c);
                    segment += 1;
                    i += 1;
                    continue;
                }
                let prev = chars.get(i.wrapping_sub(1)).copied();
                let next = chars.get(i + 1).copied();
                let joins = match (c, prev, next) {
                    ('.', Some(p), Some(n)) => {
                        (p.is_numeric() && n.is_numeric())
                            || (segment == 1 && p.is_alphabetic() && n.is_alphabetic())
                    }
                    ('\'', Some(p), Some(n)) => p.is_alphabetic() && n.is_alphabetic(),
                    _ => false,
                };
                if !joins {
                    break;
                }
                word.push(c);
                segment = 0;
                i += 1;
            }
            out.push(RawToken::Token(Token::Word(word)));
            continue;
        }
        match c {
            ',' | ';' | ':' | '(' | ')' => out.push(RawToken::Token(Token::Punct(c))),
            '.' => {
                let after_abbreviation = matches!(
                    out.last(),
                    Some(RawToken::Token(Token::Word(w))) if ABBREVIATIONS.contains(&w.as_str())
                );
                if !after_abbreviation {
                    out.push(RawToken::SentenceEnd);
                }
            }
            '!' | '?' => out.push(RawToken::SentenceEnd),
            '\n' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '\n' && chars[j].is_whitespace() {
                    j += 1;
                }
                if chars.get(j) == Some(&'\n') {
                    out.push(RawToken::SentenceEnd);
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// If a section header (`NAME:`) starts at `i`, its length in tokens (colon included) and
/// whether its section is skipped.
fn header_at(tokens: &[RawToken], i: usize) -> Option<(usize, bool)> {
    let mut words = Vec::new();
    for (k, t) in tokens[i..].iter().enumerate().take(4) {
        match t {
            RawToken::Token(Token::Word(w)) => words.push(w.as_str()),
            RawToken::Token(Token::Punct(':')) if !words.is_empty() => {
                let name = words.join(" ");
                if SKIPPED_SECTIONS.contains(&name.as_str()) {
                    return Some((k + 1, true));
                }
                if KEPT_SECTIONS.contains(&name.as_str()) {
                    return Some((k + 1, false));
                }
                return None;
            }
            _ => return None,
        }
    }
    None
}

/// Splits a report into sentences, dropping the sentences of skipped sections when
/// `skip_sections` is true.
pub(crate) fn sentences(text: &str, skip_sections: bool) -> Vec<Sentence> {
    let raw = raw_tokens(text);
    let mut out = Vec::new();
    let mut current: Sentence = Vec::new();
    let mut skipping = false;
    let mut i = 0;
    let flush = |current: &mut Sentence, skipping: bool, out: &mut Vec<Sentence>| {
        if !current.is_empty() {
            let s = std::mem::take(current);
            if !skipping {
                out.push(s);
            }
        }
    };
    while i < raw.len() {
        if let Some((len, skip)) = header_at(&raw, i) {
            flush(&mut current, skipping, &mut out);
            skipping = skip_sections && skip;
            i += len;
            continue;
        }
        match &raw[i] {
            RawToken::SentenceEnd => flush(&mut current, skipping, &mut out),
            RawToken::Token(t) => current.push(t.clone()),
        }
        i += 1;
    }
    flush(&mut current, skipping, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &Sentence) -> Vec<String> {
        s.iter().map(Token::text).collect()
    }

    #[test]
    fn splits_sentences_but_not_numbers_or_abbreviations() {
        let s = sentences(
            "A 2.5 cm nodule, e.g. here. Atelectasis vs. pneumonia!\nNext line\n\nNew one",
            true,
        );
        assert_eq!(s.len(), 4);
        assert_eq!(
            words(&s[0]),
            ["a", "2.5", "cm", "nodule", ",", "e.g", "here"]
        );
        assert_eq!(words(&s[1]), ["atelectasis", "vs", "pneumonia"]);
        assert_eq!(words(&s[2]), ["next", "line"]);
        assert_eq!(words(&s[3]), ["new", "one"]);
    }

    #[test]
    fn hyphens_and_apostrophes() {
        let s = sentences("Ground-glass opacity; can't exclude ‘PNA’", true);
        assert_eq!(
            words(&s[0]),
            ["ground", "glass", "opacity", ";", "can't", "exclude", "pna"]
        );
    }

    #[test]
    fn skips_request_sections() {
        let s = sentences(
            "INDICATION: Rule out pneumonia. FINDINGS: Clear lungs. IMPRESSION: Normal.",
            true,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(words(&s[0]), ["clear", "lungs"]);
        let all = sentences(
            "INDICATION: Rule out pneumonia. FINDINGS: Clear lungs.",
            false,
        );
        assert_eq!(all.len(), 2);
    }
}
