//! open_clip checkpoints (BiomedCLIP, QuiltNet, UniMed-CLIP…): its
//! `open_clip_config.json` ([`config`]) and the map from its tensor names
//! ([`names`]) onto the shared tower. Image towers: a timm ViT (class token,
//! optional `norm_pre`, final norm, `timm_pool`, `timm_proj` linear / mlp /
//! none) or open_clip's own `VisionTransformer`; text towers: a Hugging Face
//! BERT (token-type row 0 folded into the positions, embedding layer norm,
//! post-norm encoder, key-padding mask, `[CLS]` or mean pooling, linear or
//! MLP projection) or open_clip's own causal transformer (pooled at the
//! end-of-text token). Scores: a softmax over `exp(logit_scale) · cos`, as
//! open_clip's zero-shot classifier computes them (a `logit_bias`, which a
//! softmax ignores, is not read).

pub mod checkpoint;
pub mod config;
pub mod names;

/// The file that makes a folder an open_clip checkpoint.
pub const OPEN_CLIP_CONFIG: &str = "open_clip_config.json";
/// open_clip's weight files, in the order open_clip itself prefers them
/// (`factory._find_checkpoint_in_dir`); the page's worker tries them in this order too.
pub const OPEN_CLIP_WEIGHTS: [&str; 4] = [
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
];

use candle_core::{DType, Tensor};

pub use config::OpenClipConfig;
use config::{HeadKind, TextArch, TextKind, TextPooling, VisionArch, VisionKind, VisionPooling};

use crate::models::tower::{HiddenLayer, TextPool, TextTower, VisionPool, VisionTower};
use crate::nn::linear::Linear;
use crate::nn::transformer::{MaskKind, Transformer, TransformerConfig};
use crate::nn::weights::Weights;
use crate::nn::Activation;

/// A `[in, out]` parameter applied as `x @ p` (open_clip's `proj`s), as a linear layer.
fn transposed_linear(w: &Weights, in_dim: usize, out_dim: usize, name: &str) -> candle_core::Result<Linear> {
    Linear::dense(w.get((in_dim, out_dim), name)?.t()?.contiguous()?, None)
}

fn linear(w: &Weights, prefix: &str, in_dim: usize, out_dim: usize, bias: bool) -> candle_core::Result<Linear> {
    if bias {
        w.pp(prefix).linear(in_dim, out_dim)
    } else {
        w.pp(prefix).linear_no_bias(in_dim, out_dim)
    }
}

/// A timm ViT trunk and open_clip's head.
fn load_timm_vit(c: &VisionArch, embed_dim: usize, w: &Weights) -> candle_core::Result<VisionTower> {
    use names::timm as n;
    let (hidden, eps) = (c.width, c.layer_norm_eps);
    let grid = c.image_size / c.patch_size;
    let tokens = grid * grid + usize::from(c.class_token);
    let encoder = TransformerConfig::pre_norm(hidden, c.mlp, c.heads, c.layers, c.activation, eps);
    let (head_hidden, projection) = match c.head {
        HeadKind::None => (None, None),
        HeadKind::Linear { bias } => {
            // A falsy timm_proj keeps the trunk's own classifier (with bias).
            let prefix = if bias && w.contains(&format!("{}.weight", n::TRUNK_HEAD)) { n::TRUNK_HEAD } else { n::HEAD_PROJ };
            (None, Some(linear(w, prefix, hidden, embed_dim, bias)?))
        }
        HeadKind::Mlp { hidden: mid, hidden_bias, bias } => (
            Some(HiddenLayer { linear: linear(w, n::HEAD_MLP_FC1, hidden, mid, hidden_bias)?, activation: Activation::Gelu }),
            Some(linear(w, n::HEAD_MLP_FC2, mid, embed_dim, bias)?),
        ),
    };
    Ok(VisionTower {
        // timm's VisionTransformer: `PatchEmbed(bias=not pre_norm)`.
        patch_embedding: w.pp(n::PATCH_EMBED).patch_embedding(3, hidden, c.patch_size, !c.pre_norm)?,
        class_embedding: if c.class_token { Some(w.get((1, 1, hidden), n::CLS_TOKEN)?.reshape(hidden)?) } else { None },
        position_embedding: w.get((1, tokens, hidden), n::POS_EMBED)?.reshape((tokens, hidden))?,
        pre_layernorm: if c.pre_norm { Some(w.pp(n::NORM_PRE).layer_norm(hidden, eps)?) } else { None },
        encoder: Transformer::load(&encoder, &names::TIMM_LAYER_NAMES, MaskKind::None, w.pp(n::TRUNK))?,
        post_layernorm: w.pp(n::NORM).layer_norm(hidden, eps)?,
        pool: match c.pooling {
            VisionPooling::ClassToken => VisionPool::ClassToken,
            VisionPooling::MeanPatches => VisionPool::MeanPatches,
        },
        head_hidden,
        projection,
        image_size: c.image_size,
    })
}

