//! MI2 (MedImageInsight) as one dual encoder: the DaViT image tower of `vit-backbone`, the
//! UniCL text tower, both projections, `logit_scale` and the CLIP tokenizer, loaded together.
//!
//! # Folder layout
//! [`Mi2Files::in_dir`] accepts the released layout (the `2024.09.27/` folder of the
//! MedImageInsight release, or a Hugging Face snapshot holding it):
//!
//! ```text
//! config.yaml                                  (not parsed: the MI2 preset is used)
//! config.json                                  (optional: an [`Mi2Config`] as JSON; wins)
//! vision_model/medimageinsigt-v1.0.0.pt        (safetensors despite the name: the whole
//!                                               UniCL state dict, both towers)
//! language_model/*.pth | *.safetensors         (optional: read only when the vision file
//!                                               lacks `lang_encoder.*`)
//! language_model/clip_tokenizer_4.16.2/{vocab.json, merges.txt}
//! ```
//!
//! and the flat layout `model.safetensors` + `tokenizer.json` (or `vocab.json` +
//! `merges.txt`) + optional `config.json`. [`Mi2Files::single`] names one safetensors with all
//! UniCL keys and a tokenizer directly.
//!
//! # Keys
//! `image_encoder.*` (DaViT, see [`vit_backbone::davit`]), `lang_encoder.*` and
//! `lang_projection` (see [`crate::TextTransformer`]), `image_projection` `[2048, 1024]` and
//! `logit_scale` `[]`. Old UniCL names (`visual.`, `text.`, `vision_projection`,
//! `text_projection`), the original DaViT names and a DDP `module.` prefix are converted.
//! [`Mi2Config::expected_tensors`] lists every tensor with its shape; loading checks the
//! checkpoint against it and fails with [`cxr_core::Error::MissingTensor`],
//! [`cxr_core::Error::ShapeMismatch`] or [`cxr_core::Error::UnexpectedTensors`] naming the
//! file and tensor.
//!
//! [`Mi2::from_pretrained`] finds the same files in the local Hugging Face cache and never
//! downloads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use cxr_core::Error as CoreError;
use serde::{Deserialize, Serialize};
use vit_backbone::davit::weights::{read_checkpoint, to_canonical};
use vit_backbone::davit::{DavitConfig, DavitModel};

use crate::checkpoint::convert_old_key;
use crate::{DualEncoder, Error, Result, TextConfig, TextTokenizer, TextTransformer};

/// The architecture of both towers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mi2Config {
    /// The DaViT image tower. Its `projection_dim`, when set, must equal the text tower's.
    pub image: DavitConfig,
    /// The UniCL text tower; its `projection_dim` is the joint embedding width.
    pub text: TextConfig,
}

impl Mi2Config {
    /// The released MedImageInsight model: [`DavitConfig::mi2`] and [`TextConfig::mi2`]
    /// (≈0.61 B parameters).
    pub fn mi2() -> Self {
        Self {
            image: DavitConfig::mi2(),
            text: TextConfig::mi2(),
        }
    }

    /// A tiny model with MI2's structure for tests: [`DavitConfig::tiny`] and a bidirectional
    /// [`TextConfig::tiny`] over `vocab_size` tokens, both projected to 24.
    pub fn tiny(vocab_size: usize) -> Self {
        let text = TextConfig {
            causal: false,
            ..TextConfig::tiny(vocab_size)
        };
        Self {
            image: DavitConfig {
                projection_dim: Some(text.projection_dim),
                ..DavitConfig::tiny()
            },
            text,
        }
    }

