//! Every crate builds its integration tests as one binary (`autotests = false`, `tests/main.rs`
//! declaring each file as a module), so a new `tests/*.rs` file is compiled only once it is
//! declared there or given its own `[[test]]` target. This checks that none is left out: a
//! test file nobody compiles is a test that cannot fail.
#![allow(clippy::unwrap_used)] // a test

use std::path::{Path, PathBuf};

fn package_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.to_path_buf()];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        dirs.push(entry.unwrap().path());
    }
    dirs.sort();
    dirs
}

#[test]
fn every_test_file_belongs_to_a_test_target() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for dir in package_dirs() {
        let tests = dir.join("tests");
        if !tests.is_dir() {
            continue;
        }
        let main = std::fs::read_to_string(tests.join("main.rs")).unwrap_or_default();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        for entry in std::fs::read_dir(&tests).unwrap() {
            let path = entry.unwrap().path();
            let (Some(stem), Some("rs")) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            if stem == "main" || stem == "common" {
                continue;
            }
            checked += 1;
            let declared = main.lines().any(|l| l.trim() == format!("mod {stem};"));
            let own_target = manifest.contains(&format!("path = \"tests/{stem}.rs\""));
            if !declared && !own_target {
                missing.push(path.display().to_string());
            }
        }
        assert!(
            manifest.contains("autotests = false") && manifest.contains("path = \"tests/main.rs\""),
            "{}: expected `autotests = false` and a [[test]] at tests/main.rs",
            dir.display()
        );
    }
    assert!(checked > 50, "only {checked} test files found");
    assert!(
        missing.is_empty(),
        "test files in no test target: {missing:?}"
    );
}
