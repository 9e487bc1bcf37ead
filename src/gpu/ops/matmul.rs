//! `out = act(lhs · rhsᵀ + bias) + residual`: every linear layer, the patch
//! embedding and the projections. `rhs` is a linear layer's weight as stored,
//! [n, k] row-major, so weights upload without a transpose.
//!
//! Tiling: a 16×16 workgroup computes a 64×64 block of `out`, each invocation a
//! 4×4 register block held in four vec4 accumulators. 64×16 slices of both
//! operands are read with one vec4 load per invocation (four consecutive
//! invocations cover 64 contiguous bytes of a row) and staged k-major in
//! workgroup memory as vec4s of four rows, so the inner loop is two workgroup
//! reads and four vec4 multiply-adds per k. Edges are zero-filled, so any m and n work; k must be a
//! multiple of 4 (`K_MULTIPLE`), which every CLIP width is.

use super::{Kernel, Params, Recorder};
use crate::nn::Activation;

pub(crate) const TILE: u32 = 64;
/// The inner dimension must be a multiple of this (the vec4 loads).
pub(crate) const K_MULTIPLE: usize = 4;

/// Epilogue options, fused into the kernel.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    pub bias: Option<&'a wgpu::Buffer>,
    pub activation: Option<Activation>,
    pub residual: Option<&'a wgpu::Buffer>,
}

fn activation_code(activation: Option<Activation>) -> u32 {
    match activation {
        None => 0,
        Some(Activation::QuickGelu) => 1,
        Some(Activation::Gelu) => 2,
        Some(Activation::GeluTanh) => 3,
    }
}

