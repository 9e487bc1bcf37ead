//! libm's `expf` four lanes at a time in wasm simd128, with the same bits as
//! `f32::exp` in wasm (which is libm's `expf`: FreeBSD's `e_expf.c`, in
//! Rust's `compiler_builtins` and the `libm` crate). So the fused
//! epilogue's `quick_gelu` (`gemm::epilogue`) stays bit for bit candle's
//! unfused one, without a libm call per value (7.3 million per ViT-B/16 image).
//!
//! The same operations in the same order as the scalar code's main path: `k`
//! from `x · (1/ln 2) ± ½` truncated (|x| > 1.5 ln 2), `±1` (|x| > ½ ln 2) or
//! 0, `hi = x − k·ln2_hi`, `lo = k·ln2_lo`, the rational approximation on
//! `hi − lo`, then `y · 2ᵏ` (`scalbnf` with `k` in the normal range: one
//! multiplication). The lanes the scalar code treats apart — |x| ≥ 87.34
//! (overflow, underflow, ±∞, NaN) and |x| ≤ 2⁻¹⁴ (`1 + x`) — go through
//! `f32::exp` itself, all four lanes, when any lane has one.

use core::arch::wasm32::*;

use super::Activation;

// libm's constants, by their bits.
const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
const P1: f32 = f32::from_bits(0x3e2a_aa8f);
const P2: f32 = f32::from_bits(0xbb35_5215);

/// `eˣ` per lane, the bits of `f32::exp` (see the module doc).
#[target_feature(enable = "simd128")]
pub(crate) fn exp(x: v128) -> v128 {
    let hx = v128_and(x, u32x4_splat(0x7fff_ffff));
    let apart = v128_or(u32x4_ge(hx, u32x4_splat(0x42ae_ac50)), u32x4_le(hx, u32x4_splat(0x3900_0000)));
    if v128_any_true(apart) {
        let e = |v: f32| v.exp();
        return f32x4(
            e(f32x4_extract_lane::<0>(x)),
            e(f32x4_extract_lane::<1>(x)),
            e(f32x4_extract_lane::<2>(x)),
            e(f32x4_extract_lane::<3>(x)),
        );
    }
    // All ones where x < 0 (the sign bit).
    let negative = i32x4_shr(x, 31);
    let half = v128_bitselect(f32x4_splat(-0.5), f32x4_splat(0.5), negative);
    let k_far = i32x4_trunc_sat_f32x4(f32x4_add(f32x4_mul(f32x4_splat(INV_LN2), x), half));
    // 1 − 2·sign: −1 below zero, 1 above.
    let k_near = i32x4_add(i32x4_splat(1), i32x4_add(negative, negative));
    let k = v128_bitselect(
        k_far,
        v128_and(k_near, u32x4_gt(hx, u32x4_splat(0x3eb1_7218))),
        u32x4_gt(hx, u32x4_splat(0x3f85_1592)),
    );
    let kf = f32x4_convert_i32x4(k);
    let hi = f32x4_sub(x, f32x4_mul(kf, f32x4_splat(LN2_HI)));
    let lo = f32x4_mul(kf, f32x4_splat(LN2_LO));
    let x = f32x4_sub(hi, lo);
    let xx = f32x4_mul(x, x);
    let c = f32x4_sub(x, f32x4_mul(xx, f32x4_add(f32x4_splat(P1), f32x4_mul(xx, f32x4_splat(P2)))));
    let q = f32x4_div(f32x4_mul(x, c), f32x4_sub(f32x4_splat(2.0), c));
    let y = f32x4_add(f32x4_splat(1.0), f32x4_add(f32x4_sub(q, lo), hi));
    // 2ᵏ for |k| ≤ 126 (|x| < 87.34): a normal f32 built from its exponent bits.
    let scale = i32x4_shl(i32x4_add(k, i32x4_splat(0x7f)), 23);
    f32x4_mul(y, scale)
}

/// `x · sigmoid(1.702 x)` per lane, bit for bit [`super::Activation::at`]'s
/// `QuickGelu` (`v · (e^(−1.702 v) + 1)⁻¹`).
#[target_feature(enable = "simd128")]
pub(crate) fn quick_gelu(v: v128) -> v128 {
    let e = exp(f32x4_neg(f32x4_mul(v, f32x4_splat(1.702))));
    f32x4_mul(v, f32x4_div(f32x4_splat(1.0), f32x4_add(e, f32x4_splat(1.0))))
}

/// [`Activation::at`]`(QuickGelu)` of every value in place, four at a time
/// (the last `len % 4` one by one): the same bits.
///
/// # Safety
/// The engine must have simd128 (a requirement of the wasm build).
#[target_feature(enable = "simd128")]
pub(crate) unsafe fn quick_gelu_all(values: &mut [f32]) {
    let mut chunks = values.chunks_exact_mut(4);
    for c in &mut chunks {
        let p = c.as_mut_ptr() as *mut v128;
        // SAFETY: `c` is 4 f32 = 16 bytes (v128_load/store take any alignment).
        unsafe { v128_store(p, quick_gelu(v128_load(p))) };
    }
    for v in chunks.into_remainder() {
        *v = Activation::QuickGelu.at(*v);
    }
}
