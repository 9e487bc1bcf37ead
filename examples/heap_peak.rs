//! Where the memory of a model goes, natively: the heap's high-water mark while
//! loading a model folder or bundle, and what one image adds on top of it (the
//! same model code as the wasm build, whose memory never shrinks, so that the
//! per-image high-water mark is what the page keeps). Counts the bytes live
//! through a wrapping global allocator; one thread.
//!
//!     cargo run --release --example heap_peak -- MODEL_DIR [--kernel int8] [--runs 2]
//!
//! Prints one JSON line: held_weight_bytes (Model::weight_bytes), load_peak_bytes,
//! after_load_bytes, image_peak_bytes (the high-water mark above after_load during an
//! image), allocations (during one image).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(live, Relaxed);
            COUNT.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            let live = LIVE.fetch_add(new_size, Relaxed) + new_size - layout.size();
            LIVE.fetch_sub(layout.size(), Relaxed);
            PEAK.fetch_max(live, Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let dir = args.get(1).filter(|a| !a.starts_with("--")).ok_or("usage: heap_peak MODEL_DIR [--kernel int8]")?;
    let kernel: kpl::nn::linear::QuantKernel = arg("--kernel").unwrap_or_else(|| "int8".into()).parse()?;
    let runs: usize = arg("--runs").map(|r| r.parse()).transpose()?.unwrap_or(2);
    kpl::engine::threads::set_threads(1)?;
    kpl::nn::linear::set_quant_kernel(kernel);
    let pipeline = kpl::model_dir::load_model_dir(std::path::Path::new(dir))?;
    let load_peak = PEAK.load(Relaxed);
    let after_load = LIVE.load(Relaxed);
    let size = pipeline.model.image_size();
    let pixels = kpl::preprocess::PixelTensor {
        height: size,
        width: size,
        data: (0..3 * size * size).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect(),
    };
    let mut image_peak = 0;
    let mut allocations = 0;
    for _ in 0..runs {
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let count = COUNT.load(Relaxed);
        std::hint::black_box(pipeline.embed_pixels(std::slice::from_ref(&pixels), true)?);
        image_peak = PEAK.load(Relaxed) - before;
        allocations = COUNT.load(Relaxed) - count;
    }
    let row = serde_json::json!({
        "model": dir, "kernel": format!("{kernel:?}"),
        "held_weight_bytes": pipeline.model.weight_bytes(),
        "load_peak_bytes": load_peak, "after_load_bytes": after_load,
        "image_peak_bytes": image_peak, "allocations": allocations,
    });
    println!("{row}");
    Ok(())
}
