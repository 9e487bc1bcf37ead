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
