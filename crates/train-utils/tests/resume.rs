//! Exact resume: k steps + checkpoint + reload + the rest == an uninterrupted run, to the bit.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, D};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use train_utils::{
    check_finite, clip_grad_norm, ema_update, named_vars, AdamW, AdamWConfig, Checkpoint,
    CheckpointDir, DinoScheduleConfig, DinoSchedules, Error, NamedGrads, ParamGroupRules, RngState,
    TrainState,
};

const SHAPES: [(&str, &[usize]); 3] = [
    ("backbone.blocks.0.weight", &[8, 4]),
    ("backbone.blocks.0.bias", &[8]),
    ("head.last_layer.weight", &[3, 8]),
];
const BATCH: usize = 6;

fn rand_tensor(rng: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn varmap(tensors: &HashMap<String, Tensor>, prefix: &str) -> VarMap {
    let vm = VarMap::new();
    let mut data = vm.data().lock().unwrap();
    for (name, _) in SHAPES {
        let t = &tensors[&format!("{prefix}{name}")];
        data.insert(name.into(), candle_core::Var::from_tensor(t).unwrap());
    }
    drop(data);
    vm
}

/// A toy DINO-style run (student, EMA teacher, AdamW, schedules, RNG); `run_loop.rs` drives
/// it through the shared loop.
pub(crate) struct Run {
    student: VarMap,
    teacher: VarMap,
    opt: AdamW,
    rng: ChaCha8Rng,
    pub(crate) step: u64,
    data_position: u64,
    schedules: DinoSchedules,
}

fn optimizer(student: &VarMap) -> AdamW {
    let rules = ParamGroupRules::backbone(1, 0.9, 0.2);
    AdamW::new(
        &named_vars(student),
        |n| rules.group(n),
        AdamWConfig::default(),
    )
    .unwrap()
}

fn schedules() -> DinoSchedules {
    DinoSchedules::new(&DinoScheduleConfig {
        epoch_len: 4,
        epochs: 3,
        lr: 0.05,
        warmup_epochs: 1,
        warmup_teacher_temp_epochs: 1,
        ..DinoScheduleConfig::default()
    })
    .unwrap()
}

impl Run {
    pub(crate) fn fresh(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut init = HashMap::new();
        for (name, shape) in SHAPES {
            init.insert(name.to_string(), rand_tensor(&mut rng, shape, 0.5));
        }
        let student = varmap(&init, "");
        // the teacher starts equal to the student
        let teacher = varmap(&init, "");
        Self {
            opt: optimizer(&student),
            student,
            teacher,
            rng,
            step: 0,
            data_position: 0,
            schedules: schedules(),
        }
    }

    fn resume(dir: &CheckpointDir) -> Self {
        Self::from_checkpoint(&dir.load_latest(&Device::Cpu).unwrap().unwrap())
    }

    pub(crate) fn from_checkpoint(ckpt: &Checkpoint) -> Self {
        let student = varmap(&ckpt.tensors, "student.");
        let teacher = varmap(&ckpt.tensors, "teacher.");
        let mut opt = optimizer(&student);
        let moments: HashMap<String, Tensor> = ckpt
            .tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("optim.").map(|k| (k.to_string(), v.clone())))
            .collect();
        opt.load_state(&moments, &ckpt.state.optimizer_steps)
            .unwrap();
        Self {
            student,
            teacher,
            opt,
            rng: ckpt.state.rng.restore().unwrap(),
            step: ckpt.state.step,
            data_position: ckpt.state.data_position,
            schedules: schedules(),
        }
    }

    fn save(&self, dir: &CheckpointDir) {
        let (tensors, state) = self.state();
        dir.save(&tensors, &state).unwrap();
    }

    /// Everything a checkpoint holds.
    pub(crate) fn state(&self) -> (HashMap<String, Tensor>, TrainState) {
        let mut tensors = HashMap::new();
        for (prefix, vm) in [("student.", &self.student), ("teacher.", &self.teacher)] {
            for (n, v) in named_vars(vm) {
                tensors.insert(format!("{prefix}{n}"), v.as_tensor().clone());
            }
        }
        let (moments, optimizer_steps) = self.opt.state();
        for (k, v) in moments {
            tensors.insert(format!("optim.{k}"), v);
        }
        let state = TrainState {
            step: self.step,
            data_position: self.data_position,
            rng: RngState::capture(&self.rng),
            optimizer_steps,
            extra: serde_json::Value::Null,
        };
        (tensors, state)
    }

    fn forward(vm: &VarMap, x: &Tensor) -> Tensor {
        let v: HashMap<String, Tensor> = named_vars(vm)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        let h = x
            .matmul(&v["backbone.blocks.0.weight"].t().unwrap())
            .unwrap()
            .broadcast_add(&v["backbone.blocks.0.bias"])
            .unwrap()
            .tanh()
            .unwrap();
        h.matmul(&v["head.last_layer.weight"].t().unwrap()).unwrap()
    }

    /// One step; `poison` makes the loss NaN.
    pub(crate) fn step(&mut self, poison: bool) -> Result<f32, Error> {
        let s = self.schedules.at(self.step as usize);
        let mut x = rand_tensor(&mut self.rng, &[BATCH, 4], 1.0);
        if poison {
            x = (x * f64::NAN).unwrap();
        }
        let y = rand_tensor(&mut self.rng, &[BATCH, 3], 1.0);
        self.data_position += BATCH as u64;
        let teacher_out = Self::forward(&self.teacher, &x).detach();
        let out = Self::forward(&self.student, &x);
        let loss = ((out - teacher_out).unwrap() * s.teacher_temp)
            .unwrap()
            .broadcast_sub(&y)
            .unwrap()
            .sqr()
            .unwrap()
            .sum(D::Minus1)
            .unwrap()
            .mean_all()
            .unwrap();
        let value = loss.to_scalar::<f32>().unwrap();
        check_finite(self.step, &[("loss", value as f64)])?;
        let vars = named_vars(&self.student);
        let mut grads = NamedGrads::from_store(&loss.backward().unwrap(), &vars);
        clip_grad_norm(&mut grads, None, 3.0).unwrap();
        self.opt.step(&grads, s.lr, s.wd, s.last_layer_lr).unwrap();
        ema_update(&named_vars(&self.teacher), &vars, s.momentum).unwrap();
        self.step += 1;
        Ok(value)
    }
}

