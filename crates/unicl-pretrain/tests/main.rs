//! The integration tests of this crate as one binary: each module below is one of
//! `tests/*.rs`, so the suite links one executable per crate instead of one per file.
//! (The workspace root's `tests/test_targets.rs` checks that no file is left out.)
#![allow(clippy::unwrap_used)] // a failing test panics, that is its job

mod common;
mod mi2;
mod sampler;
mod shards;
mod tokenizer;
mod training;
