//! open_clip's `open_clip_config.json` (`model_cfg`, `preprocess_cfg`), read
//! as open_clip 3.x reads it (`CLIPVisionCfg`, `CLIPTextCfg`, `PreprocessCfg`
//! in `open_clip/model.py` and `transform.py`, with their defaults), then
//! *resolved* against the checkpoint's tensor shapes: the timm image tower's
//! and the BERT text tower's sizes come from the tensors (heads = width / 64,
//! as in timm's ViT family and BERT), never from a lookup of the timm or
//! Hugging Face model name, so a checkpoint loads whatever it is called.
//! A setting open_clip has but this port does not implement is refused by
//! name rather than ignored.
//!
//! The resolved [`OpenClipConfig`] is what a bundle stores (`kpl pack`): it
//! needs no tensors to read back.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::nn::Activation;
use crate::text::wordpiece::{OpenClipClean, WordPieceOptions};

/// The image tower's implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisionKind {
    /// A timm `VisionTransformer` trunk (`visual.trunk.*`) with open_clip's head (`visual.head.*`).
    TimmVit,
    /// open_clip's own `VisionTransformer` (`visual.conv1`, `visual.transformer.resblocks.*`).
    OpenClipVit,
}

/// The text tower's implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextKind {
    /// A Hugging Face BERT (`text.transformer.*`) with open_clip's pooler and `text.proj`.
    HfBert,
    /// open_clip's own causal `TextTransformer` (CLIP's layout, top-level names).
    OpenClipText,
}

/// How the image tower pools its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisionPooling {
    ClassToken,
    /// timm's `avg`: the mean of the patch tokens.
    MeanPatches,
}

/// How the text tower pools its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextPooling {
    /// The first token (`cls_last_hidden_state_pooler`; open_clip's `first`).
    First,
    /// The mean over the unpadded tokens (`mean_pooler`).
    Mean,
    /// The position of the largest id (open_clip's `argmax`: the end-of-text token).
    Argmax,
    /// The first occurrence of this id (open_clip's `eos`).
    Eos(u32),
    /// The last position (open_clip's `last`).
    Last,
}

/// The projection after pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// The pooled output is the embedding.
    None,
    Linear { bias: bool },
    /// `Linear(width, hidden, bias=true for timm / false for HF) → GELU → Linear(hidden, embed)`.
    Mlp { hidden: usize, hidden_bias: bool, bias: bool },
}

/// A resolved image tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionArch {
    pub kind: VisionKind,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp: usize,
    pub patch_size: usize,
    pub image_size: usize,
    pub class_token: bool,
    /// timm's `norm_pre` / open_clip's `ln_pre`.
    pub pre_norm: bool,
    pub pooling: VisionPooling,
    pub head: HeadKind,
    pub activation: Activation,
    pub layer_norm_eps: f64,
}

/// A resolved text tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextArch {
    pub kind: TextKind,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp: usize,
    pub vocab_size: usize,
    /// Rows of the position table (BERT's may exceed the context).
    pub positions: usize,
    /// Rows of BERT's token-type table (0 for open_clip's own tower).
    pub token_types: usize,
    /// `text_cfg.context_length`: every text is padded (BERT) or truncated to it.
    pub context_length: usize,
    pub pooling: TextPooling,
    pub head: HeadKind,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    /// `text_cfg.tokenizer_kwargs` (a bundle packed before they were read has the defaults).
    #[serde(default)]
    pub tokenizer: TokenizerKwargs,
}

/// The `text_cfg.tokenizer_kwargs` open_clip's `get_tokenizer` passes to
/// `HFTokenizer` (`clean`, `strip_sep_token`) and on to transformers'
/// `AutoTokenizer.from_pretrained` (`do_lower_case`) for a BERT text tower.
/// Any other key is refused by name: it would change the ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenizerKwargs {
    pub clean: OpenClipClean,
    pub strip_sep_token: bool,
    pub do_lower_case: Option<bool>,
}

impl TokenizerKwargs {
    /// The tokenizer's options for a text tower of `context` positions.
    pub fn options(&self, context: usize) -> WordPieceOptions {
        WordPieceOptions { context, clean: self.clean, strip_sep_token: self.strip_sep_token, do_lower_case: self.do_lower_case }
    }

