//! Test hooks for the browser tests. Nothing in the page calls these unless it was
//! opened with `?test-hooks=1` (see `www/worker.js`, "Test hooks").

use wasm_bindgen::prelude::*;

use crate::nn::gemm::QuantizedGemm;

/// Panics on purpose. In wasm a panic aborts (`RuntimeError: unreachable`) and
/// leaves the instance unusable, which is what the worker's recovery from a crashed
/// module is tested with (`tests/browser/recovery.test.mjs`). The worker calls it
/// only in test-hooks mode, for a file whose name contains `__trap__`.
#[wasm_bindgen(js_name = debugTrap)]
pub fn debug_trap() {
    panic!("debugTrap: a deliberate panic (test hook)");
}

/// Crashes one thread of rayon's pool on purpose, the way a kernel's split can
/// (`nn::gemm::split`): `kind` `"panic"` panics there, `"oom"` takes the path of an
/// allocation that memory cannot hold (`handle_alloc_error`, which aborts). In the
/// threaded build that thread is a Web Worker of the pool and the caller waits on
/// rayon's latch for good; the worker's recovery from that is tested with it
/// (`tests/browser/recovery.test.mjs`, files named with `__pooltrap__` /
/// `__pooloom__`, test-hooks mode only). In the single-threaded build it crashes the
/// calling thread, as `debugTrap`. Errors on any other `kind`.
#[wasm_bindgen(js_name = debugPoolTrap)]
pub fn debug_pool_trap(kind: &str) -> Result<(), JsError> {
    let crash: fn() = match kind {
        "panic" => || panic!("debugPoolTrap: a deliberate panic in a pool thread (test hook)"),
        "oom" => || std::alloc::handle_alloc_error(std::alloc::Layout::new::<[u8; 1 << 30]>()),
        other => return Err(JsError::new(&format!("debugPoolTrap: unknown kind {other:?} (\"panic\" or \"oom\")"))),
    };
    #[cfg(feature = "threads")]
    rayon::broadcast(|ctx| {
        // One thread crashes (the last: never the caller, which is not in the pool).
        if ctx.index() + 1 == ctx.num_threads() {
            crash();
        }
    });
    #[cfg(not(feature = "threads"))]
    crash();
    Ok(())
}

