//! Tar shards: write, stream, assign, resume, decode straight from memory.
#![allow(clippy::unwrap_used)] // tests may unwrap
use crate::common;

use std::path::Path;

use common::*;
use cxr_data::shards::{assign_shards, stream, ShardPosition, ShardWriter};
use cxr_data::{decode_bytes, decode_file, DecodeOptions, Error};
use serde_json::json;

#[test]
fn write_stream_assign_resume() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = ["fff13f3a", "53c9be49", "b343e657", "c9280a30"];
    let mut w = ShardWriter::new(dir.path(), "mini", 3).unwrap();
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
    let shards = w.finish().unwrap();
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
