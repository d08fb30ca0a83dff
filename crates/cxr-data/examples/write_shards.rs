//! Packs the images of a manifest into WebDataset-style tar shards: one `<key>.<ext>` (the
//! image file's bytes as they are: PNG, JPEG or DICOM) and one `<key>.json` (patient, split,
//! labels, the other columns) per sample, at most `--per-shard` samples a shard, so that
//! millions of images stream or are read by index without one file each.
//!
//! ```text
//! cargo run --release -p cxr-data --example write_shards -- \
//!     --data ../shared/data/cxr-findings --split train --out out/shards/findings-train
//! cargo run --release -p dino-pretrain --example pretrain_dino -- \
//!     --shards out/shards/findings-train --out runs/dino ...
//! ```
//!
//! Expect on cxr-findings' train split: 322 images in 6 shards of at most 64 samples, about
//! 40 MB, in a second or two; every image is decoded once first (`--no-check` skips that),
//! so a corrupt file is reported by name before it is packed.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use cxr_data::decode::{sniff, Format};
use cxr_data::shards::{record_json, sample_key, ShardWriter};
use cxr_data::{decode_bytes, DecodeOptions, Manifest, ShardIndex, Split};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Val,
    Test,
    /// Every row, whatever its split.
    All,
}

#[derive(Debug, Parser)]
#[command(
    about = "Pack a data pack's images and labels into WebDataset-style tar shards",
    long_about = "Reads DIR/labels.csv (the cxr-mini or cxr-findings layout, chosen by its \
header), and writes OUT/<prefix>-000000.tar, … with each selected row's image bytes as they are \
and its metadata as JSON. The shards are what `pretrain_dino`, `pretrain_unicl`, `scaling_study` \
and `embed` read with `--shards OUT`; pretrain_unicl also evaluates on the val and test rows, so \
write those shards with --split all."
)]
struct Args {
    /// Data pack folder holding labels.csv and the images it names.
    #[arg(long, default_value = "../shared/data/cxr-findings")]
    data: PathBuf,
    /// Which rows to pack.
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    split: SplitArg,
    /// Output folder (created; must not hold shards already).
    #[arg(long)]
    out: PathBuf,
    /// Samples per shard.
    #[arg(long, default_value_t = 64, value_parser = cxr_core::ranges::at_least_one::<usize>)]
    per_shard: usize,
    /// Shard file prefix (default: the pack folder's name).
    #[arg(long)]
    prefix: Option<String>,
    /// Skip decoding each image before packing it.
    #[arg(long)]
    no_check: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let manifest = Manifest::from_pack(&a.data)?;
    let rows: Vec<usize> = match a.split {
        SplitArg::Train => manifest.indices_in(Split::Train),
        SplitArg::Val => manifest.indices_in(Split::Val),
        SplitArg::Test => manifest.indices_in(Split::Test),
        SplitArg::All => (0..manifest.records.len()).collect(),
    };
    if rows.is_empty() {
        bail!(
            "{}: no rows in split {:?}",
            manifest.path.display(),
            a.split
        );
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    if cxr_data::shards::shard_files(&a.out).is_ok() {
        bail!(
            "{} already holds .tar shards; choose an empty folder",
            a.out.display()
        );
    }
    let prefix = a.prefix.clone().unwrap_or_else(|| {
        let name = a.data.canonicalize().unwrap_or(a.data.clone());
        name.file_name()
            .map_or("shard".into(), |n| n.to_string_lossy().to_string())
    });
    let t0 = std::time::Instant::now();
    let mut writer = ShardWriter::new(&a.out, &prefix, a.per_shard)?;
    let bar = ProgressBar::new(rows.len() as u64).with_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} images {elapsed} (eta {eta})",
    )?);
    let mut bytes_total = 0usize;
    for &i in &rows {
        let record = &manifest.records[i];
        let path = &record.image;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if !a.no_check {
            decode_bytes(&bytes, path, &DecodeOptions::default())?;
        }
        let ext = match sniff(&bytes, path) {
            Some(Format::Png) => "png",
            Some(Format::Jpeg) => "jpg",
            Some(Format::Dicom) => "dcm",
            _ => bail!("{}: not a PNG, JPEG or DICOM file", path.display()),
        };
        writer.write(
            &sample_key(path),
            ext,
            &bytes,
            &record_json(&manifest, record),
        )?;
        bytes_total += bytes.len();
        bar.inc(1);
    }
    bar.finish_and_clear();
    let shards = writer.finish()?;
    // read back what was written: the count a loader will see
    let index = ShardIndex::build(shards.clone())?;
    println!(
        "{} images ({:.1} MB) from {} into {} shards in {} ({:.1} s); {} samples index back",
        rows.len(),
        bytes_total as f64 / 1e6,
        manifest.path.display(),
        shards.len(),
        a.out.display(),
        t0.elapsed().as_secs_f64(),
        index.len()
    );
    if index.len() != rows.len() {
        bail!(
            "{} samples read back, {} written: do two images share a key?",
            index.len(),
            rows.len()
        );
    }
    Ok(())
}