/// `y = x · Wᵀ` through the int8 GEMM (`nn::gemm::q8`, the build's best kernel):
/// `x` is `[m, k]`, the weight `[n, k]` as ggml `block_q8_0` bytes; returns
/// `[m, n]`. For `tests/browser/gemm.test.mjs` (wasm against the numpy
/// reference, bit for bit). Throws on mismatched sizes.
#[wasm_bindgen(js_name = q8Gemm)]
pub fn q8_gemm(blocks: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Result<Vec<f32>, JsError> {
    let packed = crate::nn::gemm::q8::PackedQ8::from_blocks(blocks, n, k).map_err(|e| JsError::new(&e.0))?;
    check_rows(x, m, k)?;
    Ok(packed.matmul(x, m))
}

/// The int8 GEMM's kernels in this build (`nn::gemm::Isa::available`), slowest
/// first, comma-separated; the last is the one [`q8_gemm`] and the encoders run:
/// `"Scalar,Simd128"`, and `"Scalar,Relaxed,Simd128"` in the relaxed-SIMD build.
#[wasm_bindgen(js_name = q8Kernels)]
pub fn q8_kernels() -> String {
    kernel_names(&crate::nn::gemm::Isa::available())
}

/// The kernels' `Debug` names, comma-separated.
fn kernel_names<I: std::fmt::Debug>(available: &[I]) -> String {
    available.iter().map(|isa| format!("{isa:?}")).collect::<Vec<_>>().join(",")
}

/// [`q8_gemm`] through the kernel named `kernel` (one of [`q8_kernels`]), so that
/// tests/browser/relaxed.test.mjs holds every kernel of a build to the numpy
/// reference, not only the default. Throws on a name this build lacks.
#[wasm_bindgen(js_name = q8GemmWith)]
pub fn q8_gemm_with(blocks: &[u8], n: usize, k: usize, x: &[f32], m: usize, kernel: &str) -> Result<Vec<f32>, JsError> {
    let isa = named_kernel(crate::nn::gemm::Isa::available(), kernel, "int8")?;
    let packed = crate::nn::gemm::q8::PackedQ8::from_blocks(blocks, n, k).map_err(|e| JsError::new(&e.0))?;
    check_rows(x, m, k)?;
    Ok(packed.matmul_with(x, m, isa))
}

/// The kernel of `available` whose `Debug` name is `name`; an error naming
/// those there are otherwise (`what`: the GEMM, for the message).
fn named_kernel<I: std::fmt::Debug>(available: Vec<I>, name: &str, what: &str) -> Result<I, JsError> {
    let names = kernel_names(&available);
    available
        .into_iter()
        .find(|isa| format!("{isa:?}") == name)
        .ok_or_else(|| JsError::new(&format!("no {what} kernel {name:?} in this build and engine (it has {names})")))
}

/// The q8_0 × q8_0 GEMM's kernels here (`nn::gemm::Q8x8Isa::available`),
/// slowest first, comma-separated: `"Scalar"`, and `"Scalar,Relaxed"` in the
/// relaxed-SIMD build where the engine passes both of its probes
/// ([`q8x8_relaxed_dot`], [`relaxed_madd_fuses`]).
#[wasm_bindgen(js_name = q8x8Kernels)]
pub fn q8x8_kernels() -> String {
    kernel_names(&crate::nn::gemm::Q8x8Isa::available())
}

/// `y = x · Wᵀ` through the q8_0 × q8_0 GEMM (`nn::gemm::q8x8`) on the
/// kernel named `kernel` (one of [`q8x8_kernels`]); otherwise as
/// [`q8_gemm`]. For tests/browser/relaxed.test.mjs (numpy's `y_q8x8`, bit
/// for bit). Throws on a kernel this build and engine lack.
#[wasm_bindgen(js_name = q8x8GemmWith)]
pub fn q8x8_gemm_with(blocks: &[u8], n: usize, k: usize, x: &[f32], m: usize, kernel: &str) -> Result<Vec<f32>, JsError> {
    let isa = named_kernel(crate::nn::gemm::Q8x8Isa::available(), kernel, "q8x8")?;
    let packed = crate::nn::gemm::q8x8::PackedQ8x8::from_blocks(blocks, n, k).map_err(|e| JsError::new(&e.0))?;
    check_rows(x, m, k)?;
    Ok(packed.matmul_with(x, m, isa))
}

/// `x` quantised to q8_0 by the q8_0 × q8_0 GEMM's activation quantiser for
/// the kernel named `kernel` (one of [`q8x8_kernels`]; `q8x8::quantize_block`):
/// ggml's `block_q8_0` bytes, per 32 values the f16 scale and 32 int8. For
/// tests/browser/relaxed.test.mjs (a JavaScript `quantize_row_q8_0`, byte
/// for byte). Throws when `x` is not whole blocks, on a kernel this build
/// and engine lack, or when a block's returned sum (the GEMM's correction)
/// is not the sum of its values.
#[wasm_bindgen(js_name = q8x8QuantizeWith)]
pub fn q8x8_quantize_with(x: &[f32], kernel: &str) -> Result<Vec<u8>, JsError> {
    use crate::nn::gemm::q8::{BLOCK, BLOCK_BYTES};
    let isa = named_kernel(crate::nn::gemm::Q8x8Isa::available(), kernel, "q8x8")?;
    if !x.len().is_multiple_of(BLOCK) {
        return Err(JsError::new(&format!("x has {} values, not a multiple of {BLOCK}", x.len())));
    }
    let mut out = Vec::with_capacity(x.len() / BLOCK * BLOCK_BYTES);
    for (b, xb) in x.chunks_exact(BLOCK).enumerate() {
        let mut q = [0i8; BLOCK];
        let (d, sum) = crate::nn::gemm::q8x8::quantize_block(xb, &mut q, isa);
        if sum != q.iter().map(|&v| i32::from(v)).sum::<i32>() {
            return Err(JsError::new(&format!("block {b}: the sum {sum} is not the values' sum")));
        }
        out.extend(half::f16::from_f32(d).to_le_bytes());
        out.extend(q.map(|v| v as u8));
    }
    Ok(out)
}

/// Whether this engine's `i32x4.relaxed_dot_i8x16_i7x16_add_s` reads its
/// second operand as u8 and sums exactly (`nn::gemm::q8x8_relaxed::dot_reads_u8`;
/// false in the simd128 build).
#[wasm_bindgen(js_name = q8x8RelaxedDot)]
pub fn q8x8_relaxed_dot() -> bool {
    crate::nn::gemm::q8x8_relaxed::dot_reads_u8()
}

/// `y = x · Wᵀ` through the int8 GEMM for q4_K (`nn::gemm::q4`, the simd128
/// kernel): the weight `[n, k]` as ggml `block_q4_K` bytes; otherwise as
/// [`q8_gemm`].
#[wasm_bindgen(js_name = q4Gemm)]
pub fn q4_gemm(blocks: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Result<Vec<f32>, JsError> {
    let packed = crate::nn::gemm::q4::PackedQ4::from_blocks(blocks, n, k).map_err(|e| JsError::new(&e.0))?;
    check_rows(x, m, k)?;
    Ok(packed.matmul(x, m))
}

fn check_rows(x: &[f32], m: usize, k: usize) -> Result<(), JsError> {
    if m.checked_mul(k) != Some(x.len()) {
        return Err(JsError::new(&format!("x has {} values, expected m · k = {m} · {k}", x.len())));
    }
    Ok(())
}

/// `y = x · Wᵀ + b` through the f32 GEMM (`nn::gemm::f32`, the build's best
/// kernel): `x` is `[m, k]`, `w` `[n, k]`, `b` `[n]` or empty for none; returns
/// `[m, n]`. For `tests/browser/gemm.test.mjs` (wasm against the numpy
/// reference, bit for bit). Throws on mismatched sizes.
#[wasm_bindgen(js_name = f32Gemm)]
pub fn f32_gemm(w: &[f32], n: usize, k: usize, b: &[f32], x: &[f32], m: usize) -> Result<Vec<f32>, JsError> {
    let packed = crate::nn::gemm::f32::PackedF32::from_rows(w, n, k).map_err(|e| JsError::new(&e.0))?;
    check_rows(x, m, k)?;
    if !b.is_empty() && b.len() != n {
        return Err(JsError::new(&format!("b has {} values, expected n = {n}", b.len())));
    }
    Ok(packed.matmul(x, m, (!b.is_empty()).then_some(b)))
}

/// Whether this engine fuses `f32x4.relaxed_madd` (`nn::gemm::f32_relaxed::fuses`;
/// false in the simd128 build): which numpy reference the relaxed build's f32
/// GEMM equals (`y_fma` or `y`, tests/browser/relaxed.test.mjs).
#[wasm_bindgen(js_name = relaxedMaddFuses)]
pub fn relaxed_madd_fuses() -> bool {
    crate::nn::gemm::f32_relaxed::fuses()
}

/// The GEMM rates of `nn::gemm::rates` on `[m, k] × [n, k]ᵀ` in this wasm
/// instance, as JSON (`bench/wasm_gemm.mjs`; wall clock).
#[wasm_bindgen(js_name = gemmRates)]
pub fn gemm_rates(m: usize, k: usize, n: usize, runs: usize) -> Result<String, JsError> {
    let now = || js_sys::Date::now() / 1000.0;
    let rates = crate::nn::gemm::rates::measure(m, k, n, runs, &now).map_err(|e| JsError::new(&e.to_string()))?;
    serde_json::to_string(&rates).map_err(|e| JsError::new(&e.to_string()))
}

/// The fused attention (`nn::attention`) in this wasm instance: `q` `[batch,
/// q_len, heads · head_dim]`, `k` and `v` `[batch, k_len, …]`, `mask` additive
/// `[batch, q_len, k_len]` or empty for none, the scale `head_dim^-0.5`;
/// returns `[batch, q_len, heads · head_dim]`. For
/// `tests/browser/attention.test.mjs`. Throws on mismatched sizes.
#[wasm_bindgen(js_name = attention)]
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    batch: usize,
    heads: usize,
    head_dim: usize,
    q_len: usize,
    k_len: usize,
) -> Result<Vec<f32>, JsError> {
    use crate::nn::attention::{attend, Mask, Rows, Shape};
    let hidden = heads * head_dim;
    for (name, values, len) in [("q", q, q_len), ("k", k, k_len), ("v", v, k_len)] {
        if values.len() != batch * len * hidden {
            return Err(JsError::new(&format!("{name} has {} values, expected {batch} · {len} · {hidden}", values.len())));
        }
    }
    if !mask.is_empty() && mask.len() != batch * q_len * k_len {
        return Err(JsError::new(&format!("mask has {} values, expected {batch} · {q_len} · {k_len}", mask.len())));
    }
    let shape = Shape { batch, heads, head_dim, q_len, k_len };
    let rows = |values| Rows { values, stride: hidden, offset: 0 };
    let mask = (!mask.is_empty()).then_some(Mask { values: mask, batch_stride: q_len * k_len, row_stride: k_len });
    Ok(attend(rows(q), rows(k), rows(v), shape, (head_dim as f32).powf(-0.5), mask))
}

/// The layer norm (`nn::norm::layer_norm`) of the rows of `x`, each as long as
/// `gamma`. For `tests/browser/attention.test.mjs`. Throws on mismatched sizes.
#[wasm_bindgen(js_name = layerNorm)]
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Result<Vec<f32>, JsError> {
    if gamma.is_empty() || !x.len().is_multiple_of(gamma.len()) || beta.len() != gamma.len() {
        return Err(JsError::new(&format!("x {} values, gamma {}, beta {}: expected whole rows", x.len(), gamma.len(), beta.len())));
    }
    let mut y = vec![0f32; x.len()];
    crate::nn::norm::layer_norm(x, gamma, beta, eps, &mut y);
    Ok(y)
}

/// The MLP activation `name` (`quick_gelu`, `gelu`, `gelu_new`) of `x` twice:
/// as the GEMMs' fused epilogue applies it (`Activation::at_all`; in wasm,
/// quick_gelu with libm's `expf` in simd128), then as candle's tensor
/// operations do (the unfused path); returns both, `[2, x.len()]`. For
/// `tests/browser/gemm.test.mjs` (the same bits). Throws on an unknown name.
#[wasm_bindgen(js_name = activationTwice)]
pub fn activation_twice(name: &str, x: &[f32]) -> Result<Vec<f32>, JsError> {
    let activation: crate::nn::Activation =
        serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|e| JsError::new(&format!("activation {name:?}: {e}")))?;
    let mut fused = x.to_vec();
    activation.at_all(&mut fused);
    let tensor = candle_core::Tensor::from_slice(x, x.len(), &candle_core::Device::Cpu).map_err(|e| JsError::new(&e.to_string()))?;
    let candle = activation.apply(&tensor).and_then(|t| t.to_vec1::<f32>()).map_err(|e| JsError::new(&e.to_string()))?;
    fused.extend(candle);
    Ok(fused)
}
