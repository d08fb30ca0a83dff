//! Fits on synthetic data with known parameters, k-means++ seeding, the curation weighting
//! and the sampler hook of the DINOv2 data source.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scaling::curation::{draw_without_replacement, select, weigh, CurationConfig, SubsetSampler};
use scaling::fit::{band, fit_power_law, FitOptions, PowerLaw};
use scaling::joint::{fit_joint, JointLaw};
use scaling::kmeans::{kmeans, kmeans_plusplus, KMeansConfig};

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

#[test]
fn power_law_recovers_exact_parameters_and_is_start_free() {
    let truth = PowerLaw {
        a: 0.91,
        b: 3.0,
        c: 0.42,
    };
    let n: Vec<f64> = [3e4, 1e5, 3e5, 1e6, 3.5e6].to_vec();
    let y: Vec<f64> = n.iter().map(|&x| truth.eval(x)).collect();
    let f = fit_power_law(&n, &y, None, &FitOptions::default()).unwrap();
    assert!(
        (f.law.a - truth.a).abs() < 1e-8
            && (f.law.b - truth.b).abs() < 1e-6
            && (f.law.c - truth.c).abs() < 1e-8,
        "{f:?}"
    );
    assert!(f.rss < 1e-20);
    assert!(!f.c_at_bound);
}

#[test]
fn noisy_power_law_bootstrap_band_covers_the_truth() {
    let truth = PowerLaw {
        a: 0.85,
        b: 0.5,
        c: 0.5,
    };
    let n: Vec<f64> = [50.0, 100.0, 200.0, 400.0, 800.0, 1600.0].to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let fits: Vec<PowerLaw> = (0..200)
        .map(|_| {
            let y: Vec<f64> = n
                .iter()
                .map(|&x| truth.eval(x) + 0.002 * normal(&mut rng))
                .collect();
            fit_power_law(&n, &y, None, &FitOptions::default())
                .unwrap()
                .law
        })
        .collect();
    let mean_c = fits.iter().map(|l| l.c).sum::<f64>() / fits.len() as f64;
    assert!((mean_c - truth.c).abs() < 0.05, "mean c {mean_c}");
    let at = [1600.0, 16000.0];
    for (x, b) in at.iter().zip(band(&fits, &at, 0.95)) {
        let (lo, hi) = b.unwrap();
        assert!(
            lo < truth.eval(*x) && truth.eval(*x) < hi,
            "{x}: [{lo}, {hi}]"
        );
    }
}

#[test]
fn bad_inputs_are_errors() {
    let o = FitOptions::default();
    assert!(fit_power_law(&[1.0, 2.0], &[0.1, 0.2], None, &o).is_err());
    assert!(fit_power_law(&[1.0, 2.0, 0.0], &[0.1, 0.2, 0.3], None, &o).is_err());
    assert!(fit_power_law(&[1.0, 2.0, 3.0], &[0.1, f64::NAN, 0.3], None, &o).is_err());
    assert!(fit_power_law(&[1.0, 2.0, 3.0], &[0.1, 0.2], None, &o).is_err());
}

