//! `exp` and `ln` in plain Rust (after fdlibm, < 1 ulp). `f64::exp` calls the
//! platform's libm, which differs between glibc, macOS and the wasm32 build; using our
//! own keeps every transcendental bit-identical natively and in the browser, so the
//! learning-rate halvings (decided by comparing nearly equal gradient norms) cannot
//! diverge between targets.

// The literals are fdlibm's, digit for digit; keeping them verbatim makes the port checkable.
#![allow(clippy::excessive_precision, clippy::approx_constant)]

const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
const INV_LN2: f64 = 1.442_695_040_888_963_387_00e+00;

/// e^x.
pub fn exp(x: f64) -> f64 {
    const O_THRESHOLD: f64 = 7.097_827_128_933_839_730_96e+02;
    const U_THRESHOLD: f64 = -7.451_332_191_019_411_084_20e+02;
    const P1: f64 = 1.666_666_666_666_660_190_37e-01;
    const P2: f64 = -2.777_777_777_701_559_338_42e-03;
    const P3: f64 = 6.613_756_321_437_934_361_17e-05;
    const P4: f64 = -1.653_390_220_546_525_153_90e-06;
    const P5: f64 = 4.138_136_797_057_238_460_39e-08;

    if x.is_nan() {
        return x;
    }
    if x > O_THRESHOLD {
        return f64::INFINITY;
    }
    if x < U_THRESHOLD {
        return 0.0;
    }
    let ax = x.abs();
    let (hi, lo, k): (f64, f64, i32);
    let r;
    if ax > 0.5 * core::f64::consts::LN_2 {
        if ax < 1.5 * core::f64::consts::LN_2 {
            let s = if x < 0.0 { -1.0 } else { 1.0 };
            hi = x - s * LN2_HI;
            lo = s * LN2_LO;
            k = s as i32;
        } else {
            let kf = (INV_LN2 * x + if x < 0.0 { -0.5 } else { 0.5 }).trunc();
            k = kf as i32;
            hi = x - kf * LN2_HI;
            lo = kf * LN2_LO;
        }
        r = hi - lo;
    } else if ax < 3.725_290_298_461_914e-9 {
        // 2^-28: the polynomial would only add rounding noise.
        return 1.0 + x;
    } else {
        hi = 0.0;
        lo = 0.0;
        k = 0;
        r = x;
    }
    let t = r * r;
    let c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    if k == 0 {
        return 1.0 - ((r * c) / (c - 2.0) - r);
    }
    let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    scale_by_pow2(y, k)
}

/// y · 2^k for the k that `exp` can produce (-1075..=1024), in two exact steps when
/// 2^k alone is not a normal number.
fn scale_by_pow2(y: f64, k: i32) -> f64 {
    let pow2 = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
    if k > 1023 {
        y * pow2(1023) * pow2(k - 1023)
    } else if k < -1021 {
        y * pow2(k + 1000) * pow2(-1000)
    } else {
        y * pow2(k)
    }
}

/// Natural logarithm; ln(0) = -inf, ln(x < 0) = NaN.
pub fn ln(x: f64) -> f64 {
    const TWO54: f64 = 1.801_439_850_948_198_400_00e+16;
    const LG1: f64 = 6.666_666_666_666_735_130e-01;
    const LG2: f64 = 3.999_999_999_940_941_908e-01;
    const LG3: f64 = 2.857_142_874_366_239_149e-01;
    const LG4: f64 = 2.222_219_843_214_978_396e-01;
    const LG5: f64 = 1.818_357_216_161_805_012e-01;
    const LG6: f64 = 1.531_383_769_920_937_332e-01;
    const LG7: f64 = 1.479_819_860_511_658_591e-01;

    let mut x = x;
    let mut bits = x.to_bits();
    let mut hx = (bits >> 32) as i32;
    let lx = bits as u32;
    let mut k: i32 = 0;
    if hx < 0x0010_0000 {
        if ((hx & 0x7fff_ffff) as u32 | lx) == 0 {
            return f64::NEG_INFINITY;
        }
        if hx < 0 {
            return f64::NAN;
        }
        // Subnormal: scale up so the exponent field is meaningful.
        k -= 54;
        x *= TWO54;
        bits = x.to_bits();
        hx = (bits >> 32) as i32;
    }
    if hx >= 0x7ff0_0000 {
        return x + x;
    }
    k += (hx >> 20) - 1023;
    hx &= 0x000f_ffff;
    let i = (hx + 0x95f64) & 0x0010_0000;
    // Normalise x into [sqrt(2)/2, sqrt(2)).
    let new_hi = (hx | (i ^ 0x3ff0_0000)) as u32 as u64;
    x = f64::from_bits((new_hi << 32) | (bits & 0xffff_ffff));
    k += i >> 20;
    let f = x - 1.0;
    let dk = k as f64;
    if (0x000f_ffff & (2 + hx)) < 3 {
        if f == 0.0 {
            return if k == 0 {
                0.0
            } else {
                dk * LN2_HI + dk * LN2_LO
            };
        }
        let r = f * f * (0.5 - 0.333_333_333_333_333_33 * f);
        return if k == 0 {
            f - r
        } else {
            dk * LN2_HI - ((r - dk * LN2_LO) - f)
        };
    }
    let s = f / (2.0 + f);
    let z = s * s;
    let mut i = hx - 0x6147a;
    let w = z * z;
    let j = 0x6b851 - hx;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    i |= j;
    let r = t2 + t1;
    if i > 0 {
        let hfsq = 0.5 * f * f;
        if k == 0 {
            f - (hfsq - s * (hfsq + r))
        } else {
            dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f)
        }
    } else if k == 0 {
        f - s * (f - r)
    } else {
        dk * LN2_HI - ((s * (f - r) - dk * LN2_LO) - f)
    }
}

/// x^y for x > 0, as exp(y ln x) (only used for the class-marginal exponent gamma).
pub fn powf(x: f64, y: f64) -> f64 {
    if y == 0.0 {
        return 1.0;
    }
    exp(y * ln(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn exp_matches_std_within_one_ulp() {
        let mut v = -745.0;
        while v < 709.7 {
            let (a, b) = (exp(v), v.exp());
            assert!(
                ulps(a, b) <= 1 || (a - b).abs() <= f64::MIN_POSITIVE,
                "exp({v}) = {a} vs {b}"
            );
            v += 0.0137;
        }
        for &v in &[
            0.0, 1e-12, -1e-12, 0.3, -0.3, 0.5, 1.0, -1.0, 2.0, 700.0, -700.0,
        ] {
            assert!(ulps(exp(v), v.exp()) <= 1, "exp({v})");
        }
        assert_eq!(exp(1000.0), f64::INFINITY);
        assert_eq!(exp(-1000.0), 0.0);
        assert!(exp(f64::NAN).is_nan());
    }

    #[test]
    fn ln_matches_std_within_one_ulp() {
        let mut v = 1e-300;
        while v < 1e300 {
            assert!(
                ulps(ln(v), v.ln()) <= 1,
                "ln({v}) = {} vs {}",
                ln(v),
                v.ln()
            );
            v *= 1.0173;
        }
        let mut v = 0.5;
        while v < 2.0 {
            assert!(ulps(ln(v), v.ln()) <= 1, "ln({v})");
            v += 0.000_731;
        }
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert!(ln(-1.0).is_nan());
        assert!(ulps(ln(5e-324), (5e-324f64).ln()) <= 1);
    }
}
