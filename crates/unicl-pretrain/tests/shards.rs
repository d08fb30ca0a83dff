//! Image–label pairs from tar shards equal those from the manifest and files they were packed
//! from; pixels decoded per batch equal the cached ones.
use crate::common;

use std::sync::Arc;

use candle_core::Device;
use cxr_data::shards::{record_json, sample_key, ShardWriter};
use cxr_data::{Manifest, ManifestSpec, ShardIndex, Split, NIH_FINDINGS};
use unicl_pretrain::PairDataset;

fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn pixels_decoded_per_batch_equal_the_cached_ones() {
    let cached = common::tiny_dataset(5);
    assert!(cached.is_cached());
    let streamed = cached.clone().uncached();
    assert!(!streamed.is_cached());
    for idx in [vec![0, 1, 2, 3, 4], vec![4, 1]] {
        assert_eq!(
            flat(&cached.pixels(&idx, &Device::Cpu).unwrap()),
            flat(&streamed.pixels(&idx, &Device::Cpu).unwrap())
        );
    }
    assert!(streamed.pixels(&[5], &Device::Cpu).is_err());
}

#[test]
fn shards_give_the_pairs_the_manifest_gives() {
    let m = Manifest::from_csv(
        common::data_dir().join("labels.csv"),
        &ManifestSpec::cxr_findings(),
    )
    .unwrap();
    // the first 5 training and 3 validation rows, interleaved as a mixed shard set would be
    let train: Vec<usize> = m.indices_in(Split::Train).into_iter().take(5).collect();
    let val: Vec<usize> = m.indices_in(Split::Val).into_iter().take(3).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::new(dir.path(), "f", 3).unwrap();
    for &i in train.iter().take(2).chain(&val).chain(train.iter().skip(2)) {
        let r = &m.records[i];
        let bytes = std::fs::read(&r.image).unwrap();
        w.write(&sample_key(&r.image), "png", &bytes, &record_json(&m, r))
            .unwrap();
    }
    w.finish().unwrap();
    let index = Arc::new(ShardIndex::from_dir(dir.path()).unwrap());
    let findings: Vec<String> = NIH_FINDINGS.iter().map(|s| s.to_string()).collect();
    let proc = common::processor(28);

    let from_shards =
        PairDataset::from_shards(index.clone(), Split::Train, &findings, Some("view"), &proc)
            .unwrap();
    let from_files = common::tiny_dataset(5);
    assert_eq!(from_shards.len(), 5);
    for (k, (a, b)) in from_shards
        .samples
        .iter()
        .zip(&from_files.samples)
        .enumerate()
    {
        assert_eq!(a.patient, b.patient);
        assert_eq!(a.flags, b.flags);
        assert_eq!(a.labels, b.labels);
        // the text column is read from the packed metadata
        assert_eq!(
            a.report.as_deref(),
            Some(m.records[train[k]].meta["view"].as_str())
        );
    }
    let all: Vec<usize> = (0..5).collect();
    assert_eq!(
        flat(&from_shards.pixels(&all, &Device::Cpu).unwrap()),
        flat(&from_files.pixels(&all, &Device::Cpu).unwrap())
    );
    assert!(from_shards.image_name(0).contains("f-000000.tar:"));

    let v = PairDataset::from_shards(index.clone(), Split::Val, &findings, None, &proc).unwrap();
    assert_eq!(v.len(), 3);
    assert!(PairDataset::from_shards(index.clone(), Split::Test, &findings, None, &proc).is_err());
    let unknown = vec!["no_such_finding".to_string()];
    let err = PairDataset::from_shards(index, Split::Train, &unknown, None, &proc).unwrap_err();
    assert!(err.to_string().contains("no_such_finding"), "{err}");
}
