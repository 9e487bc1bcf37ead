//! Colour conversion of full-size component planes to interleaved 8-bit RGB:
//! - YCbCr → RGB with libjpeg-turbo's fixed-point tables (jdcolor.c
//!   `build_ycc_rgb_table` / `ycc_rgb_convert`: 16 fraction bits, ONE_HALF
//!   rounding, clamped through `range_limit`);
//! - YCCK → CMYK (jdcolor.c `ycck_cmyk_convert`: the same tables, inverted);
//! - CMYK → RGB as Pillow does it after libjpeg: Pillow reads JPEG CMYK as
//!   Adobe-inverted ("CMYK;I", JpegImagePlugin.py; Unpack.c inverts) and
//!   `convert("RGB")` uses Convert.c `cmyk2rgb` (`MULDIV255`).
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

type W = Wrapping<i32>;

/// jdcolor.c's conversion tables, indexed by the chroma sample.
pub struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    /// Scaled by 2^16; `cb_g` includes ONE_HALF.
    cr_g: [i32; 256],
    cb_g: [i32; 256],
}

const SCALEBITS: usize = 16;
const ONE_HALF: i32 = 1 << 15;
/// FIX(x) = (x · 2^16 + 0.5) truncated.
const FIX_1_40200: i32 = 91881;
const FIX_1_77200: i32 = 116130;
const FIX_0_71414: i32 = 46802;
const FIX_0_34414: i32 = 22554;

impl YccTables {
    pub fn new() -> Self {
        let mut t = Self { cr_r: [0; 256], cb_b: [0; 256], cr_g: [0; 256], cb_g: [0; 256] };
        let rows = t.cr_r.iter_mut().zip(t.cb_b.iter_mut()).zip(t.cr_g.iter_mut().zip(t.cb_g.iter_mut()));
        for (x, ((cr_r, cb_b), (cr_g, cb_g))) in (-128i32..).zip(rows) {
            let x = Wrapping(x);
            *cr_r = ((Wrapping(FIX_1_40200) * x + Wrapping(ONE_HALF)) >> SCALEBITS).0;
            *cb_b = ((Wrapping(FIX_1_77200) * x + Wrapping(ONE_HALF)) >> SCALEBITS).0;
            *cr_g = (-Wrapping(FIX_0_71414) * x).0;
            *cb_g = (-Wrapping(FIX_0_34414) * x + Wrapping(ONE_HALF)).0;
        }
        t
    }

    /// The (R, G, B) of one sample, each before clamping.
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> (W, W, W) {
        let (cb, cr) = (usize::from(cb), usize::from(cr));
        let y = Wrapping(i32::from(y));
        let get = |t: &[i32; 256], i: usize| Wrapping(t.get(i).copied().unwrap_or(0));
        let r = y + get(&self.cr_r, cr);
        let g = y + ((get(&self.cb_g, cb) + get(&self.cr_g, cr)) >> SCALEBITS);
        let b = y + get(&self.cb_b, cb);
        (r, g, b)
    }
}

impl Default for YccTables {
    fn default() -> Self {
        Self::new()
    }
}

/// jdmaster.c's `sample_range_limit`: a clamp to 0..=255.
fn clamp(v: W) -> u8 {
    u8::try_from(v.0.clamp(0, 255)).unwrap_or(0)
}

/// YCbCr planes (each `n` samples) to interleaved RGB (`3n` bytes).
pub fn ycc_to_rgb(t: &YccTables, y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    for (px, ((&y, &cb), &cr)) in out.chunks_exact_mut(3).zip(y.iter().zip(cb).zip(cr)) {
        let (r, g, b) = t.rgb(y, cb, cr);
        px.copy_from_slice(&[clamp(r), clamp(g), clamp(b)]);
    }
}

/// R, G, B planes to interleaved RGB (jdcolor.c `rgb_rgb_convert`).
pub fn interleave(r: &[u8], g: &[u8], b: &[u8], out: &mut [u8]) {
    for (px, ((&r, &g), &b)) in out.chunks_exact_mut(3).zip(r.iter().zip(g).zip(b)) {
        px.copy_from_slice(&[r, g, b]);
    }
}

/// Pillow's RGB of libjpeg's CMYK output `(c, m, y, k)`.
fn pillow_cmyk_rgb(c: u8, m: u8, y: u8, k: u8) -> [u8; 3] {
    // "CMYK;I": Pillow's CMYK is 255 − libjpeg's; cmyk2rgb's nk = 255 − K.
    let nk = Wrapping(i32::from(k));
    let channel = |v: u8| {
        let a = Wrapping(i32::from(!v));
        let tmp = a * nk + Wrapping(128);
        let muldiv255 = ((tmp >> 8) + tmp) >> 8;
        clamp(nk - muldiv255)
    };
    [channel(c), channel(m), channel(y)]
}

/// CMYK planes (libjpeg's JCS_CMYK output, Adobe-inverted as stored) to RGB as
/// Pillow's `convert("RGB")` gives.
pub fn cmyk_to_rgb(c: &[u8], m: &[u8], y: &[u8], k: &[u8], out: &mut [u8]) {
    let planes = c.iter().zip(m).zip(y.iter().zip(k));
    for (px, ((&c, &m), (&y, &k))) in out.chunks_exact_mut(3).zip(planes) {
        px.copy_from_slice(&pillow_cmyk_rgb(c, m, y, k));
    }
}

/// YCCK planes to RGB: jdcolor.c `ycck_cmyk_convert` (C, M, Y are 255 minus the
/// YCbCr → RGB result, K passes through), then as [`cmyk_to_rgb`].
pub fn ycck_to_rgb(t: &YccTables, y: &[u8], cb: &[u8], cr: &[u8], k: &[u8], out: &mut [u8]) {
    let planes = y.iter().zip(cb).zip(cr.iter().zip(k));
    for (px, ((&y, &cb), (&cr, &k))) in out.chunks_exact_mut(3).zip(planes) {
        let (r, g, b) = t.rgb(y, cb, cr);
        let inv = |v: W| clamp(Wrapping(255) - v);
        px.copy_from_slice(&pillow_cmyk_rgb(inv(r), inv(g), inv(b), k));
    }
}
