//! Multi-head attention, one workgroup per (query, head, sequence). Scores
//! for the whole row live in workgroup memory, so softmax needs no second
//! pass over global memory. The causal mask is a bound on the key loop; the
//! key-padding mask one flag per key, as `nn::transformer`'s `key_mask` (a
//! padded text's tail, or every pad id of open_clip's BERT towers). The same kernel runs the
//! encoders' self-attention (q, k, v fused in one buffer) and the
//! attention-pooling head's cross-attention (one learned query shared by
//! every sequence, k and v side by side): the layouts differ only in strides.

use super::{Kernel, Params, Recorder};

/// The longest sequence one workgroup holds scores for (ViT-L/14-336 has 577,
/// MedSigLIP-448 1024).
pub(crate) const MAX_SEQ: usize = 1024;
/// The widest head the staged query fits.
pub(crate) const MAX_HEAD_DIM: usize = 256;

/// Which keys each query attends to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyMask<'a> {
    /// Every key of its sequence.
    All,
    /// Keys at or before the query.
    Causal,
    /// The keys whose flag is non-zero (one u32 per token, [batch·seq]). The
    /// score of a masked key is `f32::MIN`, the finite value `transformers`
    /// adds (`nn::transformer::key_mask`), so its weight is exactly 0 and a
    /// sequence without any attended key weighs every key alike, as there.
    Keys(&'a wgpu::Buffer),
}

impl KeyMask<'_> {
    fn code(self) -> u32 {
        match self {
            KeyMask::All => 0,
            KeyMask::Causal => 1,
            KeyMask::Keys(_) => 2,
        }
    }
}

/// Flag bit: one query row shared by every sequence (the pooling head's probe).
const SHARED_QUERY: u32 = 4;

/// Self-attention. `qkv`: [batch·seq, 3·hidden] (q, k, v side by side, heads
/// contiguous in each); `out`: [batch·seq, hidden], heads concatenated.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder,
    qkv: &wgpu::Buffer,
    out: &wgpu::Buffer,
    batch: usize,
    seq: usize,
    heads: usize,
    hidden: usize,
    mask: KeyMask,
) {
    let layout = Layout { queries: seq, q_stride: 3 * hidden, kv_stride: 3 * hidden, flags: mask.code() };
    let keep = match mask {
        KeyMask::Keys(k) => k,
        _ => qkv,
    };
    dispatch(rec, [qkv, qkv, out, keep], batch, seq, heads, hidden, layout);
}

/// Cross-attention of `queries` shared rows to every sequence's keys (no
/// mask). `query`: [queries, hidden] (projected, unscaled); `kv`:
/// [batch·seq, 2·hidden] (k, v side by side); `out`: [batch·queries, hidden].
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_shared_query(
    rec: &mut Recorder,
    query: &wgpu::Buffer,
    kv: &wgpu::Buffer,
    out: &wgpu::Buffer,
    batch: usize,
    seq: usize,
    queries: usize,
    heads: usize,
    hidden: usize,
) {
    let layout = Layout { queries, q_stride: hidden, kv_stride: 2 * hidden, flags: KeyMask::All.code() | SHARED_QUERY };
    dispatch(rec, [query, kv, out, kv], batch, seq, heads, hidden, layout);
}

/// Row strides in floats; k is the second-to-last and v the last `hidden`
/// values of a kv row.
struct Layout {
    queries: usize,
    q_stride: usize,
    kv_stride: usize,
    flags: u32,
}

fn dispatch(
    rec: &mut Recorder,
    [q, kv, out, keep]: [&wgpu::Buffer; 4],
    batch: usize,
    seq: usize,
    heads: usize,
    hidden: usize,
    layout: Layout,
) {
    let head_dim = hidden / heads;
    let scale = (head_dim as f32).powf(-0.5);
    let params: Params = [
        seq as u32,
        heads as u32,
        head_dim as u32,
        layout.flags,
        scale.to_bits(),
        hidden as u32,
        layout.q_stride as u32,
        layout.kv_stride as u32,
    ];
    rec.dispatch(Kernel::Attention, params, &[q, kv, out, keep], [layout.queries as u32, heads as u32, batch as u32]);
}

pub(crate) const SHADER: &str = r#"
// flags: bits 0–1 the mask (0 every key, 1 causal, 2 a flag per key),
// bit 2 one query row shared by every sequence.
struct Params { keys: u32, heads: u32, head_dim: u32, flags: u32, scale: f32, hidden: u32, q_stride: u32, kv_stride: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kv: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> keep: array<u32>;

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
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let lane = lid.x;
    let q_index = wid.x;
    let head = wid.y;
    let sequence = wid.z;
    let queries = groups.x;
    let first_key = sequence * params.keys;
    let head_offset = head * params.head_dim;
    let k_offset = params.kv_stride - 2u * params.hidden + head_offset;
    let v_offset = params.kv_stride - params.hidden + head_offset;
    var q_row = sequence * queries + q_index;
    if ((params.flags & 4u) != 0u) { q_row = q_index; }
    let q_base = q_row * params.q_stride + head_offset;

    for (var d = lane; d < params.head_dim; d += WG) { query[d] = q[q_base + d]; }
    workgroupBarrier();

    let mask = params.flags & 3u;
    var keys = params.keys;
    if (mask == 1u) { keys = q_index + 1u; }
    // f32::MIN, which absorbs any score added to it (transformers' mask value).
    let masked = bitcast<f32>(0xff7fffffu);