/// open_clip's own `VisionTransformer`.
fn load_open_clip_vit(c: &VisionArch, embed_dim: usize, w: &Weights) -> candle_core::Result<VisionTower> {
    use names::vit as n;
    let (hidden, eps) = (c.width, c.layer_norm_eps);
    let grid = c.image_size / c.patch_size;
    let encoder = TransformerConfig::pre_norm(hidden, c.mlp, c.heads, c.layers, c.activation, eps);
    Ok(VisionTower {
        patch_embedding: w.pp(n::CONV1).patch_embedding(3, hidden, c.patch_size, false)?,
        class_embedding: Some(w.get(hidden, n::CLASS_EMBEDDING)?),
        position_embedding: w.get((grid * grid + 1, hidden), n::POSITIONAL_EMBEDDING)?,
        pre_layernorm: if c.pre_norm { Some(w.pp(n::LN_PRE).layer_norm(hidden, eps)?) } else { None },
        encoder: Transformer::load(&encoder, &names::OPEN_CLIP_LAYER_NAMES, MaskKind::None, w.pp(n::TRANSFORMER))?,
        post_layernorm: w.pp(n::LN_POST).layer_norm(hidden, eps)?,
        pool: VisionPool::ClassToken,
        head_hidden: None,
        projection: Some(transposed_linear(w, hidden, embed_dim, n::PROJ)?),
        image_size: c.image_size,
    })
}

/// A Hugging Face BERT and open_clip's pooler and `text.proj`.
fn load_hf_bert(c: &TextArch, embed_dim: usize, w: &Weights) -> candle_core::Result<TextTower> {
    use names::bert as n;
    let (hidden, eps) = (c.width, c.layer_norm_eps);
    let encoder = TransformerConfig::post_norm(hidden, c.mlp, c.heads, c.layers, c.activation, eps);
    let positions = w.get((c.positions, hidden), n::POSITION_EMBEDDINGS)?;
    // A single text is all token type 0 (open_clip passes no token_type_ids).
    let type0 = w.get((c.token_types, hidden), n::TOKEN_TYPE_EMBEDDINGS)?.narrow(0, 0, 1)?;
    let (head_hidden, projection) = match c.head {
        HeadKind::Mlp { hidden: mid, hidden_bias, bias } => (
            Some(HiddenLayer { linear: linear(w, n::PROJ_MLP_FC1, hidden, mid, hidden_bias)?, activation: Activation::Gelu }),
            linear(w, n::PROJ_MLP_FC2, mid, embed_dim, bias)?,
        ),
        HeadKind::Linear { bias } => (None, linear(w, n::PROJ, hidden, embed_dim, bias)?),
        HeadKind::None => candle_core::bail!("a BERT text tower without a projection is not implemented"),
    };
    Ok(TextTower {
        token_embedding: w.get_table((c.vocab_size, hidden), n::WORD_EMBEDDINGS)?,
        position_embedding: positions.broadcast_add(&type0)?,
        embedding_layer_norm: Some(w.pp(n::EMBEDDINGS_LAYER_NORM).layer_norm(hidden, eps)?),
        encoder: Transformer::load(&encoder, &names::BERT_LAYER_NAMES, MaskKind::KeyPadding, w.pp(n::ENCODER))?,
        final_layer_norm: None,
        pool: match c.pooling {
            TextPooling::Mean => TextPool::Mean,
            _ => TextPool::First,
        },
        head_hidden,
        projection,
        max_positions: c.context_length,
        pad_token_id: Some(c.pad_token_id),
    })
}