    /// Reads `text_cfg.tokenizer_kwargs` for open_clip's `HFTokenizer`.
    fn read_hf(cfg: &Section) -> Result<Self, String> {
        let Some(kwargs) = kwargs_section(cfg)? else { return Ok(Self::default()) };
        refuse_unknown_kwargs(&kwargs, &["clean", "strip_sep_token", "do_lower_case"])?;
        let clean = kwargs.str_or("clean", "whitespace")?;
        Ok(Self {
            clean: OpenClipClean::from_name(clean).ok_or_else(|| {
                format!("{}.clean {clean:?} is not one of open_clip's (whitespace, lower, canonicalize)", kwargs.path)
            })?,
            strip_sep_token: kwargs.bool_or("strip_sep_token", false)?,
            do_lower_case: kwargs.get("do_lower_case").map(|_| kwargs.bool_or("do_lower_case", true)).transpose()?,
        })
    }
}

fn kwargs_section<'a>(cfg: &Section<'a>) -> Result<Option<Section<'a>>, String> {
    match cfg.get("tokenizer_kwargs") {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(Section { path: "model_cfg.text_cfg.tokenizer_kwargs", map })),
        Some(other) => Err(format!("model_cfg.text_cfg.tokenizer_kwargs must be an object, found {other}")),
    }
}

fn refuse_unknown_kwargs(kwargs: &Section, known: &[&str]) -> Result<(), String> {
    match kwargs.map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("{}.{k} is not implemented (supported: {})", kwargs.path, known.join(", "))),
        None => Ok(()),
    }
}

/// open_clip's interpolation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Bicubic,
    Bilinear,
}

/// open_clip's eval-time `resize_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Short side to the size, then a centre crop (torchvision's rounding).
    Shortest,
    /// Straight to size × size.
    Squash,
}

/// `PreprocessCfg` as the eval transform uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessCfg {
    pub size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub interpolation: Interpolation,
    pub resize_mode: ResizeMode,
}

/// An open_clip checkpoint's configuration, resolved against its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenClipConfig {
    pub embed_dim: usize,
    pub vision: VisionArch,
    pub text: TextArch,
    pub preprocess: PreprocessCfg,
    #[serde(default)]
    pub kpl_random_weights: bool,
    #[serde(default)]
    pub kpl_fixture_name: Option<String>,
}

/// The key under which a bundle stores the resolved configuration.
pub const RESOLVED_KEY: &str = "kpl_open_clip";

/// BERT's and timm ViT's head width: every published size (tiny to large)
/// has 64-wide heads, which is what "heads = width / 64" relies on when no
/// config gives the count.
pub const HEAD_WIDTH: usize = 64;
/// `BertConfig`'s defaults, for a checkpoint without its `config.json`.
pub const BERT_LAYER_NORM_EPS: f64 = 1e-12;
/// timm's ViT layer norms (`partial(nn.LayerNorm, eps=1e-6)`).
pub const TIMM_VIT_LAYER_NORM_EPS: f64 = 1e-6;
/// open_clip's own towers (`nn.LayerNorm` default).
pub const OPEN_CLIP_LAYER_NORM_EPS: f64 = 1e-5;

/// `OPENAI_DATASET_MEAN` / `_STD`, `PreprocessCfg`'s defaults.
use crate::models::clip::{OPENAI_CLIP_MEAN as OPENAI_MEAN, OPENAI_CLIP_STD as OPENAI_STD};

/// The tensor shapes of a checkpoint, by name.
pub trait Shapes {
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
}

impl<F: Fn(&str) -> Option<Vec<usize>>> Shapes for F {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self(name)
    }
}

/// Whether the bytes are an `open_clip_config.json` (an object with `model_cfg`).
pub fn is_open_clip_config(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Map<String, Value>>(bytes).is_ok_and(|m| m.get("model_cfg").is_some_and(Value::is_object))
}

/// Whether the bytes are a resolved configuration as a bundle stores it.
pub fn is_resolved(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Map<String, Value>>(bytes).is_ok_and(|m| m.contains_key(RESOLVED_KEY))
}

