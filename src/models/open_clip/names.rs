//! open_clip's tensor names: its state dict as `torch.save` / safetensors
//! store it (`visual.*` image tower, `text.*` Hugging Face text tower, or the
//! top-level names of open_clip's own text transformer), and which of them
//! belong to which tower and are linear layers (for `kpl pack`).

use crate::nn::transformer::{LayerNames, QkvNames};

pub const LOGIT_SCALE: &str = "logit_scale";
pub const LOGIT_BIAS: &str = "logit_bias";

/// A timm `VisionTransformer` trunk (`visual.trunk`) and open_clip's `visual.head`.
pub mod timm {
    pub const TRUNK: &str = "visual.trunk";
    pub const CLS_TOKEN: &str = "visual.trunk.cls_token";
    pub const POS_EMBED: &str = "visual.trunk.pos_embed";
    pub const PATCH_EMBED: &str = "visual.trunk.patch_embed.proj";
    pub const PATCH_WEIGHT: &str = "visual.trunk.patch_embed.proj.weight";
    pub const NORM_PRE: &str = "visual.trunk.norm_pre";
    pub const NORM_PRE_WEIGHT: &str = "visual.trunk.norm_pre.weight";
    pub const NORM: &str = "visual.trunk.norm";
    pub const BLOCKS: &str = "visual.trunk.blocks";
    pub const NORM1_WEIGHT: &str = "norm1.weight";
    pub const QKV_WEIGHT: &str = "attn.qkv.weight";
    pub const FC1_WEIGHT: &str = "mlp.fc1.weight";
    /// open_clip's `timm_proj` heads.
    pub const HEAD_PROJ: &str = "visual.head.proj";
    pub const HEAD_MLP_FC1: &str = "visual.head.mlp.fc1";
    pub const HEAD_MLP_FC2: &str = "visual.head.mlp.fc2";
    /// The trunk's own classifier (a falsy `timm_proj`).
    pub const TRUNK_HEAD: &str = "visual.trunk.head";
    // Variants of timm's ViT not implemented here, recognised by a tensor.
    pub const REG_TOKEN: &str = "visual.trunk.reg_token";
    pub const FC_NORM_WEIGHT: &str = "visual.trunk.fc_norm.weight";
    pub const LAYER_SCALE_PROBE: &str = "visual.trunk.blocks.0.ls1.gamma";
    pub const QK_NORM_PROBE: &str = "visual.trunk.blocks.0.attn.q_norm.weight";
    pub const ATTN_POOL_PROBE: &str = "visual.trunk.attn_pool.latent";
}

/// open_clip's own `VisionTransformer` (`visual.*`).
pub mod vit {
    pub const CONV1: &str = "visual.conv1";
    pub const CONV1_WEIGHT: &str = "visual.conv1.weight";
    pub const CLASS_EMBEDDING: &str = "visual.class_embedding";
    pub const POSITIONAL_EMBEDDING: &str = "visual.positional_embedding";
    pub const LN_PRE: &str = "visual.ln_pre";
    pub const TRANSFORMER: &str = "visual.transformer";
    pub const BLOCKS: &str = "visual.transformer.resblocks";
    pub const LN_1_WEIGHT: &str = "ln_1.weight";
    pub const C_FC_WEIGHT: &str = "mlp.c_fc.weight";
    pub const LN_POST: &str = "visual.ln_post";
    /// [width, embed_dim], applied as `x @ proj`.
    pub const PROJ: &str = "visual.proj";
}

/// open_clip's own text transformer (top-level names).
pub mod text {
    pub const TOKEN_EMBEDDING: &str = "token_embedding.weight";
    pub const POSITIONAL_EMBEDDING: &str = "positional_embedding";
    pub const TRANSFORMER: &str = "transformer";
    pub const BLOCKS: &str = "transformer.resblocks";
    pub const LN_1_WEIGHT: &str = "ln_1.weight";
    pub const C_FC_WEIGHT: &str = "mlp.c_fc.weight";
    pub const LN_FINAL: &str = "ln_final";
    /// [width, embed_dim], applied as `x @ text_projection`.
    pub const PROJECTION: &str = "text_projection";
    /// `proj_bias`: an `nn.Linear` instead.
    pub const PROJECTION_WEIGHT: &str = "text_projection.weight";
}