    /// Reads the JSON form (`{"image": {...}, "text": {...}}`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        let cfg: Self =
            serde_json::from_str(&text).map_err(|e| CoreError::config(path, e.to_string()))?;
        cfg.validate()
            .map_err(|r| Error::Core(CoreError::config(path, r)))?;
        Ok(cfg)
    }

    /// Checks both towers and that their projections agree.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.image.validate().map_err(|r| format!("image: {r}"))?;
        self.text.validate().map_err(|r| format!("text: {r}"))?;
        match self.image.projection_dim {
            Some(p) if p != self.text.projection_dim => Err(format!(
                "image projection_dim {p} differs from text projection_dim {}",
                self.text.projection_dim
            )),
            _ => Ok(()),
        }
    }

    /// Every tensor [`Mi2::build`] reads, with its shape, sorted by name: exactly what a
    /// checkpoint must hold. Nothing of model size is allocated.
    pub fn expected_tensors(&self) -> Result<BTreeMap<String, Vec<usize>>> {
        let shapes: Shapes = Arc::default();
        let vb =
            VarBuilder::from_backend(Box::new(Recorder(shapes.clone())), DType::F32, Device::Cpu);
        Mi2::build(self, vb)?;
        let out = shapes
            .lock()
            .map_err(|_| Error::arg("expected_tensors", "recorder lock poisoned"))?
            .clone();
        Ok(out)
    }
}

type Shapes = Arc<Mutex<BTreeMap<String, Vec<usize>>>>;

/// Hands out zero-stride views (nothing allocated) and records each requested name and shape.
struct Recorder(Shapes);

impl SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .map_err(|_| candle_core::Error::Msg("recorder lock poisoned".into()))?
            .insert(name.into(), s.dims().to_vec());
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("unexpected unchecked get of {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Where the tokenizer of a model is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerFiles {
    /// A `tokenizer.json`.
    Json(PathBuf),
    /// CLIP's `vocab.json` and `merges.txt`.
    VocabMerges {
        /// `vocab.json`.
        vocab: PathBuf,
        /// `merges.txt`.
        merges: PathBuf,
    },
}

impl TokenizerFiles {
    /// The tokenizer of `dir`: `tokenizer.json`, else `vocab.json` + `merges.txt`.
    pub fn in_dir(dir: &Path) -> Option<Self> {
        let json = dir.join("tokenizer.json");
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if json.is_file() {
            Some(Self::Json(json))
        } else if vocab.is_file() && merges.is_file() {
            Some(Self::VocabMerges { vocab, merges })
        } else {
            None
        }
    }

    /// Loads it, padded and truncated to `context_length`.
    pub fn load(&self, context_length: usize) -> Result<TextTokenizer> {
        match self {
            Self::Json(p) => TextTokenizer::from_file(p, context_length),
            Self::VocabMerges { vocab, merges } => {
                TextTokenizer::clip_from_vocab_merges(vocab, merges, context_length)
            }
        }
    }
}

/// The files of one MI2 model.
#[derive(Debug, Clone)]
pub struct Mi2Files {
    /// An [`Mi2Config`] JSON; the MI2 preset when `None`.
    pub config: Option<PathBuf>,
    /// The UniCL checkpoint(s) (safetensors or PyTorch zip, detected from the content).
    pub weights: Vec<PathBuf>,
    /// Language-model weights read only when `weights` hold no `lang_encoder.*` tensor.
    pub language_weights: Option<PathBuf>,
    /// The tokenizer.
    pub tokenizer: TokenizerFiles,
}

fn weight_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("safetensors" | "pt" | "pth" | "bin")
                )
        })
        .collect();
    found.sort();
    found
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn single_file(dir: &Path, what: &str) -> Result<Option<PathBuf>> {
    let mut found = weight_files(dir);
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(CoreError::NotFound(format!(
            "{} holds several {what} weight files ({found:?}); name one with Mi2Files::single",
            dir.display()
        ))
        .into()),
    }
}

fn is_release_dir(dir: &Path) -> bool {
    dir.join("model.safetensors").is_file() || dir.join("vision_model").is_dir()
}

impl Mi2Files {
    /// One checkpoint with every UniCL key and a tokenizer; the MI2 preset config.
    pub fn single(weights: &Path, tokenizer: TokenizerFiles) -> Self {
        Self {
            config: None,
            weights: vec![weights.to_path_buf()],
            language_weights: None,
            tokenizer,
        }
    }

