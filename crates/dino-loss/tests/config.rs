//! The TOML configuration: dinov2's defaults, presets, validation, resolved-config writer.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use dino_loss::{DinoV2Config, TeacherMode};
use train_utils::DinoSchedules;

fn committed(name: &str) -> String {
    std::fs::read_to_string(format!("{}/configs/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn committed_presets_match_the_code() {
    // regenerate with: cargo test -p dino-loss --test integration config:: -- --ignored
    let dinov2 = DinoV2Config::from_toml_str(
        &committed("dinov2_default.toml"),
        Path::new("dinov2_default.toml"),
    )
    .unwrap();
    assert_eq!(dinov2, DinoV2Config::dinov2_default());
    let rad = DinoV2Config::from_toml_str(&committed("rad_dino.toml"), Path::new("rad_dino.toml"))
        .unwrap();
    assert_eq!(rad, DinoV2Config::preset("rad-dino").unwrap());
}

#[test]
#[ignore]
fn write_presets() {
    let dir = format!("{}/configs", env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, c) in [
        ("dinov2_default.toml", DinoV2Config::dinov2_default()),
        ("rad_dino.toml", DinoV2Config::rad_dino()),
    ] {
        std::fs::write(format!("{dir}/{name}"), c.to_toml_string().unwrap()).unwrap();
    }
}

#[test]
fn partial_files_take_defaults_and_typos_are_errors() {
    let c = DinoV2Config::from_toml_str(
        "[optim]\nepochs = 5\nwarmup_epochs = 1\n[train]\ncentering = \"sinkhorn_knopp\"\nOFFICIAL_EPOCH_LENGTH = 10\n",
        Path::new("x.toml"),
    )
    .unwrap();
    assert_eq!(c.optim.epochs, 5);
    assert_eq!(c.dino.head_n_prototypes, 65536);
    assert_eq!(
        c.teacher_mode().unwrap(),
        TeacherMode::SinkhornKnopp { n_iterations: 3 }
    );
    let err =
        DinoV2Config::from_toml_str("[optim]\nepoch = 5\n", Path::new("bad.toml")).unwrap_err();
    assert!(
        err.to_string().contains("bad.toml") && err.to_string().contains("epoch"),
        "{err}"
    );
    let err = DinoV2Config::from_toml_str("[train]\ncentering = \"mean\"\n", Path::new("c.toml"))
        .unwrap_err();
    assert!(err.to_string().contains("centering"), "{err}");
}

#[test]
fn photometric_augmentations_default_to_dinov2_and_are_checked() {
    let c = DinoV2Config::dinov2_default().crops;
    assert_eq!(c.color_jitter_prob, 0.8);
    assert_eq!((c.brightness, c.contrast), (0.4, 0.4));
    assert_eq!(c.blur_prob, [1.0, 0.1, 0.5]);
    assert_eq!(c.solarize_prob, 0.2);
    assert_eq!(c.horizontal_flip_prob, 0.0, "off for chest X-rays");
    let off = DinoV2Config::from_toml_str(
        "[crops]\ncolor_jitter_prob = 0.0\nsolarize_prob = 0.0\n",
        Path::new("off.toml"),
    )
    .unwrap();
    assert_eq!(off.crops.color_jitter_prob, 0.0);
    assert_eq!(off.crops.solarize_prob, 0.0);
    assert_eq!(off.crops.blur_prob, [1.0, 0.1, 0.5]);
    for bad in [
        "[crops]\nsolarize_prob = 1.5\n",
        "[crops]\nblur_prob = [1.0, -0.1, 0.5]\n",
        "[crops]\nbrightness = -0.2\n",
        // an empty range panicked in the crop sampler
        "[crops]\nglobal_crops_scale = [1.0, 0.32]\n",
        "[crops]\nlocal_crops_scale = [0.0, 0.32]\n",
        "[crops]\nlocal_crops_scale = [0.05, 1.5]\n",
    ] {
        let err = DinoV2Config::from_toml_str(bad, Path::new("aug.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("aug.toml") && msg.contains("crops."), "{msg}");
    }
}

#[test]
fn optimizer_numbers_are_checked() {
    for (toml, says) in [
        (
            "[optim]\nlr = -1e-3\n",
            "optim.lr = -0.001 is not a finite number >= 0",
        ),
        (
            "[optim]\nweight_decay_end = -0.4\n",
            "optim.weight_decay_end = -0.4",
        ),
        ("[optim]\nclip_grad = nan\n", "optim.clip_grad = NaN"),
        (
            "[optim]\nlayerwise_decay = 0.0\n",
            "optim.layerwise_decay = 0 is not in (0, 1]",
        ),
        ("[optim]\nadamw_beta2 = 1.0\n", "must lie in [0, 1)"),
    ] {
        let err = DinoV2Config::from_toml_str(toml, Path::new("optim.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("optim.toml") && msg.contains(says),
            "{toml}: {msg}"
        );
    }
}

#[test]
fn derived_settings_follow_dinov2() {
    let c = DinoV2Config::rad_dino();
    // lr = 0.004 · √(64·4 / 1024)
    assert!((c.lr(4) - 0.002).abs() < 1e-15);
    let head = c.dino_head(768);
    assert_eq!(
        (
            head.in_dim,
            head.n_prototypes,
            head.hidden_dim,
            head.bottleneck_dim
        ),
        (768, 65536, 2048, 256)
    );
    assert!(c.ibot_head(768).is_none());
    let obj = c.objective().unwrap();
    assert_eq!((obj.koleo_loss_weight, obj.ibot_prototypes), (0.1, 65536));
    let mut small = c.clone();
    small.optim.epochs = 2;
    small.optim.warmup_epochs = 1;
    small.teacher.warmup_teacher_temp_epochs = 1;
    small.train.official_epoch_length = 3;
    let s = DinoSchedules::new(&small.schedules(1)).unwrap().at(0);
    assert_eq!(
        (s.lr, s.teacher_temp, s.last_layer_lr, s.momentum),
        (0.0, 0.04, 0.0, 0.992)
    );

    let dir = tempfile::tempdir().unwrap();
    let path = c.write_resolved(dir.path(), 4).unwrap();
    let back = DinoV2Config::from_toml_file(&path).unwrap();
    assert!((back.optim.lr - 0.002).abs() < 1e-15);
    assert_eq!(back.student, c.student);
}
