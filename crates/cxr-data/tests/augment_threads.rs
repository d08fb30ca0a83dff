//! Same seed, same crops and masks, whatever the thread count.
#![allow(clippy::unwrap_used)] // tests may unwrap
use crate::common;

use common::*;
use cxr_data::augment::{multi_crop, sample_rng, MultiCrop, MultiCropConfig};
use cxr_data::masking::{ibot_masks, MaskingGenerator};
use cxr_data::{decode_file, DecodeOptions};
use rayon::prelude::*;

fn run(threads: usize, seed: u64) -> Vec<(MultiCrop, Vec<Vec<bool>>)> {
    let img = decode_file(
        mini().join("images/53c9be49.png"),
        &DecodeOptions::default(),
    )
    .unwrap();
    let cfg = MultiCropConfig {
        global_size: 56,
        local_size: 28,
        n_local: 3,
        ..MultiCropConfig::dinov2()
    };
    let gen = MaskingGenerator::dinov2(4);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        (0..6u64)
            .into_par_iter()
            .map(|i| {
                let mut rng = sample_rng(seed, 2, i);
                let crops = multi_crop(&img, &cfg, &mut rng).unwrap();
                let (masks, _) = ibot_masks(&gen, 2, 0.5, (0.1, 0.5), &mut rng).unwrap();
                (crops, masks)
            })
            .collect()
    })
}

#[test]
fn one_and_two_threads_agree() {
    let a = run(1, 42);
    let b = run(2, 42);
    assert_eq!(a, b);
    let c = run(2, 43);
    assert_ne!(a, c);
    let (crops, _) = &a[0];
    assert_eq!(crops.global.len(), 2);
    assert_eq!(crops.local.len(), 3);
    assert_eq!(crops.global[0].data.len(), 3 * 56 * 56);
    assert_eq!(crops.local[0].data.len(), 3 * 28 * 28);
    // different samples get different crops
    assert_ne!(a[0].0.global[0], a[1].0.global[0]);
}
