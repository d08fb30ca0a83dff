//! `ImageProcessor` against transformers' PIL-backed `BitImageProcessor` and Pillow's resize
#![allow(clippy::unwrap_used)] // tests may unwrap
//! (fixtures from `gen.py`). Tolerance 1e-5 absolute on normalised values; Pillow's 8-bit
//! resize must match exactly.
use crate::common;

use common::*;
use cxr_data::processor::ImageProcessor;
use cxr_data::resize::{resize_u8, Filter};
use cxr_data::{decode_file, DecodeOptions};

const TOL: f32 = 1e-5;

fn processor(name: &str) -> ImageProcessor {
    ImageProcessor::from_file(fixture(&format!(
        "processor/{name}_preprocessor_config.json"
    )))
    .unwrap()
}

fn images() -> Vec<(&'static str, std::path::PathBuf)> {
    let m = mini();
    let f = shared().join("data/cxr-findings/images/00000075_000.png");
    vec![
        ("mini_portrait", m.join("images/fff13f3a.png")),
        ("mini_landscape", m.join("images/53c9be49.png")),
        ("nih_square", m.join("nih/00000001_000.png")),
        ("findings", f),
    ]
}

#[test]
fn small_bicubic_every_pixel_matches_hf() {
    let fx = load("processor/small.safetensors");
    let p = processor("small");
    for (key, path) in images() {
        let img = decode_file(&path, &DecodeOptions::default()).unwrap();
        let t = p.apply_tensor(&img, &candle_core::Device::Cpu).unwrap();
        let want = &fx[&format!("{key}.small")];
        assert_eq!(&want.dims()[1..], t.dims(), "{key}");
        let err = max_abs(&vec_f32(&t), &vec_f32(want));
        assert!(err <= TOL, "{key}: max abs diff {err}");
    }
}

#[test]
fn small_bilinear_exact_size_with_padding_matches_hf() {
    let fx = load("processor/small.safetensors");
    let p = processor("small_bilinear");
    // gen.py writes the bilinear reference for these two images only; each must be checked
    let mut checked = Vec::new();
    for (key, path) in images() {
        let Some(want) = fx.get(&format!("{key}.small_bilinear")) else {
            continue;
        };
        checked.push(key);
        let img = decode_file(&path, &DecodeOptions::default()).unwrap();
        let (v, (h, w)) = p.apply(&img).unwrap();
        assert_eq!(&want.dims()[1..], &[3, h, w], "{key}");
        let err = max_abs(&v, &vec_f32(want));
        assert!(err <= TOL, "{key}: max abs diff {err}");
    }
    assert_eq!(checked, ["mini_landscape", "nih_square"]);
}

#[cfg(feature = "jpeg2000")]
#[test]
fn dicom_through_8bit_bridge_matches_hf() {
    // J2K decodes bit-exactly to pydicom's values, so the 8-bit bridge is exact too
    let fx = load("processor/small.safetensors");
    let p = processor("small");
    let img = decode_file(
        mini().join("dicom/wg04_RG1_J2KI.dcm"),
        &DecodeOptions::default(),
    )
    .unwrap();
    let (v, _) = p.apply(&img).unwrap();
    let err = max_abs(&v, &vec_f32(&fx["dicom_j2k.small"]));
    assert!(err <= TOL, "J2K: {err}");
}

#[test]
fn dicom_jpeg_through_8bit_bridge_is_close_to_hf() {
    // the JPEG decoders differ by one level on ~2% of pixels (see decode_parity); after a
    // 1/40-scale bicubic resize that averages out to at most one level
    let fx = load("processor/small.safetensors");
    let p = processor("small");
    let img = decode_file(
        mini().join("dicom/siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"),
        &DecodeOptions::default(),
    )
    .unwrap();
    let (v, _) = p.apply(&img).unwrap();
    let err = max_abs(&v, &vec_f32(&fx["dicom_siim.small"]));
    assert!(err <= 1.0 / 255.0 / 0.224 + 1e-5, "SIIM: {err}");
}

#[test]
fn rad_dino_518_matches_hf_on_subsample_and_stats() {
    let fx = load("processor/rad_dino.safetensors");
    let p = processor("rad_dino");
    assert_eq!(p.preprocessing().crop, (518, 518));
    let img = decode_file(
        mini().join("images/53c9be49.png"),
        &DecodeOptions::default(),
    )
    .unwrap();
    let (v, (h, w)) = p.apply(&img).unwrap();
    assert_eq!((h, w), (518, 518));
    let stride = fx["stride"].to_vec1::<i64>().unwrap()[0] as usize;
    let mut sub = Vec::new();
    for c in 0..3 {
        for y in (0..h).step_by(stride) {
            for x in (0..w).step_by(stride) {
                sub.push(v[c * h * w + y * w + x]);
            }
        }
    }
    let err = max_abs(&sub, &vec_f32(&fx["mini_landscape.sub"]));
    assert!(err <= TOL, "{err}");
    let stats = vec_f64(&fx["mini_landscape.stats"]);
    for c in 0..3 {
        let ch = &v[c * h * w..(c + 1) * h * w];
        let mean = ch.iter().map(|&x| f64::from(x)).sum::<f64>() / ch.len() as f64;
        let std = (ch
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / ch.len() as f64)
            .sqrt();
        assert!(
            (mean - stats[c * 4]).abs() < 1e-6,
            "mean {mean} vs {}",
            stats[c * 4]
        );
        assert!(
            (std - stats[c * 4 + 1]).abs() < 1e-6,
            "std {std} vs {}",
            stats[c * 4 + 1]
        );
    }
}

#[test]
fn pillow_resize_is_bit_exact() {
    let fx = load("processor/pillow_resize.safetensors");
    let img = decode_file(
        mini().join("images/53c9be49.png"),
        &DecodeOptions::default(),
    )
    .unwrap();
    let src = img.to_u8();
    let size = (img.width, img.height);
    type Case = (&'static str, (usize, usize), Filter, Option<[f64; 4]>);
    let cases: [Case; 5] = [
        ("bicubic_down_37x29", (37, 29), Filter::Bicubic, None),
        ("bilinear_down_37x29", (37, 29), Filter::Bilinear, None),
        (
            "bicubic_up_box",
            (50, 45),
            Filter::Bicubic,
            Some([100.0, 80.0, 130.0, 120.0]),
        ),
        (
            "bicubic_fbox",
            (33, 21),
            Filter::Bicubic,
            Some([10.5, 20.25, 300.75, 200.0]),
        ),
        ("bicubic_wide", (700, 13), Filter::Bicubic, None),
    ];
    for (key, out, filter, bbox) in cases {
        let ours = resize_u8(&src, size, out, filter, bbox).unwrap();
        let want: Vec<u8> = fx[key].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(ours.len(), want.len(), "{key}: output size");
        let diff = ours.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{key}: {diff} pixels differ from Pillow");
    }
}
