//! The q4 GEMM's micro-kernels: one [`MR`] × [`NR`] output tile over all of k,
//! for each instruction set, the nibbles widened to 16 bits in registers.
//! Each computes exactly the algorithm of [`tile_scalar`] (see `q4`'s module
//! doc), so their results are identical.

use super::q4::{PANEL_SCALES, PANEL_SUB, PANEL_SUPER};
use super::q8_kernel::{Isa, MR, NR, PAIRS};

const BLOCK: usize = 2 * PAIRS;
/// Sub-blocks per super-block.
const SUBS: usize = 8;
/// 16-byte groups per sub-block of a panel (two k-pairs each).
const GROUPS: usize = PAIRS / 2;

/// One tile's quantised activations: [`MR`] rows of `kb · 32` int16, their
/// `MR × kb` scales and `MR × kb` block sums.
pub struct Rows<'a> {
    pub q: &'a [i16],
    pub d: &'a [f32],
    pub sums: &'a [i32],
}

/// One panel of the packed weight (`q4::PackedQ4`'s layout).
pub struct Panel<'a> {
    pub quants: &'a [u8],
    pub scales: &'a [u8],
    pub supers: &'a [f32],
}

/// `out[r][c] = Σ_b (f32(Σ a·q) · d1 − f32(Σ a) · m1) · dx` for one tile
/// (`kb` sub-blocks). `out` must start at zero.
pub fn tile(isa: Isa, kb: usize, a: &Rows, w: &Panel, out: &mut [[f32; NR]; MR]) {
    assert!(kb.is_multiple_of(SUBS));
    assert!(a.q.len() >= MR * kb * BLOCK && a.d.len() >= MR * kb && a.sums.len() >= MR * kb);
    assert!(w.quants.len() >= kb * PANEL_SUB && w.scales.len() >= kb * PANEL_SCALES);
    assert!(w.supers.len() >= kb / SUBS * PANEL_SUPER);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(std::arch::is_x86_feature_detected!("avx2"));
            // SAFETY: AVX2 is present (checked above); the slices are at least as
            // long as the kernel reads (asserted above).
            unsafe { tile_avx2(kb, a, w, out) }
        }
        // SAFETY: the lengths are asserted above; simd128 is a requirement of
        // the wasm build.
        #[cfg(target_arch = "wasm32")]
        Isa::Simd128 => unsafe { tile_simd128(kb, a, w, out) },
        // The scalar kernel, and any other instruction set (`q4::kernel_isa`
        // maps the ones this GEMM has no kernel of its own for).
        _ => tile_scalar(kb, a, w, out),
    }
}

/// Sub-block `b`'s `d1 = d · sc` and `m1 = dmin · m` for the panel's 8 columns.
fn scales(w: &Panel, b: usize) -> ([f32; NR], [f32; NR]) {
    let sup = &w.supers[(b / SUBS) * PANEL_SUPER..];
    let sm = &w.scales[b * PANEL_SCALES..];
    (
        std::array::from_fn(|c| sup[c] * f32::from(sm[c])),
        std::array::from_fn(|c| sup[NR + c] * f32::from(sm[NR + c])),
    )
}

fn tile_scalar(kb: usize, a: &Rows, w: &Panel, out: &mut [[f32; NR]; MR]) {
    let k = kb * BLOCK;
    for b in 0..kb {
        let mut isum = [[0i32; NR]; MR];
        let wb = &w.quants[b * PANEL_SUB..(b + 1) * PANEL_SUB];
        for j in 0..PAIRS {
            let (group, shift) = (&wb[(j / 2) * 16..(j / 2 + 1) * 16], 4 * (j % 2));
            for (r, sums) in isum.iter_mut().enumerate() {
                let a0 = i32::from(a.q[r * k + b * BLOCK + 2 * j]);
                let a1 = i32::from(a.q[r * k + b * BLOCK + 2 * j + 1]);
                for (c, s) in sums.iter_mut().enumerate() {
                    let q0 = i32::from((group[2 * c] >> shift) & 0xF);
                    let q1 = i32::from((group[2 * c + 1] >> shift) & 0xF);
                    *s += a0 * q0 + a1 * q1;
                }
            }
        }
        let (d1, m1) = scales(w, b);
        for (r, (row, sums)) in out.iter_mut().zip(&isum).enumerate() {
            let (dx, asum) = (a.d[r * kb + b], a.sums[r * kb + b] as f32);
            for (c, (o, &s)) in row.iter_mut().zip(sums).enumerate() {
                *o += (s as f32 * d1[c] - asum * m1[c]) * dx;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2(kb: usize, a: &Rows, w: &Panel, out: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let k = kb * BLOCK;
    let mask = _mm_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); MR];
    for b in 0..kb {
        let mut isum = [_mm256_setzero_si256(); MR];
        let wp = w.quants.as_ptr().add(b * PANEL_SUB);
        let ap = a.q.as_ptr().add(b * BLOCK);
        for g in 0..GROUPS {
            // Two k-pairs of 8 columns: low nibbles the first, high the second,
            // each widened to 16 i16 (8 columns × (k, k+1)).
            let v = _mm_loadu_si128(wp.add(g * 16) as *const __m128i);
            let w0 = _mm256_cvtepu8_epi16(_mm_and_si128(v, mask));
            let w1 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(v), mask));
            for (r, s) in isum.iter_mut().enumerate() {
                let p0 = (ap.add(r * k + 4 * g) as *const i32).read_unaligned();
                let p1 = (ap.add(r * k + 4 * g + 2) as *const i32).read_unaligned();
                let t = _mm256_add_epi32(_mm256_madd_epi16(w0, _mm256_set1_epi32(p0)), _mm256_madd_epi16(w1, _mm256_set1_epi32(p1)));
                *s = _mm256_add_epi32(*s, t);
            }
        }
        let sup = w.supers.as_ptr().add((b / SUBS) * PANEL_SUPER);
        let sm = w.scales.as_ptr().add(b * PANEL_SCALES);
        let sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(sm as *const __m128i)));
        let mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(sm.add(NR) as *const __m128i)));
        let d1 = _mm256_mul_ps(_mm256_loadu_ps(sup), sc);
        let m1 = _mm256_mul_ps(_mm256_loadu_ps(sup.add(NR)), mn);
        for (r, (acc, s)) in acc.iter_mut().zip(&isum).enumerate() {
            let asum = _mm256_set1_ps(a.sums[r * kb + b] as f32);
            let t = _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(*s), d1), _mm256_mul_ps(asum, m1));
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(t, _mm256_set1_ps(a.d[r * kb + b])));
        }
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        _mm256_storeu_ps(row.as_mut_ptr(), *acc);
    }
}

