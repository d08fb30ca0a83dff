//! Tar shards: write, stream, assign, resume, decode straight from memory.
#![allow(clippy::unwrap_used)] // tests may unwrap
use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use cxr_data::shards::{assign_shards, stream, ShardPosition, ShardWriter};
use cxr_data::{decode_bytes, decode_file, DecodeOptions, Error};
use serde_json::json;

/// Four cxr-mini PNGs and a MONOCHROME1 DICOM in shards of 3 under `dir`: the shards and
/// the DICOM's path.
fn write_mini_shards(dir: &Path) -> (Vec<PathBuf>, PathBuf) {
    let imgs = ["fff13f3a", "53c9be49", "b343e657", "c9280a30"];
    let mut w = ShardWriter::new(dir, "mini", 3).unwrap();
    for (i, id) in imgs.iter().enumerate() {
        let bytes = std::fs::read(mini().join(format!("images/{id}.png"))).unwrap();
        w.write(id, "png", &bytes, &json!({"id": id, "i": i}))
            .unwrap();
    }
    let dcm = mini().join("dicom/txv_Fake_MONOHR1.dcm");
    w.write(
        "txv",
        "dcm",
        &std::fs::read(&dcm).unwrap(),
        &json!({"mono": 1}),
    )
    .unwrap();
    (w.finish().unwrap(), dcm)
}

#[test]
fn write_stream_assign_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (shards, dcm) = write_mini_shards(dir.path());
    assert_eq!(shards.len(), 2);

    let all: Vec<_> = stream(shards.clone(), ShardPosition::default())
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(
        all.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        ["fff13f3a", "53c9be49", "b343e657", "c9280a30", "txv"]
    );
    assert_eq!(all[1].meta["i"], 1);
    // decoded from the shard = decoded from the file
    let from_shard = decode_bytes(
        &all[4].image,
        Path::new("txv.dcm"),
        &DecodeOptions::default(),
    )
    .unwrap();
    assert_eq!(
        from_shard,
        decode_file(&dcm, &DecodeOptions::default()).unwrap()
    );

    // resume after the second sample
    let rest: Vec<_> = stream(shards.clone(), all[1].next)
        .map(|s| s.unwrap().key)
        .collect();
    assert_eq!(rest, ["b343e657", "c9280a30", "txv"]);

    // 2 ranks x 1 worker: disjoint, complete
    let a = assign_shards(&shards, 0, 2, 0, 1).unwrap();
    let b = assign_shards(&shards, 1, 2, 0, 1).unwrap();
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_ne!(a, b);
    assert!(assign_shards(&shards, 2, 2, 0, 1).is_err());
}

#[test]
fn corrupt_shard_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.tar");
    std::fs::write(&p, vec![7u8; 1500]).unwrap();
    let r: Vec<_> = stream(vec![p], ShardPosition::default()).collect();
    assert!(matches!(r[0], Err(Error::Shard { .. })), "{r:?}");
}

