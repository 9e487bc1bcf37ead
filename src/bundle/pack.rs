//! `kpl pack`: a Hugging Face CLIP or SigLIP folder, or an open_clip folder, → a bundle folder (see the module above).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::*;
use crate::classifier::build_knowledge_base;
use crate::knowledge::base::StorageDtype;
use crate::knowledge::folder::load_task;
use crate::models::{clip, open_clip, siglip, Family};
use crate::nn::describe_load_error;
use crate::pipeline::Pipeline;

/// Linear layers: `[out, in]` weights the matmul reads (quantisable).
const LINEAR_SUFFIXES: &[&str] = &[
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.out_proj.weight",
    "mlp.fc1.weight",
    "mlp.fc2.weight",
];

/// The last linear layer of each tower, for every family: `{name}.weight`.
const PROJECTIONS: &[&str] = &[clip::names::VISUAL_PROJECTION, clip::names::TEXT_PROJECTION, siglip::names::TEXT_HEAD];

fn is_projection(name: &str) -> bool {
    name.strip_suffix(".weight").is_some_and(|n| PROJECTIONS.contains(&n)) || open_clip::names::is_projection(name)
}

pub fn is_linear_weight(name: &str) -> bool {
    is_projection(name)
        || LINEAR_SUFFIXES.iter().any(|s| name.ends_with(&format!(".{s}")))
        || open_clip::names::is_linear_weight(name)
}

/// How one tensor is stored in a pack of this dtype.
pub fn storage_type(name: &str, shape: &[usize], dtype: PackDtype) -> GgmlDType {
    if dtype == PackDtype::F32 {
        GgmlDType::F32
    } else if is_linear_weight(name) && shape.len() == 2 {
        if dtype == PackDtype::Q4 && is_projection(name) {
            // The last layer's error reaches the embedding undiluted; at 8 bits
            // it costs a fraction of a megabyte (see tests/quantized.rs).
            return PackDtype::Q8.linear_type(shape[1]);
        }
        dtype.linear_type(shape[1])
    } else if shape.len() >= 2 && !name.ends_with(siglip::names::PROBE) {
        // Embedding tables, position embeddings, the patch convolution.
        GgmlDType::F16
    } else {
        // Norms, biases, the class embedding, SigLIP's probe, logit_scale: tiny, kept exact.
        GgmlDType::F32
    }
}

/// Quantises the named tensors on all of candle's threads (the q4_K search
/// takes a while), returning them in the order of `names`.
fn quantize_all(
    names: &[String],
    tensors: &HashMap<String, Tensor>,
    dtype: PackDtype,
) -> candle_core::Result<Vec<(String, QTensor)>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    // Largest first, so that the last tensor to start is a small one.
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(tensors[&names[i]].elem_count()));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<candle_core::Result<QTensor>>>> = Mutex::new((0..names.len()).map(|_| None).collect());
    let threads = candle_core::utils::get_num_threads().clamp(1, names.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let slot = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(slot) else { break };
                let name = &names[i];
                let t = &tensors[name];
                // GGUF has no rank-0 tensors: a scalar becomes [1].
                let result = (if t.rank() == 0 { t.reshape(1) } else { Ok(t.clone()) })
                    .and_then(|t| quantize(&t, storage_type(name, t.dims(), dtype)));
                results.lock().expect("no worker panics")[i] = Some(result);
            });
        }
    });
    let results = results.into_inner().expect("no worker panics");
    names
        .iter()
        .zip(results)
        .map(|(name, r)| Ok((name.clone(), r.expect("every tensor was quantised")?)))
        .collect()
}

/// Quantises one tensor. q4_K goes through candle's search-based quantiser
/// (`quantize_imatrix` with uniform importance: per block of 32 it searches the
/// scale and minimum that minimise the weighted squared error) rather than the
/// one-pass rounding of `quantize`: on the random ViT-B/16 that lifts the q4
/// image-embedding cosine from 0.991 to 0.994.
pub fn quantize(t: &Tensor, ty: GgmlDType) -> candle_core::Result<QTensor> {
    let t = t.to_dtype(DType::F32)?;
    if ty == GgmlDType::Q4K {
        let k = t.dims()[t.rank() - 1];
        QTensor::quantize_imatrix(&t, &vec![1.0; k], ty)
    } else {
        QTensor::quantize(&t, ty)
    }
}

