//! CLIP (`CLIPModel` in `transformers`): its `config.json` and the map from its
//! checkpoint's tensor names onto the shared tower ([`crate::models::tower`]).

pub mod config;

use candle_core::{DType, Tensor};

pub use config::ClipConfig;

use crate::models::tower::{TextPool, TextTower, VisionPool, VisionTower};
use crate::nn::transformer::{MaskKind, Transformer, TransformerConfig, HF_CLIP_LAYER_NAMES};
use crate::nn::weights::Weights;

/// OpenAI CLIP's normalisation (`CLIPImageProcessor`'s defaults; open_clip's
/// `OPENAI_DATASET_MEAN`/`STD`), the preprocessing default of the families
/// trained with it. The digits are the published ones (they round to these f32s).
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// CLIP's tensor names outside the encoder blocks (the blocks': [`HF_CLIP_LAYER_NAMES`]).
pub mod names {
    pub const VISION: &str = "vision_model";
    pub const TEXT: &str = "text_model";
    pub const VISUAL_PROJECTION: &str = "visual_projection";
    pub const TEXT_PROJECTION: &str = "text_projection";
    pub const LOGIT_SCALE: &str = "logit_scale";
    pub const ENCODER: &str = "encoder";
    pub const EMBEDDINGS: &str = "embeddings";
    pub const PATCH_EMBEDDING: &str = "patch_embedding";
    pub const CLASS_EMBEDDING: &str = "class_embedding";
    pub const POSITION_EMBEDDING: &str = "position_embedding.weight";
    pub const TOKEN_EMBEDDING: &str = "token_embedding.weight";
    /// The misspelling is the checkpoint's own tensor name.
    pub const PRE_LAYERNORM: &str = "pre_layrnorm";
    pub const POST_LAYERNORM: &str = "post_layernorm";
    pub const FINAL_LAYER_NORM: &str = "final_layer_norm";
}

/// `vision_model.*` and `visual_projection`: class token, pre-layernorm, class-token pooling.
pub fn load_vision(config: &ClipConfig, w: &Weights) -> candle_core::Result<VisionTower> {
    let c = &config.vision_config;
    let (hidden, eps) = (c.hidden_size, c.layer_norm_eps);
    let v = w.pp(names::VISION);
    let embeddings = v.pp(names::EMBEDDINGS);
    let grid = c.image_size / c.patch_size;
    let encoder = TransformerConfig::pre_norm(hidden, c.intermediate_size, c.num_attention_heads, c.num_hidden_layers, c.hidden_act, eps);
    Ok(VisionTower {
        patch_embedding: embeddings.pp(names::PATCH_EMBEDDING).patch_embedding(c.num_channels, hidden, c.patch_size, false)?,
        class_embedding: Some(embeddings.get(hidden, names::CLASS_EMBEDDING)?),
        position_embedding: embeddings.get((grid * grid + 1, hidden), names::POSITION_EMBEDDING)?,
        pre_layernorm: Some(v.pp(names::PRE_LAYERNORM).layer_norm(hidden, eps)?),
        encoder: Transformer::load(&encoder, &HF_CLIP_LAYER_NAMES, MaskKind::None, v.pp(names::ENCODER))?,
        post_layernorm: v.pp(names::POST_LAYERNORM).layer_norm(hidden, eps)?,
        pool: VisionPool::ClassToken,
        head_hidden: None,
        projection: Some(w.pp(names::VISUAL_PROJECTION).linear_no_bias(hidden, config.projection_dim)?),
        image_size: c.image_size,
    })
}

/// `text_model.*` and `text_projection`: causal mask, pooling at the end-of-text token.
pub fn load_text(config: &ClipConfig, w: &Weights) -> candle_core::Result<TextTower> {
    let c = &config.text_config;
    let (hidden, eps) = (c.hidden_size, c.layer_norm_eps);
    let t = w.pp(names::TEXT);
    let embeddings = t.pp(names::EMBEDDINGS);
    let encoder = TransformerConfig::pre_norm(hidden, c.intermediate_size, c.num_attention_heads, c.num_hidden_layers, c.hidden_act, eps);
    Ok(TextTower {
        token_embedding: embeddings.get_table((c.vocab_size, hidden), names::TOKEN_EMBEDDING)?,
        position_embedding: embeddings.get((c.max_position_embeddings, hidden), names::POSITION_EMBEDDING)?,
        encoder: Transformer::load(&encoder, &HF_CLIP_LAYER_NAMES, MaskKind::Causal, t.pp(names::ENCODER))?,
        embedding_layer_norm: None,
        final_layer_norm: Some(t.pp(names::FINAL_LAYER_NORM).layer_norm(hidden, eps)?),
        head_hidden: None,
        pool: TextPool::EndOfText { eos_token_id: c.eos_token_id },
        projection: w.pp(names::TEXT_PROJECTION).linear_no_bias(hidden, config.projection_dim)?,
        max_positions: c.max_position_embeddings,
        pad_token_id: None,
    })
}

/// `logit_scale`.
pub fn load_logit_scale(w: &Weights) -> candle_core::Result<f32> {
    w.get((), names::LOGIT_SCALE)?.to_dtype(DType::F32)?.to_scalar::<f32>()
}

/// CLIP's fingerprint (see [`crate::models::Model::fingerprint`]): the sizes,
/// the logit scale and both projections rounded to f16. Unchanged since the
/// first release, so bases built then stay valid.
pub fn fingerprint(
    config: &ClipConfig,
    logit_scale: f32,
    text_projection: &Tensor,
    visual_projection: &Tensor,
) -> candle_core::Result<String> {
    let c = config;
    let sizes = [
        c.projection_dim,
        c.text_config.hidden_size,
        c.text_config.num_hidden_layers,
        c.vision_config.hidden_size,
        c.vision_config.num_hidden_layers,
        c.vision_config.image_size,
        c.vision_config.patch_size,
    ];
    crate::models::fingerprint_parts(b"kpl-model-fingerprint-v1", &sizes, &[logit_scale], &[text_projection, visual_projection])
}