/// open_clip's own causal text transformer.
fn load_open_clip_text(c: &TextArch, embed_dim: usize, w: &Weights) -> candle_core::Result<TextTower> {
    use names::text as n;
    let (hidden, eps) = (c.width, c.layer_norm_eps);
    let encoder = TransformerConfig::pre_norm(hidden, c.mlp, c.heads, c.layers, c.activation, eps);
    let projection = match c.head {
        HeadKind::Linear { bias: true } => w.pp(n::PROJECTION).linear(hidden, embed_dim)?,
        _ => transposed_linear(w, hidden, embed_dim, n::PROJECTION)?,
    };
    Ok(TextTower {
        token_embedding: w.get_table((c.vocab_size, hidden), n::TOKEN_EMBEDDING)?,
        position_embedding: w.get((c.positions, hidden), n::POSITIONAL_EMBEDDING)?,
        embedding_layer_norm: None,
        encoder: Transformer::load(&encoder, &names::OPEN_CLIP_LAYER_NAMES, MaskKind::Causal, w.pp(n::TRANSFORMER))?,
        final_layer_norm: Some(w.pp(n::LN_FINAL).layer_norm(hidden, eps)?),
        pool: match c.pooling {
            // `transformers`' legacy rule is open_clip's argmax: the position of the largest id.
            TextPooling::Argmax => TextPool::EndOfText { eos_token_id: crate::models::tower::LEGACY_EOS_TOKEN_ID },
            TextPooling::Eos(id) => TextPool::EndOfText { eos_token_id: i64::from(id) },
            TextPooling::Last => TextPool::Last,
            TextPooling::First | TextPooling::Mean => TextPool::First,
        },
        head_hidden: None,
        projection,
        max_positions: c.context_length,
        pad_token_id: None,
    })
}

/// The image tower of either kind.
pub fn load_vision(config: &OpenClipConfig, w: &Weights) -> candle_core::Result<VisionTower> {
    match config.vision.kind {
        VisionKind::TimmVit => load_timm_vit(&config.vision, config.embed_dim, w),
        VisionKind::OpenClipVit => load_open_clip_vit(&config.vision, config.embed_dim, w),
    }
}

/// The text tower of either kind.
pub fn load_text(config: &OpenClipConfig, w: &Weights) -> candle_core::Result<TextTower> {
    match config.text.kind {
        TextKind::HfBert => load_hf_bert(&config.text, config.embed_dim, w),
        TextKind::OpenClipText => load_open_clip_text(&config.text, config.embed_dim, w),
    }
}

/// `logit_scale` (open_clip stores it as a 0-d tensor; a bundle as [1]).
pub fn load_logit_scale(w: &Weights) -> candle_core::Result<f32> {
    w.get((), names::LOGIT_SCALE)?.to_dtype(DType::F32)?.to_scalar::<f32>()
}

/// open_clip's fingerprint: the family, the resolved sizes, the logit scale
/// and the last linear layer of each tower, rounded to f16.
pub fn fingerprint(config: &OpenClipConfig, logit_scale: f32, text_projection: &Tensor, vision_last: &Tensor) -> candle_core::Result<String> {
    let (t, v) = (&config.text, &config.vision);
    let sizes = [
        config.embed_dim,
        v.width,
        v.layers,
        v.patch_size,
        v.image_size,
        t.width,
        t.layers,
        t.context_length,
        t.vocab_size,
    ];
    crate::models::fingerprint_parts(b"kpl-model-fingerprint-v1:open_clip", &sizes, &[logit_scale], &[text_projection, vision_last])
}