/// A Hugging Face BERT (`text.transformer.*`) and open_clip's `text.proj`.
pub mod bert {
    pub const WORD_EMBEDDINGS: &str = "text.transformer.embeddings.word_embeddings.weight";
    pub const POSITION_EMBEDDINGS: &str = "text.transformer.embeddings.position_embeddings.weight";
    pub const TOKEN_TYPE_EMBEDDINGS: &str = "text.transformer.embeddings.token_type_embeddings.weight";
    pub const EMBEDDINGS_LAYER_NORM: &str = "text.transformer.embeddings.LayerNorm";
    pub const ENCODER: &str = "text.transformer.encoder";
    pub const LAYERS: &str = "text.transformer.encoder.layer";
    pub const QUERY_WEIGHT: &str = "attention.self.query.weight";
    pub const INTERMEDIATE_WEIGHT: &str = "intermediate.dense.weight";
    /// `hf_proj_type` `linear`.
    pub const PROJ: &str = "text.proj";
    /// `hf_proj_type` `mlp`: `Sequential(Linear, GELU, Linear)`.
    pub const PROJ_MLP_FC1: &str = "text.proj.0";
    pub const PROJ_MLP_FC2: &str = "text.proj.2";
}

/// timm's `Block`: fused `attn.qkv`, `attn.proj`, `norm1`/`norm2`, `mlp.fc1`/`fc2`.
pub const TIMM_LAYER_NAMES: LayerNames = LayerNames {
    layers: "blocks",
    qkv: QkvNames::Fused { weight: "attn.qkv.weight", bias: "attn.qkv.bias" },
    out: "attn.proj",
    norm1: "norm1",
    norm2: "norm2",
    fc1: "mlp.fc1",
    fc2: "mlp.fc2",
};

/// open_clip's `ResidualAttentionBlock` (`torch.nn.MultiheadAttention` inside).
pub const OPEN_CLIP_LAYER_NAMES: LayerNames = LayerNames {
    layers: "resblocks",
    qkv: QkvNames::Fused { weight: "attn.in_proj_weight", bias: "attn.in_proj_bias" },
    out: "attn.out_proj",
    norm1: "ln_1",
    norm2: "ln_2",
    fc1: "mlp.c_fc",
    fc2: "mlp.c_proj",
};

/// `BertLayer` (post-norm: each `LayerNorm` after its residual sum).
pub const BERT_LAYER_NAMES: LayerNames = LayerNames {
    layers: "layer",
    qkv: QkvNames::Separate { q: "attention.self.query", k: "attention.self.key", v: "attention.self.value" },
    out: "attention.output.dense",
    norm1: "attention.output.LayerNorm",
    norm2: "output.LayerNorm",
    fc1: "intermediate.dense",
    fc2: "output.dense",
};

/// Whether `name` belongs to the image tower.
pub fn is_vision(name: &str) -> bool {
    name.starts_with("visual.")
}

/// Whether `name` belongs to a text tower (Hugging Face's or open_clip's own).
pub fn is_text(name: &str) -> bool {
    name.starts_with("text.")
        || name == text::POSITIONAL_EMBEDDING
        || name.starts_with("token_embedding.")
        || name.starts_with("transformer.")
        || name.starts_with("ln_final.")
        || name.starts_with(text::PROJECTION)
}

/// The logit scale and bias, stored with either tower.
pub fn is_scalar(name: &str) -> bool {
    name == LOGIT_SCALE || name == LOGIT_BIAS
}

/// Linear-layer weights `[out, in]` the matmul reads (quantisable in a pack).
/// open_clip's `visual.proj` and `text_projection` parameters are `[in, out]`
/// and stay dense.
pub fn is_linear_weight(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        ".attn.qkv.weight",
        ".attn.proj.weight",
        ".mlp.fc1.weight",
        ".mlp.fc2.weight",
        ".attn.in_proj_weight",
        ".attn.out_proj.weight",
        ".mlp.c_fc.weight",
        ".mlp.c_proj.weight",
        ".attention.self.query.weight",
        ".attention.self.key.weight",
        ".attention.self.value.weight",
        ".attention.output.dense.weight",
        ".intermediate.dense.weight",
        ".output.dense.weight",
    ];
    is_projection(name) || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The last linear layer of a tower (kept at 8 bits in a q4 pack).
pub fn is_projection(name: &str) -> bool {
    [timm::HEAD_PROJ, timm::HEAD_MLP_FC2, timm::TRUNK_HEAD, bert::PROJ, bert::PROJ_MLP_FC2, text::PROJECTION]
        .iter()
        .any(|p| name.strip_suffix(".weight") == Some(p))
}
