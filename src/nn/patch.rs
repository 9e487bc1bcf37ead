//! The ViT patch embedding: a convolution whose stride is its kernel (no
//! padding), computed as patch rows (im2col) times the weight viewed as
//! `[hidden, channels·p·p]` through [`Linear`] (our packed f32 GEMM by
//! default). The weight is held once, in the GEMM's form: candle's `conv2d`
//! copies its kernel on every call (2.4 MB for a ViT-B/16, on top of two
//! im2col buffers), and wasm memory never shrinks, so that copy stayed part of
//! the page's peak (issue #14 item 3).

use candle_core::{Device, Module, Result, Tensor};

use super::linear::{with_f32_slice, Linear};

/// `Conv2d(channels, hidden, kernel_size = patch, stride = patch)` as in
/// `transformers`' `CLIPVisionEmbeddings.patch_embedding` (and SigLIP's,
/// open_clip's `conv1`), followed by `flatten(2).transpose(1, 2)`.
#[derive(Debug, Clone)]
pub struct PatchEmbedding {
    /// `[hidden, channels·patch²]`, inputs in the conv weight's (channel, y, x) order.
    linear: Linear,
    channels: usize,
    patch: usize,
}

impl PatchEmbedding {
    /// From the conv `weight` `[hidden, channels, patch, patch]` and optional
    /// `bias` `[hidden]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (hidden, channels, patch, patch_x) = weight.dims4()?;
        if patch != patch_x || patch == 0 {
            candle_core::bail!("patch embedding: a {patch}×{patch_x} kernel, expected a square one")
        }
        let linear = Linear::dense(weight.reshape((hidden, channels * patch * patch))?, bias)?;
        Ok(Self { linear, channels, patch })
    }

    /// The conv weight `[hidden, channels, patch, patch]` (a new f32 copy).
    pub fn weight(&self) -> Result<Tensor> {
        let (hidden, _) = self.linear.dims()?;
        self.linear.weight()?.reshape((hidden, self.channels, self.patch, self.patch))
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.linear.bias()
    }

    /// Bytes held: the weight as its GEMM reads it, and the bias.
    pub fn held_bytes(&self) -> u64 {
        self.linear.held_bytes()
    }

    /// `pixels` `[batch, channels, height, width]` → `[batch, cells, hidden]`,
    /// cells in row-major order of the `(height / patch) × (width / patch)`
    /// grid (a remainder of rows or columns is left out, as the convolution does).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = pixels.dims4()?;
        if channels != self.channels {
            candle_core::bail!("patch embedding: {channels} channels, expected {}", self.channels)
        }
        let p = self.patch;
        let (grid_y, grid_x) = (height / p, width / p);
        let k = channels * p * p;
        let rows = with_f32_slice(pixels, |px| {
            let mut rows = Vec::with_capacity(batch * grid_y * grid_x * k);
            for b in 0..batch {
                for cy in 0..grid_y {
                    for cx in 0..grid_x {
                        for c in 0..channels {
                            let plane = (b * channels + c) * height;
                            for y in cy * p..(cy + 1) * p {
                                let at = (plane + y) * width + cx * p;
                                rows.extend_from_slice(&px[at..at + p]);
                            }
                        }
                    }
                }
            }
            rows
        })?;
        let rows = Tensor::from_vec(rows, (batch, grid_y * grid_x, k), &Device::Cpu)?;
        self.linear.forward(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patch rows times the weight equal candle's strided convolution (with
    /// and without bias, a grid that leaves a remainder, batch 2), under both
    /// f32 kernels.
    #[test]
    fn matches_candle_conv2d() {
        use crate::nn::linear::{set_f32_kernel, F32Kernel};
        let values = |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| (((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0) - 1.0).collect() };
        let (batch, channels, height, width, patch, hidden) = (2, 3, 45, 30, 14, 19);
        let pixels = Tensor::from_vec(values(batch * channels * height * width, 1), (batch, channels, height, width), &Device::Cpu).unwrap();
        let weight = Tensor::from_vec(values(hidden * channels * patch * patch, 2), (hidden, channels, patch, patch), &Device::Cpu).unwrap();
        let bias = Tensor::from_vec(values(hidden, 3), hidden, &Device::Cpu).unwrap();
        for kernel in [F32Kernel::Packed, F32Kernel::Candle] {
            set_f32_kernel(kernel);
            for bias in [None, Some(bias.clone())] {
                let conv = candle_nn::Conv2d::new(weight.clone(), bias.clone(), candle_nn::Conv2dConfig { stride: patch, ..Default::default() });
                let want = conv.forward(&pixels).unwrap().flatten_from(2).unwrap().transpose(1, 2).unwrap();
                let embedding = PatchEmbedding::new(weight.clone(), bias).unwrap();
                let got = embedding.forward(&pixels).unwrap();
                assert_eq!(got.dims(), want.dims());
                let diff = (got - &want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                assert!(diff < 1e-4, "{kernel:?}: max |diff| {diff}");
                let back = embedding.weight().unwrap();
                let same = (back - &weight).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                assert_eq!(same, 0.0, "the conv weight back");
            }
        }
        set_f32_kernel(F32Kernel::Packed);
        assert!(PatchEmbedding::new(weight, None).unwrap().forward(&Tensor::zeros((1, 2, 28, 28), candle_core::DType::F32, &Device::Cpu).unwrap()).is_err());
    }
}
