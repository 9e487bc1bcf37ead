//! Which engine runs the encoders: the CPU (candle, [`cpu`]) or the GPU (the
//! wgpu engine in `gpu`, attached through [`Accelerator`]). Natively the choice
//! is made here ([`select_backend`]), for every command that encodes; in the
//! browser the worker makes the same choice with the same probe
//! (www/worker.js, `chooseBackend`), because it must not block the first
//! result on it. The pipeline depends on this module, never the reverse: the
//! choice is made on the model itself (`Pipeline::select_backend` passes it).

pub mod cpu;
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub mod threads;

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    WebGpu,
    Auto,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" | "wasm" => Ok(Backend::Cpu),
            "webgpu" | "gpu" => Ok(Backend::WebGpu),
            "auto" => Ok(Backend::Auto),
            other => Err(format!("unknown backend {other:?} (cpu, webgpu or auto)")),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::WebGpu => "webgpu",
            Backend::Auto => "auto",
        })
    }
}

/// The probe image both engines embed before the GPU is trusted: smooth
/// gradients and a checkerboard, already normalised ([3, size, size]).
pub fn probe_pixels(size: usize) -> Vec<f32> {
    let mut pixels = Vec::with_capacity(3 * size * size);
    for c in 0..3 {
        for y in 0..size {
            for x in 0..size {
                let check = if ((x >> 3) + (y >> 3)) % 2 == 1 { 0.8 } else { -0.8 };
                let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
                pixels.push(check + 2.0 * fx - 1.0 + (c as f32 - 1.0) * (fy - 0.5));
            }
        }
    }
    pixels
}

/// The GPU must agree with the CPU this closely on the probe image.
pub const MIN_PROBE_COSINE: f32 = 0.999;

#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub use native::{select_backend, Accelerator, BackendChoice};
