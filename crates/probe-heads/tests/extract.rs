//! Extraction through `&dyn Encoder` with a trivial encoder, and the resumable cache.
#![allow(clippy::unwrap_used)] // tests may panic on failure
use cxr_data::{Manifest, ManifestSpec, Split};
use probe_heads::extract::{extract_cached, ExtractConfig, FeatureSet};
use probe_heads::pixel::PatchMeanEncoder;

use cxr_testkit::shared_dir as shared;

fn findings_manifest() -> Manifest {
    Manifest::from_csv(
        shared().join("data/cxr-findings/labels.csv"),
        &ManifestSpec::cxr_findings(),
    )
    .unwrap()
}

/// The same encoder with weights that changed a little: every feature 1% larger.
struct Brighter(PatchMeanEncoder);

impl cxr_core::Encoder for Brighter {
    fn forward_features(
        &self,
        pixels: &candle_core::Tensor,
        request: &cxr_core::FeatureRequest,
    ) -> cxr_core::Result<cxr_core::Features> {
        let mut f = self.0.forward_features(pixels, request)?;
        f.pooled = (f.pooled * 1.01)?;
        f.patch_tokens = (f.patch_tokens * 1.01)?;
        Ok(f)
    }
    fn feature_info(&self) -> cxr_core::FeatureInfo {
        self.0.feature_info()
    }
    fn preprocessing(&self) -> cxr_core::Preprocessing {
        self.0.preprocessing()
    }
    fn device(&self) -> &candle_core::Device {
        self.0.device()
    }
}

#[test]
fn trivial_encoder_features_are_cached_and_reused() {
    let m = findings_manifest();
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
    // the same tag and rows from an encoder that now gives other features: recomputed
    let changed = Brighter(PatchMeanEncoder::new(56, 14).unwrap());
    let (h, hit) = extract_cached(&changed, "pix", &m, &rows, &path, &cfg).unwrap();
    assert!(!hit, "stale features of a changed encoder were reused");
    assert_eq!(h.cls.cols, 16);
    assert!((h.cls.row(0)[0] - 1.01 * f.cls.row(0)[0]).abs() < 1e-6);
    let (_, hit) = extract_cached(&enc, "pix", &m, &rows, &path, &cfg).unwrap();
    assert!(!hit);
    // other rows or another encoder tag: recomputed
    let (_, hit) = extract_cached(&enc, "pix", &m, &rows[..4], &path, &cfg).unwrap();
    assert!(!hit);
    let (_, hit) = extract_cached(&enc, "other", &m, &rows[..4], &path, &cfg).unwrap();
    assert!(!hit);
    std::fs::write(&path, b"junk").unwrap();
    assert!(FeatureSet::load(&path).is_err());
}

#[test]
fn a_vit_cache_is_hit_on_rerun_and_missed_after_a_weight_change() {
    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;
    use vit_backbone::{Dinov2Config, Dinov2Model};
    let m = findings_manifest();
    let rows: Vec<usize> = m.indices_in(Split::Val)[..6].to_vec();
    let mut cfg = Dinov2Config::vit_tiny(56);
    cfg.num_hidden_layers = 2;
    let vit = |seed: u64| {
        let vm = candle_nn::VarMap::new();
        let _shape = Dinov2Model::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu));
        let t = train_utils::init::hf_vit_reinit(&vm, seed, &Device::Cpu).unwrap();
        Dinov2Model::new(&cfg, VarBuilder::from_tensors(t, DType::F32, &Device::Cpu)).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vit.safetensors");
    // batches of 4 when written, one image when checked: a different summation order
    let ecfg = ExtractConfig {
        batch_size: 4,
        progress: false,
        ..Default::default()
    };
    let (a, hit) = extract_cached(&vit(0), "vit", &m, &rows, &path, &ecfg).unwrap();
    assert!(!hit);
    let (b, hit) = extract_cached(&vit(0), "vit", &m, &rows, &path, &ecfg).unwrap();
    assert!(hit, "the same weights must reuse their cache");
    assert_eq!(a, b);
    let (c, hit) = extract_cached(&vit(1), "vit", &m, &rows, &path, &ecfg).unwrap();
    assert!(
        !hit,
        "other weights under the same tag must not reuse the cache"
    );
    assert_ne!(a.cls, c.cls);
}

#[test]
fn manifest_rows_become_binary_targets_in_label_order() {
    let m = findings_manifest();
    let test = m.indices_in(Split::Test);
    let t = probe_heads::Targets::from_manifest(&m, &test);
    assert_eq!(t.names(), &m.label_names);
    assert_eq!(t.len(), test.len());
    let probe_heads::Targets::MultiLabel { y, .. } = &t else {
        panic!("multi-label targets")
    };
    let k = m.label_names.len();
    for (r, &i) in test.iter().enumerate() {
        for (j, v) in m.records[i].labels.iter().enumerate() {
            assert_eq!(
                y[r * k + j],
                v.map(|x| x > 0.5),
                "row {i}, {}",
                m.label_names[j]
            );
        }
    }
    // real labels: some positives, some negatives
    assert!(y.contains(&Some(true)) && y.contains(&Some(false)));
}

/// A missing image fails through cxr-data into probe-heads. Printed by anyhow (`Error:` then
/// every `source()`), no message may repeat the next one in the chain; the top message alone
/// still names the file and what the operating system said.
#[test]
fn a_missing_image_error_names_the_file_once_without_repeating_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labels.csv");
    std::fs::write(
        &csv,
        "id,patient_id,a,split\nnope1,p1,1,test\nnope2,p2,0,test\n",
    )
    .unwrap();
    let spec = ManifestSpec {
        path_column: "id".into(),
        path_template: "images/{}.png".into(),
        patient_column: "patient_id".into(),
        label_columns: vec!["a".into()],
        split_column: Some("split".into()),
    };
    let m = Manifest::from_csv(&csv, &spec).unwrap();
    let enc = PatchMeanEncoder::new(56, 14).unwrap();
    let cfg = ExtractConfig {
        batch_size: 2,
        progress: false,
        ..Default::default()
    };
    let e = probe_heads::extract::extract_features(&enc, "pix", &m, &[0, 1], &cfg).unwrap_err();
    assert!(
        matches!(
            e,
            probe_heads::Error::Data(cxr_data::Error::Io { ref path, .. })
                if path.starts_with(dir.path().join("images"))
        ),
        "{e:?}"
    );

    let top = e.to_string();
    let missing = dir.path().join("images/nope1.png");
    let missing2 = dir.path().join("images/nope2.png");
    let os = std::fs::read(&missing).unwrap_err().to_string();
    assert!(
        top.contains(&*missing.to_string_lossy()) || top.contains(&*missing2.to_string_lossy()),
        "{top}"
    );
    assert!(top.contains(&os), "{top:?} lacks the OS message {os:?}");

    let mut chain = vec![top];
    let mut next = std::error::Error::source(&e);
    while let Some(s) = next {
        chain.push(s.to_string());
        next = s.source();
    }
    for pair in chain.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "{:?} repeats its source {:?} (chain {chain:?})",
            pair[0],
            pair[1]
        );
    }
    // the OS message appears once in the whole printed chain
    let printed = chain.join("\n");
    assert_eq!(printed.matches(&os).count(), 1, "{chain:?}");
}
