//! What a run was started on (its data, how labels became texts, …), kept beside its
//! checkpoints: a resume that would read other inputs is refused instead of silently
//! training on batches the uninterrupted run never saw.

use std::path::Path;

use serde_json::Value;

use crate::{write_atomic, Error, Result};

/// Records `value` as `out/<name>.json` for a new run; for a resumed run whose folder holds
/// that file, checks that `value` is what it holds, and fails naming the file otherwise (the
/// file is left as it was).
pub fn record_run_input(out: &Path, name: &str, value: &Value, resuming: bool) -> Result<()> {
    let path = out.join(format!("{name}.json"));
    if resuming && path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let before: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if &before != value {
            return Err(Error::Config(format!(
                "{} records other {name} than this resume would use; resume with the run's \
                 {name}, or start a new run in another folder",
                path.display()
            )));
        }
        return Ok(());
    }
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_atomic(&path, &bytes)
}

/// A stable 64-bit fingerprint (FNV-1a) of a list of names, e.g. the images of a run in
/// order: equal lists give equal fingerprints on every platform and Rust version.
pub fn fingerprint<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for name in names {
        for b in name.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_resume_with_other_inputs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = json!({"images": 3, "fingerprint": fingerprint(["a", "b", "c"])});
        record_run_input(dir.path(), "data", &data, false).unwrap();
        // the same inputs resume; other ones do not, and the record stays
        record_run_input(dir.path(), "data", &data, true).unwrap();
        let other = json!({"images": 3, "fingerprint": fingerprint(["a", "c", "b"])});
        let err = record_run_input(dir.path(), "data", &other, true).unwrap_err();
        assert!(err.to_string().contains("data.json"), "{err}");
        let kept: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("data.json")).unwrap()).unwrap();
        assert_eq!(kept, data);
        // a new run (or a resume of a run from before these records) writes it
        record_run_input(dir.path(), "data", &other, false).unwrap();
        record_run_input(dir.path(), "prompts", &other, true).unwrap();
        assert!(dir.path().join("prompts.json").is_file());
        // the fingerprint sees order and boundaries
        assert_ne!(fingerprint(["ab", "c"]), fingerprint(["a", "bc"]));
        // FNV-1a 64 over each name and a 0 byte after it (the value Python's arithmetic gives)
        assert_eq!(fingerprint(["x"]), 0x08f0_d807_b58d_20e5);
        assert_eq!(fingerprint([]), 0xcbf2_9ce4_8422_2325);
    }
}
