//! Kernel timings for `make bench`: one kernel shape, dispatched `repeats`
//! times in one submission, timed around submission and readback by the
//! caller's clock (`now`, in seconds: `Instant` natively, `performance.now()`
//! in the browser).

use super::context::GpuContext;
use super::ops::{attention, matmul, Recorder};
use crate::error::Result;

/// Seconds per `[m, k] · [n, k]ᵀ` matmul (with bias, no activation).
pub async fn matmul_seconds(
    ctx: &GpuContext,
    (m, n, k): (usize, usize, usize),
    repeats: usize,
    now: &dyn Fn() -> f64,
) -> Result<f64> {
    let lhs = ctx.upload("lhs", &ramp(m * k));
    let rhs = ctx.upload("rhs", &ramp(n * k));
    let bias = ctx.upload("bias", &ramp(n));
    let out = ctx.activation(m * n);
    let mut rec = ctx.recorder();
    for _ in 0..repeats {
        let epilogue = matmul::Epilogue { bias: Some(&bias), activation: None, residual: None };
        matmul::record(&mut rec, &lhs, matmul::Rhs::F32(&rhs), &out, (m, n, k), epilogue, &bias);
    }
    time(ctx, rec, &out, repeats, now).await
}

/// Seconds per attention over `batch` sequences of `seq` tokens.
pub async fn attention_seconds(
    ctx: &GpuContext,
    (batch, seq, heads, hidden): (usize, usize, usize, usize),
    repeats: usize,
    now: &dyn Fn() -> f64,
) -> Result<f64> {
    let qkv = ctx.upload("qkv", &ramp(batch * seq * 3 * hidden));
    let out = ctx.activation(batch * seq * hidden);
    let mut rec = ctx.recorder();
    for _ in 0..repeats {
        attention::record(&mut rec, &qkv, &out, batch, seq, heads, hidden, attention::KeyMask::All);
    }
    time(ctx, rec, &out, repeats, now).await
}

async fn time(ctx: &GpuContext, rec: Recorder<'_>, out: &wgpu::Buffer, repeats: usize, now: &dyn Fn() -> f64) -> Result<f64> {
    let program = rec.finish();
    // A first run compiles pipelines lazily on some drivers.
    ctx.run_and_read(|e| program.encode(&ctx.kernels, e), out, 1).await?;
    let start = now();
    ctx.run_and_read(|e| program.encode(&ctx.kernels, e), out, 1).await?;
    Ok((now() - start) / repeats as f64)
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 97) as f32 - 48.0) / 97.0).collect()
}