/// A weight [n, k] on the GPU: f32, or q8_0 blocks expanded inside the kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rhs<'a> {
    F32(&'a wgpu::Buffer),
    /// `quants`: the int8 values, four to a u32, row-major; `scales`: one f32
    /// per block of 32 along k. A quarter of the f32 weight's memory.
    Q8 { quants: &'a wgpu::Buffer, scales: &'a wgpu::Buffer },
    /// Half-precision values (devices with `shader-f16`).
    F16(&'a wgpu::Buffer),
    /// `quants`: 4-bit values, eight to a u32 in k order; `scales`: per group
    /// of 32 along k, (scale, min) with value = scale · q − min (q4_K expanded
    /// to one scale and min per group). About 6 bits per weight.
    Q4 { quants: &'a wgpu::Buffer, scales: &'a wgpu::Buffer },
}

/// Weights along k per q8 scale (q8_0's block).
pub(crate) const Q8_BLOCK: usize = 32;

/// Records `out[m, n] = lhs[m, k] · rhs[n, k]ᵀ` with `epilogue`. `unused` is any
/// buffer, bound where an epilogue input is absent.
pub(crate) fn record(
    rec: &mut Recorder,
    lhs: &wgpu::Buffer,
    rhs: Rhs,
    out: &wgpu::Buffer,
    (m, n, k): (usize, usize, usize),
    epilogue: Epilogue,
    unused: &wgpu::Buffer,
) {
    let flags = u32::from(epilogue.bias.is_some())
        | (u32::from(epilogue.residual.is_some()) << 1)
        | (activation_code(epilogue.activation) << 2);
    let params: Params = [m as u32, n as u32, k as u32, flags, 0, 0, 0, 0];
    let bias = epilogue.bias.unwrap_or(unused);
    let residual = epilogue.residual.unwrap_or(unused);
    let workgroups = [(n as u32).div_ceil(TILE), (m as u32).div_ceil(TILE), 1];
    match rhs {
        Rhs::F32(weight) => rec.dispatch(Kernel::Matmul, params, &[lhs, bias, residual, out, weight], workgroups),
        Rhs::Q8 { quants, scales } => {
            rec.dispatch(Kernel::MatmulQ8, params, &[lhs, bias, residual, out, quants, scales], workgroups)
        }
        Rhs::F16(weight) => rec.dispatch(Kernel::MatmulF16, params, &[lhs, bias, residual, out, weight], workgroups),
        Rhs::Q4 { quants, scales } => {
            rec.dispatch(Kernel::MatmulQ4, params, &[lhs, bias, residual, out, quants, scales], workgroups)
        }
    }
}

/// The kernel for f32 weights.
pub(crate) fn shader_f32() -> String {
    shader(F32_WEIGHTS)
}

/// The same kernel reading q8 weights.
pub(crate) fn shader_q8() -> String {
    shader(Q8_WEIGHTS)
}

/// The same kernel reading 4-bit weights.
pub(crate) fn shader_q4() -> String {
    shader(Q4_WEIGHTS)
}

/// The same kernel reading f16 weights.
pub(crate) fn shader_f16() -> String {
    format!("enable f16;\n{}", shader(F16_WEIGHTS))
}

fn shader(weights: &str) -> String {
    SHADER.replace("//{WEIGHTS}", weights)
}

const F32_WEIGHTS: &str = r#"
@group(0) @binding(5) var<storage, read> rhs: array<vec4<f32>>;

fn load_rhs(row: u32, k: u32) -> vec4<f32> {
    if (row < params.n && k < params.k) { return rhs[(row * params.k + k) / 4u]; }
    return vec4<f32>(0.0);
}
"#;

const F16_WEIGHTS: &str = r#"
@group(0) @binding(5) var<storage, read> rhs: array<vec4<f16>>;

fn load_rhs(row: u32, k: u32) -> vec4<f32> {
    if (row < params.n && k < params.k) { return vec4<f32>(rhs[(row * params.k + k) / 4u]); }
    return vec4<f32>(0.0);
}
"#;

// k is a multiple of 256 here (q4_K super-blocks); a vec4 is half a u32 of nibbles.
const Q4_WEIGHTS: &str = r#"
@group(0) @binding(5) var<storage, read> quants: array<u32>;
@group(0) @binding(6) var<storage, read> scales: array<vec2<f32>>;

fn load_rhs(row: u32, k: u32) -> vec4<f32> {
    if (row < params.n && k < params.k) {
        let at = row * params.k + k;
        let word = quants[at / 8u] >> ((at % 8u) * 4u);
        let q = vec4<f32>(f32(word & 15u), f32((word >> 4u) & 15u), f32((word >> 8u) & 15u), f32((word >> 12u) & 15u));
        let scale_min = scales[at / 32u];
        return q * scale_min.x - vec4<f32>(scale_min.y);
    }
    return vec4<f32>(0.0);
}
"#;

// k is a multiple of 32 here (q8_0 blocks), so four consecutive k share a scale.
const Q8_WEIGHTS: &str = r#"
@group(0) @binding(5) var<storage, read> quants: array<u32>;
@group(0) @binding(6) var<storage, read> scales: array<f32>;

fn load_rhs(row: u32, k: u32) -> vec4<f32> {
    if (row < params.n && k < params.k) {
        let at = row * params.k + k;
        let q = i32(quants[at / 4u]);
        let values = vec4<f32>(f32(extractBits(q, 0u, 8u)), f32(extractBits(q, 8u, 8u)),
                               f32(extractBits(q, 16u, 8u)), f32(extractBits(q, 24u, 8u)));
        return values * scales[at / 32u];
    }
    return vec4<f32>(0.0);
}
"#;

const SHADER: &str = r#"
struct Params { m: u32, n: u32, k: u32, flags: u32, p4: u32, p5: u32, p6: u32, p7: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> lhs: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> residual: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// The weight's bindings (5, and 6 for a quantised one) and its `load_rhs`.
//{WEIGHTS}

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

// [TILE_K][TILE_M / 4]: element (k, s) holds rows 4s .. 4s+3 at k.
var<workgroup> lhs_tile: array<vec4<f32>, 256>;
var<workgroup> rhs_tile: array<vec4<f32>, 256>;

fn erf(x: f32) -> f32 {
    // Abramowitz & Stegun 7.1.26, |error| < 1.5e-7.
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
    return select(-y, y, x >= 0.0);
}

fn activate(x: f32, code: u32) -> f32 {
    switch code {
        case 1u: { return x / (1.0 + exp(-1.702 * x)); }
        case 2u: { return 0.5 * x * (1.0 + erf(x * 0.70710678118654752)); }
        case 3u: {
            let inner = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
            return 0.5 * x * (1.0 + tanh(inner));
        }
        default: { return x; }
    }
}

// One vec4 (four consecutive k) of a row, zero outside the matrix; k is a
// multiple of 4 (checked on upload), so a vec4 is wholly inside or outside.
fn load_lhs(row: u32, k: u32) -> vec4<f32> {
    if (row < params.m && k < params.k) { return lhs[(row * params.k + k) / 4u]; }
    return vec4<f32>(0.0);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let local = lid.y * 16u + lid.x;
    // Each invocation stages one vec4 of each operand: row local / 4, k (local % 4) * 4 ..
    let load_row = local / 4u;
    let load_k = (local % 4u) * 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        let a = load_lhs(row0 + load_row, k0 + load_k);
        let b = load_rhs(col0 + load_row, k0 + load_k);
        // Transposed into [k][row / 4] vec4s, so the inner loop reads four rows
        // (or columns) at one k with one workgroup load.
        let slot = load_row / 4u;
        let lane = load_row % 4u;
        lhs_tile[(load_k + 0u) * 16u + slot][lane] = a.x;
        lhs_tile[(load_k + 1u) * 16u + slot][lane] = a.y;
        lhs_tile[(load_k + 2u) * 16u + slot][lane] = a.z;
        lhs_tile[(load_k + 3u) * 16u + slot][lane] = a.w;
        rhs_tile[(load_k + 0u) * 16u + slot][lane] = b.x;
        rhs_tile[(load_k + 1u) * 16u + slot][lane] = b.y;
        rhs_tile[(load_k + 2u) * 16u + slot][lane] = b.z;
        rhs_tile[(load_k + 3u) * 16u + slot][lane] = b.w;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let a4 = lhs_tile[kk * 16u + lid.y];
            let b4 = rhs_tile[kk * 16u + lid.x];
            acc0 += a4.x * b4;
            acc1 += a4.y * b4;
            acc2 += a4.z * b4;
            acc3 += a4.w * b4;
        }
        workgroupBarrier();
    }

    let row = row0 + lid.y * 4u;
    let col = col0 + lid.x * 4u;
    store_row(row, col, acc0);
    store_row(row + 1u, col, acc1);
    store_row(row + 2u, col, acc2);
    store_row(row + 3u, col, acc3);
}