    /// The files of a model folder (see the module docs). A folder that holds the release
    /// one level down (e.g. a snapshot with `2024.09.27/`) is entered when it is the only one.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(CoreError::NotFound(format!("MI2 folder {}", dir.display())).into());
        }
        let dir = if is_release_dir(dir) {
            dir.to_path_buf()
        } else {
            let inner: Vec<PathBuf> = subdirs(dir)
                .into_iter()
                .filter(|d| is_release_dir(d))
                .collect();
            match inner.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(CoreError::NotFound(format!(
                        "{} has neither model.safetensors nor vision_model/ (nor one subfolder \
                         with them)",
                        dir.display()
                    ))
                    .into())
                }
                many => {
                    return Err(CoreError::NotFound(format!(
                        "{} holds several MI2 releases {many:?}; pass one of them",
                        dir.display()
                    ))
                    .into())
                }
            }
        };
        let config = Some(dir.join("config.json")).filter(|p| p.is_file());
        let single = dir.join("model.safetensors");
        let weights = if single.is_file() {
            single
        } else {
            single_file(&dir.join("vision_model"), "vision_model")?.ok_or_else(|| {
                CoreError::NotFound(format!(
                    "{} has no model.safetensors and no weight file in vision_model/",
                    dir.display()
                ))
            })?
        };
        let lang = dir.join("language_model");
        let language_weights = single_file(&lang, "language_model")?;
        let tokenizer = std::iter::once(dir.clone())
            .chain(std::iter::once(lang.clone()))
            .chain(subdirs(&lang))
            .find_map(|d| TokenizerFiles::in_dir(&d))
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "{}: no tokenizer.json or vocab.json + merges.txt (looked in the folder, \
                     language_model/ and its subfolders such as clip_tokenizer_4.16.2/)",
                    dir.display()
                ))
            })?;
        Ok(Self {
            config,
            weights: vec![weights],
            language_weights,
            tokenizer,
        })
    }

    /// The files of `repo_id` in the local Hugging Face cache (`HF_HOME`, `HF_HUB_CACHE`),
    /// laid out as [`Mi2Files::in_dir`] expects. Never downloads: fetch the repository first
    /// with `huggingface-cli download REPO` where the hub is reachable.
    pub fn cached(repo_id: &str, revision: Option<&str>) -> Result<Self> {
        Self::in_dir(&vit_backbone::cached_snapshot(repo_id, revision)?)
    }
}

/// An MI2 checkpoint read and checked, before a model is built from it: for inference
/// ([`Mi2::load`]) or as the starting point of continual pretraining, where every tensor goes
/// into a `VarMap`.
#[derive(Debug)]
pub struct Mi2Checkpoint {
    /// The architecture.
    pub config: Mi2Config,
    /// Every tensor under its [`Mi2::build`] name, checked against `config`.
    pub tensors: HashMap<String, Tensor>,
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
}

