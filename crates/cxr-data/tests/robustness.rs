//! Corrupt, truncated and random inputs give typed errors and never panic.
#![allow(clippy::unwrap_used)] // tests may unwrap
use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use cxr_data::{decode_bytes, decode_file, DecodeOptions, Error, Manifest, ManifestSpec};
use proptest::prelude::*;

#[test]
fn corrupt_corpus_gives_errors_naming_the_file() {
    for name in [
        "truncated.png",
        "truncated_pixels.dcm",
        "header_only.dcm",
        "truncated.jpg",
        "garbage.bin",
        "empty.png",
        "mangled_meta.dcm",
    ] {
        let path = fixture(&format!("corrupt/{name}"));
        match decode_file(&path, &DecodeOptions::default()) {
            Ok(_) => panic!("{name} decoded"),
            Err(e) => {
                assert!(
                    matches!(e, Error::Decode { .. } | Error::Unsupported { .. }),
                    "{name}: {e:?}"
                );
                assert!(e.to_string().contains(name), "{e}");
            }
        }
    }
    let e = decode_file(fixture("corrupt/missing.png"), &DecodeOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    let e = Manifest::from_csv(
        fixture("corrupt/bad_manifest.csv"),
        &ManifestSpec::cxr_mini(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Manifest { line: 3, .. }), "{e:?}");
    // a column the manifest reads, named twice: the first used to win without a word
    let csv = "id,patient_id,icu,death,has_mask,mask_complete,split,icu\na,p,1,0,1,1,train,0\n";
    let e = Manifest::from_csv_bytes(
        csv.as_bytes(),
        Path::new("twice.csv"),
        Path::new("."),
        &ManifestSpec::cxr_mini(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "twice.csv:1: column `icu` appears twice (columns 3 and 8)"
    );
}

/// `bytes` with the US value of element `(0028, element)` (explicit VR little endian) set.
fn with_image_attribute(mut bytes: Vec<u8>, element: u16, value: u16) -> Vec<u8> {
    let [e0, e1] = element.to_le_bytes();
    let head = [0x28, 0x00, e0, e1, b'U', b'S', 2, 0];
    let at = bytes.windows(8).position(|w| w == head).unwrap() + 8;
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    bytes
}

/// A header whose Rows or Columns disagree with the encoded frame is a decode error naming
/// both sizes. dicom-pixeldata's JPEG and JPEG 2000 adapters index past their buffers on such
/// files (found by mutation fuzzing): that came out as an opaque "decoder failure: range end
/// index …".
#[test]
fn frame_size_disagreeing_with_the_header_is_named() {
    const ROWS: u16 = 0x0010;
    const COLUMNS: u16 = 0x0011;
    for (file, element, value, reduce, says) in [
        (
            "dicom/txv_Fake_MONOHR1.dcm",
            ROWS,
            1,
            0,
            "the JPEG frame is 1024 rows x 1024 columns, the header says 1 x 1024",
        ),
        (
            "dicom/txv_Fake_MONOHR1.dcm",
            COLUMNS,
            2048,
            0,
            "the JPEG frame is 1024 rows x 1024 columns, the header says 1024 x 2048",
        ),
        (
            "dicom/wg04_RG1_J2KI.dcm",
            COLUMNS,
            1241,
            0,
            "the JPEG 2000 frame is 1955 rows x 1841 columns, the header says 1955 x 1241",
        ),
        (
            "dicom/wg04_RG1_J2KI.dcm",
            COLUMNS,
            1241,
            1,
            "the JPEG 2000 frame is 978 rows x 921 columns, the header says 978 x 621",
        ),
    ] {
        let bytes = with_image_attribute(std::fs::read(mini().join(file)).unwrap(), element, value);
        let opts = DecodeOptions {
            dicom: cxr_data::DicomOptions {
                j2k_reduce: reduce,
                ..Default::default()
            },
        };
        let e = decode_bytes(&bytes, Path::new("forged.dcm"), &opts).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }), "{file}: {e:?}");
        assert_eq!(e.to_string(), format!("forged.dcm: cannot decode: {says}"));
    }
}

/// Zero rows, columns or samples per pixel are a decode error up front (dicom-pixeldata's
/// JPEG and JPEG 2000 adapters indexed into the empty buffer such a header implies).
#[test]
fn empty_declared_image_is_an_error() {
    const ROWS: u16 = 0x0010;
    const SAMPLES_PER_PIXEL: u16 = 0x0002;
    for (file, element, says) in [
        (
            "dicom/txv_Fake_MONOHR1.dcm",
            SAMPLES_PER_PIXEL,
            "(Rows 1024, Columns 1024, Samples per Pixel 0, Number of Frames 1)",
        ),
        (
            "dicom/wg04_RG1_J2KI.dcm",
            ROWS,
            "(Rows 0, Columns 1841, Samples per Pixel 1, Number of Frames 1)",
        ),
    ] {
        let bytes = with_image_attribute(std::fs::read(mini().join(file)).unwrap(), element, 0);
        let e =
            decode_bytes(&bytes, Path::new("empty.dcm"), &DecodeOptions::default()).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }), "{file}: {e:?}");
        assert_eq!(
            e.to_string(),
            format!("empty.dcm: cannot decode: the header declares an empty image {says}")
        );
    }
}

