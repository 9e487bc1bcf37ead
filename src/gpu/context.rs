//! The GPU device: adapter selection, the compiled kernels, error capture and
//! the one readback per forward pass. The same code runs on Vulkan/Metal/DX12
//! natively and on WebGPU in the browser.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::ops::{Kernels, Recorder};
use crate::error::{Error, Result};

/// What the engine runs on, for the UI and the notes ("llvmpipe (Vulkan, cpu)").
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    /// A software rasteriser or other fallback adapter (lavapipe, SwiftShader).
    pub software: bool,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.name.is_empty() { "unnamed adapter" } else { &self.name };
        write!(f, "{name} ({}, {})", self.backend, self.device_type)
    }
}

/// Errors the driver reports outside an error scope (and device loss) land
/// here instead of wgpu's default handler, which panics.
#[derive(Default)]
struct Faults {
    uncaptured: Vec<String>,
    lost: Option<String>,
}

pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) kernels: Kernels,
    pub(crate) limits: wgpu::Limits,
    adapter: AdapterSummary,
    faults: Arc<Mutex<Faults>>,
    /// Activation buffers handed back by dropped plans, by size in bytes.
    pool: RefCell<Vec<wgpu::Buffer>>,
    /// Bytes of weights and other constants uploaded.
    uploaded: std::cell::Cell<u64>,
    /// Linear layers uploaded per weight format ("f32", "f16", "q8").
    pub(crate) formats: RefCell<std::collections::BTreeMap<&'static str, usize>>,
}

