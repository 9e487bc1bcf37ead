//! Row operations written once for every target: sums, maxima and `exp` over
//! a fixed structure of [`LANES`] partial results, so that the compiler
//! vectorises them (AVX-512 or AVX2 natively, chosen at run time; simd128 in wasm; SSE2
//! or scalar otherwise) and every build gives the same bits: only IEEE
//! additions, multiplications, divisions and integer operations, in the same
//! order per lane, never a fused multiply-add (Rust does not contract them).
//! Used by the fused attention's softmax ([`super::attention`]) and the layer
//! norm ([`super::norm`]).

/// Partial sums per row: two AVX2 registers, four simd128 ones.
pub const LANES: usize = 16;

/// Defines `$vis fn $name(args) -> ret` running `$body` compiled for the best
/// vector instruction set of the machine: AVX-512 (F, BW, DQ, VL) natively
/// when the CPU has it, else AVX2 (detected at run time; the detection is
/// cached by std; one [`LANES`] group is one 512-bit register), simd128 in wasm,
/// the target's baseline otherwise. The body must call only `#[inline(always)]`
/// helpers (so they are compiled with those features too).
macro_rules! vectorised {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: AVX-512 F/BW/DQ/VL are present (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 is present (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            #[cfg(target_arch = "wasm32")]
            {
                #[target_feature(enable = "simd128")]
                unsafe fn simd128($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                // SAFETY: simd128 is a requirement of the wasm build (every
                // supported browser and Node ≥ 16 has it).
                return unsafe { simd128($($arg),*) };
            }
            #[allow(unreachable_code)]
            body($($arg),*)
        }
    };
}
pub(crate) use vectorised;

/// `Σ v` in a fixed order: value `i` into partial sum `i mod 16`, then the
/// partial sums halved pairwise (8 + 8, 4 + 4, 2 + 2, 1 + 1).
#[inline(always)]
pub fn sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    for (a, &x) in acc.iter_mut().zip(tail) {
        *a += x;
    }
    fold(acc, |a, b| a + b)
}

/// `Σ (v − c)²` in [`sum`]'s order.
#[inline(always)]
pub fn sum_squared_deviations(v: &[f32], c: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for ch in chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            let d = x - c;
            *a += d * d;
        }
    }
    for (a, &x) in acc.iter_mut().zip(tail) {
        let d = x - c;
        *a += d * d;
    }
    fold(acc, |a, b| a + b)
}

/// The largest value (−∞ for an empty slice; a NaN is skipped, as `f32::max`
/// skips it).
#[inline(always)]
pub fn max(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = max_skipping_nan(*a, x);
        }
    }
    for (a, &x) in acc.iter_mut().zip(tail) {
        *a = max_skipping_nan(*a, x);
    }
    fold(acc, max_skipping_nan)
}

/// `f32::max(a, x)` for an `a` that is not NaN, as a compare and select: wasm's
/// `f32.max` propagates NaN, so `f32::max` is a libm call there (`fmaxf`, one
/// per value), where this is one `f32x4.pmax` per four.
#[inline(always)]
pub fn max_skipping_nan(a: f32, x: f32) -> f32 {
    if a < x {
        x
    } else {
        a
    }
}

#[inline(always)]
fn fold(mut acc: [f32; LANES], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] = op(acc[i], acc[i + width]);
        }
        width /= 2;
    }
    acc[0]
}

/// Below this `exp` is 0 here (`exp(-87.34)` is the smallest normal f32).
const EXP_MIN: f32 = -87.336_54;
/// Keeps `n` ≤ 127 (a finite 2ⁿ).
const EXP_MAX: f32 = 88.0;
/// 1.5 · 2²³: adding it rounds an f32 below 2²² to an integer, which is
/// then the low bits of the sum (round to nearest even).
const ROUND: f32 = 12_582_912.0;

/// `eˣ` within about 2 ulp (Cephes' `expf`: `x = n·ln 2 + r`, |r| ≤ ln 2 / 2,
/// a degree-6 polynomial for `eʳ`, `2ⁿ` built in the exponent bits), 0 below
/// −87.34 (where `eˣ` leaves the normal range), `x` clamped to 88 above.
/// Only basic IEEE operations, so the same bits on every target.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, the first exact in few bits, so n · LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let underflow = x < EXP_MIN;
    let x = x.clamp(EXP_MIN, EXP_MAX);
    let rounded = x * LOG2E + ROUND;
    let n = rounded - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    let n = (rounded.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits(((n + 127) as u32) << 23);
    if underflow {
        0.0
    } else {
        y * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_2_ulp_of_f64() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5 * f32::EPSILON as f64, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-88.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
    }

    #[test]
    fn sums_follow_the_lane_order() {
        let v: Vec<f32> = (0..37).map(|i| (i as f32 * 0.71).sin() * 10f32.powi(i % 7 - 3)).collect();
        let mut acc = [0f32; LANES];
        for (i, x) in v.iter().enumerate() {
            acc[i % LANES] += x;
        }
        let want = fold(acc, |a, b| a + b);
        assert_eq!(sum(&v).to_bits(), want.to_bits());
        let exact: f64 = v.iter().map(|&x| x as f64).sum();
        let magnitude: f64 = v.iter().map(|&x| (x as f64).abs()).sum();
        assert!((sum(&v) as f64 - exact).abs() < 1e-6 * magnitude);
        assert_eq!(max(&v), v.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        let mut with_nan = v.clone();
        with_nan[3] = f32::NAN;
        with_nan[20] = f32::NAN;
        assert_eq!(max(&with_nan), with_nan.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        let mean = sum(&v) / v.len() as f32;
        let exact: f64 = v.iter().map(|&x| ((x - mean) as f64).powi(2)).sum();
        assert!((sum_squared_deviations(&v, mean) as f64 - exact).abs() < 1e-3 * exact);
    }
}