/// One section of the file (`model_cfg.vision_cfg`…), with its path for messages.
struct Section<'a> {
    path: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Section<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| format!("{}.{key} must be a non-negative integer, found {v}", self.path)),
        }
    }

    fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| format!("{}.{key} must be a string, found {v}", self.path)),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| format!("{}.{key} must be true or false, found {v}", self.path)),
        }
    }

    /// Refuses settings that change the architecture in ways not implemented
    /// here: `key` set to anything but its `off` value (or null).
    fn refuse(&self, settings: &[(&str, Value)]) -> Result<(), String> {
        for (key, off) in settings {
            if let Some(v) = self.get(key) {
                if v != off {
                    return Err(format!("{}.{key} = {v} is not implemented (only {off} is)", self.path));
                }
            }
        }
        Ok(())
    }
}

fn section<'a>(parent: &'a Map<String, Value>, key: &str, path: &'static str) -> Result<Section<'a>, String> {
    match parent.get(key) {
        Some(Value::Object(map)) => Ok(Section { path, map }),
        Some(other) => Err(format!("{path} must be an object, found {other}")),
        None => Err(format!("{path} is missing")),
    }
}

/// A required tensor's shape, with the rank checked.
fn shape_of(shapes: &dyn Shapes, name: &str, rank: usize) -> Result<Vec<usize>, String> {
    match shapes.shape(name) {
        Some(s) if s.len() == rank => Ok(s),
        Some(s) => Err(format!("tensor {name} has shape {s:?}, expected {rank} dimensions")),
        None => Err(format!("missing tensor: {name}")),
    }
}

/// How many blocks `{prefix}.{i}.{probe}` there are (0, 1, … while present).
fn count_blocks(shapes: &dyn Shapes, prefix: &str, probe: &str) -> usize {
    (0..).take_while(|i| shapes.shape(&format!("{prefix}.{i}.{probe}")).is_some()).count()
}

fn heads_for(width: usize, what: &str) -> Result<usize, String> {
    if width == 0 || !width.is_multiple_of(HEAD_WIDTH) {
        return Err(format!(
            "{what} width {width} is not a multiple of {HEAD_WIDTH}, so its head count (width / {HEAD_WIDTH}, as in timm's ViTs and BERT) is unknown"
        ));
    }
    Ok(width / HEAD_WIDTH)
}

fn square_grid(tokens: usize, what: &str) -> Result<usize, String> {
    let grid = (tokens as f64).sqrt().round() as usize;
    if grid == 0 || grid * grid != tokens {
        return Err(format!("{what}: {tokens} patch positions do not make a square grid"));
    }
    Ok(grid)
}

/// A `BertConfig` `config.json`, when the folder has one.
#[derive(Debug, Default, Deserialize)]
pub struct BertConfigJson {
    pub num_attention_heads: Option<usize>,
    pub layer_norm_eps: Option<f64>,
    pub hidden_act: Option<Activation>,
    pub pad_token_id: Option<u32>,
    pub model_type: Option<String>,
}

