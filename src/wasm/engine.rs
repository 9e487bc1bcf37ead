//! The engine rules the worker applies, from Rust: the quantised-kernel choice
//! and the CPU–GPU agreement check on the probe image.

use wasm_bindgen::prelude::*;

/// How quantised layers compute: "int8x8" (q8_0 activations × q8_0 weights,
/// ggml's numbers; the default for q8_0 where the relaxed-SIMD build's probes
/// pass, `nn::gemm::q8x8_relaxed`), "int8" (our int8 GEMM for q8_0 and q4_K
/// layers, simd128; the default elsewhere), "dequantize" (each layer's weight
/// expanded to f32 for the call, then the f32 gemm) or "blocks" (candle's
/// block-by-block kernels). For benchmarks and tests
/// (`nn::linear::QuantKernel`); errors on any other name.
#[wasm_bindgen(js_name = setQuantKernel)]
pub fn set_quant_kernel(kernel: &str) -> Result<(), JsError> {
    let kernel = kernel.parse().map_err(|e: String| JsError::new(&e))?;
    crate::nn::linear::set_quant_kernel(kernel);
    Ok(())
}

/// The kernel of the quantised layers on this thread now (`setQuantKernel`'s
/// names): the wasm's default until set, which depends on the build and the
/// engine (`nn::linear::set_quant_kernel`). For benchmarks, to name what ran.
#[wasm_bindgen(js_name = quantKernel)]
pub fn quant_kernel() -> String {
    crate::nn::linear::quant_kernel().to_string()
}

/// How dense f32 layers compute: "packed" (default: our f32 GEMM, simd128)
/// or "candle" (candle's gemm). Set before loading: it decides how the
/// weights are held. For benchmarks and tests (`nn::linear::F32Kernel`).
#[wasm_bindgen(js_name = setF32Kernel)]
pub fn set_f32_kernel(kernel: &str) -> Result<(), JsError> {
    let kernel = kernel.parse().map_err(|e: String| JsError::new(&e))?;
    crate::nn::linear::set_f32_kernel(kernel);
    Ok(())
}

/// How attention computes: "fused" (default: our kernel, `nn::attention`) or
/// "candle" (candle's ops). Read at each forward pass. For benchmarks and
/// tests (`nn::attention::AttentionKernel`).
#[wasm_bindgen(js_name = setAttentionKernel)]
pub fn set_attention_kernel(kernel: &str) -> Result<(), JsError> {
    let kernel = kernel.parse().map_err(|e: String| JsError::new(&e))?;
    crate::nn::attention::set_attention_kernel(kernel);
    Ok(())
}

/// The cosine between the CPU's and the GPU's embedding of the probe image.
#[wasm_bindgen(js_name = probeCosine)]
pub fn probe_cosine(on_cpu: &[f32], on_gpu: &[f32]) -> f32 {
    on_cpu.iter().zip(on_gpu).map(|(a, b)| a * b).sum()
}

/// Whether the GPU agrees with the CPU closely enough to be used
/// (`engine::MIN_PROBE_COSINE`, the native rule).
#[wasm_bindgen(js_name = probeAccepts)]
pub fn probe_accepts(cosine: f32) -> bool {
    cosine >= crate::engine::MIN_PROBE_COSINE
}
