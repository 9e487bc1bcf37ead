//! Layer normalisation over the last dimension, one workgroup per row: the
//! mean first, then the variance of the centred values (as candle and torch
//! compute it, which keeps large-offset rows exact).

use super::{grid, Kernel, Params, Recorder};

/// `out[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta` for `rows` rows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder,
    input: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    out: &wgpu::Buffer,
    rows: usize,
    width: usize,
    eps: f64,
) {
    let params: Params = [rows as u32, width as u32, (eps as f32).to_bits(), 0, 0, 0, 0, 0];
    rec.dispatch(Kernel::LayerNorm, params, &[input, gamma, beta, out], grid(rows as u32));
}

pub(crate) const SHADER: &str = r#"
struct Params { rows: u32, width: u32, eps: f32, p3: u32, p4: u32, p5: u32, p6: u32, p7: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 128u;
var<workgroup> partial: array<f32, 128>;

fn workgroup_sum(value: f32, lane: u32) -> f32 {
    partial[lane] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) { partial[lane] += partial[lane + stride]; }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(128)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let row = wid.x + wid.y * groups.x;
    // Uniform for the whole workgroup, so the barriers below stay in uniform control flow.
    if (row >= params.rows) { return; }
    let lane = lid.x;
    let base = row * params.width;
    let width = f32(params.width);

    var sum = 0.0;
    for (var i = lane; i < params.width; i += WG) { sum += input[base + i]; }
    let mean = workgroup_sum(sum, lane) / width;

    var squares = 0.0;
    for (var i = lane; i < params.width; i += WG) {
        let d = input[base + i] - mean;
        squares += d * d;
    }
    let inv_std = inverseSqrt(workgroup_sum(squares, lane) / width + params.eps);

    for (var i = lane; i < params.width; i += WG) {
        out[base + i] = (input[base + i] - mean) * inv_std * gamma[i] + beta[i];
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::test_support::{assert_close, context, run, values};

    /// Against torch's definition in f64 (the variance of the centred
    /// values), on rows offset by 100: a one-pass E[x²] − E[x]² in f32 (as
    /// candle's CPU fast path computes it) is off by 3e-2 here.
    #[test]
    fn layer_norm_matches_the_cpu() {
        let Some(ctx) = context() else { return };
        let (rows, width, eps) = (5, 300, 1e-6);
        let input: Vec<f32> = values(rows * width, 1, 1.0).iter().map(|v| v + 100.0).collect();
        let (gamma, beta) = (values(width, 2, 1.0), values(width, 3, 1.0));
        let mut want = Vec::with_capacity(input.len());
        for row in input.chunks(width) {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / width as f64;
            let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / width as f64;
            let inv = 1.0 / (var + eps).sqrt();
            want.extend(row.iter().enumerate().map(|(i, &v)| ((f64::from(v) - mean) * inv * f64::from(gamma[i]) + f64::from(beta[i])) as f32));
        }
        let (input_b, gamma_b, beta_b) = (ctx.upload("x", &input), ctx.upload("g", &gamma), ctx.upload("b", &beta));
        let out = ctx.activation(rows * width);
        let got = run(&ctx, |rec| record(rec, &input_b, &gamma_b, &beta_b, &out, rows, width, eps), &out, rows * width);
        assert_close("layer norm", &got, &want, 1e-4);
    }
}