#[test]
fn index_reads_any_sample_as_the_stream_does() {
    use cxr_data::{ImageSource, ShardIndex};
    let dir = tempfile::tempdir().unwrap();
    let (shards, dcm) = write_mini_shards(dir.path());
    // a corrupt image in a shard of its own: its error names the shard and the member
    let mut bad = ShardWriter::new(dir.path(), "zbad", 3).unwrap();
    bad.write("broken", "png", b"\x89PNG\r\n\x1a\nnot really", &json!({}))
        .unwrap();
    let bad = bad.finish().unwrap();
    let with_bad = ShardIndex::build(vec![shards[0].clone(), bad[0].clone()]).unwrap();
    let err = with_bad
        .decode(3, &DecodeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("zbad-000000.tar:broken.png"), "{err}");
    std::fs::remove_file(&bad[0]).unwrap();

    let index = ShardIndex::from_dir(dir.path()).unwrap();
    assert_eq!(index.shards(), &shards[..]);
    let streamed: Vec<_> = stream(shards.clone(), ShardPosition::default())
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(index.len(), streamed.len());
    // any order: the last sample first, then the others
    for i in [4, 0, 3, 1, 2] {
        assert_eq!(index.read(i).unwrap(), streamed[i], "sample {i}");
        assert_eq!(index.key(i).unwrap(), streamed[i].key);
    }
    assert_eq!(index.read_meta(1).unwrap(), streamed[1].meta);
    let metas: Vec<_> = streamed.iter().map(|s| s.meta.clone()).collect();
    assert_eq!(index.metas().unwrap(), metas);
    // a subset reads through to the samples it names, in its own order
    let shared: std::sync::Arc<dyn ImageSource> = std::sync::Arc::new(index.clone());
    let subset = cxr_data::Subset::new(shared.clone(), vec![4, 0]).unwrap();
    assert_eq!(subset.len(), 2);
    assert_eq!(subset.name(0), index.name(4));
    assert_eq!(
        subset.decode(1, &DecodeOptions::default()).unwrap(),
        index.decode(0, &DecodeOptions::default()).unwrap()
    );
    assert!(cxr_data::Subset::new(shared, vec![5]).is_err());
    // a stream position maps to the sample it resumes at
    for (i, s) in streamed.iter().enumerate() {
        assert_eq!(index.index_of(s.next).unwrap(), i + 1);
    }
    assert_eq!(index.index_of(ShardPosition::default()).unwrap(), 0);
    assert!(index
        .index_of(ShardPosition {
            shard: 0,
            sample: 4
        })
        .is_err());
    assert!(index
        .index_of(ShardPosition {
            shard: 3,
            sample: 0
        })
        .is_err());

    // decoding through the image-source trait = decoding the original file
    let opts = DecodeOptions::default();
    assert_eq!(
        index.decode(4, &opts).unwrap(),
        decode_file(&dcm, &opts).unwrap()
    );
    assert!(
        index.name(4).ends_with("mini-000001.tar:txv.dcm"),
        "{}",
        index.name(4)
    );
    assert_eq!(index.id(4), "mini-000001.tar:txv.dcm");
    let files = vec![mini().join("images/fff13f3a.png")];
    assert_eq!(files.id(0), "fff13f3a.png");
    assert_eq!(
        index.decode(0, &opts).unwrap(),
        ImageSource::decode(&files, 0, &opts).unwrap()
    );
    assert!(matches!(index.read(5), Err(Error::Invalid(_))));
    assert!(matches!(
        ImageSource::decode(&files, 1, &opts),
        Err(Error::Invalid(_))
    ));

    // a shard cut short after indexing: a typed error naming it, not a panic
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&shards[1])
        .unwrap();
    f.set_len(600).unwrap();
    match index.read(4) {
        Err(Error::Shard { path, reason }) => {
            assert_eq!(path, shards[1]);
            assert!(reason.contains("txv"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // indexing notices the cut too
    match ShardIndex::build(shards.clone()) {
        Err(Error::Shard { path, reason }) => {
            assert_eq!(path, shards[1]);
            assert!(reason.contains("truncated"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // and one that is no tar at all fails the indexing
    std::fs::write(&shards[1], vec![7u8; 1500]).unwrap();
    assert!(matches!(
        ShardIndex::build(shards),
        Err(Error::Shard { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        ShardIndex::from_dir(empty.path()),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn samples_are_chosen_by_the_split_their_metadata_names() {
    use cxr_data::{ShardIndex, Split};
    let dir = tempfile::tempdir().unwrap();
    let png = std::fs::read(mini().join("images/fff13f3a.png")).unwrap();
    let mut w = ShardWriter::new(dir.path(), "s", 2).unwrap();
    for (key, meta) in [
        ("a", json!({"split": "train"})),
        ("b", json!({"split": "Validation"})),
        ("c", json!({"patient": "p"})),
        ("d", json!({"split": "test"})),
    ] {
        w.write(key, "png", &png, &meta).unwrap();
    }
    w.finish().unwrap();
    let index = ShardIndex::from_dir(dir.path()).unwrap();
    let metas = index.metas().unwrap();
    assert_eq!(
        index.samples_in(&metas, Split::Train, true).unwrap(),
        [0, 2]
    );
    assert_eq!(index.samples_in(&metas, Split::Train, false).unwrap(), [0]);
    assert_eq!(index.samples_in(&metas, Split::Val, false).unwrap(), [1]);
    assert_eq!(index.samples_in(&metas, Split::Test, false).unwrap(), [3]);
    assert!(index.samples_in(&metas[1..], Split::Test, false).is_err());

    let mut w = ShardWriter::new(dir.path(), "t", 2).unwrap();
    w.write("e", "png", &png, &json!({"split": 3})).unwrap();
    w.finish().unwrap();
    let index = ShardIndex::from_dir(dir.path()).unwrap();
    let err = index
        .samples_in(&index.metas().unwrap(), Split::Train, true)
        .unwrap_err();
    assert!(err.to_string().contains("t-000000.tar:e.png"), "{err}");
}
