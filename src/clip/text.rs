//! CLIP's text tower (`CLIPTextTransformer`): token and position embeddings, causal
//! self-attention, final layernorm, pooling at the end-of-text token.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::LayerNorm;

use super::config::TextConfig;
use super::encoder::{layer_norm, Encoder, EncoderSizes};
use super::weights::{to_f32, Weights};

/// Old published configs carry `eos_token_id = 2`; `transformers` then pools at
/// the largest id in the sequence instead of at the first `eos_token_id`.
const LEGACY_EOS_TOKEN_ID: i64 = 2;

#[derive(Debug, Clone)]
pub struct TextTransformer {
    pub(crate) token_embedding: Tensor,
    pub(crate) position_embedding: Tensor,
    pub(crate) encoder: Encoder,
    pub(crate) final_layer_norm: LayerNorm,
    pub(crate) eos_token_id: i64,
    pub(crate) max_positions: usize,
}

impl TextTransformer {
    pub fn load(config: &TextConfig, w: Weights) -> Result<Self> {
        let hidden = config.hidden_size;
        let embeddings = w.pp("embeddings");
        let sizes = EncoderSizes {
            hidden,
            intermediate: config.intermediate_size,
            heads: config.num_attention_heads,
            layers: config.num_hidden_layers,
            activation: config.hidden_act,
            layer_norm_eps: config.layer_norm_eps,
        };
        Ok(Self {
            token_embedding: embeddings.get_table((config.vocab_size, hidden), "token_embedding.weight")?,
            position_embedding: embeddings
                .get((config.max_position_embeddings, hidden), "position_embedding.weight")?,
            encoder: Encoder::load(&sizes, w.pp("encoder"))?,
            final_layer_norm: layer_norm(hidden, config.layer_norm_eps, w.pp("final_layer_norm"))?,
            eos_token_id: config.eos_token_id,
            max_positions: config.max_position_embeddings,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    pub fn vocab_size(&self) -> usize {
        self.token_embedding.dim(0).unwrap_or(0)
    }

    /// Where `transformers` reads the pooled output for one unpadded sequence.
    pub fn pooling_position(&self, ids: &[u32]) -> usize {
        if self.eos_token_id == LEGACY_EOS_TOKEN_ID {
            // argmax returns the first maximum, as torch does.
            let mut best = 0;
            for (i, &id) in ids.iter().enumerate() {
                if id > ids[best] {
                    best = i;
                }
            }
            best
        } else {
            ids.iter()
                .position(|&id| i64::from(id) == self.eos_token_id)
                .unwrap_or(ids.len().saturating_sub(1))
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

    /// Encodes one sequence of token ids (already truncated to the context).
    /// Padding is unnecessary: with a causal mask, tokens after the pooled
    /// position cannot change it, so each text runs at its own length.
    pub fn forward_ids(&self, ids: &[u32]) -> Result<Tensor> {
        let device = self.token_embedding.device();
        let seq = ids.len();
        let xs = self.input_embeddings(ids)?.unsqueeze(0)?;
        let mask = causal_mask(seq, device)?;
        let hidden = self.encoder.forward(&xs, Some(&mask))?;
        let hidden = self.final_layer_norm.forward(&hidden)?;
        hidden.squeeze(0)?.narrow(0, self.pooling_position(ids), 1)?.squeeze(0)
    }
}

fn causal_mask(seq: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (seq, seq), device)?.to_dtype(DType::F32)
}
