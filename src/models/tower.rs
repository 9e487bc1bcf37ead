//! A tower: embed → `nn::transformer` → pool → head, for every family. What
//! differs between families is a setting here (a class token or none, a
//! pre-layernorm or none, which token is pooled, the MAP head, the head's
//! bias), never a copy of the layers; each family's module maps its tensor
//! names onto these fields.

use candle_core::{Module, Result, Tensor, D};

use crate::nn::norm::LayerNorm;
use crate::nn::patch::PatchEmbedding;

use crate::nn::attention_pool::AttentionPool;
use crate::nn::linear::Linear;
use crate::nn::transformer::{key_mask, Transformer};
use crate::nn::dtype::to_f32;
use crate::nn::Activation;

/// The hidden layer of a two-layer projection head (open_clip's `mlp`
/// heads): `activation(linear(x))`, then the tower's `projection`.
#[derive(Debug, Clone)]
pub struct HiddenLayer {
    pub(crate) linear: Linear,
    pub(crate) activation: Activation,
}

impl HiddenLayer {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.activation.apply(&self.linear.forward(xs)?)
    }
}

/// `projection(hidden(x))`, `projection(x)` or `x`.
fn project(hidden: Option<&HiddenLayer>, projection: Option<&Linear>, xs: Tensor) -> Result<Tensor> {
    let xs = match hidden {
        Some(h) => h.forward(&xs)?,
        None => xs,
    };
    match projection {
        Some(p) => p.forward(&xs),
        None => Ok(xs),
    }
}

/// How the vision tower turns its tokens into one vector.
#[derive(Debug, Clone)]
pub enum VisionPool {
    /// The class token, after the post-layernorm (CLIP).
    ClassToken,
    /// Every token through the post-layernorm, then attention pooling (SigLIP).
    AttentionPool(Box<AttentionPool>),
    /// The mean of the patch tokens (the class token left out) after the
    /// post-layernorm (timm's `global_pool="avg"`).
    MeanPatches,
}

/// A ViT: patch convolution, optional class token, learned positions,
/// optional pre-layernorm, encoder, post-layernorm, pooling, optional projection.
#[derive(Debug, Clone)]
pub struct VisionTower {
    pub(crate) patch_embedding: PatchEmbedding,
    pub(crate) class_embedding: Option<Tensor>,
    /// [tokens, hidden]
    pub(crate) position_embedding: Tensor,
    pub(crate) pre_layernorm: Option<LayerNorm>,
    pub(crate) encoder: Transformer,
    pub(crate) post_layernorm: LayerNorm,
    pub(crate) pool: VisionPool,
    /// The hidden layer of a two-layer head (timm_proj `mlp`), before `projection`.
    pub(crate) head_hidden: Option<HiddenLayer>,
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
        let mut tokens = self.patch_embedding.forward(pixels)?;
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
            VisionPool::MeanPatches => {
                let prefix = usize::from(self.class_embedding.is_some());
                let patches = hidden.narrow(1, prefix, hidden.dim(1)? - prefix)?;
                self.post_layernorm.forward(&patches)?.mean(1)?
            }
        };
        project(self.head_hidden.as_ref(), self.projection.as_ref(), pooled)
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
    /// The first position (BERT's `[CLS]`; open_clip's `cls_last_hidden_state_pooler`).
    First,
    /// The mean over the real (unpadded) tokens (open_clip's `mean_pooler`).
    Mean,
}

/// Old published CLIP configs carry `eos_token_id = 2`; `transformers` then
/// pools at the largest id in the sequence instead of at the first `eos_token_id`.
pub(crate) const LEGACY_EOS_TOKEN_ID: i64 = 2;