/// The tensors of one tower: `vision_model.*` (+ CLIP's `visual_projection.weight`)
/// or `text_model.*` (+ CLIP's `text_projection.weight`), and the logit scale
/// (and SigLIP's bias) in both; for open_clip, its `visual.*` or text names
/// ([`open_clip::names`]) and its scalars.
pub fn tower_tensor_names(kind: EncoderKind, family: Family, names: impl IntoIterator<Item = String>) -> Vec<String> {
    if family == Family::OpenClip {
        let in_tower = match kind {
            EncoderKind::Image => open_clip::names::is_vision,
            EncoderKind::Text => open_clip::names::is_text,
        };
        let mut out: Vec<String> = names
            .into_iter()
            .filter(|n| open_clip::names::is_scalar(n) || in_tower(n))
            .filter(|n| !n.ends_with("position_ids"))
            .collect();
        out.sort();
        return out;
    }
    let (tower, projection) = match kind {
        EncoderKind::Image => (clip::names::VISION, clip::names::VISUAL_PROJECTION),
        EncoderKind::Text => (clip::names::TEXT, clip::names::TEXT_PROJECTION),
    };
    let in_part = |n: &str, part: &str| n.strip_prefix(part).is_some_and(|rest| rest.starts_with('.'));
    let scalars = [clip::names::LOGIT_SCALE, siglip::names::LOGIT_BIAS];
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|n| scalars.contains(&n.as_str()) || in_part(n, tower) || in_part(n, projection))
        // Buffers some exports carry (integer position ids): not weights.
        .filter(|n| !n.ends_with("position_ids"))
        .collect();
    out.sort();
    out
}

/// What an encoder file says about itself besides its tensors.
pub struct EncoderMeta<'a> {
    pub family: crate::models::Family,
    pub dtype: PackDtype,
    pub fingerprint: &'a str,
    pub config_json: &'a str,
    /// The image encoder's `preprocessor_config.json`.
    pub preprocessor_json: Option<&'a str>,
    /// The text encoder's tokenizer files as the model folder has them.
    pub tokenizer: Option<&'a TokenizerFiles>,
}

/// Writes one encoder GGUF with the tensors of `kind` from `tensors` (any float
/// dtype; quantised as [`storage_type`] says).
pub fn write_encoder<W: Write + std::io::Seek>(
    w: &mut W,
    kind: EncoderKind,
    meta: &EncoderMeta,
    tensors: &HashMap<String, Tensor>,
) -> candle_core::Result<()> {
    let names: Vec<String> = tower_tensor_names(kind, meta.family, tensors.keys().cloned())
        .into_iter()
        .filter(|n| tensors[n].dtype().is_float())
        .collect();
    let qtensors = quantize_all(&names, tensors, meta.dtype)?;
    use gguf_file::Value;
    let mut metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String(meta.family.as_str().into())),
        (keys::FORMAT_VERSION, Value::U32(FORMAT_VERSION)),
        (keys::KIND, Value::String(kind.as_str().into())),
        (keys::DTYPE, Value::String(meta.dtype.as_str().into())),
        (keys::FINGERPRINT, Value::String(meta.fingerprint.into())),
        (keys::CONFIG_JSON, Value::String(meta.config_json.into())),
    ];
    match kind {
        EncoderKind::Image => {
            if let Some(p) = meta.preprocessor_json {
                metadata.push((keys::PREPROCESSOR_JSON, Value::String(p.into())));
            }
        }
        EncoderKind::Text => {
            match meta.tokenizer {
                Some(TokenizerFiles::Json { json, config }) => {
                    push_text(&mut metadata, keys::TOKENIZER_JSON, Some(json))?;
                    push_text(&mut metadata, keys::TOKENIZER_CONFIG_JSON, config.as_ref())?;
                }
                Some(TokenizerFiles::SentencePiece { model: (_, bytes), config }) => {
                    metadata.push((keys::SPIECE_MODEL, Value::String(base64::encode(bytes))));
                    push_text(&mut metadata, keys::TOKENIZER_CONFIG_JSON, config.as_ref())?;
                }
                Some(TokenizerFiles::WordPiece { vocab, config }) => {
                    push_text(&mut metadata, keys::VOCAB_TXT, Some(vocab))?;
                    push_text(&mut metadata, keys::TOKENIZER_CONFIG_JSON, config.as_ref())?;
                }
                None => {}
            }
        }
    }
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    gguf_file::write(w, &metadata, &tensor_refs)
}

