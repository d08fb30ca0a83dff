//! Reading report files: one report per blank-line-separated block.

use std::path::Path;

use crate::error::{LabelerError, Result};

/// Splits text into reports at blank lines (lines holding only whitespace); each report's
/// lines are kept, trimmed of surrounding whitespace, and joined with `\n`. Empty blocks
/// (several blank lines in a row, leading or trailing ones) do not make reports.
pub fn split_reports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !block.is_empty() {
                out.push(block.join("\n"));
                block.clear();
            }
        } else {
            block.push(line.trim());
        }
    }
    if !block.is_empty() {
        out.push(block.join("\n"));
    }
    out
}

/// Reads a UTF-8 file of blank-line-separated reports ([`split_reports`]).
pub fn read_reports(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|error| LabelerError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(split_reports(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks() {
        let r = split_reports("\n\nA one.\n  a two.\n \t\nB.\n\n\n\nC.\n");
        assert_eq!(r, ["A one.\na two.", "B.", "C."]);
        assert!(split_reports("  \n\n").is_empty());
    }
}