impl OpenClipConfig {
    /// Reads `open_clip_config.json` and sizes the towers from `shapes` (the
    /// checkpoint's tensors) and, for a BERT text tower, the folder's
    /// `config.json` when there is one. Errors are plain messages; the caller
    /// names the file.
    pub fn resolve(bytes: &[u8], shapes: &dyn Shapes, bert: Option<&BertConfigJson>) -> Result<Self, String> {
        let root: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| format!("not a usable open_clip_config.json: {e}"))?;
        let model = section(&root, "model_cfg", "model_cfg")?;
        if model.get("multimodal_cfg").is_some() {
            return Err("model_cfg.multimodal_cfg: CoCa (a captioning decoder) is not implemented; \
                        supported: CLIP and CustomTextCLIP dual encoders"
                .into());
        }
        let embed_dim = model.usize_or("embed_dim", 0)?;
        if embed_dim == 0 {
            return Err("model_cfg.embed_dim is missing or 0".into());
        }
        let quick_gelu = model.bool_or("quick_gelu", false)?;
        let vision_cfg = section(model.map, "vision_cfg", "model_cfg.vision_cfg")?;
        let text_cfg = section(model.map, "text_cfg", "model_cfg.text_cfg")?;
        let vision = if vision_cfg.get("timm_model_name").is_some() {
            resolve_timm_vit(&vision_cfg, shapes, embed_dim)?
        } else {
            resolve_open_clip_vit(&vision_cfg, shapes, embed_dim, quick_gelu)?
        };
        let text = if text_cfg.get("hf_model_name").is_some() {
            resolve_hf_bert(&text_cfg, shapes, embed_dim, bert)?
        } else {
            resolve_open_clip_text(&text_cfg, shapes, embed_dim, quick_gelu)?
        };
        let preprocess = match root.get("preprocess_cfg") {
            None | Some(Value::Null) => resolve_preprocess(&Section { path: "preprocess_cfg", map: &Map::new() }, vision.image_size)?,
            Some(_) => resolve_preprocess(&section(&root, "preprocess_cfg", "preprocess_cfg")?, vision.image_size)?,
        };
        let top = Section { path: "open_clip_config.json", map: &root };
        Ok(Self {
            embed_dim,
            vision,
            text,
            preprocess,
            kpl_random_weights: top.bool_or("kpl_random_weights", false)?,
            kpl_fixture_name: top.get("kpl_fixture_name").and_then(Value::as_str).map(str::to_string),
        })
    }

    /// The resolved form a bundle stores (`{"kpl_open_clip": …}`).
    pub fn to_resolved_json(&self) -> String {
        let mut root = Map::new();
        root.insert(RESOLVED_KEY.into(), serde_json::to_value(self).expect("plain data serialises"));
        Value::Object(root).to_string()
    }

    /// Reads what [`Self::to_resolved_json`] wrote.
    pub fn from_resolved_json(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Wrapper {
            kpl_open_clip: OpenClipConfig,
        }
        let config = serde_json::from_slice::<Wrapper>(bytes)
            .map_err(|e| format!("not a usable open_clip configuration: {e}"))?
            .kpl_open_clip;
        config.validate()?;
        Ok(config)
    }

    /// The checks a stored (resolved) configuration must pass, as the resolver
    /// guarantees for one read from a checkpoint.
    fn validate(&self) -> Result<(), String> {
        let v = &self.vision;
        let t = &self.text;
        for (what, width, heads, layers) in [("vision", v.width, v.heads, v.layers), ("text", t.width, t.heads, t.layers)] {
            if width == 0 || heads == 0 || layers == 0 || width % heads != 0 {
                return Err(format!("{what}: width {width}, heads {heads}, layers {layers} do not make an encoder"));
            }
        }
        if v.patch_size == 0 || v.image_size < v.patch_size || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!("vision: image_size {} and patch_size {} do not make a patch grid", v.image_size, v.patch_size));
        }
        if t.context_length == 0 || t.context_length > t.positions || t.vocab_size == 0 {
            return Err(format!(
                "text: context_length {} does not fit {} positions (vocabulary {})",
                t.context_length, t.positions, t.vocab_size
            ));
        }
        if self.embed_dim == 0 || self.preprocess.size != v.image_size {
            return Err("embed_dim is 0 or the preprocessing size differs from the image size".into());
        }
        Ok(())
    }
}

