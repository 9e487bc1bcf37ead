//! What the GPU ops' and modules' own tests share: a device (lavapipe where
//! there is no GPU), deterministic inputs, one recorded pass run and read
//! back, and the comparison with the CPU result.

use std::rc::Rc;

use candle_core::{Device, Tensor};

use super::context::GpuContext;
use super::ops::Recorder;

/// The device, or None when there is no adapter and `KPL_GPU_TESTS=skip`.
pub(crate) fn context() -> Option<Rc<GpuContext>> {
    match pollster::block_on(GpuContext::new()) {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var("KPL_GPU_TESTS").as_deref() == Ok("skip") => {
            eprintln!("skipped (KPL_GPU_TESTS=skip): {e}");
            None
        }
        Err(e) => panic!("{e}: install mesa-vulkan-drivers for a software adapter, or set KPL_GPU_TESTS=skip"),
    }
}

/// `n` values in [−scale, scale), a fixed function of `seed`.
pub(crate) fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

pub(crate) fn tensor(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(values(n, seed, scale), shape, &Device::Cpu).expect("shape matches")
}

pub(crate) fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("an f32 tensor")
}

/// Records with `record`, runs once, reads `floats` values of `out`.
pub(crate) fn run(ctx: &GpuContext, record: impl FnOnce(&mut Recorder), out: &wgpu::Buffer, floats: usize) -> Vec<f32> {
    let mut rec = ctx.recorder();
    record(&mut rec);
    let program = rec.finish();
    pollster::block_on(ctx.run_and_read(|e| program.encode(&ctx.kernels, e), out, floats)).expect("the pass runs")
}

/// Asserts the GPU's values are within `tolerance` of the CPU's; returns the
/// largest difference.
pub(crate) fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tolerance: f32) -> f32 {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    let diff = gpu.iter().zip(cpu).map(|(g, c)| (g - c).abs()).fold(0.0f32, f32::max);
    eprintln!("{what}: max abs diff {diff:.2e} over {} values", cpu.len());
    assert!(diff <= tolerance, "{what}: max abs diff {diff} > {tolerance}");
    diff
}