    var local_max = masked;
    for (var j = lane; j < keys; j += WG) {
        var s = masked;
        if (mask != 2u || keep[first_key + j] != 0u) {
            let k_base = (first_key + j) * params.kv_stride + k_offset;
            var dot = 0.0;
            for (var d = 0u; d < params.head_dim; d++) { dot += query[d] * kv[k_base + d]; }
            s = dot * params.scale;
        }
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

    let out_base = (sequence * queries + q_index) * params.hidden + head_offset;
    for (var d = lane; d < params.head_dim; d += WG) {
        var acc = 0.0;
        for (var j = 0u; j < keys; j++) {
            acc += scores[j] * kv[(first_key + j) * params.kv_stride + v_offset + d];
        }
        out[out_base + d] = acc / total;
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::test_support::{assert_close, context, run, values};

    /// Softmax attention of one query row to the keys `attended` marks (all
    /// of them with equal weights when it marks none), in f64.
    fn reference(query: &[f32], kv: &[f32], kv_stride: usize, k_at: usize, v_at: usize, attended: &[bool]) -> Vec<f32> {
        let any = attended.contains(&true);
        let keys: Vec<usize> = (0..attended.len()).filter(|&j| attended[j] || !any).collect();
        let scale = (query.len() as f64).powf(-0.5);
        let scores: Vec<f64> = keys
            .iter()
            .map(|&j| {
                let k = &kv[j * kv_stride + k_at..][..query.len()];
                if any { query.iter().zip(k).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() * scale } else { 0.0 }
            })
            .collect();
        let max = scores.iter().copied().fold(f64::MIN, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        (0..query.len())
            .map(|d| keys.iter().zip(&weights).map(|(&j, w)| w * f64::from(kv[j * kv_stride + v_at + d])).sum::<f64>() / total)
            .map(|v| v as f32)
            .collect()
    }

    /// Every mask of the self-attention (none, causal, a flag per key: a
    /// padded tail, pad ids inside a sequence, a sequence with none attended)
    /// over sequences longer than the workgroup.
    #[test]
    fn self_attention_masks_match_the_cpu() {
        let Some(ctx) = context() else { return };
        let (batch, seq, heads, head_dim) = (3, 70, 3, 8);
        let hidden = heads * head_dim;
        let qkv_values = values(batch * seq * 3 * hidden, 1, 2.0);
        let qkv = ctx.upload("qkv", &qkv_values);
        let out = ctx.activation(batch * seq * hidden);
        // Sequence 0: a tail of padding; 1: holes (every third key, as pad ids
        // written inside a text); 2: nothing attended.
        let keep: Vec<bool> = (0..batch * seq)
            .map(|i| match (i / seq, i % seq) {
                (0, j) => j < 41,
                (1, j) => j % 3 != 1,
                _ => false,
            })
            .collect();
        let keep_buffer = ctx.upload_u32("keep", &keep.iter().map(|&k| u32::from(k)).collect::<Vec<_>>());
        for (name, mask) in [("none", KeyMask::All), ("causal", KeyMask::Causal), ("key flags", KeyMask::Keys(&keep_buffer))] {
            let got = run(&ctx, |rec| record(rec, &qkv, &out, batch, seq, heads, hidden, mask), &out, batch * seq * hidden);
            let mut want = Vec::with_capacity(got.len());
            for b in 0..batch {
                let rows = &qkv_values[b * seq * 3 * hidden..(b + 1) * seq * 3 * hidden];
                for i in 0..seq {
                    let attended: Vec<bool> = match mask {
                        KeyMask::All => vec![true; seq],
                        KeyMask::Causal => (0..seq).map(|j| j <= i).collect(),
                        KeyMask::Keys(_) => keep[b * seq..(b + 1) * seq].to_vec(),
                    };
                    for h in 0..heads {
                        let q = &rows[i * 3 * hidden + h * head_dim..][..head_dim];
                        want.extend(reference(q, rows, 3 * hidden, hidden + h * head_dim, 2 * hidden + h * head_dim, &attended));
                    }
                }
            }
            assert_close(&format!("attention, mask {name}"), &got, &want, 1e-5);
        }
    }

    /// The pooling head's layout: one query shared by every sequence, k and v
    /// side by side.
    #[test]
    fn shared_query_attention_matches_the_cpu() {
        let Some(ctx) = context() else { return };
        let (batch, seq, heads, head_dim) = (2, 100, 4, 12);
        let hidden = heads * head_dim;
        let query_values = values(hidden, 2, 1.0);
        let kv_values = values(batch * seq * 2 * hidden, 3, 1.5);
        let (query, kv) = (ctx.upload("query", &query_values), ctx.upload("kv", &kv_values));
        let out = ctx.activation(batch * hidden);
        let got = run(&ctx, |rec| record_shared_query(rec, &query, &kv, &out, batch, seq, 1, heads, hidden), &out, batch * hidden);
        let mut want = Vec::new();
        for b in 0..batch {
            let rows = &kv_values[b * seq * 2 * hidden..(b + 1) * seq * 2 * hidden];
            for h in 0..heads {
                let q = &query_values[h * head_dim..(h + 1) * head_dim];
                want.extend(reference(q, rows, 2 * hidden, h * head_dim, hidden + h * head_dim, &vec![true; seq]));
            }
        }
        assert_close("shared-query attention", &got, &want, 1e-5);
    }
}