/// `visual.trunk.*` (a timm `VisionTransformer`) and open_clip's `visual.head`.
fn resolve_timm_vit(cfg: &Section, shapes: &dyn Shapes, embed_dim: usize) -> Result<VisionArch, String> {
    use super::names::timm as n;
    let pool = cfg.str_or("timm_pool", "avg")?;
    let proj = cfg.str_or("timm_proj", "linear")?;
    let proj_bias = cfg.bool_or("timm_proj_bias", false)?;
    // timm's ViT implementation must be the standard one: refuse its variants by their tensors.
    for (tensor, what) in [
        (n::REG_TOKEN, "register tokens"),
        (n::FC_NORM_WEIGHT, "fc_norm (a norm after pooling)"),
        (n::LAYER_SCALE_PROBE, "layer scale (ls1/ls2)"),
        (n::QK_NORM_PROBE, "q/k normalisation"),
        (n::ATTN_POOL_PROBE, "timm's attention-pool head"),
    ] {
        if shapes.shape(tensor).is_some() {
            return Err(format!("the timm image tower has {what} ({tensor}), which is not implemented"));
        }
    }
    if shapes.shape(n::PATCH_WEIGHT).is_none() || shapes.shape(&format!("{}.0.{}", n::BLOCKS, n::QKV_WEIGHT)).is_none() {
        return Err(format!(
            "model_cfg.vision_cfg.timm_model_name {}: only timm VisionTransformer trunks are implemented, and this checkpoint has no {} / {}.0.{}",
            cfg.get("timm_model_name").map(Value::to_string).unwrap_or_default(),
            n::PATCH_WEIGHT,
            n::BLOCKS,
            n::QKV_WEIGHT
        ));
    }
    let patch = shape_of(shapes, n::PATCH_WEIGHT, 4)?;
    let (width, channels, patch_size) = (patch[0], patch[1], patch[2]);
    if patch[2] != patch[3] || channels != 3 {
        return Err(format!("{} has shape {patch:?}: expected square patches over 3 channels", n::PATCH_WEIGHT));
    }
    let class_token = shapes.shape(n::CLS_TOKEN).is_some();
    let positions = shape_of(shapes, n::POS_EMBED, 3)?;
    let grid = square_grid(positions[1] - usize::from(class_token).min(positions[1]), n::POS_EMBED)?;
    let layers = count_blocks(shapes, n::BLOCKS, n::NORM1_WEIGHT);
    let mlp = shape_of(shapes, &format!("{}.0.{}", n::BLOCKS, n::FC1_WEIGHT), 2)?[0];
    let pooling = match pool {
        "" | "token" if class_token => VisionPooling::ClassToken,
        "avg" => VisionPooling::MeanPatches,
        other => {
            return Err(format!(
                "model_cfg.vision_cfg.timm_pool {other:?} is not implemented for this trunk (supported: \"\" or \"token\" with a class token, \"avg\")"
            ))
        }
    };
    let head = match proj {
        "linear" => HeadKind::Linear { bias: proj_bias },
        "mlp" => HeadKind::Mlp { hidden: 2 * embed_dim, hidden_bias: true, bias: proj_bias },
        "none" => HeadKind::None,
        // A falsy timm_proj: the trunk's own classifier of embed_dim outputs (`trunk.head`, with bias).
        "" => HeadKind::Linear { bias: true },
        other => return Err(format!("model_cfg.vision_cfg.timm_proj {other:?} is not implemented (supported: linear, mlp, none)")),
    };
    if head == HeadKind::None && width != embed_dim {
        return Err(format!("timm_proj \"none\" but the trunk's width {width} differs from embed_dim {embed_dim}"));
    }
    let image_size = grid * patch_size;
    check_image_size(cfg, image_size)?;
    Ok(VisionArch {
        kind: VisionKind::TimmVit,
        width,
        layers,
        heads: heads_for(width, "the timm image tower's")?,
        mlp,
        patch_size,
        image_size,
        class_token,
        pre_norm: shapes.shape(n::NORM_PRE_WEIGHT).is_some(),
        pooling,
        head,
        activation: Activation::Gelu,
        layer_norm_eps: TIMM_VIT_LAYER_NORM_EPS,
    })
}

fn check_image_size(cfg: &Section, from_tensors: usize) -> Result<(), String> {
    match cfg.get("image_size") {
        None => Ok(()),
        Some(v) if v.as_u64() == Some(from_tensors as u64) => Ok(()),
        Some(Value::Array(a)) if a.len() == 2 && a.iter().all(|x| x.as_u64() == Some(from_tensors as u64)) => Ok(()),
        Some(v) => Err(format!(
            "{}.image_size is {v} but the checkpoint's position table is for {from_tensors} × {from_tensors} pixels",
            cfg.path
        )),
    }
}

