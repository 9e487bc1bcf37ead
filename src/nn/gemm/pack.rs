//! The f32 micro-kernels' activation layout: `[m, k]` rows packed k-major per
//! tile of `mr` rows, row `i`, column `j` at `(i / mr · k + j) · mr + i % mr`,
//! so that a kernel broadcasts a tile's `mr` values of one k step from one
//! pointer at constant offsets. Used by the f32 GEMM ([`super::f32`]) for its
//! activations and by the fused attention (`nn::attention`) for its queries
//! and probabilities. Pure data movement (and the attention's scaling, one
//! multiplication per value): every path gives the same bits.
//!
//! The packing is a transposition of each tile's `mr × 16` blocks. Written
//! value by value (16 stores `mr` values apart per row) it was 6 % of a native
//! ViT-B/16 image and a third of its attention (measured with `perf`); on
//! AVX-512 with the GEMM's 12-row tiles (and the attention's 16-key panels,
//! the same layout with 16 rows) it is done 16 × 16 in registers (the usual
//! unpack / shuffle network), one masked store per column.

/// `x` (`[m, k]` row-major, `m = x.len() / k`) into `a` (see the module doc;
/// `a` holds whole tiles, the rows past `m` are left as they are).
///
/// Panics if `a` is shorter than `ceil(m / mr) · mr · k` (a caller's bug).
pub(crate) fn pack_rows(x: &[f32], k: usize, mr: usize, a: &mut [f32]) {
    if k == 0 {
        return;
    }
    pack_rows_scaled(x, x.len() / k, k, k, mr, None, a);
}

/// [`pack_rows`] of `m` rows `ld` values apart (`ld` ≥ `k`; row `i` is
/// `x[i · ld..][..k]`), each value multiplied by `scale` when there is one
/// (the attention's queries: the bits of scaling them first).
///
/// Panics if `ld < k`, `x` is shorter than its `m` rows or `a` than the tiles.
pub(crate) fn pack_rows_scaled(x: &[f32], m: usize, ld: usize, k: usize, mr: usize, scale: Option<f32>, a: &mut [f32]) {
    if k == 0 || m == 0 {
        return;
    }
    assert!(ld >= k && x.len() >= (m - 1) * ld + k, "pack_rows: x is shorter than its rows");
    assert!(a.len() >= m.div_ceil(mr) * mr * k, "pack_rows: a is shorter than the tiles");
    #[cfg(target_arch = "x86_64")]
    if (mr == 12 || mr == 16) && std::arch::is_x86_feature_detected!("avx512f") {
        for (t, tile) in a.chunks_exact_mut(mr * k).take(m.div_ceil(mr)).enumerate() {
            let rows = mr.min(m - t * mr);
            // SAFETY: AVX-512F is present (checked above); the rows read lie
            // within x and the tile written within a (asserted above); mr ≤ 16.
            unsafe { tile_avx512(x[t * mr * ld..].as_ptr(), rows, ld, k, mr, scale, tile.as_mut_ptr()) };
        }
        return;
    }
    let map = |v: f32| scale.map_or(v, |s| v * s);
    const COLUMNS: usize = 16;
    for (t, tile) in a.chunks_exact_mut(mr * k).take(m.div_ceil(mr)).enumerate() {
        let rows = mr.min(m - t * mr);
        for j0 in (0..k).step_by(COLUMNS) {
            let w = COLUMNS.min(k - j0);
            let window = &mut tile[j0 * mr..(j0 + w) * mr];
            for r in 0..rows {
                for (jj, &v) in x[(t * mr + r) * ld + j0..][..w].iter().enumerate() {
                    window[jj * mr + r] = map(v);
                }
            }
        }
    }
}

/// One tile of `rows` ≤ `mr` ≤ 16 rows (`ld` apart from `x`) × `k` columns
/// into `a` (`mr` · k values): per block of 16 columns, the rows loaded
/// (masked at the last block), transposed, and column `j`'s `rows` values
/// stored at `a[j · mr..]`. `mr` is 12 for the AVX-512 GEMM kernel's tiles,
/// 16 for the attention's key panels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(x: *const f32, rows: usize, ld: usize, k: usize, mr: usize, scale: Option<f32>, a: *mut f32) {
    use std::arch::x86_64::*;
    // The tile's rows (lanes past them, the padding rows, are not written).
    let stored: __mmask16 = ((1u32 << rows) - 1) as u16;
    for j0 in (0..k).step_by(16) {
        let w = 16.min(k - j0);
        // Whole blocks of the GEMM's and the attention's full tiles with
        // constant counts, so that the loops unroll and the 16 vectors stay
        // in registers (with run-time counts they went through the stack).
        match (rows, w, mr, scale) {
            (12, 16, 12, None) => block(x, 12, ld, j0, 16, 12, None, stored, a),
            (12, 16, 12, Some(_)) => block(x, 12, ld, j0, 16, 12, scale, stored, a),
            (16, 16, 16, None) => block(x, 16, ld, j0, 16, 16, None, stored, a),
            _ => block(x, rows, ld, j0, w, mr, scale, stored, a),
        }
    }
}

