//! Every committed training config parses, validates and names a buildable backbone, so a
//! typo shows here and not 20 minutes into a run.

use dino_loss::DinoV2Config;
use dino_pretrain::backbone_config;

#[test]
fn committed_configs_load_and_name_a_backbone() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let cfg = DinoV2Config::from_toml_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let m = backbone_config(&cfg).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            m.image_size,
            cfg.crops.global_crops_size,
            "{}",
            path.display()
        );
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    seen.sort();
    assert!(seen.len() >= 4, "{seen:?}");
    // the CPU recipe of runs 7-8 differs from the base CPU recipe in exactly three settings
    let load = |name: &str| DinoV2Config::from_toml_file(&dir.join(name)).unwrap();
    let (base, k1024) = (
        load("vit_tiny_cxr_cpu.toml"),
        load("vit_tiny_cxr_cpu_k1024.toml"),
    );
    let mut expected = base.clone();
    expected.student.layerscale = 1.0;
    expected.teacher.teacher_temp = 0.04;
    expected.dino.head_n_prototypes = 1024;
    assert_eq!(k1024, expected);
}