#[test]
fn joint_law_recovers_known_parameters() {
    let truth = JointLaw {
        e: 0.1,
        a: 4.0,
        alpha: 0.34,
        b: 6.0,
        beta: 0.28,
    };
    let (mut n, mut d, mut l) = (vec![], vec![], vec![]);
    for &ni in &[5e6, 2.1e7, 8.6e7, 3e8] {
        for &di in &[3e4, 1e5, 3e5, 1e6, 3.5e6] {
            n.push(ni);
            d.push(di);
            l.push(truth.eval(ni, di));
        }
    }
    let f = fit_joint(&n, &d, &l, (0.01, 2.0), 40).unwrap();
    let g = f.law;
    for (x, y) in [
        (g.e, truth.e),
        (g.a, truth.a),
        (g.alpha, truth.alpha),
        (g.b, truth.b),
        (g.beta, truth.beta),
    ] {
        assert!((x - y).abs() < 1e-5 * y.abs().max(1.0), "{g:?}");
    }
    // with noise the exponents are still close
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let noisy: Vec<f64> = l.iter().map(|v| v + 1e-4 * normal(&mut rng)).collect();
    let f = fit_joint(&n, &d, &noisy, (0.01, 2.0), 40).unwrap();
    assert!(
        (f.law.alpha - truth.alpha).abs() < 0.05 && (f.law.beta - truth.beta).abs() < 0.05,
        "{:?}",
        f.law
    );
    // a usable 5 × 5 covariance: finite positive variances, symmetric, |c_ij| ≤ √(c_ii c_jj)
    let cov = f
        .covariance
        .as_ref()
        .expect("covariance of a full-rank fit");
    assert_eq!(cov.len(), 25, "{cov:?}");
    let c = |i: usize, j: usize| cov[i * 5 + j];
    for i in 0..5 {
        assert!(
            c(i, i).is_finite() && c(i, i) > 0.0,
            "variance {i}: {cov:?}"
        );
    }
    for i in 0..5 {
        for j in 0..i {
            let scale = (c(i, i) * c(j, j)).sqrt();
            assert!(
                (c(i, j) - c(j, i)).abs() <= 1e-9 * scale,
                "({i}, {j}) asymmetric: {cov:?}"
            );
            assert!(
                c(i, j).abs() <= scale,
                "({i}, {j}) correlation > 1: {cov:?}"
            );
        }
    }
    assert!(fit_joint(&n[..5], &d[..5], &l[..5], (0.01, 2.0), 10).is_err());
}

/// Three blobs of sizes 200, 40, 10 in 4 dimensions.
fn blobs() -> (Vec<f64>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let centres = [
        [5.0, 0.0, 0.0, 1.0],
        [0.0, 5.0, 0.0, 1.0],
        [0.0, 0.0, 5.0, 1.0],
    ];
    let (mut x, mut truth) = (vec![], vec![]);
    for (c, &size) in [200usize, 40, 10].iter().enumerate() {
        for _ in 0..size {
            x.extend(centres[c].iter().map(|m| m + 0.3 * normal(&mut rng)));
            truth.push(c);
        }
    }
    (x, truth)
}

#[test]
fn kmeans_plus_plus_seeds_one_centre_per_blob() {
    let (x, truth) = blobs();
    let seeds = kmeans_plusplus(&x, 4, 3, 0).unwrap();
    let mut blobs: Vec<usize> = seeds.iter().map(|&i| truth[i]).collect();
    blobs.sort_unstable();
    assert_eq!(blobs, vec![0, 1, 2]);
    let km = kmeans(&x, 4, &KMeansConfig::new(3, 0)).unwrap();
    let mut sizes = km.sizes();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![10, 40, 200]);
    assert!(kmeans(&x, 4, &KMeansConfig::new(0, 0)).is_err());
    assert!(kmeans(&x[..7], 4, &KMeansConfig::new(1, 0)).is_err());
}

