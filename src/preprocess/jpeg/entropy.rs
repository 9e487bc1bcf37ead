//! Huffman decoding of one block's coefficients: sequential (T.81 F.2.2,
//! libjpeg-turbo jdhuff.c `decode_mcu_slow`) and the four progressive
//! procedures (T.81 G.2, jdphuff.c `decode_mcu_DC_first`, `decode_mcu_AC_first`,
//! `decode_mcu_DC_refine`, `decode_mcu_AC_refine`). Coefficients are stored as
//! libjpeg's 16-bit `JCOEF` (truncating, as its casts do).
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

use super::bits::{BitReader, Huffman};
use super::markers::ZIGZAG;

pub type Block = [i16; 64];

/// C's `(JCOEF)` cast: the low 16 bits.
fn jcoef(v: i32) -> i16 {
    let [a, b, ..] = v.to_le_bytes();
    i16::from_le_bytes([a, b])
}

fn set(block: &mut Block, k: usize, v: i16) {
    if let Some(&natural) = ZIGZAG.get(k) {
        if let Some(c) = block.get_mut(natural) {
            *c = v;
        }
    }
}

/// A sequential block: DC difference added to `pred`, then the AC run/size
/// codes (T.81 F.2.2.1, F.2.2.2). `block` must be zero.
pub fn sequential(bits: &mut BitReader<'_>, dc: &Huffman, ac: &Huffman, pred: &mut i32, block: &mut Block) {
    let s = bits.decode(dc);
    *pred = pred.wrapping_add(bits.receive_extend(s));
    block[0] = jcoef(*pred);
    let mut k = 1usize;
    while k < 64 {
        let rs = bits.decode(ac);
        let (r, s) = (usize::from(rs >> 4), rs & 15);
        if s != 0 {
            k = k.wrapping_add(r);
            let v = bits.receive_extend(s);
            set(block, k, jcoef(v));
        } else if r == 15 {
            k = k.wrapping_add(15);
        } else {
            break;
        }
        k = k.wrapping_add(1);
    }
}

/// The first DC scan of a progressive image: the difference, shifted by `al`.
pub fn dc_first(bits: &mut BitReader<'_>, dc: &Huffman, pred: &mut i32, block: &mut Block, al: u8) {
    let s = bits.decode(dc);
    *pred = pred.wrapping_add(bits.receive_extend(s));
    block[0] = jcoef(pred.wrapping_shl(u32::from(al)));
}

/// A DC refinement scan: one more bit of the DC coefficient.
pub fn dc_refine(bits: &mut BitReader<'_>, block: &mut Block, al: u8) {
    if bits.bit() {
        block[0] |= jcoef(1i32.wrapping_shl(u32::from(al)));
    }
}

/// The first scan of the AC band `ss..=se` of one component, with the
/// end-of-band run `eobrun` carried between blocks (T.81 G.1.2.2).
pub fn ac_first(bits: &mut BitReader<'_>, ac: &Huffman, block: &mut Block, band: (u8, u8, u8), eobrun: &mut u32) {
    let (ss, se, al) = (usize::from(band.0), usize::from(band.1), u32::from(band.2));
    if *eobrun > 0 {
        *eobrun = eobrun.wrapping_sub(1);
        return;
    }
    let mut k = ss;
    while k <= se {
        let rs = bits.decode(ac);
        let (r, s) = (rs >> 4, rs & 15);
        if s != 0 {
            k = k.wrapping_add(usize::from(r));
            let v = bits.receive_extend(s);
            set(block, k, jcoef(v.wrapping_shl(al)));
        } else if r == 15 {
            k = k.wrapping_add(15);
        } else {
            // EOBr: 2^r blocks (this one included) plus r more bits.
            let mut run = 1u32 << r;
            if r > 0 {
                run = run.wrapping_add(bits.bits(u32::from(r)));
            }
            *eobrun = run.wrapping_sub(1);
            break;
        }
        k = k.wrapping_add(1);
    }
}

/// A correction bit for an already non-zero coefficient: its magnitude grows
/// by `p1` when the bit is 1 and the bit is not set yet.
fn refine(bits: &mut BitReader<'_>, c: &mut i16, p1: i16) {
    if bits.bit() && (*c & p1) == 0 {
        *c = if *c >= 0 { c.wrapping_add(p1) } else { c.wrapping_sub(p1) };
    }
}

/// An AC refinement scan of the band `ss..=se` (T.81 G.1.2.3; jdphuff.c
/// `decode_mcu_AC_refine`, whose order of correction bits this follows).
pub fn ac_refine(bits: &mut BitReader<'_>, ac: &Huffman, block: &mut Block, band: (u8, u8, u8), eobrun: &mut u32) {
    let (ss, se, al) = (usize::from(band.0), usize::from(band.1), u32::from(band.2));
    let p1 = jcoef(1i32.wrapping_shl(al));
    let mut k = ss;
    if *eobrun == 0 {
        while k <= se {
            let rs = bits.decode(ac);
            let (mut r, s) = (i32::from(rs >> 4), rs & 15);
            let mut value = 0i16;
            if s != 0 {
                // The size of a newly non-zero coefficient is always 1
                // (libjpeg warns otherwise and reads one bit all the same).
                value = if bits.bit() { p1 } else { p1.wrapping_neg() };
            } else if r != 15 {
                let mut run = 1u32 << r;
                if r > 0 {
                    run = run.wrapping_add(bits.bits(r.unsigned_abs()));
                }
                *eobrun = run;
                break;
            }
            // Skip r zero coefficients, refining the non-zero ones passed.
            while k <= se {
                let Some(c) = ZIGZAG.get(k).and_then(|&n| block.get_mut(n)) else {
                    break;
                };
                if *c != 0 {
                    refine(bits, c, p1);
                } else {
                    r = r.wrapping_sub(1);
                    if r < 0 {
                        break;
                    }
                }
                k = k.wrapping_add(1);
            }
            if value != 0 {
                set(block, k, value);
            }
            k = k.wrapping_add(1);
        }
    }
    if *eobrun > 0 {
        // Inside an end-of-band run: refine the rest of the band's non-zero coefficients.
        while k <= se {
            if let Some(c) = ZIGZAG.get(k).and_then(|&n| block.get_mut(n)) {
                if *c != 0 {
                    refine(bits, c, p1);
                }
            }
            k = k.wrapping_add(1);
        }
        *eobrun = eobrun.wrapping_sub(1);
    }
}
