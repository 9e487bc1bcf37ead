//! The q8_0 × q8_0 GEMM's relaxed-SIMD micro-kernel (pkg/relaxed/,
//! pkg/threads-relaxed/: the crate compiled with `-C target-feature=+relaxed-simd`),
//! offered only where two start-up probes pass, and then the same bits as every
//! other q8x8 kernel (tests/browser/relaxed.test.mjs).
//!
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c)` adds to each i32 lane of `c`
//! the dot product of 4 signed bytes of `a` and 4 bytes of `b`; WebAssembly
//! relaxed SIMD ("relaxed dot product") fixes the result only when every byte
//! of `b` is in [0, 127]. Above that the engine may read `b` as signed, or as
//! unsigned through a 16-bit pair sum that saturates (x86 `pmaddubsw`, Node
//! 20's V8), or as unsigned exactly: V8 in Chromium on a CPU with AVX-VNNI or
//! AVX-512 VNNI emits one `vpdpbusd` (u8 × s8, four products summed into the
//! i32 lane without saturation), the native AVX-512 VNNI kernel's instruction.
//! [`dot_reads_u8`] checks that last reading; where it holds, `b` can be the
//! panels' `w + 128` bytes as they are (no repacking, the weights held once)
//! and `a` the activations' quad of a row (`v128.load32_splat`), so a block's
//! sum is the native kernel's `corr + Σ (w + 128) · a`, exact in i32.
//!
//! The block step `acc = fma(f32(isum), dx · dw, acc)` needs one rounding:
//! `f32x4.relaxed_madd`, where [`super::f32_relaxed::fuses`] says the engine
//! fuses it. Without both probes `Q8x8Isa::Relaxed` is not available.

#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
use core::arch::wasm32::*;

#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
use super::q8x8_kernel::{NR, PANEL_BLOCK, QUADS, ROWS, TILE_BLOCK};

/// Whether this engine's relaxed dot reads its second operand as unsigned
/// bytes and sums the four products exactly (`vpdpbusd`'s semantics): checked
/// on lanes where a signed reading, or a saturating 16-bit pair sum, gives
/// another value (`a` = ±127, −128, `b` = 255, 200, 128, …, a non-zero
/// accumulator). False in builds without relaxed SIMD.
pub fn dot_reads_u8() -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    {
        let a: [i8; 16] = std::hint::black_box([127, 127, 127, 127, -128, -128, -128, -128, -127, 5, -3, 100, 1, -1, 64, -64]);
        let b: [u8; 16] = std::hint::black_box([255, 255, 255, 255, 255, 128, 200, 255, 200, 128, 255, 0, 128, 200, 255, 129]);
        let c: [i32; 4] = std::hint::black_box([7, -1000, 123_456, -5]);
        // SAFETY: each load reads 16 bytes of a 16-byte array.
        let r = unsafe {
            let (av, bv, cv) = (v128_load(a.as_ptr() as *const v128), v128_load(b.as_ptr() as *const v128), v128_load(c.as_ptr() as *const v128));
            i32x4_relaxed_dot_i8x16_i7x16_add(av, bv, cv)
        };
        let got = [i32x4_extract_lane::<0>(r), i32x4_extract_lane::<1>(r), i32x4_extract_lane::<2>(r), i32x4_extract_lane::<3>(r)];
        return (0..4).all(|l| got[l] == c[l] + (0..4).map(|t| i32::from(a[4 * l + t]) * i32::from(b[4 * l + t])).sum::<i32>());
    }
    #[allow(unreachable_code)]
    false
}

/// Rows per step of [`tile`] (it takes rows `R` at a time).
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
const R: usize = 2;

/// Rows `r0 .. r0 + out.len()` (a multiple of [`R`]) of one tile of
/// activations × one 16-column panel over `kb` blocks, accumulated into `out`
/// (which must start at zero): `q8x8_kernel::tile`'s contract and its f32
/// operations in its order, lane by lane. Per [`R`] rows and block, 4·R
/// i32x4 accumulators (R rows × 16 columns) start at the rows' corrections;
/// per quad each of the panel's four v128s (4 columns × 4 bytes) meets each
/// row's 4 activations (`v128.load32_splat`) in one relaxed dot; then the
/// block step. 8 accumulators, 4 weights and 2 activations fit in the 15
/// xmm registers V8 allocates on x86-64, with 8 independent chains of dots
/// (as many as [`peak`] runs at the dot's limit).
///
/// # Safety
/// The slices must be as long as `q8x8_kernel::tile` asserts, `r0 +
/// out.len() <= ROWS`, and the engine must pass [`dot_reads_u8`] and
/// [`super::f32_relaxed::fuses`] (else the result is another number, never UB).
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile(kb: usize, a: &[i8], da: &[f32], corr: &[i32], w: &[u8], dw: &[f32], r0: usize, out: &mut [[f32; NR]]) {
    debug_assert!(out.len().is_multiple_of(R) && r0 + out.len() <= ROWS);
    // The quads' loop count hidden from LLVM, so that it stays a loop: fully
    // unrolled, LLVM's wasm code loads a block's weights and activations
    // first and then runs each accumulator's 8 dots as one serial chain, and
    // V8 (which keeps that order) spills. The 197×768×3072 GEMM in Chromium:
    // 3 rows × 16 columns unrolled 91–109 GOP/s, this 115–147 (bench/README.md).
    let quads = std::hint::black_box(QUADS);
    for (p, rows) in out.chunks_exact_mut(R).enumerate() {
        let r = r0 + R * p;
        for b in 0..kb {
            let wp = w.as_ptr().add(b * PANEL_BLOCK);
            let ap = a.as_ptr().add(b * TILE_BLOCK + r * 4);
            let dwp = dw.as_ptr().add(b * NR);
            let mut s: [[v128; 4]; R] = std::array::from_fn(|i| [i32x4_splat(*corr.get_unchecked(b * ROWS + r + i)); 4]);
            for j in 0..quads {
                let wq: [v128; 4] = std::array::from_fn(|c| v128_load(wp.add(j * NR * 4 + c * 16) as *const v128));
                for (i, s) in s.iter_mut().enumerate() {
                    let x = v128_load32_splat(ap.add((j * ROWS + i) * 4) as *const u32);
                    for (s, wq) in s.iter_mut().zip(&wq) {
                        *s = i32x4_relaxed_dot_i8x16_i7x16_add(x, *wq, *s);
                    }
                }
            }
            for (i, (row, s)) in rows.iter_mut().zip(s).enumerate() {
                let dx = f32x4_splat(*da.get_unchecked(b * ROWS + r + i));
                for (c, s) in s.iter().enumerate() {
                    let scale = f32x4_mul(dx, v128_load(dwp.add(4 * c) as *const v128));
                    let o = row.as_mut_ptr().add(4 * c) as *mut v128;
                    v128_store(o, f32x4_relaxed_madd(f32x4_convert_i32x4(*s), scale, v128_load(o)));
                }
            }
        }
    }
}