/// Adds a text file's content (checked to be UTF-8) under `key`, if there is a file.
fn push_text(metadata: &mut Vec<(&str, gguf_file::Value)>, key: &'static str, file: Option<&(String, Vec<u8>)>) -> candle_core::Result<()> {
    if let Some((name, bytes)) = file {
        let text = utf8_text(name, bytes).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        metadata.push((key, gguf_file::Value::String(text)));
    }
    Ok(())
}

/// Writes `path` through a temporary file beside it, renamed when complete.
fn write_atomically(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    let partial = path.with_extension("partial");
    let shown = partial.display().to_string();
    let file = File::create(&partial).map_err(|e| Error::io(&shown, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    write(&mut w)?;
    w.flush().map_err(|e| Error::io(&shown, e))?;
    drop(w);
    std::fs::rename(&partial, path).map_err(|e| Error::io(path.display(), e))
}

/// The manifest entry of a file just written.
pub fn file_entry(dir: &Path, file_name: &str) -> Result<FileEntry> {
    let path = dir.join(file_name);
    let shown = path.display().to_string();
    let file = File::open(&path).map_err(|e| Error::io(&shown, e))?;
    let (sha256, bytes) = sha256_of(&mut BufReader::with_capacity(1 << 20, file)).map_err(|e| Error::io(&shown, e))?;
    Ok(FileEntry { path: file_name.to_string(), bytes, sha256 })
}

/// Writes one encoder file into `out` and returns its manifest entry.
pub fn write_encoder_file(
    out: &Path,
    kind: EncoderKind,
    meta: &EncoderMeta,
    tensors: &HashMap<String, Tensor>,
) -> Result<FileEntry> {
    let file_name = match kind {
        EncoderKind::Image => IMAGE_ENCODER,
        EncoderKind::Text => TEXT_ENCODER,
    };
    let path = out.join(file_name);
    let shown = path.display().to_string();
    write_atomically(&path, |w| {
        write_encoder(w, kind, meta, tensors).map_err(|e| Error::model(&shown, format!("cannot write: {e}")))
    })?;
    file_entry(out, file_name)
}

pub struct PackOptions {
    pub dtype: PackDtype,
    /// Task folders (`knowledge/TASK`) whose bases go into the bundle.
    pub knowledge: Vec<PathBuf>,
    /// The model's name in the manifest and the bases (default: the fixture
    /// name in `config.json`, else the folder's name).
    pub name: Option<String>,
}

fn utf8(file: &Option<(String, Vec<u8>)>) -> Result<Option<String>> {
    file.as_ref().map(|(name, bytes)| utf8_text(name, bytes)).transpose()
}

fn utf8_text(name: &str, bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::model(name, "not UTF-8 text"))
}

/// A model folder's configuration, tensors and JSON files, as `kpl pack` needs them.
struct SourceFolder {
    config: ModelConfig,
    config_name: String,
    /// What the encoders store: the folder's `config.json`, or open_clip's
    /// configuration resolved against its tensors (a bundle has no pickle to size it from).
    config_json: String,
    weights_name: String,
    tensors: HashMap<String, Tensor>,
    tokenizer: Option<TokenizerFiles>,
    preprocessor: Option<(String, Vec<u8>)>,
}

fn read_source_folder(model: &Path) -> Result<SourceFolder> {
    if crate::model_files::is_open_clip_dir(model) {
        let files = crate::model_files::read_open_clip_dir(model)?;
        let (config_name, config_bytes) = files.config;
        let (weights_name, weights) = files.weights;
        let weights = open_clip::checkpoint::read_all(&weights, &weights_name)?;
        let tensors = open_clip::checkpoint::read_tensors(&weights, &weights_name)?;
        drop(weights);
        let shapes = |name: &str| tensors.get(name).map(|t| t.dims().to_vec());
        let resolved = crate::pipeline::resolve_open_clip(&config_bytes, &config_name, &weights_name, &shapes, files.text_config.as_ref())?;
        return Ok(SourceFolder {
            config_json: resolved.to_resolved_json(),
            config: ModelConfig::OpenClip(resolved),
            config_name,
            weights_name,
            tensors,
            tokenizer: files.tokenizer,
            preprocessor: None,
        });
    }
    let files = crate::model_files::read_model_dir(model)?;
    let (config_name, config_bytes) = files.config;
    let config = ModelConfig::from_json(&config_bytes, &config_name)?;
    let config_json = String::from_utf8(config_bytes).map_err(|_| Error::model(&config_name, "not UTF-8 text"))?;
    let (weights_name, weights) = files.weights;
    let weights = weights.to_vec().map_err(|e| Error::io(&weights_name, e))?;
    let tensors = candle_core::safetensors::load_buffer(&weights, &Device::Cpu)
        .map_err(|e| Error::model(&weights_name, format!("not a readable safetensors file ({e})")))?;
    Ok(SourceFolder {
        config,
        config_name,
        config_json,
        weights_name,
        tensors,
        tokenizer: files.tokenizer,
        preprocessor: files.preprocessor,
    })
}

/// Packs the Hugging Face CLIP folder `model` into the bundle folder `out`
/// (created if needed); `progress` receives one line per step.
pub fn pack_model_dir(model: &Path, out: &Path, options: &PackOptions, progress: &mut dyn FnMut(&str)) -> Result<Manifest> {
    if is_bundle_dir(model) {
        return Err(Error::model(
            model.display(),
            "is already a bundle; kpl pack takes a Hugging Face CLIP or SigLIP folder (config.json, model.safetensors) or an open_clip folder (open_clip_config.json)",
        ));
    }
    let SourceFolder { config, config_name, config_json, weights_name, tensors, tokenizer, preprocessor } =
        read_source_folder(model)?;
    // The full-precision model: its fingerprint goes into the bundle (so bases
    // built with it stay valid) and it embeds the knowledge descriptions.
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    let source = Model::load(&config, vb).map_err(|e| Error::model(&weights_name, describe_load_error(&e)))?;
    let fingerprint = source.fingerprint()?;
    let pipeline = Pipeline::assemble(source, &config_name, tokenizer.clone(), preprocessor.clone())?;

    let preprocessor_json = utf8(&preprocessor)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out.display(), e))?;
    // A folder with a manifest is complete: remove an old one first so an
    // interrupted pack never looks finished.
    let manifest_path = out.join(MANIFEST);
    if manifest_path.exists() {
        std::fs::remove_file(&manifest_path).map_err(|e| Error::io(manifest_path.display(), e))?;
    }
    let meta = EncoderMeta {
        family: config.family(),
        dtype: options.dtype,
        fingerprint: &fingerprint,
        config_json: &config_json,
        preprocessor_json: preprocessor_json.as_deref(),
        tokenizer: tokenizer.as_ref(),
    };
    progress(&format!("writing {IMAGE_ENCODER} ({})", options.dtype.as_str()));
    let image_encoder = write_encoder_file(out, EncoderKind::Image, &meta, &tensors)?;
    progress(&format!("writing {TEXT_ENCODER} ({})", options.dtype.as_str()));
    let text_encoder = write_encoder_file(out, EncoderKind::Text, &meta, &tensors)?;
    drop(tensors);

    let name = options.name.clone().unwrap_or_else(|| {
        config.fixture_name().map(str::to_string).unwrap_or_else(|| {
            model
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| model.display().to_string())
        })
    });
    let mut knowledge = Vec::new();
    for task_dir in &options.knowledge {
        let task = load_task(task_dir)?;
        progress(&format!("embedding the knowledge of {}", task.name));
        let base = build_knowledge_base(&pipeline, &task, &name, StorageDtype::F16, &mut |_, _| {})?;
        let file_name = format!("{}.kplkb", task.name);
        check_file_name(&task_dir.display().to_string(), &file_name)?;
        let bytes = base.to_bytes();
        write_atomically(&out.join(&file_name), |w| {
            w.write_all(&bytes).map_err(|e| Error::io(out.join(&file_name).display(), e))
        })?;
        knowledge.push(KnowledgeEntry {
            task: base.task.clone(),
            title: base.title.clone(),
            file: file_entry(out, &file_name)?,
            classes: base.class_names(),
        });
    }

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model: ModelInfo {
            name,
            fingerprint,
            dtype: options.dtype,
            random_weights: config.is_random(),
            projection_dim: config.embedding_dim(),
            image_size: config.image_size(),
        },
        files: Files { image_encoder: Some(image_encoder), text_encoder: Some(text_encoder) },
        knowledge,
    };
    let json = manifest.to_json();
    write_atomically(&manifest_path, |w| {
        w.write_all(json.as_bytes()).map_err(|e| Error::io(manifest_path.display(), e))
    })?;
    Ok(manifest)
}