#[test]
fn curation_gives_every_prototype_equal_mass_and_favours_rare_ones() {
    let (x, truth) = blobs();
    let cfg = CurationConfig {
        prototypes: 3,
        ..Default::default()
    };
    let w = weigh(&x, 4, &cfg, None).unwrap();
    assert!((w.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    for b in 0..3 {
        let mass: f64 = (0..truth.len())
            .filter(|&i| truth[i] == b)
            .map(|i| w.probabilities[i])
            .sum();
        assert!((mass - 1.0 / 3.0).abs() < 1e-9, "blob {b}: {mass}");
    }
    let sel = select(&x, 4, 30, &cfg, None).unwrap();
    let mut u = sel.indices.clone();
    u.sort_unstable();
    u.dedup();
    assert_eq!(u.len(), 30);
    let rare = sel.indices.iter().filter(|&&i| truth[i] == 2).count();
    // 10 of 250 images (4%): uniform sampling would take ~1 of 30
    assert!(rare >= 6, "rare blob got {rare} of 30");
    // within a cluster the farthest sample outweighs the nearest
    let c0: Vec<usize> = (0..truth.len()).filter(|&i| truth[i] == 0).collect();
    let far = c0
        .iter()
        .max_by(|&&a, &&b| w.informativeness[a].total_cmp(&w.informativeness[b]))
        .unwrap();
    let near = c0
        .iter()
        .min_by(|&&a, &&b| w.informativeness[a].total_cmp(&w.informativeness[b]))
        .unwrap();
    assert!(w.probabilities[*far] > 2.0 * w.probabilities[*near]);
    // alpha = beta = 0 is uniform
    let u = weigh(
        &x,
        4,
        &CurationConfig {
            prototypes: 3,
            alpha: 0.0,
            beta: 0.0,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert!(u
        .probabilities
        .iter()
        .all(|p| (p - 1.0 / 250.0).abs() < 1e-12));
    // per-sample losses replace the distance
    let losses: Vec<f64> = (0..250).map(|i| if i == 3 { 10.0 } else { 1.0 }).collect();
    let l = weigh(&x, 4, &cfg, Some(&losses)).unwrap();
    assert!(l.probabilities[3] > 5.0 * l.probabilities[4]);
    assert!(weigh(&x, 4, &cfg, Some(&losses[..3])).is_err());
}

#[test]
fn weighted_draw_follows_the_weights() {
    let w = [1.0, 1.0, 8.0, 0.0];
    let mut first = [0usize; 4];
    for s in 0..2000 {
        first[draw_without_replacement(&w, 1, s).unwrap()[0]] += 1;
    }
    assert_eq!(first[3], 0);
    assert!((first[2] as f64 / 2000.0 - 0.8).abs() < 0.04, "{first:?}");
    assert_eq!(draw_without_replacement(&w, 4, 0).unwrap().len(), 4);
    assert!(draw_without_replacement(&w, 5, 0).is_err());
}

#[test]
fn multicrop_source_takes_a_sampler_and_keeps_its_default_order() {
    use cxr_data::{IndexSampler, SeededShuffle};
    let cfg = dino_loss::DinoV2Config::dinov2_default();
    let files: Vec<PathBuf> = (0..10)
        .map(|i| PathBuf::from(format!("/nonexistent/{i}.png")))
        .collect();
    let src = dino_pretrain::MultiCropSource::new(files, &cfg, 14, [0.5; 3], [0.25; 3]).unwrap();
    let b = src.batch_size() as u64;
    // default: epoch e is SeededShuffle(seed)'s permutation
    let order: Vec<usize> = (0..20)
        .flat_map(|e| {
            SeededShuffle {
                seed: cfg.train.seed,
            }
            .indices(e, 10)
        })
        .collect();
    for step in 0..3u64 {
        let got: Vec<usize> = src.positions(step).iter().map(|p| p.1).collect();
        assert_eq!(got, order[(step * b) as usize..((step + 1) * b) as usize]);
    }
    // a subset sampler: only its indices, each once per epoch
    let sub = src
        .clone()
        .with_sampler(SubsetSampler::new(vec![2, 5, 7], 1).unwrap().shared());
    assert_eq!(sub.epoch_len(), 3);
    let mut seen: Vec<usize> = sub.positions(0).iter().map(|p| p.1).collect();
    assert!(seen.iter().all(|i| [2, 5, 7].contains(i)));
    seen.truncate(3);
    seen.sort_unstable();
    assert_eq!(seen, vec![2, 5, 7]);
}

#[test]
fn flat_noise_reports_a_bound_instead_of_a_runaway_exponent() {
    let n = [16.0, 32.0, 64.0, 128.0];
    let y = [0.477, 0.456, 0.463, 0.464];
    let o = FitOptions::default();
    let f = fit_power_law(&n, &y, None, &o).unwrap();
    assert!(f.law.c >= o.c_min && f.law.c <= o.c_max, "{f:?}");
    assert!(f.c_at_bound, "{f:?}");
}
