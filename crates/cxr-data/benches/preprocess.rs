//! PNG and DICOM → RAD-DINO 518×518 normalised tensor, one core.
//! Counterpart: `benches/preprocess_py.py` (PIL + transformers' PIL BitImageProcessor, pydicom).
#![allow(clippy::unwrap_used)] // benches may unwrap

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cxr_data::shards::{sample_key, ShardWriter};
use cxr_data::{decode_file, DecodeOptions, DicomOptions, ImageProcessor, ImageSource, ShardIndex};

use cxr_testkit::shared_dir as shared;

fn bench(c: &mut Criterion) {
    let proc = ImageProcessor::from_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/processor/rad_dino_preprocessor_config.json"
    ))
    .unwrap();
    let mini = shared().join("data/cxr-mini");
    let full = DecodeOptions::default();
    // opt-in reduced-resolution JPEG 2000 decode (a different, blurrier image; see DicomOptions)
    let reduce1 = DecodeOptions {
        dicom: DicomOptions {
            j2k_reduce: 1,
            ..Default::default()
        },
    };
    let cases = [
        ("png_512x419", mini.join("images/53c9be49.png"), full),
        (
            "dicom_jpeg_1024",
            mini.join("dicom/siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"),
            full,
        ),
        (
            "dicom_j2k_1841x1955",
            mini.join("dicom/wg04_RG1_J2KI.dcm"),
            full,
        ),
        (
            "dicom_j2k_1841x1955_reduce1",
            mini.join("dicom/wg04_RG1_J2KI.dcm"),
            reduce1,
        ),
    ];
    let mut g = c.benchmark_group("to_518_tensor");
    g.throughput(Throughput::Elements(1));
    for (name, path, opts) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                let img = decode_file(&path, &opts).unwrap();
                proc.apply(&img).unwrap()
            })
        });
    }
    g.finish();

    // File to gray [0, 1] alone (parse, decode, modality and VOI LUT), the counterpart of the
    // Python side's `decode_only/…` case: it splits the JPEG 2000 row into decoding and the
    // rest of the pipeline.
    let mut g = c.benchmark_group("decode_only");
    g.throughput(Throughput::Elements(1));
    let j2k = mini.join("dicom/wg04_RG1_J2KI.dcm");
    g.bench_function("dicom_j2k_1841x1955", |b| {
        b.iter(|| decode_file(&j2k, &full).unwrap())
    });
    g.finish();

    // The same 16 cxr-mini PNGs read and decoded as files and as samples of tar shards
    // (ShardIndex: open, seek, read per image): what a loader pays for shards.
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(mini.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .take(16)
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::new(tmp.path(), "bench", 8).unwrap();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        w.write(&sample_key(f), "png", &bytes, &serde_json::json!({}))
            .unwrap();
    }
    w.finish().unwrap();
    let index = ShardIndex::from_dir(tmp.path()).unwrap();
    let mut g = c.benchmark_group("source_16_png");
    g.throughput(Throughput::Elements(files.len() as u64));
    for (name, source) in [
        ("files", &files as &dyn ImageSource),
        ("shards", &index as &dyn ImageSource),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                (0..source.len())
                    .map(|i| source.decode(i, &full).unwrap().data.len())
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