fn bits(run: &mut Run, n: usize) -> Vec<u32> {
    (0..n).map(|_| run.step(false).unwrap().to_bits()).collect()
}

#[test]
fn resumed_run_is_bit_identical() {
    let mut straight = Run::fresh(7);
    let want = bits(&mut straight, 10);

    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::new(tmp.path(), 2).unwrap();
    let mut first = Run::fresh(7);
    let mut got = bits(&mut first, 4);
    first.save(&dir);
    drop(first);
    let mut resumed = Run::resume(&dir);
    assert_eq!(resumed.step, 4);
    assert_eq!(resumed.data_position, 4 * BATCH as u64);
    got.extend(bits(&mut resumed, 6));
    assert_eq!(got, want);
    // the losses really change (the test would be vacuous on a constant loss)
    assert!(want.windows(2).any(|w| w[0] != w[1]));
}

#[test]
fn nan_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::new(tmp.path(), 3).unwrap();
    let mut run = Run::fresh(3);
    for _ in 0..5 {
        run.step(false).unwrap();
        run.save(&dir);
    }
    let before = std::fs::read(tmp.path().join("latest.json")).unwrap();
    let err = run.step(true).unwrap_err();
    assert!(matches!(err, Error::NonFinite { step: 5, .. }), "{err}");
    assert!(err.to_string().contains("last good checkpoint"));
    assert_eq!(
        std::fs::read(tmp.path().join("latest.json")).unwrap(),
        before
    );
    assert_eq!(dir.latest_step().unwrap(), Some(5));
    assert_eq!(dir.steps().unwrap(), [3, 4, 5], "keeps the 3 newest");
    let mut resumed = Run::resume(&dir);
    assert!(resumed.step(false).unwrap().is_finite());
    assert!(!has_temp_files(tmp.path()));
}

fn has_temp_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp-"))
}

/// A damaged checkpoint is an error that names its file.
#[test]
fn damaged_checkpoint_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::new(tmp.path(), 3).unwrap();
    let mut run = Run::fresh(4);
    run.step(false).unwrap();
    let (tensors, state) = run.state();
    let saved = dir.save(&tensors, &state).unwrap();
    let bytes = std::fs::read(&saved).unwrap();
    std::fs::write(&saved, &bytes[..bytes.len() / 2]).unwrap();
    let err = dir.load_latest(&candle_core::Device::Cpu).unwrap_err();
    assert!(
        err.to_string().contains(&saved.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("invalid header length"), "{err}");
}