#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
unsafe fn tile_simd128(kb: usize, a: &Rows, w: &Panel, out: &mut [[f32; NR]; MR]) {
    use core::arch::wasm32::*;
    let k = kb * BLOCK;
    let mask = u8x16_splat(0x0F);
    let mut acc = [[f32x4_splat(0.0); 2]; MR];
    for b in 0..kb {
        let mut isum = [[i32x4_splat(0); 2]; MR];
        let wp = w.quants.as_ptr().add(b * PANEL_SUB);
        let ap = a.q.as_ptr().add(b * BLOCK);
        for g in 0..GROUPS {
            let v = v128_load(wp.add(g * 16) as *const v128);
            // Low nibbles: k-pair 2g of columns 0–3 and 4–7, widened to i16.
            let lo = v128_and(v, mask);
            let (w0, w1) = (u16x8_extend_low_u8x16(lo), u16x8_extend_high_u8x16(lo));
            for (r, s) in isum.iter_mut().enumerate() {
                let pair = v128_load32_splat(ap.add(r * k + 4 * g) as *const u32);
                s[0] = i32x4_add(s[0], i32x4_dot_i16x8(w0, pair));
                s[1] = i32x4_add(s[1], i32x4_dot_i16x8(w1, pair));
            }
            // High nibbles: k-pair 2g + 1.
            let hi = u8x16_shr(v, 4);
            let (w0, w1) = (u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi));
            for (r, s) in isum.iter_mut().enumerate() {
                let pair = v128_load32_splat(ap.add(r * k + 4 * g + 2) as *const u32);
                s[0] = i32x4_add(s[0], i32x4_dot_i16x8(w0, pair));
                s[1] = i32x4_add(s[1], i32x4_dot_i16x8(w1, pair));
            }
        }
        epilogue_simd128(&mut acc, &isum, a, kb, b, w);
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        v128_store(row.as_mut_ptr() as *mut v128, acc[0]);
        v128_store(row.as_mut_ptr().add(4) as *mut v128, acc[1]);
    }
}

/// The f32 part of sub-block `b`. Not inlined, so that the f32 accumulators
/// live in memory and the 8 integer ones keep the engine's 16 vector
/// registers during the sub-block (as the q8 kernel's epilogue).
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
#[inline(never)]
unsafe fn epilogue_simd128(
    acc: &mut [[core::arch::wasm32::v128; 2]; MR],
    isum: &[[core::arch::wasm32::v128; 2]; MR],
    a: &Rows,
    kb: usize,
    b: usize,
    w: &Panel,
) {
    use core::arch::wasm32::*;
    let sup = w.supers.as_ptr().add((b / SUBS) * PANEL_SUPER);
    let sm = w.scales.as_ptr().add(b * PANEL_SCALES);
    // 8 bytes → u16x8 → two u32x4 → f32 (exact: at most 63).
    let to_f32 = |p: *const u8| {
        let v = u16x8_load_extend_u8x8(p);
        (f32x4_convert_u32x4(u32x4_extend_low_u16x8(v)), f32x4_convert_u32x4(u32x4_extend_high_u16x8(v)))
    };
    let (sc0, sc1) = to_f32(sm);
    let (mn0, mn1) = to_f32(sm.add(NR));
    let load = |i: usize| v128_load(sup.add(i) as *const v128);
    let d1 = [f32x4_mul(load(0), sc0), f32x4_mul(load(4), sc1)];
    let m1 = [f32x4_mul(load(NR), mn0), f32x4_mul(load(NR + 4), mn1)];
    for (r, (acc, s)) in acc.iter_mut().zip(isum).enumerate() {
        let dx = f32x4_splat(a.d[r * kb + b]);
        let asum = f32x4_splat(a.sums[r * kb + b] as f32);
        for h in 0..2 {
            let t = f32x4_sub(f32x4_mul(f32x4_convert_i32x4(s[h]), d1[h]), f32x4_mul(asum, m1[h]));
            acc[h] = f32x4_add(acc[h], f32x4_mul(t, dx));
        }
    }
}