impl GpuContext {
    /// The best adapter there is (high performance first). Fallback adapters
    /// are accepted: in tests they are all there is, and `auto` measures
    /// before it picks one.
    pub async fn new() -> Result<Rc<Self>> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        };
        let adapter = instance
            .request_adapter(&options)
            .await
            .map_err(|e| Error::Gpu(format!("no GPU adapter ({e})")))?;
        let info = adapter.get_info();
        let summary = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type).to_lowercase(),
            software: info.device_type == wgpu::DeviceType::Cpu,
        };
        // Everything the adapter offers: the activations of large batches need
        // its largest storage buffers.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("kpl"),
                // f16 weights halve the memory of f16 checkpoints where offered.
                required_features: adapter.features() & wgpu::Features::SHADER_F16,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("{summary}: the device could not be opened ({e})")))?;
        let faults = Arc::new(Mutex::new(Faults::default()));
        let sink = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut f) = sink.lock() {
                f.uncaptured.push(compact(&e.to_string()));
            }
        }));
        let sink = faults.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut f) = sink.lock() {
                f.lost = Some(format!("{reason:?}: {message}"));
            }
        });
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let kernels = Kernels::compile(&device);
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("{summary}: a kernel did not compile: {}", compact(&e.to_string()))));
        }
        Ok(Rc::new(Self { device, queue, kernels, limits, adapter: summary, faults, pool: RefCell::new(Vec::new()), uploaded: Default::default(), formats: Default::default() }))
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// A lost device or an error reported outside a scope since the last call.
    pub(crate) fn take_fault(&self) -> Option<String> {
        let mut f = self.faults.lock().ok()?;
        if let Some(lost) = &f.lost {
            return Some(format!("the GPU device was lost ({lost})"));
        }
        if f.uncaptured.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut f.uncaptured).join("; "))
        }
    }

    /// Bytes of weights (and other constants) uploaded so far.
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded.get()
    }

    pub(crate) fn upload(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        self.upload_bytes(label, bytemuck::cast_slice(data))
    }

    pub(crate) fn upload_u32(&self, label: &str, data: &[u32]) -> wgpu::Buffer {
        self.upload_bytes(label, bytemuck::cast_slice(data))
    }

    /// A read-only storage buffer holding `data`, counted in `uploaded_bytes`.
    pub(crate) fn upload_bytes(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        self.uploaded.set(self.uploaded.get() + data.len() as u64);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: data,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A storage buffer of at least `floats` f32 values, reused when a plan
    /// dropped one of the same size.
    pub(crate) fn activation(&self, floats: usize) -> wgpu::Buffer {
        let size = (floats.max(1) * 4) as u64;
        let mut pool = self.pool.borrow_mut();
        if let Some(i) = pool.iter().position(|b| b.size() == size) {
            return pool.swap_remove(i);
        }
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activation"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// Returns a plan's buffers for the next plan of the same sizes; the pool
    /// keeps a bounded number so memory does not grow with every text length.
    pub(crate) fn recycle(&self, buffers: impl IntoIterator<Item = wgpu::Buffer>) {
        const MAX_POOLED: usize = 64;
        let mut pool = self.pool.borrow_mut();
        for b in buffers {
            if pool.len() < MAX_POOLED {
                pool.push(b);
            }
        }
    }

    /// Runs `record`'s commands in one submission, with out-of-memory and
    /// validation errors captured, then reads `floats` values of `output` back.
    pub(crate) async fn run_and_read(
        &self,
        record: impl FnOnce(&mut wgpu::CommandEncoder),
        output: &wgpu::Buffer,
        floats: usize,
    ) -> Result<Vec<f32>> {
        if let Some(fault) = self.take_fault() {
            return Err(Error::Gpu(fault));
        }
        let bytes = (floats * 4) as u64;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("forward") });
        record(&mut encoder);
        encoder.copy_buffer_to_buffer(output, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let invalid = validation.pop().await;
        let out_of_memory = oom.pop().await;
        if let Some(e) = out_of_memory {
            return Err(Error::Gpu(format!("out of GPU memory ({})", compact(&e.to_string()))));
        }
        if let Some(e) = invalid {
            return Err(Error::Gpu(compact(&e.to_string())));
        }
        let (sender, receiver) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        // Natively the map completes inside poll; on the web poll is a no-op
        // and the browser resolves it.
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        let mapped = receiver.await.map_err(|_| Error::Gpu("the readback was cancelled".into()))?;
        if let Err(e) = mapped {
            let why = self.take_fault().unwrap_or_else(|| e.to_string());
            return Err(Error::Gpu(format!("the result could not be read back ({why})")));
        }
        let values = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("the result could not be read back ({e})")))?;
            bytemuck::pod_collect_to_vec::<u8, f32>(&view)
        };
        staging.unmap();
        if let Some(fault) = self.take_fault() {
            return Err(Error::Gpu(fault));
        }
        Ok(values)
    }

    /// A recorder of one forward pass's dispatches on this device.
    pub(crate) fn recorder(&self) -> Recorder<'_> {
        Recorder::new(&self.device, &self.kernels, self.limits.min_uniform_buffer_offset_alignment)
    }

    /// How many sequences of `bytes_per_item` (their widest activation) fit
    /// one storage buffer of this device; at most 32, which keeps a pass's
    /// memory bounded without losing throughput.
    pub(crate) fn max_batch(&self, bytes_per_item: usize, what: &str) -> Result<usize> {
        let limit = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size) as usize;
        match limit / bytes_per_item.max(1) {
            0 => Err(Error::Gpu(format!(
                "one {what} needs a {:.0} MB buffer; this GPU allows {:.0} MB",
                bytes_per_item as f64 / 1e6,
                limit as f64 / 1e6
            ))),
            n => Ok(n.min(32)),
        }
    }

    pub(crate) fn write(&self, buffer: &wgpu::Buffer, data: &[f32]) {
        self.queue.write_buffer(buffer, 0, bytemuck::cast_slice(data));
    }

    pub(crate) fn write_u32(&self, buffer: &wgpu::Buffer, data: &[u32]) {
        self.queue.write_buffer(buffer, 0, bytemuck::cast_slice(data));
    }
}

/// wgpu's messages span several lines ("Validation Error / Caused by: …").
fn compact(text: &str) -> String {
    let joined = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    joined.chars().take(400).collect()
}
