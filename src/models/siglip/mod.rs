//! SigLIP (`SiglipModel` in `transformers`; MedSigLIP is one): its
//! `config.json` and the map from its checkpoint's tensor names onto the
//! shared tower. What differs from CLIP is all a tower setting: no class
//! token, no pre-layernorm and an attention-pooling head on the image side;
//! a key-padding mask, pooling at the last position and a `head` with bias on
//! the text side; and `sigmoid(exp(logit_scale) · cos + logit_bias)` as the score.

pub mod config;

use candle_core::{DType, Tensor};

pub use config::SiglipConfig;

use crate::models::tower::{TextPool, TextTower, VisionPool, VisionTower};
use crate::nn::attention_pool::AttentionPool;
use crate::nn::transformer::{MaskKind, Transformer, TransformerConfig, HF_CLIP_LAYER_NAMES};
use crate::nn::weights::Weights;

/// SigLIP's tensor names outside the encoder blocks (the blocks' are CLIP's,
/// [`HF_CLIP_LAYER_NAMES`]).
pub mod names {
    pub const VISION: &str = "vision_model";
    pub const TEXT: &str = "text_model";
    pub const LOGIT_SCALE: &str = "logit_scale";
    pub const LOGIT_BIAS: &str = "logit_bias";
    pub const ENCODER: &str = "encoder";
    pub const EMBEDDINGS: &str = "embeddings";
    pub const PATCH_EMBEDDING: &str = "patch_embedding";
    pub const POSITION_EMBEDDING: &str = "position_embedding.weight";
    pub const TOKEN_EMBEDDING: &str = "token_embedding.weight";
    pub const POST_LAYERNORM: &str = "post_layernorm";
    pub const FINAL_LAYER_NORM: &str = "final_layer_norm";
    /// The vision tower's attention-pooling head and the text tower's linear head.
    pub const HEAD: &str = "head";
    /// The text head, from the checkpoint's root.
    pub const TEXT_HEAD: &str = "text_model.head";
    /// The pooling head's learned query.
    pub const PROBE: &str = "probe";
}

/// `vision_model.*`: patches + positions, encoder, post-layernorm, MAP head.
pub fn load_vision(config: &SiglipConfig, w: &Weights) -> candle_core::Result<VisionTower> {
    let c = &config.vision_config;
    let (hidden, eps) = (c.hidden_size, c.layer_norm_eps);
    let v = w.pp(names::VISION);
    let embeddings = v.pp(names::EMBEDDINGS);
    let grid = c.image_size / c.patch_size;
    let encoder = TransformerConfig::pre_norm(hidden, c.intermediate_size, c.num_attention_heads, c.num_hidden_layers, c.hidden_act, eps);
    let head = AttentionPool::load(hidden, c.intermediate_size, c.num_attention_heads, c.hidden_act, eps, v.pp(names::HEAD))?;
    Ok(VisionTower {
        patch_embedding: embeddings.pp(names::PATCH_EMBEDDING).patch_embedding(c.num_channels, hidden, c.patch_size, true)?,
        class_embedding: None,
        position_embedding: embeddings.get((grid * grid, hidden), names::POSITION_EMBEDDING)?,
        pre_layernorm: None,
        encoder: Transformer::load(&encoder, &HF_CLIP_LAYER_NAMES, MaskKind::None, v.pp(names::ENCODER))?,
        post_layernorm: v.pp(names::POST_LAYERNORM).layer_norm(hidden, eps)?,
        pool: VisionPool::AttentionPool(Box::new(head)),
        head_hidden: None,
        projection: None,
        image_size: c.image_size,
    })
}

/// `text_model.*`: the padding masked out of attention (`transformers` passes
/// the tokenizer's attention mask to the text tower), final layernorm, the last
/// position of the padded sequence, `head`. The original big_vision SigLIP and
/// `transformers` 4's `SiglipTokenizer` (no mask returned) attend to the padding
/// too; `transformers` 5 does not, and is what we match.
pub fn load_text(config: &SiglipConfig, w: &Weights) -> candle_core::Result<TextTower> {
    let c = &config.text_config;
    let (hidden, eps) = (c.hidden_size, c.layer_norm_eps);
    let t = w.pp(names::TEXT);
    let embeddings = t.pp(names::EMBEDDINGS);
    let encoder = TransformerConfig::pre_norm(hidden, c.intermediate_size, c.num_attention_heads, c.num_hidden_layers, c.hidden_act, eps);
    Ok(TextTower {
        token_embedding: embeddings.get_table((c.vocab_size, hidden), names::TOKEN_EMBEDDING)?,
        position_embedding: embeddings.get((c.max_position_embeddings, hidden), names::POSITION_EMBEDDING)?,
        encoder: Transformer::load(&encoder, &HF_CLIP_LAYER_NAMES, MaskKind::KeyPadding, t.pp(names::ENCODER))?,
        embedding_layer_norm: None,
        final_layer_norm: Some(t.pp(names::FINAL_LAYER_NORM).layer_norm(hidden, eps)?),
        head_hidden: None,
        pool: TextPool::Last,
        projection: t.pp(names::HEAD).linear(hidden, config.projection_size())?,
        max_positions: c.max_position_embeddings,
        pad_token_id: None,
    })
}

fn scalar(w: &Weights, name: &str) -> candle_core::Result<f32> {
    // Stored as [1].
    w.get(1, name)?.to_dtype(DType::F32)?.reshape(())?.to_scalar::<f32>()
}

/// `logit_scale` and `logit_bias`.
pub fn load_logits(w: &Weights) -> candle_core::Result<(f32, f32)> {
    Ok((scalar(w, names::LOGIT_SCALE)?, scalar(w, names::LOGIT_BIAS)?))
}

/// SigLIP's fingerprint: the family, the sizes, logit scale and bias, and the
/// last layer of each tower (the text head, the pooling head's second MLP
/// layer) rounded to f16.
pub fn fingerprint(
    config: &SiglipConfig,
    logit_scale: f32,
    logit_bias: f32,
    text_head: &Tensor,
    vision_head: &Tensor,
) -> candle_core::Result<String> {
    let (t, v) = (&config.text_config, &config.vision_config);
    let sizes = [
        config.projection_size(),
        t.hidden_size,
        t.num_hidden_layers,
        t.max_position_embeddings,
        v.hidden_size,
        v.num_hidden_layers,
        v.image_size,
        v.patch_size,
    ];
    crate::models::fingerprint_parts(b"kpl-model-fingerprint-v1:siglip", &sizes, &[logit_scale, logit_bias], &[text_head, vision_head])
}
