#![allow(clippy::unwrap_used, dead_code)]
use std::path::PathBuf;

use candle_core::Device;
use cxr_data::Split;
use dino_loss::DinoV2Config;
use dino_pretrain::{packs, DinoTrainer, MultiCropSource};
use vit_backbone::Dinov2Config;

pub use cxr_testkit::pack;

/// A tiny DINOv2 setup: 16-px global crops (4×4 patches of 4 px), 2 local 8-px crops,
/// batch 2, 32 prototypes.
pub fn tiny_config(drop_path: f64) -> (DinoV2Config, Dinov2Config) {
    let mut cfg = DinoV2Config::dinov2_default();
    cfg.student.arch = "vit_tiny".into();
    cfg.student.patch_size = 4;
    cfg.student.drop_path_rate = drop_path;
    cfg.crops.global_crops_size = 16;
    cfg.crops.local_crops_size = 8;
    cfg.crops.local_crops_number = 2;
    cfg.dino.head_n_prototypes = 32;
    cfg.dino.head_hidden_dim = 16;
    cfg.dino.head_bottleneck_dim = 8;
    cfg.optim.epochs = 2;
    cfg.optim.warmup_epochs = 1;
    cfg.optim.freeze_last_layer_epochs = 1;
    cfg.teacher.warmup_teacher_temp_epochs = 1;
    cfg.train.official_epoch_length = 2;
    cfg.train.batch_size_per_gpu = 2;
    let mut m = Dinov2Config::vit_tiny(16);
    m.hidden_size = 24;
    m.num_hidden_layers = 2;
    m.num_attention_heads = 2;
    m.patch_size = 4;
    m.drop_path_rate = drop_path;
    m.layerscale_value = 0.1;
    (cfg, m)
}

pub fn tiny(drop_path: f64) -> (DinoTrainer, MultiCropSource) {
    let (cfg, m) = tiny_config(drop_path);
    let files: Vec<PathBuf> = packs::split_files(&pack("cxr-mini"), Split::Train)
        .unwrap()
        .into_iter()
        .take(5)
        .collect();
    let source = MultiCropSource::new(files, &cfg, 4, [0.5; 3], [0.25; 3]).unwrap();
    let trainer = DinoTrainer::with_backbone(cfg, m, &Device::Cpu).unwrap();
    (trainer, source)
}
