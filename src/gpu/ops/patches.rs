//! Image → patch rows (im2col) for the patch-embedding convolution, which then
//! runs as a matmul with the conv weight viewed as [hidden, channels·p·p]
//! (the same (channel, y, x) order the weight is stored in).

use super::{grid, Kernel, Params, Recorder};

const WG: u32 = 256;

/// `pixels`: [batch, channels, image, image]; `out`: [batch·grid², channels·patch²].
pub(crate) fn record(
    rec: &mut Recorder,
    pixels: &wgpu::Buffer,
    out: &wgpu::Buffer,
    batch: usize,
    channels: usize,
    image: usize,
    patch: usize,
) {
    let cells = image / patch;
    let total = (batch * channels * cells * cells * patch * patch) as u32;
    let params: Params = [total, channels as u32, image as u32, patch as u32, cells as u32, 0, 0, 0];
    rec.dispatch(Kernel::Patches, params, &[pixels, out], grid(total.div_ceil(WG)));
}

pub(crate) const SHADER: &str = r#"
struct Params { total: u32, channels: u32, image: u32, patch_size: u32, cells: u32, p5: u32, p6: u32, p7: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> pixels: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 256u;
    if (index >= params.total) { return; }
    let p = params.patch_size;
    let width = params.channels * p * p;
    let row = index / width;
    let col = index % width;
    let per_image = params.cells * params.cells;
    let image = row / per_image;
    let cell = row % per_image;
    let cy = cell / params.cells;
    let cx = cell % params.cells;
    let channel = col / (p * p);
    let ky = (col / p) % p;
    let kx = col % p;
    let y = cy * p + ky;
    let x = cx * p + kx;
    out[index] = pixels[((image * params.channels + channel) * params.image + y) * params.image + x];
}
"#;

#[cfg(test)]
mod tests {
    use candle_core::Module;

    use super::*;
    use crate::gpu::ops::matmul;
    use crate::gpu::test_support::{assert_close, context, flat, run, tensor};

    /// im2col then the matmul with the weight as stored equals candle's
    /// strided convolution with bias (the patch embedding).
    #[test]
    fn patches_times_the_conv_weight_match_candle_conv2d() {
        let Some(ctx) = context() else { return };
        let (batch, channels, image, patch, hidden): (usize, usize, usize, usize, usize) = (2, 3, 42, 14, 8);
        let cells = (image / patch).pow(2);
        let pixels = tensor(&[batch, channels, image, image], 1, 1.0);
        let (weight, bias) = (tensor(&[hidden, channels, patch, patch], 2, 0.1), tensor(&[hidden], 3, 1.0));
        let conv = candle_nn::Conv2d::new(weight.clone(), Some(bias.clone()), candle_nn::Conv2dConfig { stride: patch, ..Default::default() });
        let want = conv.forward(&pixels).unwrap().flatten_from(2).unwrap().transpose(1, 2).unwrap();
        let (pixels_b, weight_b, bias_b) = (ctx.upload("px", &flat(&pixels)), ctx.upload("w", &flat(&weight)), ctx.upload("b", &flat(&bias)));
        let rows = ctx.activation(batch * channels * image * image);
        let out = ctx.activation(batch * cells * hidden);
        let k = channels * patch * patch;
        let got = run(
            &ctx,
            |rec| {
                record(rec, &pixels_b, &rows, batch, channels, image, patch);
                let epilogue = matmul::Epilogue { bias: Some(&bias_b), activation: None, residual: None };
                matmul::record(rec, &rows, matmul::Rhs::F32(&weight_b), &out, (batch * cells, hidden, k), epilogue, &bias_b);
            },
            &out,
            batch * cells * hidden,
        );
        assert_close("patch embedding", &got, &flat(&want.contiguous().unwrap()), 1e-4);
    }
}
