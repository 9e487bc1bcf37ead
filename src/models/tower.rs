//! A tower: embed → `nn::transformer` → pool → head, for every family. What
//! differs between families is a setting here (a class token or none, a
//! pre-layernorm or none, which token is pooled, the MAP head, the head's
//! bias), never a copy of the layers; each family's module maps its tensor
//! names onto these fields.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Conv2d, LayerNorm};

use crate::nn::attention_pool::AttentionPool;
use crate::nn::linear::Linear;
use crate::nn::transformer::Transformer;
use crate::nn::weights::to_f32;

/// How the vision tower turns its tokens into one vector.
#[derive(Debug, Clone)]
pub enum VisionPool {
    /// The class token, after the post-layernorm (CLIP).
    ClassToken,
    /// Every token through the post-layernorm, then attention pooling (SigLIP).
    AttentionPool(Box<AttentionPool>),
}

/// A ViT: patch convolution, optional class token, learned positions,
/// optional pre-layernorm, encoder, post-layernorm, pooling, optional projection.
#[derive(Debug, Clone)]
pub struct VisionTower {
    pub(crate) patch_embedding: Conv2d,
    pub(crate) class_embedding: Option<Tensor>,
    /// [tokens, hidden]
    pub(crate) position_embedding: Tensor,
    pub(crate) pre_layernorm: Option<LayerNorm>,
    pub(crate) encoder: Transformer,
    pub(crate) post_layernorm: LayerNorm,
    pub(crate) pool: VisionPool,
    /// CLIP's `visual_projection`; SigLIP's embedding is the pooled output.
    pub(crate) projection: Option<Linear>,
    pub(crate) image_size: usize,
}

impl VisionTower {
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// `pixels` [batch, 3, image_size, image_size] → unnormalised embeddings [batch, dim].
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let batch = pixels.dim(0)?;
        let mut tokens = self.patch_embedding.forward(pixels)?.flatten_from(2)?.transpose(1, 2)?;
        if let Some(class) = &self.class_embedding {
            let hidden = class.dim(D::Minus1)?;
            let class = class.reshape((1, 1, hidden))?.repeat((batch, 1, 1))?;
            tokens = Tensor::cat(&[&class, &tokens], 1)?;
        }
        let mut tokens = tokens.broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        if let Some(norm) = &self.pre_layernorm {
            tokens = norm.forward(&tokens)?;
        }
        let hidden = self.encoder.forward(&tokens, None)?;
        let pooled = match &self.pool {
            VisionPool::ClassToken => self.post_layernorm.forward(&hidden.narrow(1, 0, 1)?.squeeze(1)?)?,
            VisionPool::AttentionPool(head) => head.forward(&self.post_layernorm.forward(&hidden)?)?,
        };
        match &self.projection {
            Some(p) => p.forward(&pooled),
            None => Ok(pooled),
        }
    }
}

/// Which position of the final hidden states is the text's embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPool {
    /// The first `eos_token_id` (CLIP); for old configs with `eos_token_id = 2`
    /// the largest id, as `transformers` does.
    EndOfText { eos_token_id: i64 },
    /// The last position: SigLIP's texts are padded to the full length and end
    /// with the end-of-sequence token ("sticky EOS").
    Last,
}

/// Old published CLIP configs carry `eos_token_id = 2`; `transformers` then
/// pools at the largest id in the sequence instead of at the first `eos_token_id`.
const LEGACY_EOS_TOKEN_ID: i64 = 2;

/// Token + position embeddings, encoder, final layernorm, pooling, projection.
#[derive(Debug, Clone)]
pub struct TextTower {
    pub(crate) token_embedding: Tensor,
    pub(crate) position_embedding: Tensor,
    pub(crate) encoder: Transformer,
    pub(crate) final_layer_norm: LayerNorm,
    pub(crate) pool: TextPool,
    /// CLIP's `text_projection` (no bias) or SigLIP's `head` (with bias).
    pub(crate) projection: Linear,
    pub(crate) max_positions: usize,
}

impl TextTower {
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    pub fn vocab_size(&self) -> usize {
        self.token_embedding.dim(0).unwrap_or(0)
    }

    /// Where the pooled output is read for one sequence.
    pub fn pooling_position(&self, ids: &[u32]) -> usize {
        match self.pool {
            TextPool::EndOfText { eos_token_id: LEGACY_EOS_TOKEN_ID } => {
                // argmax returns the first maximum, as torch does.
                let mut best = 0;
                for (i, &id) in ids.iter().enumerate() {
                    if id > ids[best] {
                        best = i;
                    }
                }
                best
            }
            TextPool::EndOfText { eos_token_id } => ids
                .iter()
                .position(|&id| i64::from(id) == eos_token_id)
                .unwrap_or(ids.len().saturating_sub(1)),
            TextPool::Last => ids.len().saturating_sub(1),
        }
    }

    /// Token plus position embeddings, [seq, hidden]: a table lookup, which
    /// the GPU engine also does here rather than keep the table in GPU memory.
    pub fn input_embeddings(&self, ids: &[u32]) -> Result<Tensor> {
        let ids_tensor = Tensor::new(ids, self.token_embedding.device())?;
        // The table may be f16 (a packed bundle); the rows picked are widened.
        let tokens = to_f32(&self.token_embedding.index_select(&ids_tensor, 0)?)?;
        tokens + self.position_embedding.narrow(0, 0, ids.len())?
    }

    /// The unnormalised embedding [dim] of one sequence of token ids, as the
    /// tokenizer gives it (CLIP: unpadded, which the causal mask makes exact;
    /// SigLIP: padded to the full length), of which the first `length` are
    /// real tokens (read only under a key-padding mask).
    pub fn forward_ids(&self, ids: &[u32], length: usize) -> Result<Tensor> {
        let xs = self.input_embeddings(ids)?.unsqueeze(0)?;
        let hidden = self.encoder.forward(&xs, Some(&[length]))?;
        let hidden = self.final_layer_norm.forward(&hidden)?;
        let pooled = hidden.squeeze(0)?.narrow(0, self.pooling_position(ids), 1)?;
        self.projection.forward(&pooled)?.squeeze(0)
    }
}
