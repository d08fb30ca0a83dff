//! Corrupt, truncated and random inputs give typed errors and never panic.
#![allow(clippy::unwrap_used)] // tests may unwrap
use crate::common;

use std::path::Path;

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
