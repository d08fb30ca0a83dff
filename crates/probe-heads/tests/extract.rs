//! Extraction through `&dyn Encoder` with a trivial encoder, and the resumable cache.
#![allow(clippy::unwrap_used)] // tests may panic on failure
use cxr_data::{Manifest, ManifestSpec, Split};
use probe_heads::extract::{extract_cached, ExtractConfig, FeatureSet};
use probe_heads::pixel::PatchMeanEncoder;

fn shared() -> std::path::PathBuf {
    std::env::var_os("CXR_SHARED")
        .map(Into::into)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared").into())
}

#[test]
fn trivial_encoder_features_are_cached_and_reused() {
    let m = Manifest::from_csv(
        shared().join("data/cxr-findings/labels.csv"),
        &ManifestSpec::cxr_findings(),
    )
    .unwrap();
    let rows: Vec<usize> = m.indices_in(Split::Test)[..5].to_vec();
    let enc = PatchMeanEncoder::new(56, 14).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.safetensors");
    let cfg = ExtractConfig {
        batch_size: 2,
        progress: false,
        ..Default::default()
    };
    let (f, hit) = extract_cached(&enc, "pix", &m, &rows, &path, &cfg).unwrap();
    assert!(!hit);
    assert_eq!((f.cls.rows, f.cls.cols, f.patch_mean.cols), (5, 16, 1));
    assert!(f.ids[0].starts_with("images/") && f.ids[0].ends_with(".png"));
    // patch mean of a thumbnail = its overall mean; pixels are in [0, 1]
    for i in 0..5 {
        let mean = f.cls.row(i).iter().sum::<f32>() / 16.0;
        assert!((mean - f.patch_mean.row(i)[0]).abs() < 1e-5);
        assert!(f.cls.row(i).iter().all(|v| (0.0..=1.0).contains(v)));
    }
    let (g, hit) = extract_cached(&enc, "pix", &m, &rows, &path, &cfg).unwrap();
    assert!(hit);
    assert_eq!(f, g);
    assert_eq!(FeatureSet::load(&path).unwrap(), f);
    // other rows or another encoder tag: recomputed
    let (_, hit) = extract_cached(&enc, "pix", &m, &rows[..4], &path, &cfg).unwrap();
    assert!(!hit);
    let (_, hit) = extract_cached(&enc, "other", &m, &rows[..4], &path, &cfg).unwrap();
    assert!(!hit);
    std::fs::write(&path, b"junk").unwrap();
    assert!(FeatureSet::load(&path).is_err());
}