/// [`tile_avx512`]'s block of 16 columns from `j0` (`w` of them real):
/// loaded, transposed, stored.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block(x: *const f32, rows: usize, ld: usize, j0: usize, w: usize, mr: usize, scale: Option<f32>, stored: std::arch::x86_64::__mmask16, a: *mut f32) {
    use std::arch::x86_64::*;
    let columns: __mmask16 = if w == 16 { 0xffff } else { (1u16 << w) - 1 };
    let mut v = [_mm512_setzero_ps(); 16];
    for (r, v) in v.iter_mut().enumerate().take(rows) {
        let row = _mm512_maskz_loadu_ps(columns, x.add(r * ld + j0));
        *v = match scale {
            Some(s) => _mm512_mul_ps(row, _mm512_set1_ps(s)),
            None => row,
        };
    }
    let t = transpose16(v);
    for (j, t) in t.iter().enumerate().take(w) {
        _mm512_mask_storeu_ps(a.add((j0 + j) * mr), stored, *t);
    }
}

/// A 16 × 16 transposition: `out[j]` lane `r` = `v[r]` lane `j`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn transpose16(v: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    // Pairs of rows interleaved per 128-bit lane: t[2i] = (r0 c0, r1 c0, r0 c1, r1 c1) ...
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    // Four rows per 128-bit lane: u[4g + c] holds rows 4g..4g+4 of the
    // columns c, c + 4, c + 8, c + 12 (one per 128-bit lane).
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (lo, hi) = (t[4 * g], t[4 * g + 1]);
        let (lo2, hi2) = (t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm512_shuffle_ps::<0x44>(lo, lo2);
        u[4 * g + 1] = _mm512_shuffle_ps::<0xee>(lo, lo2);
        u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(hi, hi2);
        u[4 * g + 3] = _mm512_shuffle_ps::<0xee>(hi, hi2);
    }
    // 128-bit lanes gathered: column c + 4L from lane L of u[c], u[4 + c],
    // u[8 + c], u[12 + c].
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        let even01 = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
        let odd01 = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
        let even23 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
        let odd23 = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
        out[c] = _mm512_shuffle_f32x4::<0x88>(even01, even23);
        out[c + 8] = _mm512_shuffle_f32x4::<0xdd>(even01, even23);
        out[c + 4] = _mm512_shuffle_f32x4::<0x88>(odd01, odd23);
        out[c + 12] = _mm512_shuffle_f32x4::<0xdd>(odd01, odd23);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout by its definition, one value at a time.
    fn reference(x: &[f32], m: usize, ld: usize, k: usize, mr: usize, scale: Option<f32>, a: &mut [f32]) {
        for i in 0..m {
            for j in 0..k {
                let v = x[i * ld + j];
                a[(i / mr * k + j) * mr + i % mr] = scale.map_or(v, |s| v * s);
            }
        }
    }

    /// Every path (AVX-512's 12-row tiles where the CPU has it, the scalar
    /// loop otherwise and for other tile heights) equals the definition bit
    /// for bit, on shapes off the 16-column block and the tile, strided
    /// rows and scaled values included; the padding rows are left untouched.
    #[test]
    fn packs_as_defined_on_odd_shapes() {
        for &(m, k, extra) in &[(1usize, 1usize, 0usize), (5, 7, 3), (12, 16, 0), (13, 33, 1), (197, 64, 704), (197, 197, 11), (30, 768, 0)] {
            let ld = k + extra;
            let x: Vec<f32> = (0..m * ld).map(|i| (i as f32 * 0.37).sin()).collect();
            for mr in [4, 6, 12, 16] {
                for scale in [None, Some(0.125f32), Some(0.3)] {
                    let len = m.div_ceil(mr) * mr * k;
                    let (mut got, mut want) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                    pack_rows_scaled(&x, m, ld, k, mr, scale, &mut got);
                    reference(&x, m, ld, k, mr, scale, &mut want);
                    let same = got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits());
                    assert!(same, "m {m}, k {k}, ld {ld}, mr {mr}, scale {scale:?}");
                }
            }
        }
    }
}
