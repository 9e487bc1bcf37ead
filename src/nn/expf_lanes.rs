//! libm's `expf` (FreeBSD's `e_expf.c`, as in the `libm` crate and in Rust's
//! wasm builds) over whole slices natively, written so that the compiler
//! vectorises it ([`super::lanes::vectorised`]: AVX-512 or AVX2 where the CPU
//! has it).
//! The fused epilogue's `quick_gelu` (`gemm::epilogue`) takes 7.3 million
//! `exp`s per ViT-B/16 image; one call to the platform's `expf` each cost
//! more than the patch embedding, the layer norms and the softmax together
//! (measured with `perf`, bench/README.md).
//!
//! The same operations in the same order as libm's main path (and as
//! `expf_simd128`, its wasm twin in intrinsics): `k` from `x · (1/ln 2) ± ½`
//! truncated (|x| > 1.5 ln 2), `±1` (|x| > ½ ln 2) or 0, `hi = x − k·ln2_hi`,
//! `lo = k·ln2_lo`, the rational approximation on `hi − lo`, then `y · 2ᵏ`
//! (one multiplication for `k` in the normal range). A group of lanes with
//! one value outside that path — |x| ≥ 87.34 (overflow, underflow, ±∞, NaN)
//! or |x| ≤ 2⁻¹⁴ (`1 + x`) — goes through `libm::expf` itself, value by
//! value. So every value has `libm::expf`'s bits, natively and in wasm alike.

use super::lanes;

// libm's constants, by their bits.
const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
const P1: f32 = f32::from_bits(0x3e2a_aa8f);
const P2: f32 = f32::from_bits(0xbb35_5215);

/// Values per group: one AVX-512 register, two AVX2 ones.
const GROUP: usize = 16;

/// Whether libm's `expf` leaves its main path at `x` (see the module doc).
#[inline(always)]
fn apart(x: f32) -> bool {
    let hx = x.to_bits() & 0x7fff_ffff;
    hx >= 0x42ae_ac50 || hx <= 0x3900_0000
}

/// libm's main path: `eˣ` for an `x` that is not [`apart`].
#[inline(always)]
fn exp_main(x: f32) -> f32 {
    let hx = x.to_bits() & 0x7fff_ffff;
    // 0 or −1 (all ones) by the sign bit.
    let negative = (x.to_bits() as i32) >> 31;
    let half = if negative != 0 { -0.5 } else { 0.5 };
    // SAFETY: |x| < 87.34 here (not `apart`), so this is finite and within
    // ±127: truncating it is what `as` does, without `as`'s saturation and
    // NaN checks, which keep the compiler from vectorising the conversion.
    let k_far = unsafe { (INV_LN2 * x + half).to_int_unchecked::<i32>() };
    let k_near = 1 + 2 * negative;
    let k = if hx > 0x3f85_1592 {
        k_far
    } else if hx > 0x3eb1_7218 {
        k_near
    } else {
        0
    };
    let kf = k as f32;
    let hi = x - kf * LN2_HI;
    let lo = kf * LN2_LO;
    let x = hi - lo;
    let xx = x * x;
    let c = x - xx * (P1 + xx * P2);
    let y = 1.0 + ((x * c / (2.0 - c) - lo) + hi);
    // 2ᵏ for |k| ≤ 126 (|x| < 87.34): a normal f32 from its exponent bits.
    y * f32::from_bits(((k + 0x7f) as u32) << 23)
}

/// `v · (e^(−1.702 v) + 1)⁻¹`, [`Activation::at`]'s `QuickGelu` with libm's `expf`.
#[inline(always)]
pub(crate) fn quick_gelu(v: f32) -> f32 {
    v * (libm::expf(-(v * 1.702f32)) + 1.0).recip()
}

lanes::vectorised! {
    /// [`quick_gelu`] of every value in place, [`GROUP`] at a time: the same bits.
    pub(crate) fn quick_gelu_all(values: &mut [f32]) {
        quick_gelu_inline(values)
    }
}

/// [`quick_gelu_all`] inlined into its caller, for a caller compiled for
/// the vector instruction set at hand (the GEMMs' epilogue: one dispatch per
/// tile instead of one per row).
#[inline(always)]
pub(crate) fn quick_gelu_inline(values: &mut [f32]) {
    let mut groups = values.chunks_exact_mut(GROUP);
    for g in &mut groups {
        let mut e = [0f32; GROUP];
        for (e, &v) in e.iter_mut().zip(g.iter()) {
            *e = -(v * 1.702f32);
        }
        if e.iter().fold(false, |any, &x| any | apart(x)) {
            g.iter_mut().for_each(|v| *v = quick_gelu(*v));
            continue;
        }
        for (v, &x) in g.iter_mut().zip(&e) {
            *v *= (exp_main(x) + 1.0).recip();
        }
    }
    groups.into_remainder().iter_mut().for_each(|v| *v = quick_gelu(*v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Activation;

    /// Every value's bits are `libm::expf`'s (the independent reference: the
    /// `libm` crate), across the whole main path, its edges and the values
    /// handled apart (1 in every 97 f32 bit patterns in [−100, 100], and
    /// every pattern near each threshold).
    #[test]
    fn quick_gelu_all_has_libms_bits() {
        let mut inputs: Vec<f32> = Vec::new();
        let mut bits = 0u32;
        while bits < 0x42c8_0000 {
            inputs.push(f32::from_bits(bits));
            inputs.push(-f32::from_bits(bits));
            bits += 97;
        }
        for edge in [0x3900_0000u32, 0x3eb1_7218, 0x3f85_1592, 0x42ae_ac50] {
            for b in edge - 64..edge + 64 {
                // quick_gelu's argument is −1.702 v: the v that land there.
                for x in [f32::from_bits(b), -f32::from_bits(b)] {
                    inputs.push(-x / 1.702);
                    inputs.push(x);
                }
            }
        }
        inputs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0, -0.0, f32::MAX, f32::MIN]);
        let want: Vec<f32> = inputs.iter().map(|&v| v * (libm::expf(-(v * 1.702f32)) + 1.0).recip()).collect();
        let mut got = inputs.clone();
        quick_gelu_all(&mut got);
        let bad: Vec<String> = inputs
            .iter()
            .zip(&got)
            .zip(&want)
            .filter(|((_, g), w)| g.to_bits() != w.to_bits() && !(g.is_nan() && w.is_nan()))
            .map(|((v, g), w)| format!("quick_gelu({v:e}) = {g:e}, libm gives {w:e}"))
            .collect();
        assert!(bad.is_empty(), "{} of {} differ: {:?}", bad.len(), inputs.len(), &bad[..bad.len().min(5)]);
        // And libm's exp itself, on the main path alone.
        for &x in inputs.iter().filter(|x| !apart(**x)) {
            assert_eq!(exp_main(x).to_bits(), libm::expf(x).to_bits(), "exp({x:e})");
        }
        assert_eq!(Activation::QuickGelu.at(1.5).to_bits(), quick_gelu(1.5).to_bits());
    }
}
