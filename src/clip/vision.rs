//! CLIP's vision tower (`CLIPVisionTransformer`): patch convolution, class token,
//! position embeddings, pre-layernorm, encoder, post-layernorm on the class token.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm};

use super::config::VisionConfig;
use super::encoder::{layer_norm, Encoder, EncoderSizes};
use super::weights::Weights;

#[derive(Debug, Clone)]
pub struct VisionTransformer {
    pub(crate) patch_embedding: Conv2d,
    pub(crate) class_embedding: Tensor,
    pub(crate) position_embedding: Tensor,
    pub(crate) pre_layernorm: LayerNorm,
    pub(crate) encoder: Encoder,
    pub(crate) post_layernorm: LayerNorm,
    pub(crate) image_size: usize,
}

impl VisionTransformer {
    pub fn load(config: &VisionConfig, w: Weights) -> Result<Self> {
        let hidden = config.hidden_size;
        let embeddings = w.pp("embeddings");
        let conv = Conv2dConfig { stride: config.patch_size, ..Default::default() };
        let patch_embedding =
            embeddings.pp("patch_embedding").conv2d_no_bias(config.num_channels, hidden, config.patch_size, conv)?;
        let grid = config.image_size / config.patch_size;
        let positions = grid * grid + 1;
        let sizes = EncoderSizes {
            hidden,
            intermediate: config.intermediate_size,
            heads: config.num_attention_heads,
            layers: config.num_hidden_layers,
            activation: config.hidden_act,
            layer_norm_eps: config.layer_norm_eps,
        };
        Ok(Self {
            patch_embedding,
            class_embedding: embeddings.get(hidden, "class_embedding")?,
            position_embedding: embeddings.get((positions, hidden), "position_embedding.weight")?,
            // The misspelling is the checkpoint's own tensor name.
            pre_layernorm: layer_norm(hidden, config.layer_norm_eps, w.pp("pre_layrnorm"))?,
            encoder: Encoder::load(&sizes, w.pp("encoder"))?,
            post_layernorm: layer_norm(hidden, config.layer_norm_eps, w.pp("post_layernorm"))?,
            image_size: config.image_size,
        })
    }

    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// `pixels`: [batch, 3, image_size, image_size]; returns the pooled
    /// (post-layernorm class token) output, [batch, hidden].
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let batch = pixels.dim(0)?;
        let patches = self.patch_embedding.forward(pixels)?.flatten_from(2)?.transpose(1, 2)?;
        let hidden = self.class_embedding.dim(D::Minus1)?;
        let class = self.class_embedding.reshape((1, 1, hidden))?.repeat((batch, 1, 1))?;
        let tokens = Tensor::cat(&[&class, &patches], 1)?;
        let tokens = tokens.broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        let hidden_states = self.encoder.forward(&self.pre_layernorm.forward(&tokens)?, None)?;
        let class_token = hidden_states.narrow(1, 0, 1)?.squeeze(1)?;
        self.post_layernorm.forward(&class_token)
    }
}
