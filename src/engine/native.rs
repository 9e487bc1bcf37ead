//! The GPU engine natively: [`Accelerator`], the engine a pipeline encodes
//! with until it fails, and [`select_backend`], which attaches it after the
//! probe.

use std::cell::RefCell;
use std::time::Instant;

use super::{probe_pixels, Backend, MIN_PROBE_COSINE};
use crate::error::Error;
use crate::gpu::{l2_normalize_rows, GpuClip, GpuContext};
use crate::models::Model;
use crate::preprocess::PixelTensor;

/// The GPU engine a pipeline encodes with, until it fails: then the
/// pipeline goes on on the CPU and the reason waits in `notes`.
#[derive(Default)]
pub struct Accelerator {
    gpu: RefCell<Option<GpuClip>>,
    notes: RefCell<Vec<String>>,
}

impl Accelerator {
    pub fn is_active(&self) -> bool {
        self.gpu.borrow().is_some()
    }

    /// Why the GPU was left since the last call (for the CLI to print).
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut self.notes.borrow_mut())
    }

    fn fail(&self, e: Error) {
        self.gpu.borrow_mut().take();
        self.notes.borrow_mut().push(format!("{e}; continuing on the CPU"));
    }

    /// Image embeddings on the GPU; None when there is none (any more).
    pub(crate) fn image_rows(&self, batch: &[PixelTensor], normalize: bool) -> Option<Vec<Vec<f32>>> {
        let guard = self.gpu.borrow();
        let gpu = guard.as_ref()?;
        let flat: Vec<f32> = batch.iter().flat_map(|p| p.data.iter().copied()).collect();
        let result = pollster::block_on(gpu.image_features(&flat, batch.len()));
        drop(guard);
        match result {
            Ok(mut values) => {
                if normalize {
                    l2_normalize_rows(&mut values, batch.len());
                }
                let dim = values.len() / batch.len();
                Some(values.chunks(dim).map(<[f32]>::to_vec).collect())
            }
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// The embedding of ids whose first `length` are real tokens, on the GPU.
    pub(crate) fn text_row(&self, ids: &[u32], length: usize, normalize: bool) -> Option<Vec<f32>> {
        let guard = self.gpu.borrow();
        let gpu = guard.as_ref().filter(|g| g.has_text())?;
        let result = pollster::block_on(gpu.text_features(&[ids.to_vec()], &[length]));
        drop(guard);
        match result {
            Ok(mut values) => {
                if normalize {
                    l2_normalize_rows(&mut values, 1);
                }
                Some(values)
            }
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// The attached engine, for tests (`GpuClip::lose_device`).
    #[doc(hidden)]
    pub fn with_gpu<T>(&self, f: impl FnOnce(&GpuClip) -> T) -> Option<T> {
        self.gpu.borrow().as_ref().map(f)
    }

    fn set(&self, gpu: Option<GpuClip>) {
        *self.gpu.borrow_mut() = gpu;
    }
}

/// What `select_backend` chose, and the sentence that says why.
#[derive(Debug, Clone)]
pub struct BackendChoice {
    pub backend: Backend,
    pub note: String,
}

/// Attaches the GPU engine for `model` to `accelerator` when `requested`
/// calls for it and it works (`Pipeline::select_backend` passes its own). `webgpu`: the GPU, after it agrees with the CPU on a probe
/// image. `auto`: the same probe, timed, and the faster engine; a software
/// adapter (lavapipe, SwiftShader) runs on the same CPU more slowly than the
/// CPU path, so auto takes the CPU without probing it. Any failure leaves
/// the CPU in charge with a note; the result is never lost.
pub fn select_backend(model: &Model, accelerator: &Accelerator, requested: Backend) -> BackendChoice {
    accelerator.set(None);
    let cpu = |note: String| BackendChoice { backend: Backend::Cpu, note };
    if requested == Backend::Cpu || !model.has_vision() {
        return cpu(String::new());
    }
    // The adapter is known before any weight is uploaded, so auto leaves a
    // software one without paying for the upload.
    let ctx = match pollster::block_on(GpuContext::new()) {
        Ok(ctx) => ctx,
        Err(e) => return cpu(format!("WebGPU could not start ({e}); using the CPU")),
    };
    let adapter = ctx.adapter().clone();
    if requested == Backend::Auto && adapter.software {
        return cpu(format!("auto: the only GPU adapter, {adapter}, is a software one; using the CPU"));
    }
    let gpu = match pollster::block_on(GpuClip::with_context(ctx, model)) {
        Ok(gpu) => gpu,
        Err(e) => return cpu(format!("WebGPU could not start ({e}); using the CPU")),
    };
    let size = model.image_size();
    let probe = PixelTensor { height: size, width: size, data: probe_pixels(size) };
    let started = Instant::now();
    let on_cpu = match super::cpu::image_rows(model, std::slice::from_ref(&probe), true) {
        Ok(mut rows) => rows.remove(0),
        Err(e) => return cpu(format!("the CPU failed on the probe image ({e})")),
    };
    let cpu_s = started.elapsed().as_secs_f64();
    let run = || pollster::block_on(gpu.image_features(&probe.data, 1));
    let timed = run().and_then(|_| {
        let started = Instant::now();
        run().map(|values| (values, started.elapsed().as_secs_f64()))
    });
    let (mut on_gpu, gpu_s) = match timed {
        Ok(t) => t,
        Err(e) => return cpu(format!("WebGPU failed on a test image ({e}); using the CPU")),
    };
    l2_normalize_rows(&mut on_gpu, 1);
    let agreement: f32 = on_cpu.iter().zip(&on_gpu).map(|(a, b)| a * b).sum();
    // Negated so that a NaN agreement (a GPU that returned NaN) also falls back to the CPU.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(agreement >= MIN_PROBE_COSINE) {
        return cpu(format!(
            "WebGPU ({adapter}) disagreed with the CPU on a test image (cosine {agreement:.4}); using the CPU"
        ));
    }
    let timing = format!("{:.1} ms per image on WebGPU ({adapter}), {:.1} ms on the CPU", gpu_s * 1e3, cpu_s * 1e3);
    if requested == Backend::Auto && gpu_s >= cpu_s {
        return cpu(format!("auto: the CPU ({timing})"));
    }
    accelerator.set(Some(gpu));
    let prefix = if requested == Backend::Auto { "auto: WebGPU" } else { "WebGPU" };
    BackendChoice { backend: Backend::WebGpu, note: format!("{prefix} ({timing})") }
}