/// The arithmetic limit of the kernel's instruction: `iters` rounds of eight
/// independent relaxed dots (2 broadcast activations × 4 weight v128s loaded
/// from a 1 KiB buffer in L1, as a quad of [`tile`]; weights in registers
/// changed by an add each round ran at 124 GOP/s where these run at ~210).
/// Returns the integer operations done (a multiply and an add per product:
/// 16 per dot) and a checksum.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
#[inline(never)]
pub(super) fn peak(iters: usize) -> (u64, i32) {
    let buf: [v128; 64] = std::hint::black_box(std::array::from_fn(|i| u8x16_splat(i as u8 * 3 + 129)));
    let x = [i8x16_splat(std::hint::black_box(5)), i8x16_splat(std::hint::black_box(-7))];
    let mut acc = [[i32x4_splat(0); 4]; 2];
    for i in 0..iters {
        let w = &buf[(i & 15) * 4..(i & 15) * 4 + 4];
        for (s, x) in acc.iter_mut().zip(&x) {
            for (s, w) in s.iter_mut().zip(w) {
                *s = i32x4_relaxed_dot_i8x16_i7x16_add(*x, *w, *s);
            }
        }
    }
    let mut sum = i32x4_splat(0);
    for s in acc.iter().flatten() {
        sum = i32x4_add(sum, *s);
    }
    (iters as u64 * 8 * 16 * 2, i32x4_extract_lane::<0>(sum))
}
