//! Picks one row per sequence (the class token of each image, the pooled
//! end-of-text token of each text) before the final projection.

use super::{grid, Kernel, Params, Recorder};

const WG: u32 = 256;

/// `out[i] = input[rows[i]]`, rows of `width` values.
pub(crate) fn record(
    rec: &mut Recorder,
    input: &wgpu::Buffer,
    rows: &wgpu::Buffer,
    out: &wgpu::Buffer,
    count: usize,
    width: usize,
) {
    let total = (count * width) as u32;
    let params: Params = [total, width as u32, 0, 0, 0, 0, 0, 0];
    rec.dispatch(Kernel::GatherRows, params, &[input, rows, out], grid(total.div_ceil(WG)));
}

pub(crate) const SHADER: &str = r#"
struct Params { total: u32, width: u32, p2: u32, p3: u32, p4: u32, p5: u32, p6: u32, p7: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 256u;
    if (index >= params.total) { return; }
    let i = index / params.width;
    let d = index % params.width;
    out[index] = input[rows[i] * params.width + d];
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::test_support::{assert_close, context, run, values};

    #[test]
    fn gather_rows_matches_the_cpu() {
        let Some(ctx) = context() else { return };
        let (rows, width) = (10, 7);
        let input_values = values(rows * width, 1, 1.0);
        let picked = [9u32, 0, 4];
        let (input, indices) = (ctx.upload("x", &input_values), ctx.upload_u32("rows", &picked));
        let out = ctx.activation(picked.len() * width);
        let got = run(&ctx, |rec| record(rec, &input, &indices, &out, picked.len(), width), &out, picked.len() * width);
        let want: Vec<f32> = picked.iter().flat_map(|&r| input_values[r as usize * width..][..width].to_vec()).collect();
        assert_close("gather rows", &got, &want, 0.0);
    }
}
