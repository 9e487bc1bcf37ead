//! The f32 GEMM's step in the relaxed-SIMD build (pkg/relaxed/, pkg/threads-relaxed/:
//! the crate compiled with `-C target-feature=+relaxed-simd`).
//!
//! `f32x4.relaxed_madd(a, b, c)` is `a·b + c` rounded once (a fused multiply-add)
//! or twice (multiply, then add), as the engine chooses (WebAssembly relaxed SIMD,
//! "relaxed_madd"); V8 emits one `vfmadd` where the CPU has FMA, else `mulps` +
//! `addps`, the same for every instruction of the module. Each output of the GEMM
//! stays one chain over k in order, so the result is bit for bit one of the two
//! algorithms of tests/reference/f32_gemm.py: `y_fma` (that of the native FMA
//! kernels, AVX2 and AVX-512) when [`fuses`], else `y` (that of the simd128 kernel).

#[cfg(target_arch = "wasm32")]
use core::arch::wasm32::*;

/// One step of an accumulator chain: `c + a·w`, as `f32x4.relaxed_madd` when
/// `RELAXED` (the relaxed build only; never otherwise), else `f32x4.mul` then `add`.
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
#[inline]
pub(super) fn madd<const RELAXED: bool>(a: v128, w: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    if RELAXED {
        return f32x4_relaxed_madd(a, w, c);
    }
    f32x4_add(c, f32x4_mul(a, w))
}

/// Whether this engine's `f32x4.relaxed_madd` rounds once (is fused): `a·a − 1`
/// for `a = 1 + 2⁻¹²` is `2⁻¹¹ + 2⁻²⁴` exactly when fused, `2⁻¹¹` when the
/// product is rounded first (its `2⁻²⁴` is half an ulp of 1, a tie to even).
/// False in builds without relaxed SIMD (their kernels never fuse in wasm).
pub fn fuses() -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    {
        let a = f32x4_splat(std::hint::black_box(1.0 + 1.0 / 4096.0));
        let r = f32x4_relaxed_madd(a, a, f32x4_splat(std::hint::black_box(-1.0)));
        return f32x4_extract_lane::<0>(r) != 1.0 / 2048.0;
    }
    #[allow(unreachable_code)]
    false
}