/// Token + position embeddings, optional embedding layernorm, encoder,
/// optional final layernorm, pooling, projection (optionally after a hidden layer).
#[derive(Debug, Clone)]
pub struct TextTower {
    pub(crate) token_embedding: Tensor,
    /// [positions, hidden]; BERT's token-type row 0 (the only type a single
    /// text has) is added in here when loading.
    pub(crate) position_embedding: Tensor,
    /// BERT's `embeddings.LayerNorm`, applied before the encoder.
    pub(crate) embedding_layer_norm: Option<LayerNorm>,
    pub(crate) encoder: Transformer,
    /// CLIP's and SigLIP's `final_layer_norm` (a post-norm encoder has none).
    pub(crate) final_layer_norm: Option<LayerNorm>,
    pub(crate) pool: TextPool,
    /// The hidden layer of open_clip's `mlp` head, before `projection`.
    pub(crate) head_hidden: Option<HiddenLayer>,
    /// CLIP's `text_projection` (no bias) or SigLIP's `head` (with bias).
    pub(crate) projection: Linear,
    pub(crate) max_positions: usize,
    /// open_clip's Hugging Face towers: attention (and mean pooling) skip every
    /// position whose id is this one (`attn_mask = x != pad_token_id`), not
    /// only the padding after the text.
    pub(crate) pad_token_id: Option<u32>,
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
            TextPool::Last | TextPool::Mean => ids.len().saturating_sub(1),
            TextPool::First => 0,
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

    /// Which of `ids` are attended to (and averaged by [`TextPool::Mean`]):
    /// every id but the pad id for open_clip's Hugging Face towers
    /// (`attn_mask = x != pad_token_id`), else the first `length`. Read only
    /// under a key-padding mask or mean pooling; the GPU engine builds its
    /// key mask from it.
    pub fn attended(&self, ids: &[u32], length: usize) -> Vec<bool> {
        match self.pad_token_id {
            Some(pad) => ids.iter().map(|&id| id != pad).collect(),
            None => (0..ids.len()).map(|i| i < length).collect(),
        }
    }

    /// How many leading positions of `ids` decide the embedding: all of them,
    /// except that open_clip's Hugging Face towers (BERT, padded by their
    /// tokenizer to `context_length`, BiomedCLIP's 256) do not need the pad ids
    /// after the last attended one. Those are masked as keys, so no position
    /// reads them through attention; every other layer acts per position; the
    /// mean pooler skips them and `[CLS]` pooling reads position 0. Dropping
    /// them leaves the embedding equal up to the order of float sums, and a
    /// 32-token prompt then costs an eighth of the 256 positions' work. A text
    /// with no attended id keeps every position (every key then weighs alike).
    pub fn needed_positions(&self, ids: &[u32]) -> usize {
        let trailing_pads_unread = matches!(self.pool, TextPool::Mean | TextPool::First);
        match (self.pad_token_id, trailing_pads_unread) {
            (Some(pad), true) => ids.iter().rposition(|&id| id != pad).map_or(ids.len(), |last| last + 1),
            _ => ids.len(),
        }
    }

    /// The unnormalised embedding [dim] of one sequence of token ids, as the
    /// tokenizer gives it (CLIP: unpadded, which the causal mask makes exact;
    /// SigLIP: padded to the full length), of which the first `length` are
    /// real tokens (read only under a key-padding mask). Runs the first
    /// [`Self::needed_positions`] of them.
    pub fn forward_ids(&self, ids: &[u32], length: usize) -> Result<Tensor> {
        self.forward_all_ids(&ids[..self.needed_positions(ids)], length)
    }

    /// [`Self::forward_ids`] on every position of `ids`.
    pub(crate) fn forward_all_ids(&self, ids: &[u32], length: usize) -> Result<Tensor> {
        let mut xs = self.input_embeddings(ids)?.unsqueeze(0)?;
        if let Some(norm) = &self.embedding_layer_norm {
            xs = norm.forward(&xs)?;
        }
        let keep = self.attended(ids, length);
        let mut hidden = match self.pad_token_id {
            Some(_) => self.encoder.forward_with_mask(&xs, Some(&key_mask(&keep, xs.device())?))?,
            None => self.encoder.forward(&xs, Some(&[length]))?,
        };
        if let Some(norm) = &self.final_layer_norm {
            hidden = norm.forward(&hidden)?;
        }
        let hidden = hidden.squeeze(0)?;
        let pooled = match self.pool {
            // open_clip's MeanPooler: the sum over the mask's ones over their count.
            TextPool::Mean => {
                let weights: Vec<f32> = keep.iter().map(|&k| f32::from(u8::from(k))).collect();
                let count = weights.iter().sum::<f32>().max(1.0);
                let weights = Tensor::from_vec(weights, (1, ids.len()), hidden.device())?;
                (weights.matmul(&hidden)? / f64::from(count))?
            }
            _ => hidden.narrow(0, self.pooling_position(ids), 1)?,
        };
        project(self.head_hidden.as_ref(), Some(&self.projection), pooled)?.squeeze(0)
    }
}
