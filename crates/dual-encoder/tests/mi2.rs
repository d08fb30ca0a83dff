//! The whole MI2 dual encoder: key set of the full config against the PyTorch manifests,
//! a tiny DaViT + text tower model against PyTorch, folder layouts, typed errors, and one
//! contrastive backward step through both towers.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::{fixture, json, load, max_diff};
use cxr_core::ops::log_softmax_last_dim;
use dual_encoder::{
    Error, Mi2, Mi2Config, Mi2Files, Templates, TokenizerFiles, ZeroShotClassifier,
};

const TOL: f32 = 1e-5;

fn tokenizer_files() -> TokenizerFiles {
    TokenizerFiles::VocabMerges {
        vocab: fixture("tokenizer/vocab.json"),
        merges: fixture("tokenizer/merges.txt"),
    }
}

fn tiny_files() -> Mi2Files {
    Mi2Files {
        config: Some(fixture("mi2_tiny/config.json")),
        ..Mi2Files::single(&fixture("mi2_tiny/model.safetensors"), tokenizer_files())
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn full_mi2_key_set_is_the_reference_one() {
    let ours = Mi2Config::mi2().expected_tensors().unwrap();
    let image_manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../vit-backbone/tests/fixtures/mi2_image_keys.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut want: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let image: Vec<(String, Vec<usize>)> =
        serde_json::from_value(image_manifest["tensors"].clone()).unwrap();
    want.extend(image);
    let text: BTreeMap<String, Vec<usize>> =
        serde_json::from_value(json("mi2_text_keys.json")["tensors"].clone()).unwrap();
    for (k, v) in text {
        // both manifests hold image_projection; they must agree
        if let Some(prev) = want.insert(k.clone(), v.clone()) {
            assert_eq!(prev, v, "{k}");
        }
    }
    assert_eq!(ours, want);
    for k in ["image_projection", "lang_projection", "logit_scale"] {
        assert!(ours.contains_key(k), "{k}");
    }
    assert_eq!(ours["image_projection"], vec![2048, 1024]);
    let n: usize = ours.values().map(|s| s.iter().product::<usize>()).sum();
    let image_n = image_manifest["parameters"].as_u64().unwrap() as usize;
    let text_n = json("mi2_text_keys.json")["text_parameters"]
        .as_u64()
        .unwrap() as usize;
    // image manifest counts image_projection; text count covers lang_*; plus logit_scale
    assert_eq!(n, image_n + text_n + 1);
}

fn check_against_pytorch(m: &Mi2) {
    let exp = load("mi2_tiny/expected.safetensors");
    let meta = json("mi2_tiny/expected.json");
    let model = m.model();
    let img = model.encode_image(&exp["images"], false).unwrap();
    let d = max_diff(&img, &exp["image_embeddings"]);
    eprintln!("image embeddings: max |diff| {d:.2e}");
    assert!(d < TOL, "image embeddings: {d}");
    let findings = strings(&meta["findings"]);
    let names: Vec<&str> = findings.iter().map(String::as_str).collect();
    let pos = Templates::new(strings(&meta["positive_templates"])).unwrap();
    let zs = ZeroShotClassifier::new(model, m.tokenizer(), &names, &pos, None).unwrap();
    let d = max_diff(zs.class_embeddings(), &exp["class_embeddings"]);
    eprintln!("class embeddings: max |diff| {d:.2e}");
    assert!(d < TOL, "class embeddings: {d}");
    let probs = zs.probabilities(model, &img).unwrap();
    let d = max_diff(&probs, &exp["probs"]);
    eprintln!("zero-shot probabilities: max |diff| {d:.2e}");
    assert!(d < TOL, "probabilities: {d}");
    let batch = m
        .tokenizer()
        .encode_batch(&strings(&meta["captions"]), &Device::Cpu)
        .unwrap();
    let sim = model.similarity(&exp["images"], &batch).unwrap();
    // logits are scaled by exp(2.66) ≈ 14
    let d = max_diff(&sim, &exp["similarity"]);
    eprintln!("similarity: max |diff| {d:.2e}");
    assert!(d < 1e-4, "similarity: {d}");
}

#[test]
fn tiny_mi2_matches_pytorch() {
    let m = Mi2::load(&tiny_files(), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(m.config().image.embed_dims, vec![8, 16, 24, 32]);
    assert_eq!(m.tokenizer().context_length(), 16);
    check_against_pytorch(&m);
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// The MedImageInsight release layout, one folder down (as in a hub snapshot).
fn release_layout(root: &Path, split_language: bool) -> PathBuf {
    let rel = root.join("2024.09.27");
    copy(&fixture("mi2_tiny/config.json"), &rel.join("config.json"));
    let tok = rel.join("language_model/clip_tokenizer_4.16.2");
    copy(&fixture("tokenizer/vocab.json"), &tok.join("vocab.json"));
    copy(&fixture("tokenizer/merges.txt"), &tok.join("merges.txt"));
    std::fs::write(rel.join("config.yaml"), "# not parsed\n").unwrap();
    let vision = rel.join("vision_model/medimageinsigt-v1.0.0.pt");
    if split_language {
        let all = load("mi2_tiny/model.safetensors");
        let (text, image): (HashMap<_, _>, HashMap<_, _>) = all
            .into_iter()
            .partition(|(k, _)| k.starts_with("lang_") || k == "logit_scale");
        std::fs::create_dir_all(vision.parent().unwrap()).unwrap();
        std::fs::create_dir_all(rel.join("language_model")).unwrap();
        candle_core::safetensors::save(&image, &vision).unwrap();
        candle_core::safetensors::save(
            &text,
            rel.join("language_model/language_model.safetensors"),
        )
        .unwrap();
    } else {
        copy(&fixture("mi2_tiny/model.safetensors"), &vision);
    }
    rel
}

#[test]
fn release_folder_layouts_load() {
    let tmp = tempfile::tempdir().unwrap();
    let rel = release_layout(tmp.path(), false);
    let files = Mi2Files::in_dir(tmp.path()).unwrap();
    assert!(files.weights[0].ends_with("vision_model/medimageinsigt-v1.0.0.pt"));
    assert!(matches!(
        files.tokenizer,
        TokenizerFiles::VocabMerges { .. }
    ));
    check_against_pytorch(&Mi2::from_dir(&rel, DType::F32, &Device::Cpu).unwrap());

    let tmp = tempfile::tempdir().unwrap();
    let rel = release_layout(tmp.path(), true);
    check_against_pytorch(&Mi2::from_dir(&rel, DType::F32, &Device::Cpu).unwrap());

    // the flat layout with an old-UniCL-named checkpoint
    let tmp = tempfile::tempdir().unwrap();
    let old: HashMap<String, Tensor> = load("mi2_tiny/model.safetensors")
        .into_iter()
        .map(|(k, v)| {
            let k = if let Some(r) = k.strip_prefix("image_encoder.") {
                format!("visual.{r}")
            } else if let Some(r) = k.strip_prefix("lang_encoder.") {
                format!("text.{r}")
            } else if k == "lang_projection" {
                "text_projection".into()
            } else {
                k
            };
            (k, v)
        })
        .collect();
    candle_core::safetensors::save(&old, tmp.path().join("model.safetensors")).unwrap();
    copy(
        &fixture("mi2_tiny/config.json"),
        &tmp.path().join("config.json"),
    );
    copy(
        &fixture("tokenizer/tokenizer.json"),
        &tmp.path().join("tokenizer.json"),
    );
    check_against_pytorch(&Mi2::from_dir(tmp.path(), DType::F32, &Device::Cpu).unwrap());
}

fn load_err(tensors: HashMap<String, Tensor>) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("broken.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let files = Mi2Files {
        weights: vec![path],
        ..tiny_files()
    };
    let e = Mi2::load(&files, DType::F32, &Device::Cpu).unwrap_err();
    assert!(matches!(e, Error::Core(_)), "{e:?}");
    e.to_string()
}

#[test]
fn bad_checkpoints_and_folders_give_typed_errors() {
    let mut t = load("mi2_tiny/model.safetensors");
    t.remove("lang_encoder.resblocks.1.ln_2.bias");
    let e = load_err(t);
    assert!(
        e.contains("lang_encoder.resblocks.1.ln_2.bias") && e.contains("broken"),
        "{e}"
    );

    let mut t = load("mi2_tiny/model.safetensors");
    t.remove("image_encoder.blocks.2.1.channel_block.ffn.norm.weight");
    let e = load_err(t);
    assert!(
        e.contains("image_encoder.blocks.2.1.channel_block.ffn.norm.weight"),
        "{e}"
    );

    let mut t = load("mi2_tiny/model.safetensors");
    t.insert(
        "image_projection".into(),
        Tensor::zeros((32, 12), DType::F32, &Device::Cpu).unwrap(),
    );
    let e = load_err(t);
    assert!(e.contains("image_projection") && e.contains("12"), "{e}");

    let mut t = load("mi2_tiny/model.safetensors");
    t.insert(
        "lang_encoder.extra".into(),
        Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
    );
    let e = load_err(t);
    assert!(e.contains("lang_encoder.extra"), "{e}");

    // no tokenizer in the folder
    let tmp = tempfile::tempdir().unwrap();
    copy(
        &fixture("mi2_tiny/model.safetensors"),
        &tmp.path().join("model.safetensors"),
    );
    let e = Mi2Files::in_dir(tmp.path()).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("merges.txt"),
        "{e}"
    );
    // nothing at all
    let e = Mi2Files::in_dir(&tmp.path().join("absent"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent"), "{e}");
    // the preset (full MI2) against the tiny weights: a shape error, not a panic
    let files = Mi2Files::single(&fixture("mi2_tiny/model.safetensors"), tokenizer_files());
    let e = Mi2::load(&files, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected") || e.contains("shape"), "{e}");
    // projections that disagree
    let cfg = Mi2Config {
        image: vit_backbone::DavitConfig {
            projection_dim: Some(7),
            ..vit_backbone::DavitConfig::tiny()
        },
        ..Mi2Config::tiny(674)
    };
    assert!(cfg.validate().unwrap_err().contains("projection_dim"));
    // a negative epsilon in either tower (transformers reads it; the norms give NaN)
    let mut cfg = Mi2Config::tiny(674);
    cfg.image.layer_norm_eps = -1.0;
    assert_eq!(
        cfg.validate().unwrap_err(),
        "image: layer_norm_eps -1 is not a positive number"
    );
    let mut cfg = Mi2Config::tiny(674);
    cfg.text.layer_norm_eps = f64::INFINITY;
    assert_eq!(
        cfg.validate().unwrap_err(),
        "text: layer_norm_eps inf is not a positive number"
    );
}

/// Symmetric InfoNCE with matching pairs on the diagonal.
fn clip_loss(logits: &Tensor) -> Tensor {
    let n = logits.dim(0).unwrap();
    let eye = Tensor::eye(n, DType::F32, &Device::Cpu).unwrap();
    let a = (log_softmax_last_dim(logits).unwrap() * &eye)
        .unwrap()
        .sum_all()
        .unwrap();
    let b = (log_softmax_last_dim(&logits.t().unwrap()).unwrap() * &eye)
        .unwrap()
        .sum_all()
        .unwrap();
    ((a + b).unwrap() * (-0.5 / n as f64)).unwrap()
}

#[test]
fn one_contrastive_step_reaches_both_towers() {
    let tok = common::tokenizer();
    let mut cfg = Mi2Config::tiny(tok.vocab_size());
    // stochastic depth could drop a branch for the whole batch and zero its gradient
    cfg.image.drop_path_rate = 0.0;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Mi2::build(&cfg, vb).unwrap();
    let pixels = Tensor::randn(0f32, 1.0, (3, 3, 64, 64), &Device::Cpu).unwrap();
    let batch = tok
        .encode_batch(
            &[
                "chest x-ray showing pneumonia",
                "no effusion",
                "mild cardiomegaly",
            ],
            &Device::Cpu,
        )
        .unwrap();
    let out = model.forward(&pixels, &batch, true).unwrap();
    let loss = clip_loss(&model.logits(&out.image, &out.text).unwrap());
    let grads = loss.backward().unwrap();

    let data = varmap.data().lock().unwrap();
    let expected = cfg.expected_tensors().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    assert_eq!(names, expected.keys().collect::<Vec<_>>());
    assert!(data.contains_key("image_encoder.blocks.3.0.channel_block.ffn.fn.net.fc2.weight"));
    assert!(data.contains_key("lang_encoder.resblocks.1.attn.in_proj_weight"));
    drop(data);
    common::assert_every_var_has_a_gradient(&varmap, &grads);
}
