//! Dequantisation and the inverse DCT of one 8×8 block, bit-exact to
//! libjpeg-turbo's default `JDCT_ISLOW` (jidctint.c `jpeg_idct_islow`: the
//! Loeffler–Ligtenberg–Moschytz integer algorithm, 13-bit constants, two extra
//! bits between the passes), with its output range limit (jdmaster.c
//! `prepare_range_limit_table`: values wrap modulo 1024 before clamping, so
//! out-of-range garbage decodes as libjpeg decodes it). Pillow decodes with it.
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

use std::num::Wrapping;

/// libjpeg's `JLONG` arithmetic; wrapping never happens for 8-bit data (16-bit
/// coefficients times 16-bit quantisers times 15-bit constants fit in 64 bits).
type V = Wrapping<i64>;

const FIX_0_298631336: V = Wrapping(2446);
const FIX_0_390180644: V = Wrapping(3196);
const FIX_0_541196100: V = Wrapping(4433);
const FIX_0_765366865: V = Wrapping(6270);
const FIX_0_899976223: V = Wrapping(7373);
const FIX_1_175875602: V = Wrapping(9633);
const FIX_1_501321110: V = Wrapping(12299);
const FIX_1_847759065: V = Wrapping(15137);
const FIX_1_961570560: V = Wrapping(16069);
const FIX_2_053119869: V = Wrapping(16819);
const FIX_2_562915447: V = Wrapping(20995);
const FIX_3_072711026: V = Wrapping(25172);

/// CONST_BITS = 13.
const CONST_BITS: usize = 13;

/// The 8-point 1-D IDCT of jidctint.c before its final descaling: outputs 0 to 7
/// scaled by 2^CONST_BITS (both passes share it; pass 1's inputs are the
/// dequantised coefficients, pass 2's the work array).
fn butterfly(x: [V; 8]) -> [V; 8] {
    // Even part: the rotator is sqrt(2)·c(−6).
    let (z2, z3) = (x[2], x[6]);
    let z1 = (z2 + z3) * FIX_0_541196100;
    let tmp2 = z1 - z3 * FIX_1_847759065;
    let tmp3 = z1 + z2 * FIX_0_765366865;
    let tmp0 = (x[0] + x[4]) << CONST_BITS;
    let tmp1 = (x[0] - x[4]) << CONST_BITS;
    let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
    let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
    // Odd part (figure 8 of the paper); i0..i3 are y7, y5, y3, y1.
    let (t0, t1, t2, t3) = (x[7], x[5], x[3], x[1]);
    let z1 = t0 + t3;
    let z2 = t1 + t2;
    let z3 = t0 + t2;
    let z4 = t1 + t3;
    let z5 = (z3 + z4) * FIX_1_175875602;
    let t0 = t0 * FIX_0_298631336;
    let t1 = t1 * FIX_2_053119869;
    let t2 = t2 * FIX_3_072711026;
    let t3 = t3 * FIX_1_501321110;
    let z1 = -(z1 * FIX_0_899976223);
    let z2 = -(z2 * FIX_2_562915447);
    let z3 = -(z3 * FIX_1_961570560) + z5;
    let z4 = -(z4 * FIX_0_390180644) + z5;
    let t0 = t0 + z1 + z3;
    let t1 = t1 + z2 + z4;
    let t2 = t2 + z2 + z3;
    let t3 = t3 + z1 + z4;
    [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]
}

/// `DESCALE(x, n)`: a right shift rounding half up.
fn descale<const N: usize>(x: V, half: i64) -> V {
    (x + Wrapping(half)) >> N
}

/// jdmaster.c's post-IDCT range-limit table (`prepare_range_limit_table`),
/// indexed by `x & 1023`: −128..127 map to 0..255, then 255 up to 383, then 0,
/// then the wrapped negative values again.
fn range_limit(x: V) -> u8 {
    let i = x.0 & 1023;
    let v = match i {
        0..=127 => i | 128,
        128..=511 => 255,
        512..=895 => 0,
        _ => i & 127,
    };
    u8::try_from(v).unwrap_or(0)
}

/// Dequantises `coef` (natural order) with `quant` (natural order) and writes the
/// 8×8 samples to `out`: row `r` at `out[r * stride ..][..8]` (rows or columns
/// that do not fit are skipped).
pub fn idct_islow(coef: &[i16; 64], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    let mut ws = [Wrapping(0i64); 64];
    // Pass 1: columns, into the work array scaled by 2^PASS1_BITS (= 4).
    for col in 0..8 {
        let mut x = [Wrapping(0i64); 8];
        let mut ac = false;
        for (row, xv) in x.iter_mut().enumerate() {
            let at = row.wrapping_mul(8).wrapping_add(col);
            let c = i64::from(coef.get(at).copied().unwrap_or(0));
            let q = i64::from(quant.get(at).copied().unwrap_or(0));
            *xv = Wrapping(c) * Wrapping(q);
            ac |= row > 0 && c != 0;
        }
        let y = if ac {
            butterfly(x).map(|v| descale::<11>(v, 1 << 10))
        } else {
            // All AC terms zero: every output is the DC term (the same values
            // the full computation gives; jidctint.c takes this shortcut).
            [x[0] << 2; 8]
        };
        for (row, v) in y.into_iter().enumerate() {
            if let Some(w) = ws.get_mut(row.wrapping_mul(8).wrapping_add(col)) {
                *w = v;
            }
        }
    }
    // Pass 2: rows, descaled by 2^(CONST_BITS + PASS1_BITS + 3) and range-limited.
    for (row, out_row) in ws.as_chunks::<8>().0.iter().zip(out.chunks_mut(stride.max(1))) {
        let y = if row.iter().skip(1).all(|v| v.0 == 0) {
            [descale::<5>(row[0], 1 << 4); 8]
        } else {
            butterfly(*row).map(|v| descale::<18>(v, 1 << 17))
        };
        for (o, v) in out_row.iter_mut().zip(y) {
            *o = range_limit(v);
        }
    }
}
