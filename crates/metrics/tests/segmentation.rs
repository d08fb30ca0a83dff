//! Dice / IoU against the numpy reference of gen.py (empty/empty = 1.0).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use crate::common;
use common::*;
use metrics::segmentation::*;

fn maps(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

#[test]
fn dice_iou_match_reference_and_batches_equal_one_shot() {
    let fx = fixture("segmentation.json");
    let c = fx["n_classes"].as_u64().unwrap() as usize;
    let px = fx["pixels"].as_u64().unwrap() as usize;
    let (pred, target) = (maps(&fx["predicted"]), maps(&fx["target"]));
    // per image and class through the pure mask functions
    for (i, (p, t)) in pred.iter().zip(&target).enumerate() {
        for class in 0..c {
            let pm: Vec<bool> = p.iter().map(|&x| x as usize == class).collect();
            let tm: Vec<bool> = t.iter().map(|&x| x as usize == class).collect();
            close(
                dice(&pm, &tm).unwrap(),
                f64s(&fx["dice_per_image"][i])[class],
                1e-12,
                "dice",
            );
            close(
                iou(&pm, &tm).unwrap(),
                f64s(&fx["iou_per_image"][i])[class],
                1e-12,
                "iou",
            );
        }
    }
    let flat = |m: &[Vec<u32>]| m.concat();
    let mut one = SegmentationState::new(c).unwrap();
    one.update_label_maps(&flat(&pred), &flat(&target), px)
        .unwrap();
    let s = one.compute().unwrap();
    close_all(&s.dice_mean, &f64s(&fx["dice_mean"]), 1e-12, "dice mean");
    close_all(&s.iou_mean, &f64s(&fx["iou_mean"]), 1e-12, "iou mean");
    close_all(
        &s.dice_global,
        &f64s(&fx["dice_global"]),
        1e-12,
        "dice global",
    );
    close_all(&s.iou_global, &f64s(&fx["iou_global"]), 1e-12, "iou global");

    // batches of label maps, and the same images as class-major binary masks
    let mut batched = SegmentationState::new(c).unwrap();
    let mut masks = SegmentationState::new(c).unwrap();
    for (chunk_p, chunk_t) in pred.chunks(4).zip(target.chunks(4)) {
        batched
            .update_label_maps(&flat(chunk_p), &flat(chunk_t), px)
            .unwrap();
        let to_masks = |m: &[Vec<u32>]| -> Vec<bool> {
            m.iter()
                .flat_map(|img| (0..c).flat_map(move |k| img.iter().map(move |&x| x as usize == k)))
                .collect()
        };
        masks
            .update_masks(&to_masks(chunk_p), &to_masks(chunk_t), px)
            .unwrap();
    }
    assert_eq!(batched.compute().unwrap(), s);
    assert_eq!(masks.compute().unwrap(), s);
}

#[test]
fn empty_conventions_and_errors() {
    assert_eq!(dice(&[false; 4], &[false; 4]).unwrap(), 1.0);
    assert_eq!(iou(&[false; 4], &[false; 4]).unwrap(), 1.0);
    assert_eq!(dice(&[true, false], &[false, false]).unwrap(), 0.0);
    assert!(dice(&[true], &[true, false]).is_err());
    let mut s = SegmentationState::new(2).unwrap();
    assert!(s.compute().is_err());
    assert!(s.update_label_maps(&[0, 2], &[0, 1], 2).is_err());
    assert!(s.update_masks(&[true; 3], &[true; 3], 2).is_err());
}

#[test]
fn hausdorff95_matches_scipy_reference() {
    use metrics::hausdorff::hausdorff95;
    let fx = fixture("hausdorff.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for c in cases {
        let shape = c["shape"].as_array().unwrap();
        let shape = (
            shape[0].as_u64().unwrap() as usize,
            shape[1].as_u64().unwrap() as usize,
        );
        let sp = f64s(&c["spacing"]);
        let m = |v: &serde_json::Value| -> Vec<bool> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() == 1)
                .collect()
        };
        let got = hausdorff95(&m(&c["predicted"]), &m(&c["target"]), shape, (sp[0], sp[1]))
            .unwrap()
            .unwrap();
        close(got, c["hd95"].as_f64().unwrap(), 1e-9, "hd95");
    }
    assert_eq!(
        hausdorff95(&[false; 4], &[false; 4], (2, 2), (1.0, 1.0)).unwrap(),
        Some(0.0)
    );
    assert_eq!(
        hausdorff95(
            &[true, false, false, false],
            &[false; 4],
            (2, 2),
            (1.0, 1.0)
        )
        .unwrap(),
        None
    );
    assert!(hausdorff95(&[true; 3], &[false; 4], (2, 2), (1.0, 1.0)).is_err());
}