/// A header and a JPEG frame header that agree on 65000 x 65000 pixels are refused before
/// anything is decoded: the decoders would allocate what they declare (tens of GB).
#[test]
fn declared_size_beyond_the_limit_is_refused_before_decoding() {
    let mut bytes = std::fs::read(mini().join("dicom/txv_Fake_MONOHR1.dcm")).unwrap();
    for element in [0x0010, 0x0011] {
        bytes = with_image_attribute(bytes, element, 65000);
    }
    // SOF0: marker, length (2), precision (1), height (2), width (2)
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
    let e = decode_bytes(&bytes, Path::new("huge.dcm"), &DecodeOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "huge.dcm: unsupported: the header declares 4225000000 samples for one frame (Rows \
             x Columns x Samples per Pixel), more than the limit of {} \
             (cxr_data::decode::MAX_DICOM_SAMPLES)",
            cxr_data::decode::MAX_DICOM_SAMPLES
        )
    );
}

/// A long mutation run over every real file kind, for a developer to leave running:
/// `CXR_FUZZ_CASES=200000 cargo test --release -p cxr-data --test integration long_mutation --
/// --ignored --nocapture` (`CXR_FUZZ_SEED` picks the first seed; a failure names the seed and
/// keeps the mutated file in the temp dir). Edits are random bytes
/// anywhere, random bytes in the first 3 kB (headers), image-attribute values of the DICOM
/// header (Rows, Columns, Bits, Samples per Pixel, windows, LUT descriptors) set to extremes,
/// and truncation. It fails when a third-party decoder panic reaches the `catch_unwind` guard:
/// each one found (in dicom-pixeldata's JPEG and JPEG 2000 adapters) became a typed error
/// ahead of the decoder, and a run of 60 000 cases (seeds 1 000 000 on) passed after that.
#[test]
#[ignore = "long: a fuzzing run, see the doc comment"]
fn long_mutation_run_reaches_no_decoder_panic() {
    use rand::{Rng, SeedableRng};
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (first, cases) = (env("CXR_FUZZ_SEED", 0), env("CXR_FUZZ_CASES", 2000));
    let files: Vec<(PathBuf, Vec<u8>)> = [
        mini().join("dicom/siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"),
        mini().join("dicom/txv_Fake_MONOHR1.dcm"),
        mini().join("dicom/wg04_RG1_J2KI.dcm"),
        mini().join("dicom/wg04_RG1_JLSN.dcm"),
        fixture("raster/gray16.png"),
        fixture("raster/gray.jpg"),
        fixture("raster/rgb.jpg"),
        fixture("raster/rgb.png"),
        mini().join("masks/00870a9c.png"),
    ]
    .into_iter()
    .map(|p| {
        let bytes = std::fs::read(&p).unwrap();
        (p, bytes)
    })
    .collect();
    // (0028,xxxx): Rows, Columns, Bits Allocated/Stored, High Bit, Samples per Pixel, Number of
    // Frames, Pixel Representation, Window Center/Width, Rescale Intercept/Slope,
    // Photometric Interpretation, LUT Descriptor
    let tags: [[u8; 4]; 14] = [
        [0x28, 0, 0x10, 0],
        [0x28, 0, 0x11, 0],
        [0x28, 0, 0x00, 1],
        [0x28, 0, 0x01, 1],
        [0x28, 0, 0x02, 1],
        [0x28, 0, 0x02, 0],
        [0x28, 0, 0x08, 0],
        [0x28, 0, 0x03, 1],
        [0x28, 0, 0x50, 0x10],
        [0x28, 0, 0x51, 0x10],
        [0x28, 0, 0x52, 0x10],
        [0x28, 0, 0x53, 0x10],
        [0x28, 0, 0x04, 0],
        [0x28, 0, 0x02, 0x30],
    ];
    let (mut decoded, mut refused) = (0u64, 0u64);
    for seed in first..first + cases {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (path, base) = &files[rng.random_range(0..files.len())];
        let mut v = base.clone();
        match rng.random_range(0..4) {
            0 => {
                for _ in 0..rng.random_range(1..8) {
                    let i = rng.random_range(0..v.len());
                    v[i] = rng.random();
                }
            }
            1 => {
                let head = v.len().min(3000);
                for _ in 0..rng.random_range(1..6) {
                    let i = rng.random_range(0..head);
                    v[i] = rng.random();
                }
            }
            2 => {
                for _ in 0..rng.random_range(1..3) {
                    let tag = tags[rng.random_range(0..tags.len())];
                    let Some(at) = v.windows(4).take(8000).position(|w| w == tag) else {
                        continue;
                    };
                    let len = usize::from(u16::from_le_bytes([v[at + 6], v[at + 7]])).clamp(1, 16);
                    let texts = [
                        "-1", "0", "1e38", "nan", "inf", "-0", "99999", "1e-40", "4096",
                    ];
                    let text = texts[rng.random_range(0..texts.len())];
                    let extremes = [0u8, 0xFF, 0x7F, 0x80, 1, 2, 8, 16, 17, 32];
                    for k in 0..len.min(v.len() - (at + 8)) {
                        v[at + 8 + k] = match rng.random_range(0..3) {
                            0 => rng.random(),
                            1 => extremes[rng.random_range(0..extremes.len())],
                            _ => text.as_bytes().get(k).copied().unwrap_or(b' '),
                        };
                    }
                }
            }
            _ => {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random();
                let cut = rng.random_range(1..v.len());
                v.truncate(cut);
            }
        }
        let opts = DecodeOptions {
            dicom: cxr_data::DicomOptions {
                j2k_reduce: u8::from(rng.random_bool(0.2)),
                ..Default::default()
            },
        };
        match decode_bytes(&v, path, &opts) {
            Ok(_) => decoded += 1,
            Err(e) if e.to_string().contains("decoder failure") => {
                let keep = std::env::temp_dir().join(format!("cxr-fuzz-seed{seed}.bin"));
                std::fs::write(&keep, &v).unwrap();
                panic!("seed {seed}: a decoder panicked: {e} (input kept in {keep:?})");
            }
            Err(_) => refused += 1,
        }
    }
    println!("{cases} mutated files from seed {first}: {decoded} decoded, {refused} typed errors");
}