/// open_clip's `CustomResidualAttentionBlock` options and layer/activation
/// overrides (both of its own towers have them), each at the value meaning "off".
fn custom_block_off() -> [(&'static str, Value); 8] {
    [
        ("qk_norm", Value::Bool(false)),
        ("scaled_cosine_attn", Value::Bool(false)),
        ("scale_heads", Value::Bool(false)),
        ("scale_attn_inner", Value::Bool(false)),
        ("scale_attn", Value::Bool(false)),
        ("scale_fc", Value::Bool(false)),
        ("act_kwargs", Value::Null),
        ("norm_kwargs", Value::Null),
    ]
}

/// open_clip's own `VisionTransformer`.
fn resolve_open_clip_vit(cfg: &Section, shapes: &dyn Shapes, embed_dim: usize, quick_gelu: bool) -> Result<VisionArch, String> {
    use super::names::vit as n;
    if cfg.get("layers").is_some_and(Value::is_array) {
        return Err("model_cfg.vision_cfg.layers is a list: a ModifiedResNet image tower, which is not implemented".into());
    }
    cfg.refuse(&[
        ("ls_init_value", Value::Null),
        ("attentional_pool", Value::Bool(false)),
        ("pos_embed_type", Value::from("learnable")),
        ("final_ln_after_pool", Value::Bool(false)),
        ("pool_type", Value::from("tok")),
    ])?;
    cfg.refuse(&custom_block_off())?;
    let conv = shape_of(shapes, n::CONV1_WEIGHT, 4)?;
    let (width, patch_size) = (conv[0], conv[2]);
    if conv[1] != 3 || conv[2] != conv[3] {
        return Err(format!("{} has shape {conv:?}: expected square patches over 3 channels", n::CONV1_WEIGHT));
    }
    let positions = shape_of(shapes, n::POSITIONAL_EMBEDDING, 2)?;
    let grid = square_grid(positions[0].saturating_sub(1), n::POSITIONAL_EMBEDDING)?;
    let head_width = cfg.usize_or("head_width", HEAD_WIDTH)?;
    if head_width == 0 || width % head_width != 0 {
        return Err(format!("model_cfg.vision_cfg.head_width {head_width} does not divide the width {width}"));
    }
    let image_size = grid * patch_size;
    check_image_size(cfg, image_size)?;
    let proj = shape_of(shapes, n::PROJ, 2)?;
    if proj != [width, embed_dim] {
        return Err(format!("{} has shape {proj:?}, expected [{width}, {embed_dim}]", n::PROJ));
    }
    Ok(VisionArch {
        kind: VisionKind::OpenClipVit,
        width,
        layers: count_blocks(shapes, n::BLOCKS, n::LN_1_WEIGHT),
        heads: width / head_width,
        mlp: shape_of(shapes, &format!("{}.0.{}", n::BLOCKS, n::C_FC_WEIGHT), 2)?[0],
        patch_size,
        image_size,
        class_token: true,
        pre_norm: !cfg.bool_or("no_ln_pre", false)?,
        pooling: VisionPooling::ClassToken,
        head: HeadKind::Linear { bias: false },
        activation: if quick_gelu { Activation::QuickGelu } else { Activation::Gelu },
        layer_norm_eps: OPEN_CLIP_LAYER_NORM_EPS,
    })
}

/// `text.transformer.*` (a Hugging Face BERT), open_clip's pooler and `text.proj`.
fn resolve_hf_bert(cfg: &Section, shapes: &dyn Shapes, embed_dim: usize, bert: Option<&BertConfigJson>) -> Result<TextArch, String> {
    use super::names::bert as n;
    let name = cfg.str_or("hf_model_name", "")?;
    let lower = name.to_lowercase();
    if ["roberta", "xlm", "t5", "mt5", "clip", "siglip", "electra", "deberta"].iter().any(|k| lower.contains(k))
        || bert.and_then(|b| b.model_type.as_deref()).is_some_and(|t| t != "bert")
    {
        return Err(format!(
            "model_cfg.text_cfg.hf_model_name {name:?}: only BERT text towers are implemented (RoBERTa/XLM-R position offsets, T5 and others are not)"
        ));
    }
    if !cfg.str_or("tokenizer_mode", "")?.is_empty() {
        return Err(format!("model_cfg.text_cfg.tokenizer_mode {:?} is not implemented", cfg.str_or("tokenizer_mode", "")?));
    }
    // open_clip's get_tokenizer picks HFTokenizer (the folder's own files, whatever
    // the name) only when this is set; without it, CLIP's BPE, whose ids a BERT table cannot take.
    if cfg.str_or("hf_tokenizer_name", "")?.is_empty() {
        return Err("model_cfg.text_cfg.hf_tokenizer_name is missing: open_clip would tokenize for this BERT text tower with CLIP's BPE, which is not implemented".into());
    }
    let tokenizer = TokenizerKwargs::read_hf(cfg)?;
    let words = shape_of(shapes, n::WORD_EMBEDDINGS, 2)?;
    let (vocab_size, width) = (words[0], words[1]);
    let positions = shape_of(shapes, n::POSITION_EMBEDDINGS, 2)?[0];
    let token_types = shape_of(shapes, n::TOKEN_TYPE_EMBEDDINGS, 2)?[0];
    if token_types == 0 {
        return Err(format!("{} has no rows", n::TOKEN_TYPE_EMBEDDINGS));
    }
    let layers = count_blocks(shapes, n::LAYERS, n::QUERY_WEIGHT);
    if layers == 0 {
        return Err(format!("missing tensor: {}.0.{}", n::LAYERS, n::QUERY_WEIGHT));
    }
    let mlp = shape_of(shapes, &format!("{}.0.{}", n::LAYERS, n::INTERMEDIATE_WEIGHT), 2)?[0];
    let heads = match bert.and_then(|b| b.num_attention_heads) {
        Some(h) if h > 0 && width % h == 0 => h,
        Some(h) => return Err(format!("config.json: num_attention_heads {h} does not divide the width {width}")),
        None => heads_for(width, "the BERT text tower's")?,
    };
    let pooling = match cfg.str_or("hf_pooler_type", "mean_pooler")? {
        "cls_last_hidden_state_pooler" => TextPooling::First,
        "mean_pooler" => TextPooling::Mean,
        other => {
            return Err(format!(
                "model_cfg.text_cfg.hf_pooler_type {other:?} is not implemented (supported: cls_last_hidden_state_pooler, mean_pooler)"
            ))
        }
    };
    let head = match cfg.str_or("hf_proj_type", "mlp")? {
        "mlp" => HeadKind::Mlp { hidden: (width + embed_dim) / 2, hidden_bias: false, bias: false },
        "linear" => HeadKind::Linear { bias: false },
        other => return Err(format!("model_cfg.text_cfg.hf_proj_type {other:?} is not implemented (supported: mlp, linear)")),
    };
    let context_length = cfg.usize_or("context_length", 77)?;
    if context_length == 0 || context_length > positions {
        return Err(format!(
            "model_cfg.text_cfg.context_length {context_length} does not fit the checkpoint's {positions} positions"
        ));
    }
    let activation = bert.and_then(|b| b.hidden_act).unwrap_or(Activation::Gelu);
    if activation == Activation::QuickGelu {
        return Err("config.json: hidden_act quick_gelu is not BERT's".into());
    }
    Ok(TextArch {
        kind: TextKind::HfBert,
        width,
        layers,
        heads,
        mlp,
        vocab_size,
        positions,
        token_types,
        context_length,
        pooling,
        head,
        activation,
        layer_norm_eps: bert.and_then(|b| b.layer_norm_eps).unwrap_or(BERT_LAYER_NORM_EPS),
        pad_token_id: bert.and_then(|b| b.pad_token_id).unwrap_or(0),
        tokenizer,
    })
}

/// open_clip's own causal `TextTransformer`.
fn resolve_open_clip_text(cfg: &Section, shapes: &dyn Shapes, embed_dim: usize, quick_gelu: bool) -> Result<TextArch, String> {
    use super::names::text as n;
    cfg.refuse(&[
        ("ls_init_value", Value::Null),
        ("embed_cls", Value::Bool(false)),
        ("no_causal_mask", Value::Bool(false)),
        ("final_ln_after_pool", Value::Bool(false)),
        ("proj_type", Value::from("linear")),
    ])?;
    cfg.refuse(&custom_block_off())?;
    if !cfg.str_or("hf_tokenizer_name", "")?.is_empty() || !cfg.str_or("tokenizer_mode", "")?.is_empty() {
        return Err("model_cfg.text_cfg: a Hugging Face tokenizer with open_clip's own text transformer is not implemented (its CLIP BPE tokenizer is)".into());
    }
    // SimpleTokenizer's keyword arguments: only its default clean-up (`lower`, OpenAI's) is implemented.
    if let Some(kwargs) = kwargs_section(cfg)? {
        refuse_unknown_kwargs(&kwargs, &["clean"])?;
        kwargs.refuse(&[("clean", Value::from("lower"))])?;
    }
    let table = shape_of(shapes, n::TOKEN_EMBEDDING, 2)?;
    let (vocab_size, width) = (table[0], table[1]);
    let positions = shape_of(shapes, n::POSITIONAL_EMBEDDING, 2)?[0];
    let heads = cfg.usize_or("heads", 8)?;
    if heads == 0 || width % heads != 0 {
        return Err(format!("model_cfg.text_cfg.heads {heads} does not divide the width {width}"));
    }
    let pooling = match cfg.str_or("pool_type", "argmax")? {
        "argmax" => TextPooling::Argmax,
        "eos" => TextPooling::Eos(cfg.usize_or("eos_id", 2)? as u32),
        "last" => TextPooling::Last,
        "first" => TextPooling::First,
        other => return Err(format!("model_cfg.text_cfg.pool_type {other:?} is not implemented (supported: argmax, eos, last, first)")),
    };
    let proj_bias = cfg.bool_or("proj_bias", false)?;
    let proj = if proj_bias {
        shape_of(shapes, n::PROJECTION_WEIGHT, 2)?.into_iter().rev().collect::<Vec<_>>()
    } else {
        shape_of(shapes, n::PROJECTION, 2)?
    };
    if proj != [width, embed_dim] {
        return Err(format!("the text projection has shape {proj:?}, expected [{width}, {embed_dim}] (in × out)"));
    }
    let context_length = cfg.usize_or("context_length", 77)?;
    if context_length != positions {
        return Err(format!("model_cfg.text_cfg.context_length {context_length} differs from the checkpoint's {positions} positions"));
    }
    Ok(TextArch {
        kind: TextKind::OpenClipText,
        width,
        layers: count_blocks(shapes, n::BLOCKS, n::LN_1_WEIGHT),
        heads,
        mlp: shape_of(shapes, &format!("{}.0.{}", n::BLOCKS, n::C_FC_WEIGHT), 2)?[0],
        vocab_size,
        positions,
        token_types: 0,
        context_length,
        pooling,
        head: HeadKind::Linear { bias: proj_bias },
        activation: if quick_gelu { Activation::QuickGelu } else { Activation::Gelu },
        layer_norm_eps: OPEN_CLIP_LAYER_NORM_EPS,
        pad_token_id: cfg.usize_or("pad_id", 0)? as u32,
        tokenizer: TokenizerKwargs::default(),
    })
}

fn resolve_preprocess(cfg: &Section, image_size: usize) -> Result<PreprocessCfg, String> {
    let triple = |key: &str, default: [f32; 3]| -> Result<[f32; 3], String> {
        match cfg.get(key) {
            None => Ok(default),
            Some(Value::Array(a)) => {
                let values: Option<Vec<f32>> = a.iter().map(|x| x.as_f64().map(|f| f as f32)).collect();
                match values.as_deref() {
                    Some([a, b, c]) => Ok([*a, *b, *c]),
                    Some([a]) => Ok([*a; 3]),
                    _ => Err(format!("preprocess_cfg.{key} must be 1 or 3 numbers, found {}", Value::Array(a.clone()))),
                }
            }
            Some(v) => Err(format!("preprocess_cfg.{key} must be a list of numbers, found {v}")),
        }
    };
    let std = triple("std", OPENAI_STD)?;
    if std.iter().any(|s| s.is_nan() || *s <= 0.0 || !s.is_finite()) {
        return Err("preprocess_cfg.std values must be positive".into());
    }
    let interpolation = match cfg.str_or("interpolation", "bicubic")? {
        "bicubic" => Interpolation::Bicubic,
        "bilinear" => Interpolation::Bilinear,
        other => return Err(format!("preprocess_cfg.interpolation {other:?} is not implemented (supported: bicubic, bilinear)")),
    };
    let resize_mode = match cfg.str_or("resize_mode", "shortest")? {
        "shortest" => ResizeMode::Shortest,
        "squash" => ResizeMode::Squash,
        other => return Err(format!("preprocess_cfg.resize_mode {other:?} is not implemented (supported: shortest, squash)")),
    };
    if let Some(mode) = cfg.get("mode") {
        if mode.as_str() != Some("RGB") {
            return Err(format!("preprocess_cfg.mode {mode} is not implemented (only \"RGB\" is)"));
        }
    }
    // open_clip sets the transform's size from the built model (`visual.image_size`), not from `size`.
    Ok(PreprocessCfg { size: image_size, mean: triple("mean", OPENAI_MEAN)?, std, interpolation, resize_mode })
}
