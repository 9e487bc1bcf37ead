//! Multi-head self-attention on a fused q|k|v buffer: one workgroup per
//! (query, head, image). Scores for the whole row live in workgroup memory,
//! so softmax needs no second pass over global memory; the text tower's
//! causal mask is a bound on the key loop rather than a −∞ tensor.

use super::{Kernel, Params, Recorder};

/// The longest sequence one workgroup holds scores for (ViT-L/14-336 has 577).
pub(crate) const MAX_SEQ: usize = 1024;
/// The widest head the staged query fits.
pub(crate) const MAX_HEAD_DIM: usize = 256;

/// `qkv`: [batch·seq, 3·hidden] (q, k, v side by side, heads contiguous in
/// each); `out`: [batch·seq, hidden], heads concatenated.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder,
    qkv: &wgpu::Buffer,
    out: &wgpu::Buffer,
    batch: usize,
    seq: usize,
    heads: usize,
    hidden: usize,
    causal: bool,
) {
    let head_dim = hidden / heads;
    let scale = (head_dim as f32).powf(-0.5);
    let params: Params =
        [seq as u32, heads as u32, head_dim as u32, u32::from(causal), scale.to_bits(), hidden as u32, 0, 0];
    rec.dispatch(Kernel::Attention, params, &[qkv, out], [seq as u32, heads as u32, batch as u32]);
}

pub(crate) const SHADER: &str = r#"
struct Params { seq: u32, heads: u32, head_dim: u32, causal: u32, scale: f32, hidden: u32, p6: u32, p7: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
var<workgroup> scores: array<f32, 1024>;
var<workgroup> query: array<f32, 256>;
var<workgroup> partial: array<f32, 64>;

fn reduce_max(value: f32, lane: u32) -> f32 {
    partial[lane] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) { partial[lane] = max(partial[lane], partial[lane + stride]); }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier();
    return result;
}

fn reduce_sum(value: f32, lane: u32) -> f32 {
    partial[lane] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) { partial[lane] += partial[lane + stride]; }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier();
    return result;
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = lid.x;
    let q_index = wid.x;
    let head = wid.y;
    let image = wid.z;
    let row_stride = 3u * params.hidden;
    let first_row = image * params.seq;
    let head_offset = head * params.head_dim;
    let q_base = (first_row + q_index) * row_stride + head_offset;

    for (var d = lane; d < params.head_dim; d += WG) { query[d] = qkv[q_base + d]; }
    workgroupBarrier();

    var keys = params.seq;
    if (params.causal != 0u) { keys = q_index + 1u; }

    var local_max = -3.4e38;
    for (var j = lane; j < keys; j += WG) {
        let k_base = (first_row + j) * row_stride + params.hidden + head_offset;
        var dot = 0.0;
        for (var d = 0u; d < params.head_dim; d++) { dot += query[d] * qkv[k_base + d]; }
        let s = dot * params.scale;
        scores[j] = s;
        local_max = max(local_max, s);
    }
    let row_max = reduce_max(local_max, lane);

    var local_sum = 0.0;
    for (var j = lane; j < keys; j += WG) {
        let e = exp(scores[j] - row_max);
        scores[j] = e;
        local_sum += e;
    }
    let total = reduce_sum(local_sum, lane);

    let out_base = (first_row + q_index) * params.hidden + head_offset;
    for (var d = lane; d < params.head_dim; d += WG) {
        var acc = 0.0;
        for (var j = 0u; j < keys; j++) {
            acc += scores[j] * qkv[(first_row + j) * row_stride + 2u * params.hidden + head_offset + d];
        }
        out[out_base + d] = acc / total;
    }
}
"#;