fn mutate(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(i, b) in edits {
        let n = v.len();
        v[i % n] = b;
    }
    v.truncate(cut.min(v.len()).max(1));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), kind in 0usize..4) {
        let mut data = match kind {
            0 => b"\x89PNG\r\n\x1a\n".to_vec(),
            1 => vec![0xFF, 0xD8, 0xFF],
            2 => { let mut v = vec![0u8; 128]; v.extend_from_slice(b"DICM"); v }
            _ => Vec::new(),
        };
        data.extend_from_slice(&bytes);
        let _ = decode_bytes(&data, Path::new("fuzz.dcm"), &DecodeOptions::default());
    }

    #[test]
    fn mutated_png_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in 8usize..2000) {
        let base = std::fs::read(fixture("raster/gray16.png")).unwrap();
        let data = mutate(&base, &edits, cut);
        let _ = decode_bytes(&data, Path::new("m.png"), &DecodeOptions::default());
    }

    #[test]
    fn mutated_shard_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in 1usize..6000) {
        use cxr_data::shards::{stream, ShardPosition, ShardWriter};
        use cxr_data::{ImageSource, ShardIndex};
        let dir = tempfile::tempdir().unwrap();
        let png = std::fs::read(fixture("raster/gray16.png")).unwrap();
        let mut w = ShardWriter::new(dir.path(), "m", 4).unwrap();
        for key in ["a", "b"] {
            w.write(key, "png", &png, &serde_json::json!({"key": key})).unwrap();
        }
        let shard = w.finish().unwrap().remove(0);
        let data = mutate(&std::fs::read(&shard).unwrap(), &edits, cut);
        std::fs::write(&shard, data).unwrap();
        // indexing, reading, decoding and streaming: typed errors or values, never a panic
        if let Ok(index) = ShardIndex::build(vec![shard.clone()]) {
            for i in 0..index.len() {
                let _ = index.decode(i, &DecodeOptions::default());
            }
        }
        let _ = stream(vec![shard], ShardPosition::default()).count();
    }

    #[test]
    fn manifest_parser_never_panics(text in "[a-z0-9,\"\\-\\.\n ]{0,300}") {
        let csv = format!("id,patient_id,icu,death,has_mask,mask_complete,split\n{text}");
        let _ = Manifest::from_csv_bytes(csv.as_bytes(), Path::new("f.csv"), Path::new("."), &ManifestSpec::cxr_mini());
    }
}

proptest! {
    // each case decodes a 1024x1024 JPEG: fewer cases keep the suite fast
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn mutated_dicom_header_never_panics(edits in proptest::collection::vec((0usize..1200, any::<u8>()), 1..6), cut in 132usize..200_000) {
        let base = std::fs::read(mini().join("dicom/txv_Fake_MONOHR1.dcm")).unwrap();
        let data = mutate(&base, &edits, cut);
        let _ = decode_bytes(&data, Path::new("m.dcm"), &DecodeOptions::default());
    }
}
