//! GFLOP/s of the WebGPU engine's matmul on the ViT-B/16 shapes, and
//! attention time, on the first adapter wgpu finds. Prints one table row per
//! shape: `cargo run --release --example gpu_kernels [-- REPEATS]`.

use std::time::Instant;

use kpl::gpu::{microbench, GpuContext};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repeats: usize = std::env::args().nth(1).map(|r| r.parse()).transpose()?.unwrap_or(5);
    let ctx = pollster::block_on(GpuContext::new())?;
    let origin = Instant::now();
    let now = move || origin.elapsed().as_secs_f64();
    println!("adapter: {}", ctx.adapter());
    println!("{:<28} {:>10} {:>10}", "kernel [m×k · k×n]", "ms", "GFLOP/s");
    for (m, k, n) in [(197, 768, 768), (197, 768, 2304), (197, 768, 3072), (197, 3072, 768), (1576, 768, 3072)] {
        let s = pollster::block_on(microbench::matmul_seconds(&ctx, (m, n, k), repeats, &now))?;
        let gflops = 2.0 * (m * n * k) as f64 / s / 1e9;
        println!("{:<28} {:>10.3} {:>10.1}", format!("matmul {m}×{k}·{k}×{n}"), s * 1e3, gflops);
    }
    for batch in [1, 8] {
        let s = pollster::block_on(microbench::attention_seconds(&ctx, (batch, 197, 12, 768), repeats, &now))?;
        let flops = 4.0 * (batch * 12 * 197 * 197 * 64) as f64;
        println!("{:<28} {:>10.3} {:>10.1}", format!("attention b{batch} 197×12×64"), s * 1e3, flops / s / 1e9);
    }
    Ok(())
}
