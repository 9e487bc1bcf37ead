//! Coding parameters of a JPEG-LS scan: the thresholds and reset value (given
//! by an LSE preset-parameters segment, or the defaults of ITU-T T.87
//! C.2.4.1.1) and the values derived from them (T.87 A.2.1).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::cast_possible_truncation
)]

use super::JResult;

/// The values of an LSE preset coding parameters segment (id 1); 0 means the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preset {
    pub maxval: u16,
    pub t1: u16,
    pub t2: u16,
    pub t3: u16,
    pub reset: u16,
}

/// Everything the scan decoder needs, all within the ranges T.87 allows.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// MAXVAL as the samples are coded: 2^P - 1 (see `Params::new`).
    pub maxval: i32,
    /// NEAR: 0 (lossless) to min(255, MAXVAL / 2).
    pub near: i32,
    pub t1: i32,
    pub t2: i32,
    pub t3: i32,
    pub reset: i64,
    /// RANGE = (MAXVAL + 2 NEAR) / (2 NEAR + 1) + 1.
    pub range: i32,
    /// qbpp = ceil(log2 RANGE).
    pub qbpp: u32,
    /// LIMIT = 2 (bpp + max(8, bpp)), bpp = max(2, ceil(log2(MAXVAL + 1))).
    pub limit: u32,
}

/// ceil(log2(v)) for v >= 1.
fn ceil_log2(v: u32) -> u32 {
    u32::BITS.saturating_sub(v.saturating_sub(1).leading_zeros())
}

/// T.87 C.2.4.1.1: `i` unless it is above MAXVAL or below `j`, then `j`.
fn clamp(i: i32, j: i32, maxval: i32) -> i32 {
    if i > maxval || i < j {
        j
    } else {
        i
    }
}

/// The default thresholds (T1, T2, T3) of T.87 C.2.4.1.1 for MAXVAL and NEAR.
/// Every intermediate value is below 2^24.
pub fn default_thresholds(maxval: i32, near: i32) -> (i32, i32, i32) {
    // BASIC_T1, BASIC_T2, BASIC_T3; above MAXVAL 127 the code uses BASIC_Ti - 2, - 3, - 4 (1, 4, 17).
    const BASIC: (i32, i32, i32) = (3, 7, 21);
    let n3 = near.saturating_mul(3);
    let n5 = near.saturating_mul(5);
    let n7 = near.saturating_mul(7);
    if maxval >= 128 {
        let factor = maxval.min(4095).saturating_add(128) / 256;
        let t1 = clamp(factor.saturating_add(2).saturating_add(n3), near.saturating_add(1), maxval);
        let t2 = clamp(factor.saturating_mul(4).saturating_add(3).saturating_add(n5), t1, maxval);
        let t3 = clamp(factor.saturating_mul(17).saturating_add(4).saturating_add(n7), t2, maxval);
        (t1, t2, t3)
    } else {
        // maxval >= 1: factor is 2 to 128.
        let factor = 256i32.checked_div(maxval.saturating_add(1)).unwrap_or(1).max(1);
        let t1 =
            clamp(BASIC.0.checked_div(factor).unwrap_or(0).saturating_add(n3).max(2), near.saturating_add(1), maxval);
        let t2 = clamp(BASIC.1.checked_div(factor).unwrap_or(0).saturating_add(n5).max(3), t1, maxval);
        let t3 = clamp(BASIC.2.checked_div(factor).unwrap_or(0).saturating_add(n7).max(4), t2, maxval);
        (t1, t2, t3)
    }
}

