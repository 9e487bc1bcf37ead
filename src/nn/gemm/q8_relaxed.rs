//! The int8 GEMM's relaxed-SIMD micro-kernel (pkg/relaxed/, pkg/threads-relaxed/:
//! the crate compiled with `-C target-feature=+relaxed-simd`), exact: the same
//! integer sums as every other kernel, so the same bits (tests/browser/relaxed.test.mjs).
//!
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c)` adds to each i32 lane of `c` the
//! dot product of 4 bytes of `a` (signed) and 4 of `b`. It is deterministic only
//! when every byte of `b` is in [0, 127] (the engine may read `b` as signed or as
//! unsigned; WebAssembly relaxed SIMD, "relaxed dot product"), and then also exact:
//! a pair of products is at most 2 · 128 · 127 = 32512 in magnitude, so the
//! 16-bit intermediate some engines keep (x86 `pmaddubsw`) never saturates.
//!
//! So `a` is the weight (int8, any value) and `b` the activation, which the GEMM
//! quantises to **int16** (see `q8`'s module doc): each value `x` in
//! [-32768, 32767] is split into three 7-bit-safe pieces,
//! `x = 16384 · (u₂ − 2) + 128 · u₁ + u₀` with `u₀ = x & 127`, `u₁ = (x >> 7) & 127`,
//! `u₂ = (x >> 14) + 2` in [0, 3], and per block the kernel evaluates
//! `((−2 · Σw + Σ w·u₂) · 128 + Σ w·u₁) · 128 + Σ w·u₀` in i32 (Horner: no
//! accumulator per piece; every partial sum is below 2²⁹ in magnitude). That is
//! three relaxed dots per 16 products where the simd128 kernel needs two
//! `i32x4.dot_i16x8_s` and two adds: the price of exactness with 16-bit
//! activations. V8 on x86-64 lowers each relaxed dot to `pmaddubsw` +
//! `pmaddwd` + `paddd`, so this kernel is slower than simd128's (bench/README.md
//! has the measured rates), and the relaxed build runs it only when asked for
//! (`Isa::Relaxed`, e.g. `PackedQ8::matmul_with`); its best q8 kernel stays simd128's.
//! The panels are the simd128 kernel's (pairs of k); the kernel shuffles each
//! block's into quads of k (what one relaxed dot sums per lane) in each tile.

#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
use core::arch::wasm32::*;

use super::q8_kernel::Isa;
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
use super::q8_kernel::{MR, NR};

/// Values per block (the q8_0 block).
const BLOCK: usize = 32;
/// The pieces: high to low.
const PIECES: usize = 3;
/// Bytes of one block of one row once split: the three pieces of its 32 values.
pub const BLOCK_BYTES: usize = PIECES * BLOCK;

/// Whether `isa` reads the activations as pieces ([`split`]).
pub fn reads_pieces(isa: Isa) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    return isa == Isa::Relaxed;
    #[allow(unreachable_code)]
    {
        let _ = isa;
        false
    }
}

/// int16 activations (rows of whole 32-value blocks) as the kernel reads them:
/// per block, `u₂`, `u₁`, `u₀` of its 32 values (32 bytes each; see the module doc).
pub fn split(q: &[i16]) -> Vec<u8> {
    let mut out = vec![0u8; q.len() / BLOCK * BLOCK_BYTES];
    for (x, p) in q.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BLOCK_BYTES)) {
        let (hi, rest) = p.split_at_mut(BLOCK);
        let (mid, lo) = rest.split_at_mut(BLOCK);
        for (i, &v) in x.iter().enumerate() {
            let v = i32::from(v);
            hi[i] = ((v >> 14) + 2) as u8;
            mid[i] = ((v >> 7) & 127) as u8;
            lo[i] = (v & 127) as u8;
        }
    }
    out
}

/// One MR × NR tile over `kb` blocks (`q8_kernel::tile`'s contract, MR = 4;
/// `pieces`: MR rows of `kb` · [`BLOCK_BYTES`] from [`split`]; the panel in pairs of k).
///
/// # Safety
/// The slices must be as long as `q8_kernel::tile` asserts.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
pub(super) unsafe fn tile(kb: usize, pieces: &[u8], da: &[f32], w: &[i8], dw: &[f32], out: &mut [[f32; NR]]) {
    const QUADS: usize = BLOCK / 4;
    let row_bytes = kb * BLOCK_BYTES;
    let two = i8x16_splat(2);
    let mut acc = [[f32x4_splat(0.0); 2]; MR];
    for b in 0..kb {
        let wp = w.as_ptr().add(b * BLOCK * NR);
        // The block's pairs of k as quads: quad q's columns 0–3 and 4–7, each
        // column's 4 consecutive k side by side, from pairs 2q and 2q + 1.
        let mut quads = [[i32x4_splat(0); 2]; QUADS];
        for (q, quad) in quads.iter_mut().enumerate() {
            let (p0, p1) = (v128_load(wp.add(q * 32) as *const v128), v128_load(wp.add(q * 32 + 16) as *const v128));
            quad[0] = i8x16_shuffle::<0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23>(p0, p1);
            quad[1] = i8x16_shuffle::<8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31>(p0, p1);
        }
        // −2 · Σ_k w[c, k] per column: the offset of the top piece, once for all rows.
        let mut z = [i32x4_splat(0); 2];
        for quad in &quads {
            z[0] = i32x4_relaxed_dot_i8x16_i7x16_add(quad[0], two, z[0]);
            z[1] = i32x4_relaxed_dot_i8x16_i7x16_add(quad[1], two, z[1]);
        }
        let mut t = [[i32x4_neg(z[0]), i32x4_neg(z[1])]; MR];
        let pp = pieces.as_ptr().add(b * BLOCK_BYTES);
        for p in 0..PIECES {
            if p > 0 {
                for t in t.iter_mut() {
                    t[0] = i32x4_shl(t[0], 7);
                    t[1] = i32x4_shl(t[1], 7);
                }
            }
            for (q, quad) in quads.iter().enumerate() {
                for (r, t) in t.iter_mut().enumerate() {
                    let u = v128_load32_splat(pp.add(r * row_bytes + p * BLOCK + q * 4) as *const u32);
                    t[0] = i32x4_relaxed_dot_i8x16_i7x16_add(quad[0], u, t[0]);
                    t[1] = i32x4_relaxed_dot_i8x16_i7x16_add(quad[1], u, t[1]);
                }
            }
        }
        super::q8_kernel::scale_simd128(&mut acc, &[t], &da[b..], kb, &dw[b * NR..]);
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        v128_store(row.as_mut_ptr() as *mut v128, acc[0]);
        v128_store(row.as_mut_ptr().add(4) as *mut v128, acc[1]);
    }
}

/// The relaxed dot's arithmetic limit: `iters` rounds of eight independent
/// `relaxed_dot_i8x16_i7x16_add` chains on registers. Returns a checksum.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
pub(super) fn peak(iters: usize) -> i32 {
    // w changes every round, so the products cannot be hoisted out of the loop.
    let mut w = i8x16_splat(std::hint::black_box(3));
    let one = i8x16_splat(std::hint::black_box(1));
    let a = i8x16_splat(std::hint::black_box(5));
    let mut acc = [i32x4_splat(0); 8];
    for _ in 0..iters {
        for s in acc.iter_mut() {
            *s = i32x4_relaxed_dot_i8x16_i7x16_add(w, a, *s);
        }
        w = i8x16_add(w, one);
    }
    let mut sum = acc[0];
    for s in &acc[1..] {
        sum = v128_xor(sum, *s);
    }
    i32x4_extract_lane::<0>(sum)
}

#[cfg(test)]
mod tests {
    /// The split is exact and every piece is 7-bit-safe, for every int16.
    #[test]
    fn pieces_rebuild_every_int16() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let pieces = super::split(&all);
        for (x, p) in all.chunks_exact(32).zip(pieces.chunks_exact(super::BLOCK_BYTES)) {
            for (i, &v) in x.iter().enumerate() {
                let (u2, u1, u0) = (p[i], p[32 + i], p[64 + i]);
                assert!(u2 <= 3 && u1 <= 127 && u0 <= 127, "{v}: {u2} {u1} {u0}");
                assert_eq!(16384 * (i32::from(u2) - 2) + 128 * i32::from(u1) + i32::from(u0), i32::from(v));
            }
        }
    }
}