fn store_one(row: u32, col: u32, value: f32) {
    if (col >= params.n) { return; }
    var v = value;
    if ((params.flags & 1u) != 0u) { v += bias[col]; }
    v = activate(v, params.flags >> 2u);
    if ((params.flags & 2u) != 0u) { v += residual[row * params.n + col]; }
    out[row * params.n + col] = v;
}

// The epilogue of one row of a 4×4 block, with constant lanes so the
// accumulators stay in registers.
fn store_row(row: u32, col: u32, values: vec4<f32>) {
    if (row >= params.m) { return; }
    store_one(row, col, values.x);
    store_one(row, col + 1u, values.y);
    store_one(row, col + 2u, values.z);
    store_one(row, col + 3u, values.w);
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::test_support::{assert_close, context, flat, run, tensor};

    /// Every epilogue option (bias, each activation the configs name,
    /// residual) against candle and `nn::Activation::apply`, at sizes that are
    /// not multiples of the tile.
    #[test]
    fn matmul_epilogues_match_the_cpu() {
        let Some(ctx) = context() else { return };
        let (m, n, k) = (70, 37, 20);
        let (lhs, rhs, bias, residual) = (tensor(&[m, k], 1, 1.0), tensor(&[n, k], 2, 0.5), tensor(&[n], 3, 1.0), tensor(&[m, n], 4, 1.0));
        let up = |name, t| ctx.upload(name, &flat(t));
        let (lhs_b, rhs_b, bias_b, residual_b) = (up("lhs", &lhs), up("rhs", &rhs), up("bias", &bias), up("residual", &residual));
        let out = ctx.activation(m * n);
        let plain = lhs.matmul(&rhs.t().unwrap()).unwrap();
        let biased = plain.broadcast_add(&bias).unwrap();
        let cases = [
            (None, false, false, plain.clone()),
            (None, true, true, (&biased + &residual).unwrap()),
            (Some(Activation::QuickGelu), true, false, Activation::QuickGelu.apply(&biased).unwrap()),
            (Some(Activation::Gelu), true, false, Activation::Gelu.apply(&biased).unwrap()),
            (Some(Activation::GeluTanh), true, true, (Activation::GeluTanh.apply(&biased).unwrap() + &residual).unwrap()),
        ];
        for (activation, with_bias, with_residual, want) in cases {
            let epilogue = Epilogue { bias: with_bias.then_some(&bias_b), activation, residual: with_residual.then_some(&residual_b) };
            let got = run(&ctx, |rec| record(rec, &lhs_b, Rhs::F32(&rhs_b), &out, (m, n, k), epilogue, &bias_b), &out, m * n);
            assert_close(&format!("matmul {activation:?} bias {with_bias} residual {with_residual}"), &got, &flat(&want), 1e-5);
        }
    }
}
