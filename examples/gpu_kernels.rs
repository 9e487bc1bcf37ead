//! GFLOP/s of the WebGPU engine's matmul on the ViT-B/16 shapes, and
//! attention time, on the first adapter wgpu finds (lavapipe without a GPU).
//! `cargo run --release --example gpu_kernels [-- --repeats N] [--json]`:
//! a table, or one JSON row per kernel shape for bench/run.sh.

use std::time::Instant;

use kpl::gpu::{microbench, GpuContext};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut repeats = 5usize;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeats" => repeats = args.next().ok_or("--repeats needs a value")?.parse()?,
            "--json" => json = true,
            other => return Err(format!("unknown argument {other:?} (--repeats N, --json)").into()),
        }
    }
    let ctx = pollster::block_on(GpuContext::new())?;
    let origin = Instant::now();
    let now = move || origin.elapsed().as_secs_f64();
    let adapter = ctx.adapter().to_string();
    let report = |name: String, seconds: f64, flops: f64| {
        let gflops = flops / seconds / 1e9;
        if json {
            let row = serde_json::json!({
                "engine": "kpl-wgpu", "dtype": "f32", "model": name, "threads": 1,
                "median_s": (seconds * 1e6).round() / 1e6, "gflops": (gflops * 100.0).round() / 100.0,
                "repeats": repeats, "adapter": adapter,
            });
            println!("{row}");
        } else {
            println!("{name:<32} {:>10.3} {gflops:>10.1}", seconds * 1e3);
        }
    };
    if !json {
        println!("adapter: {adapter}");
        println!("{:<32} {:>10} {:>10}", "kernel [m×k · k×n]", "ms", "GFLOP/s");
    }
    // ViT-B/16 at batch 1 (197 tokens): qkv, out_proj, fc1, fc2; and fc1 at batch 8.
    for (m, k, n) in [(197, 768, 2304), (197, 768, 768), (197, 768, 3072), (197, 3072, 768), (1576, 768, 3072)] {
        let s = pollster::block_on(microbench::matmul_seconds(&ctx, (m, n, k), repeats, &now))?;
        report(format!("matmul-{m}x{k}x{n}"), s, 2.0 * (m * n * k) as f64);
    }
    for batch in [1, 8] {
        let s = pollster::block_on(microbench::attention_seconds(&ctx, (batch, 197, 12, 768), repeats, &now))?;
        report(format!("attention-b{batch}-197x12x64"), s, 4.0 * (batch * 12 * 197 * 197 * 64) as f64);
    }
    Ok(())
}