impl Mi2Files {
    /// Reads the config (the MI2 preset without one), every tensor (checked against it, on
    /// `device`) and the tokenizer.
    pub fn read(&self, device: &Device) -> Result<Mi2Checkpoint> {
        let files = self;
        let config = match &files.config {
            Some(p) => Mi2Config::from_file(p)?,
            None => Mi2Config::mi2(),
        };
        let first = files
            .weights
            .first()
            .cloned()
            .ok_or_else(|| CoreError::NotFound("no MI2 weight files given".into()))?;
        let tensors = read_tensors(files)?
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_device(device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        check_tensors(&config.expected_tensors()?, &tensors, &first)?;
        let tokenizer = files.tokenizer.load(config.text.context_length)?;
        if tokenizer.vocab_size() > config.text.vocab_size {
            return Err(CoreError::config(
                &first,
                format!(
                    "the tokenizer has {} tokens, the text tower's embedding only {}",
                    tokenizer.vocab_size(),
                    config.text.vocab_size
                ),
            )
            .into());
        }
        Ok(Mi2Checkpoint {
            config,
            tensors,
            tokenizer,
        })
    }
}

/// The loaded MI2 model: the dual encoder, its tokenizer and its configuration.
#[derive(Debug)]
pub struct Mi2 {
    model: DualEncoder,
    tokenizer: TextTokenizer,
    config: Mi2Config,
}

/// `module.` removed when every key has it, then old UniCL names converted.
fn normalise_keys(raw: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let strip = !raw.is_empty() && raw.keys().all(|k| k.starts_with("module."));
    raw.into_iter()
        .map(|(k, v)| {
            let k = match k.strip_prefix("module.") {
                Some(rest) if strip => rest.to_string(),
                _ => k,
            };
            (convert_old_key(&k), v)
        })
        .collect()
}

fn is_text_key(k: &str) -> bool {
    k.starts_with("lang_encoder.") || k == "lang_projection" || k == "logit_scale"
}

/// Reads and converts every tensor of `files` to the canonical UniCL layout (CPU).
fn read_tensors(files: &Mi2Files) -> Result<HashMap<String, Tensor>> {
    let mut raw = HashMap::new();
    for f in &files.weights {
        raw.extend(normalise_keys(read_checkpoint(f)?));
    }
    if !raw.keys().any(|k| k.starts_with("lang_encoder.")) {
        if let Some(lang) = &files.language_weights {
            let bare = read_checkpoint(lang)?;
            let prefixed = !bare.keys().any(|k| k.starts_with("lang_encoder."));
            for (k, v) in normalise_keys(bare) {
                let k = if prefixed && !is_text_key(&k) {
                    format!("lang_encoder.{k}")
                } else {
                    k
                };
                raw.insert(k, v);
            }
        }
    }
    let (text, image): (HashMap<_, _>, HashMap<_, _>) =
        raw.into_iter().partition(|(k, _)| is_text_key(k));
    // DaViT's own renamings (original DaViT names, bare tower)
    let mut out = to_canonical(image).tensors;
    out.extend(text);
    Ok(out)
}

/// Checks `tensors` against `expected`; errors name `file` and the tensor.
fn check_tensors(
    expected: &BTreeMap<String, Vec<usize>>,
    tensors: &HashMap<String, Tensor>,
    file: &Path,
) -> Result<()> {
    let expected: Vec<(String, Vec<usize>)> = expected
        .iter()
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    Ok(cxr_core::check_tensors(&expected, tensors, file, false)?)
}

impl Mi2 {
    /// Builds the dual encoder of `cfg` from `vb` at the UniCL checkpoint root: plain tensors
    /// for inference, a `VarMap` builder for training (random init where `vb` has no value).
    pub fn build(cfg: &Mi2Config, vb: VarBuilder) -> Result<DualEncoder> {
        cfg.validate()
            .map_err(|r| Error::Core(CoreError::config("Mi2Config", r)))?;
        // the dual encoder owns image_projection; the tower stops at the 2048-d pool
        let tower_cfg = DavitConfig {
            projection_dim: None,
            ..cfg.image.clone()
        };
        let image = DavitModel::new(&tower_cfg, vb.clone())?;
        let text = TextTransformer::new(&cfg.text, vb.clone())?;
        DualEncoder::new(Box::new(image), Box::new(text), vb)
    }

    /// Loads a model from `files` in `dtype` on `device`, checking every tensor first.
    pub fn load(files: &Mi2Files, dtype: DType, device: &Device) -> Result<Self> {
        let Mi2Checkpoint {
            config,
            tensors,
            tokenizer,
        } = files.read(device)?;
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        let model = Self::build(&config, vb)?;
        Ok(Self {
            model,
            tokenizer,
            config,
        })
    }

    /// Loads the model of a folder ([`Mi2Files::in_dir`]).
    pub fn from_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::load(&Mi2Files::in_dir(dir)?, dtype, device)
    }

    /// Loads one safetensors with every UniCL key and the MI2 preset config.
    pub fn from_file(
        weights: &Path,
        tokenizer: TokenizerFiles,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::load(&Mi2Files::single(weights, tokenizer), dtype, device)
    }

    /// Loads `repo_id` from the local Hugging Face cache ([`Mi2Files::cached`]); never
    /// downloads.
    pub fn from_pretrained(
        repo_id: &str,
        revision: Option<&str>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::load(&Mi2Files::cached(repo_id, revision)?, dtype, device)
    }

    /// The dual encoder.
    pub fn model(&self) -> &DualEncoder {
        &self.model
    }

    /// The tokenizer (padded to the text tower's context length).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The configuration.
    pub fn config(&self) -> &Mi2Config {
        &self.config
    }

    /// The parts, for callers that keep them separately.
    pub fn into_parts(self) -> (DualEncoder, TextTokenizer, Mi2Config) {
        (self.model, self.tokenizer, self.config)
    }
}