impl Params {
    /// The parameters of a scan of `precision`-bit samples (2 to 16) with the
    /// given NEAR and preset values, checked as CharLS checks them (T.87
    /// C.2.4.1.1: T1 in NEAR+1..=MAXVAL, T2 in T1..=MAXVAL, T3 in T2..=MAXVAL,
    /// RESET in 3..=max(255, MAXVAL); a 0 takes the default).
    pub fn new(precision: u8, near: u8, preset: &Preset) -> JResult<Self> {
        if !(2..=16).contains(&precision) {
            return Err(format!("JPEG-LS sample precision {precision} is not supported (2 to 16 bits)"));
        }
        let top = (1i32 << precision).saturating_sub(1);
        // A preset MAXVAL bounds the thresholds and sets their defaults (T.87
        // C.2.4.1.1), but the samples are coded with MAXVAL = 2^P - 1 (RANGE,
        // LIMIT, the modular reduction): CharLS encodes and decodes so, whatever
        // the LSE segment says, and pydicom and the archives that use CharLS follow.
        let preset_maxval = if preset.maxval == 0 { top } else { i32::from(preset.maxval) };
        if preset_maxval > top {
            return Err(format!("the JPEG-LS MAXVAL {preset_maxval} is above the {precision}-bit range"));
        }
        let near = i32::from(near);
        if near > (top / 2).min(255) {
            return Err(format!("the JPEG-LS NEAR value {near} is above min(255, MAXVAL / 2) for MAXVAL {top}"));
        }
        let (d1, d2, d3) = default_thresholds(preset_maxval, near);
        let maxval = preset_maxval;
        let invalid = |what: &str, v: u16| format!("the JPEG-LS preset {what} {v} is out of range");
        let t1 = match i32::from(preset.t1) {
            0 => d1,
            v if v < near.saturating_add(1) || v > maxval => return Err(invalid("T1", preset.t1)),
            v => v,
        };
        let t2 = match i32::from(preset.t2) {
            0 => d2,
            v if v < t1 || v > maxval => return Err(invalid("T2", preset.t2)),
            v => v,
        };
        let t3 = match i32::from(preset.t3) {
            0 => d3,
            v if v < t2 || v > maxval => return Err(invalid("T3", preset.t3)),
            v => v,
        };
        let reset = match i32::from(preset.reset) {
            0 => 64,
            v if v < 3 || v > maxval.max(255) => return Err(invalid("RESET", preset.reset)),
            v => v,
        };
        let maxval = top;
        // near <= 255 and maxval <= 65535: no overflow; the divisor is at least 1.
        let step = near.saturating_mul(2).saturating_add(1);
        let range = maxval.saturating_add(near.saturating_mul(2)).checked_div(step).unwrap_or(0).saturating_add(1);
        let qbpp = ceil_log2(u32::try_from(range).unwrap_or(1));
        let bpp = ceil_log2(u32::try_from(maxval).unwrap_or(1).saturating_add(1)).max(2);
        let limit = bpp.saturating_add(bpp.max(8)).saturating_mul(2);
        Ok(Self { maxval, near, t1, t2, t3, reset: i64::from(reset), range, qbpp, limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_t87() {
        // T.87 C.2.4.1.1.1: 8 bits lossless gives 3, 7, 21; 16 bits gives 18, 67, 276
        // (FACTOR = (4095 + 128) / 256 = 16).
        assert_eq!(default_thresholds(255, 0), (3, 7, 21));
        assert_eq!(default_thresholds(4095, 0), (18, 67, 276));
        assert_eq!(default_thresholds(65535, 0), (18, 67, 276));
        // Below 128: FACTOR = 256 / (MAXVAL + 1); MAXVAL 3 gives the minimums 2, 3, 4.
        assert_eq!(default_thresholds(3, 0), (2, 3, 3));
        assert_eq!(default_thresholds(31, 0), (2, 3, 4));
        let p = Params::new(8, 0, &Preset::default()).unwrap();
        assert_eq!((p.range, p.qbpp, p.limit, p.reset), (256, 8, 32, 64));
        let p = Params::new(12, 3, &Preset::default()).unwrap();
        // T.87 A.2.1: RANGE = floor((4095 + 2·3) / (2·3 + 1)) + 1 = 585 + 1; qbpp = 10; bpp = 12, LIMIT = 48.
        assert_eq!((p.range, p.qbpp, p.limit), (586, 10, 48));
        assert!(Params::new(8, 128, &Preset::default()).is_err());
        assert!(Params::new(8, 0, &Preset { t1: 9, t2: 8, ..Preset::default() }).is_err());
    }
}
