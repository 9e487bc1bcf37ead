//! The mean of each sequence's flagged rows: open_clip's `mean_pooler` over a
//! text's attended tokens (`TextTower::attended`), and timm's `avg` pool over
//! an image's patch tokens (the class token's flag 0).

use super::{grid, Kernel, Params, Recorder};

const WG: u32 = 256;

/// `out[b] = Σ keep[b, j] · input[b, j] / max(Σ keep[b, j], 1)` over `seq`
/// rows of `width` values per sequence; `keep`: one u32 per row ([batch·seq],
/// non-zero = included). A sequence with no flagged row gives zeros, as the
/// CPU's `count.max(1)` does.
pub(crate) fn record(
    rec: &mut Recorder,
    input: &wgpu::Buffer,
    keep: &wgpu::Buffer,
    out: &wgpu::Buffer,
    batch: usize,
    seq: usize,
    width: usize,
) {
    let total = (batch * width) as u32;
    let params: Params = [total, width as u32, seq as u32, 0, 0, 0, 0, 0];
    rec.dispatch(Kernel::MaskedMean, params, &[input, keep, out], grid(total.div_ceil(WG)));
}

pub(crate) const SHADER: &str = r#"
struct Params { total: u32, width: u32, seq: u32, p3: u32, p4: u32, p5: u32, p6: u32, p7: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> keep: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 256u;
    if (index >= params.total) { return; }
    let sequence = index / params.width;
    let d = index % params.width;
    let first = sequence * params.seq;
    var sum = 0.0;
    var count = 0u;
    for (var j = 0u; j < params.seq; j++) {
        if (keep[first + j] != 0u) {
            sum += input[(first + j) * params.width + d];
            count += 1u;
        }
    }
    out[index] = sum / f32(max(count, 1u));
}
"#;

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::gpu::test_support::{assert_close, context, run, values};

    /// Against candle's mean over the flagged rows (a padded tail, holes, the
    /// first row left out as timm's avg pool leaves the class token, none).
    #[test]
    fn masked_mean_matches_the_cpu() {
        let Some(ctx) = context() else { return };
        let (batch, seq, width) = (4, 9, 300);
        let input_values = values(batch * seq * width, 5, 1.0);
        let keep: Vec<bool> = (0..batch * seq)
            .map(|i| match (i / seq, i % seq) {
                (0, j) => j < 4,
                (1, j) => j % 2 == 0,
                (2, j) => j > 0,
                _ => false,
            })
            .collect();
        let input = ctx.upload("x", &input_values);
        let keep_buffer = ctx.upload_u32("keep", &keep.iter().map(|&k| u32::from(k)).collect::<Vec<_>>());
        let out = ctx.activation(batch * width);
        let got = run(&ctx, |rec| record(rec, &input, &keep_buffer, &out, batch, seq, width), &out, batch * width);
        let all = Tensor::from_vec(input_values, (batch * seq, width), &Device::Cpu).unwrap();
        let mut want = Vec::with_capacity(batch * width);
        for b in 0..batch {
            let rows: Vec<u32> = (0..seq).filter(|&j| keep[b * seq + j]).map(|j| (b * seq + j) as u32).collect();
            if rows.is_empty() {
                want.extend(std::iter::repeat_n(0.0, width));
                continue;
            }
            let picked = all.index_select(&Tensor::new(rows.as_slice(), &Device::Cpu).unwrap(), 0).unwrap();
            want.extend(picked.mean(0).unwrap().to_vec1::<f32>().unwrap());
        }
        assert_close("masked mean", &got, &want, 1e-6);
    }
}
