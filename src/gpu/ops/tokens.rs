//! The vision tower's token sequence: the class embedding, then the patch
//! embeddings, each plus its position embedding.

use super::{grid, Kernel, Params, Recorder};

const WG: u32 = 256;

/// `patches`: [batch·(seq−1), hidden]; `class`: [hidden]; `positions`:
/// [seq, hidden]; `out`: [batch·seq, hidden].
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder,
    patches: &wgpu::Buffer,
    class: &wgpu::Buffer,
    positions: &wgpu::Buffer,
    out: &wgpu::Buffer,
    batch: usize,
    seq: usize,
    hidden: usize,
) {
    let total = (batch * seq * hidden) as u32;
    let params: Params = [total, seq as u32, hidden as u32, 0, 0, 0, 0, 0];
    rec.dispatch(Kernel::Tokens, params, &[patches, class, positions, out], grid(total.div_ceil(WG)));
}

pub(crate) const SHADER: &str = r#"
struct Params { total: u32, seq: u32, hidden: u32, p3: u32, p4: u32, p5: u32, p6: u32, p7: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> patches: array<f32>;
@group(0) @binding(2) var<storage, read> class_embedding: array<f32>;
@group(0) @binding(3) var<storage, read> positions: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 256u;
    if (index >= params.total) { return; }
    let d = index % params.hidden;
    let token = (index / params.hidden) % params.seq;
    let image = index / (params.hidden * params.seq);
    var value: f32;
    if (token == 0u) {
        value = class_embedding[d];
    } else {
        value = patches[(image * (params.seq - 1u) + token - 1u) * params.hidden + d];
    }
    out[index] = value + positions[token * params.hidden + d];
}
"#;
