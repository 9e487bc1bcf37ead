//! The vision tower's token sequence: the class embedding where the family
//! has one (CLIP; SigLIP has none), then the patch embeddings, each plus its
//! position embedding.

use super::{grid, Kernel, Params, Recorder};

const WG: u32 = 256;

/// `patches`: [batch·(seq−1), hidden] with a `class` embedding [hidden],
/// else [batch·seq, hidden]; `positions`: [seq, hidden]; `out`: [batch·seq, hidden].
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder,
    patches: &wgpu::Buffer,
    class: Option<&wgpu::Buffer>,
    positions: &wgpu::Buffer,
    out: &wgpu::Buffer,
    batch: usize,
    seq: usize,
    hidden: usize,
) {
    let total = (batch * seq * hidden) as u32;
    let params: Params = [total, seq as u32, hidden as u32, u32::from(class.is_some()), 0, 0, 0, 0];
    // Without a class token the binding is never read; any buffer fills it.
    let class = class.unwrap_or(positions);
    rec.dispatch(Kernel::Tokens, params, &[patches, class, positions, out], grid(total.div_ceil(WG)));
}

pub(crate) const SHADER: &str = r#"
struct Params { total: u32, seq: u32, hidden: u32, class_token: u32, p4: u32, p5: u32, p6: u32, p7: u32 }

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
    let first = params.class_token;
    var value: f32;
    if (token < first) {
        value = class_embedding[d];
    } else {
        value = patches[(image * (params.seq - first) + token - first) * params.hidden + d];
    }
    out[index] = value + positions[token * params.hidden + d];
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::test_support::{assert_close, context, run, values};

    #[test]
    fn tokens_with_and_without_a_class_token_match_the_cpu() {
        let Some(ctx) = context() else { return };
        let (batch, cells, hidden) = (3, 9, 20);
        let positions_values = values((cells + 1) * hidden, 5, 1.0);
        let class_values = values(hidden, 6, 1.0);
        let patches_values = values(batch * cells * hidden, 7, 1.0);
        let (patches, class) = (ctx.upload("patches", &patches_values), ctx.upload("class", &class_values));
        for with_class in [true, false] {
            let seq = cells + usize::from(with_class);
            let positions = ctx.upload("positions", &positions_values[..seq * hidden]);
            let out = ctx.activation(batch * seq * hidden);
            let class_buffer = with_class.then_some(&class);
            let got = run(&ctx, |rec| record(rec, &patches, class_buffer, &positions, &out, batch, seq, hidden), &out, batch * seq * hidden);
            let mut want = Vec::new();
            for b in 0..batch {
                for t in 0..seq {
                    let token = match (with_class, t) {
                        (true, 0) => &class_values[..],
                        (true, _) => &patches_values[(b * cells + t - 1) * hidden..][..hidden],
                        (false, _) => &patches_values[(b * cells + t) * hidden..][..hidden],
                    };
                    want.extend(token.iter().zip(&positions_values[t * hidden..]).map(|(a, p)| a + p));
                }
            }
            assert_close(&format!("tokens, class token {with_class}"), &got, &want, 0.0);
        }
    }
}
