//! DICOM/PNG/JPEG decoding against pydicom and Pillow (fixtures from `gen.py`).
#![allow(clippy::unwrap_used)] // tests may unwrap
mod common;

use common::*;
use cxr_data::{decode_file, DecodeOptions, Error, GrayImage};

struct Summary {
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
}

fn summary(img: &GrayImage) -> Summary {
    let n = img.data.len() as f64;
    let mean = img.data.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = img
        .data
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let (min, max) = img.data.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| {
        (a.min(f64::from(v)), b.max(f64::from(v)))
    });
    Summary {
        mean,
        std: var.sqrt(),
        min,
        max,
    }
}

/// Compares a decoded DICOM with pydicom's reference: every `stride`-th pixel within `tol`
/// and the full-image statistics within `stat_tol`.
fn check_dicom(file: &str, fixture_name: &str, tol: f32, stat_tol: f64, max_off_frac: f64) {
    let path = mini().join("dicom").join(file);
    let img = decode_file(&path, &DecodeOptions::default()).unwrap();
    let fx = load(&format!("dicom/{fixture_name}.safetensors"));
    let shape = fx["shape"].to_vec1::<i64>().unwrap();
    assert_eq!(
        (img.height as i64, img.width as i64),
        (shape[0], shape[1]),
        "{file}"
    );
    let stride = fx["stride"].to_vec1::<i64>().unwrap()[0] as usize;
    let mut ours = Vec::new();
    for r in (0..img.height).step_by(stride) {
        for c in (0..img.width).step_by(stride) {
            ours.push(img.get(r, c));
        }
    }
    let want = vec_f32(&fx["sub"]);
    let err = max_abs(&ours, &want);
    assert!(err <= tol, "{file}: max |ours - pydicom| = {err} > {tol}");
    let off = ours
        .iter()
        .zip(&want)
        .filter(|(a, b)| (*a - *b).abs() > 1e-6)
        .count() as f64
        / want.len() as f64;
    eprintln!(
        "{file}: max diff {err}, {:.3}% of sampled pixels differ",
        off * 100.0
    );
    assert!(off <= max_off_frac, "{file}: {off} of pixels differ");
    let st = vec_f64(&fx["stats"]);
    let s = summary(&img);
    for (name, a, b) in [
        ("mean", s.mean, st[0]),
        ("std", s.std, st[1]),
        ("min", s.min, st[2]),
        ("max", s.max, st[3]),
    ] {
        assert!(
            (a - b).abs() <= stat_tol,
            "{file}: {name} {a} vs pydicom {b}"
        );
    }
}

#[test]
fn dicom_jpeg_baseline_monochrome2_matches_pydicom() {
    // jpeg-decoder vs libjpeg (pylibjpeg): the IDCTs round differently, one 8-bit level at most
    check_dicom(
        "siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
        "siim",
        1.0 / 255.0 + 1e-6,
        1e-3,
        0.05,
    );
}

#[test]
fn dicom_monochrome1_is_inverted() {
    check_dicom(
        "txv_Fake_MONOHR1.dcm",
        "txv_mono1",
        1.0 / 255.0 + 1e-6,
        1e-3,
        0.05,
    );
    // the file is the SIIM image with PI flipped: pixel-wise 1 - x
    let a = decode_file(
        mini().join("dicom/siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"),
        &DecodeOptions::default(),
    )
    .unwrap();
    let b = decode_file(
        mini().join("dicom/txv_Fake_MONOHR1.dcm"),
        &DecodeOptions::default(),
    )
    .unwrap();
    let err = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (1.0 - x - y).abs())
        .fold(0f32, f32::max);
    assert!(err < 1e-6, "{err}");
}

#[cfg(feature = "jpeg2000")]
#[test]
fn dicom_jpeg2000_windowed_monochrome1_matches_pydicom() {
    // openjp2 (Rust port) vs OpenJPEG: same integer wavelet decode; window 15000/30000 on 15 bits
    check_dicom("wg04_RG1_J2KI.dcm", "wg04_J2KI", 1e-6, 1e-6, 0.0);
}

#[cfg(feature = "jpegls")]
#[test]
fn dicom_jpeg_ls_matches_pydicom() {
    check_dicom("wg04_RG1_JLSN.dcm", "wg04_JLSN", 1e-6, 1e-6, 0.0);
}

#[cfg(not(feature = "jpegls"))]
#[test]
fn dicom_jpeg_ls_without_codec_is_a_typed_error() {
    let path = mini().join("dicom/wg04_RG1_JLSN.dcm");
    match decode_file(&path, &DecodeOptions::default()) {
        Err(e @ Error::Unsupported { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("wg04_RG1_JLSN.dcm") && msg.contains("1.2.840.10008.1.2.4.81"),
                "{msg}"
            );
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

fn expected(name: &str) -> Vec<f32> {
    vec_f32(&load("raster/expected.safetensors")[name])
}

#[test]
fn png_16bit_gray_keeps_full_precision() {
    let img = decode_file(fixture("raster/gray16.png"), &DecodeOptions::default()).unwrap();
    assert_eq!((img.width, img.height), (40, 32));
    assert!(max_abs(&img.data, &expected("gray16")) < 1e-7);
}

#[test]
fn png_rgb_uses_pillow_luma() {
    let img = decode_file(fixture("raster/rgb.png"), &DecodeOptions::default()).unwrap();
    assert_eq!(img.data, expected("rgb_png"));
}

#[test]
fn jpeg_matches_pillow_within_one_level() {
    // zune-jpeg vs libjpeg-turbo: IDCT/colour conversion may differ by one 8-bit level
    for (file, key) in [
        ("raster/gray.jpg", "gray_jpg"),
        ("raster/rgb.jpg", "rgb_jpg"),
    ] {
        let img = decode_file(fixture(file), &DecodeOptions::default()).unwrap();
        let err = max_abs(&img.data, &expected(key));
        assert!(err <= 1.0 / 255.0 + 1e-6, "{file}: {err}");
    }
}

#[test]
fn real_png_is_v_over_255() {
    let img = decode_file(
        mini().join("images/53c9be49.png"),
        &DecodeOptions::default(),
    )
    .unwrap();
    assert_eq!((img.width, img.height), (512, 419));
    assert!(img
        .data
        .iter()
        .all(|&v| (v * 255.0 - (v * 255.0).round()).abs() < 1e-4));
}
