//! Shared loading of the transformers fixtures (written by `gen.py`).
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use llava_bridge::template::Example;
use llava_bridge::{Llama, Projector, ReportGenerator, Weights};

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llava"))
}

#[allow(missing_debug_implementations)] // VarMap has no Debug
pub struct Fixture {
    pub data: HashMap<String, Tensor>,
    pub meta: serde_json::Value,
    pub generator: ReportGenerator,
    pub varmap: VarMap,
}

pub fn load() -> Fixture {
    let dir = fixture_dir();
    let data = candle_core::safetensors::load(dir.join("data.safetensors"), &Device::Cpu).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let lm = Llama::from_dir(&dir.join("lm"), DType::F32, &Device::Cpu).unwrap();
    let varmap = VarMap::new();
    let pw = Weights::read(
        &[dir.join("projector.safetensors")],
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let projector =
        Projector::load(&pw, "multi_modal_projector", 24, 32, &varmap, DType::F32).unwrap();
    let generator = ReportGenerator::new(projector, lm).unwrap();
    Fixture {
        data,
        meta,
        generator,
        varmap,
    }
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

impl Fixture {
    pub fn t(&self, name: &str) -> &Tensor {
        self.data
            .get(name)
            .unwrap_or_else(|| panic!("fixture tensor {name}"))
    }

    pub fn example(&self, i: usize, with_target: bool) -> Example {
        Example {
            before: ids(&self.meta["before"]),
            after: ids(&self.meta["after"]),
            target: if with_target {
                ids(&self.meta["targets"][i])
            } else {
                Vec::new()
            },
        }
    }

    pub fn tokens(&self, name: &str) -> Vec<u32> {
        self.t(name)
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|x| x as u32)
            .collect()
    }
}

pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    cxr_core::ops::max_abs_diff(a, b).unwrap()
}
