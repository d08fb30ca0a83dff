//! The real manifests load as they are; splits are patient-level and subsets nested.
#![allow(clippy::unwrap_used)] // tests may unwrap
use crate::common;

use std::collections::BTreeSet;

use common::*;
use cxr_data::split::{column_split, nested_subset, patient_split};
use cxr_data::{Manifest, ManifestSpec};

fn patients(m: &Manifest, idx: &[usize]) -> BTreeSet<String> {
    idx.iter().map(|&i| m.records[i].patient.clone()).collect()
}

#[test]
fn cxr_mini_loads_with_its_own_split() {
    let m = Manifest::from_csv(mini().join("labels.csv"), &ManifestSpec::cxr_mini()).unwrap();
    assert_eq!(m.records.len(), 243);
    assert!(
        m.records.iter().all(|r| r.image.is_file()),
        "every image exists"
    );
    let s = column_split(&m).unwrap();
    // README counts: 143 / 49 / 51 images, 43 / 14 / 14 patients
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (143, 49, 51));
    assert_eq!(patients(&m, &s.train).len(), 43);
    // mask_complete is blank when has_mask = 0
    let mc = m.label_index("mask_complete").unwrap();
    let hm = m.label_index("has_mask").unwrap();
    assert!(m
        .records
        .iter()
        .all(|r| r.labels[hm] == Some(1.0) || r.labels[mc].is_none()));
    assert_eq!(m.records[0].meta["view"], "PA");
}

#[test]
fn cxr_findings_loads() {
    let path = shared().join("data/cxr-findings/labels.csv");
    let m = Manifest::from_csv(path, &ManifestSpec::cxr_findings()).unwrap();
    assert_eq!(m.records.len(), 536);
    let s = column_split(&m).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (322, 107, 107));
    let eff = m.label_index("effusion").unwrap();
    let n: f32 = m.records.iter().filter_map(|r| r.labels[eff]).sum();
    assert_eq!(n, 82.0);
}

#[test]
fn seeded_patient_split_is_disjoint_and_deterministic() {
    let m = Manifest::from_csv(mini().join("labels.csv"), &ManifestSpec::cxr_mini()).unwrap();
    let a = patient_split(&m, 7, 0.6, 0.2).unwrap();
    assert_eq!(a, patient_split(&m, 7, 0.6, 0.2).unwrap());
    assert_ne!(a, patient_split(&m, 8, 0.6, 0.2).unwrap());
    let (tr, va, te) = (
        patients(&m, &a.train),
        patients(&m, &a.val),
        patients(&m, &a.test),
    );
    assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
    assert_eq!(tr.len() + va.len() + te.len(), 71);
    assert_eq!(tr.len(), (71.0f64 * 0.6).round() as usize);
    assert_eq!(a.train.len() + a.val.len() + a.test.len(), 243);
}

#[test]
fn nested_subsets_are_nested_and_stratified() {
    let m = Manifest::from_csv(
        shared().join("data/cxr-findings/labels.csv"),
        &ManifestSpec::cxr_findings(),
    )
    .unwrap();
    let pool = column_split(&m).unwrap().train;
    let eff = m.label_index("effusion").unwrap();
    let keys: Vec<i64> = pool
        .iter()
        .map(|&i| m.records[i].labels[eff].unwrap_or(-1.0) as i64)
        .collect();
    let pos_rate = keys.iter().filter(|&&k| k == 1).count() as f64 / keys.len() as f64;
    let mut prev: Vec<usize> = Vec::new();
    for n in [10, 50, 100, 200, 322] {
        let s = nested_subset(&pool, n, 3, Some(&keys)).unwrap();
        assert_eq!(s.len(), n);
        assert!(
            prev.iter().all(|i| s.contains(i)),
            "subset {n} contains the smaller one"
        );
        let pos = s
            .iter()
            .filter(|&&i| m.records[i].labels[eff] == Some(1.0))
            .count() as f64;
        assert!(
            (pos - pos_rate * n as f64).abs() <= 1.0 + 1e-9,
            "n {n}: {pos} positives"
        );
        prev = s;
    }
    let plain = nested_subset(&pool, 50, 3, None).unwrap();
    assert!(nested_subset(&pool, 20, 3, None)
        .unwrap()
        .iter()
        .all(|i| plain.contains(i)));
    assert!(nested_subset(&pool, 400, 3, None).is_err());
}
