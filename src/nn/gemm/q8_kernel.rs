//! The q8 GEMM's micro-kernels: one tile of [`Isa::rows`] rows × [`NR`]
//! columns over all of k, for each instruction set. Each computes exactly the
//! algorithm of [`tile_scalar`] (see `q8`'s module doc): the integer sums are
//! exact whichever instruction forms them (`vpmaddwd` + `vpaddd`, the VNNI
//! `vpdpwssd`, `i32x4.dot_i16x8_s`, and the relaxed-SIMD build's
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s` on exact pieces: [`super::q8_relaxed`]),
//! and the f32 steps are the same operations in the same order, so their
//! results are identical.

/// Rows of activations per tile of the 4-row kernels (scalar, AVX2, simd128).
pub const MR: usize = 4;
/// The most rows any kernel takes at once.
pub const MAX_ROWS: usize = 12;
/// Output columns per weight panel (and per tile).
pub const NR: usize = 8;
/// k-pairs per 32-value block.
pub const PAIRS: usize = 16;
const BLOCK: usize = 2 * PAIRS;
const PANEL_BLOCK: usize = PAIRS * NR * 2;

/// An instruction set a micro-kernel is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust: the reference, and the fallback on any CPU.
    Scalar,
    /// x86-64 AVX2 (`vpmaddwd` + `vpaddd` on 256 bits), 4 rows, chosen at run time.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86-64 AVX-VNNI (`vpdpwssd` on 256 bits, VEX: 16 registers), 6 rows,
    /// chosen at run time (Alder Lake and later without AVX-512).
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    /// x86-64 AVX-512 VNNI + VL (`vpdpwssd` on 256 bits with embedded
    /// broadcasts, 32 registers), 12 rows, chosen at run time (Ice Lake and
    /// later, Zen 4 and later).
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// wasm simd128 (`i32x4.dot_i16x8_s`); every engine the page supports has it.
    /// The best kernel of every wasm build, the relaxed-SIMD one's too (faster
    /// than [`Relaxed`](Self::Relaxed) in V8: bench/README.md).
    #[cfg(target_arch = "wasm32")]
    Simd128,
    /// wasm relaxed SIMD (`i32x4.relaxed_dot_i8x16_i7x16_add_s` on exact 7-bit
    /// pieces of the activations, [`super::q8_relaxed`]), 4 rows. Only in the
    /// relaxed-SIMD build, and only when asked for ([`Isa::available`]): three
    /// relaxed dots per 16 products are slower than simd128's two `dot_i16x8_s`.
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    Relaxed,
}

impl Isa {
    /// The fastest kernel this machine runs.
    pub fn best() -> Self {
        *Self::available().last().expect("the scalar kernel is always available")
    }

    /// Every kernel this machine runs, slowest first (for tests comparing them).
    pub fn available() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        v.extend([Isa::Avx2, Isa::AvxVnni, Isa::Avx512Vnni].into_iter().filter(|i| i.supported()));
        // Measured slower than simd128 (bench/README.md), so before it: not the best.
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        v.push(Isa::Relaxed);
        #[cfg(target_arch = "wasm32")]
        v.push(Isa::Simd128);
        v
    }

    /// Whether this CPU runs the kernel (run-time detection, cached by std).
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        use std::arch::is_x86_feature_detected as has;
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => has!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => has!("avx2") && has!("avxvnni"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => has!("avx2") && has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni"),
            #[cfg(target_arch = "wasm32")]
            Isa::Simd128 => true,
            // The worker runs the relaxed build only where the engine validates it.
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            Isa::Relaxed => true,
        }
    }

    /// How the kernel reads a tile's activations. `false`: row by row (row r's
    /// value kk at `a[r·k + kk]`, its block b's scale at `da[r·kb + b]`).
    /// `true` (the VNNI kernels): k-pair by k-pair, the tile's rows side by
    /// side (row r's pair j at `a[(j·R + r)·2..][..2]`, scales at `da[b·R +
    /// r]`), so that every row's broadcast is one constant offset from one
    /// pointer (an embedded broadcast, no address arithmetic).
    pub fn interleaved(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return matches!(self, Isa::AvxVnni | Isa::Avx512Vnni);
        #[allow(unreachable_code)]
        {
            let _ = self;
            false
        }
    }

    /// Rows per tile: as many integer and f32 accumulators as the registers
    /// hold beside the weights and the broadcast activation.
    pub fn rows(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => 6,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => MAX_ROWS,
            _ => MR,
        }
    }
}

/// `out[r][c] = Σ_b (dx[r,b]·dw[b,c]) · Σ_{k∈b} a[r,k]·w[c,k]` for one tile
/// of `R = isa.rows()` rows. `a`: R rows of `kb·32` int16 activations and
/// `da`: R × kb scales, laid out as [`Isa::interleaved`] says; `pieces`: the
/// same rows split by [`super::q8_relaxed::split`] (read by the relaxed kernel
/// only; empty for the others); `w`, `dw`: one panel (kb × 256 int8, kb × 8
/// scales). `out` (R rows) must start at zero.
///
/// Panics if a slice is shorter than the kernel reads (a caller's bug).
#[allow(clippy::too_many_arguments)]
pub fn tile(isa: Isa, kb: usize, a: &[i16], pieces: &[u8], da: &[f32], w: &[i8], dw: &[f32], out: &mut [[f32; NR]]) {
    let _ = pieces;
    let rows = isa.rows();
    assert!(a.len() >= rows * kb * BLOCK && da.len() >= rows * kb && w.len() >= kb * PANEL_BLOCK && dw.len() >= kb * NR);
    assert!(out.len() >= rows, "out must hold the tile's rows");
    match isa {
        Isa::Scalar => tile_scalar(kb, a, da, w, dw, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(isa.supported());
            // SAFETY: AVX2 is present (checked above); the slices are at least as
            // long as the kernel reads (asserted above).
            unsafe { tile_avx2(kb, a, da, w, dw, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni => {
            assert!(isa.supported());
            // SAFETY: as for Avx2, with AVX-VNNI checked.
            unsafe { tile_avx_vnni(kb, a, da, w, dw, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => {
            assert!(isa.supported());
            // SAFETY: as for Avx2, with AVX-512 F/BW/VL/VNNI checked.
            unsafe { tile_avx512_vnni(kb, a, da, w, dw, out) }
        }
        // SAFETY: the lengths are asserted above; simd128 is a requirement of
        // the wasm build (every supported browser and Node ≥ 16 has it).
        #[cfg(target_arch = "wasm32")]
        Isa::Simd128 => unsafe { tile_simd128(kb, a, da, w, dw, out) },
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        Isa::Relaxed => {
            assert!(pieces.len() >= rows * kb * super::q8_relaxed::BLOCK_BYTES);
            // SAFETY: the lengths are asserted above; relaxed SIMD is compiled
            // in (this variant exists only then), and the worker runs this
            // build only where the engine validates it.
            unsafe { super::q8_relaxed::tile(kb, pieces, da, w, dw, out) }
        }
    }
}

/// [`tile`] over two panels side by side (`w[q]`, `dw[q]` into `out[q]`):
/// the same sums, so the same bits as two calls of [`tile`]. The AVX-512 VNNI
/// kernel takes both at once on 512-bit registers (16 columns: one
/// `vpdpwssd` per row and k-pair does the work of two 256-bit ones); the
/// others call [`tile`] twice.
///
/// Panics as [`tile`] does.
#[allow(clippy::too_many_arguments)]
pub fn tile2(isa: Isa, kb: usize, a: &[i16], pieces: &[u8], da: &[f32], w: [&[i8]; 2], dw: [&[f32]; 2], out: [&mut [[f32; NR]]; 2]) {
    let [out0, out1] = out;
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni {
        let rows = isa.rows();
        assert!(a.len() >= rows * kb * BLOCK && da.len() >= rows * kb);
        assert!(w.iter().all(|w| w.len() >= kb * PANEL_BLOCK) && dw.iter().all(|dw| dw.len() >= kb * NR));
        assert!(out0.len() >= rows && out1.len() >= rows, "out must hold the tile's rows");
        assert!(isa.supported());
        // SAFETY: AVX-512 F/BW/VL/VNNI are present (checked above); the slices
        // are at least as long as the kernel reads (asserted above).
        unsafe { tile2_avx512_vnni(kb, a, da, w, dw, [out0, out1]) };
        return;
    }
    tile(isa, kb, a, pieces, da, w[0], dw[0], out0);
    tile(isa, kb, a, pieces, da, w[1], dw[1], out1);
}

fn tile_scalar(kb: usize, a: &[i16], da: &[f32], w: &[i8], dw: &[f32], out: &mut [[f32; NR]]) {
    let k = kb * BLOCK;
    for b in 0..kb {
        let mut isum = [[0i32; NR]; MR];
        let wb = &w[b * PANEL_BLOCK..(b + 1) * PANEL_BLOCK];
        for j in 0..PAIRS {
            for (r, sums) in isum.iter_mut().enumerate() {
                let a0 = i32::from(a[r * k + b * BLOCK + 2 * j]);
                let a1 = i32::from(a[r * k + b * BLOCK + 2 * j + 1]);
                for (c, s) in sums.iter_mut().enumerate() {
                    *s += a0 * i32::from(wb[j * NR * 2 + 2 * c]) + a1 * i32::from(wb[j * NR * 2 + 2 * c + 1]);
                }
            }
        }
        for (r, (row, sums)) in out.iter_mut().zip(&isum).enumerate() {
            for (c, (o, &s)) in row.iter_mut().zip(sums).enumerate() {
                let scale = da[r * kb + b] * dw[b * NR + c];
                *o += s as f32 * scale;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2(kb: usize, a: &[i16], da: &[f32], w: &[i8], dw: &[f32], out: &mut [[f32; NR]]) {
    use std::arch::x86_64::*;
    let k = kb * BLOCK;
    let mut acc = [_mm256_setzero_ps(); MR];
    for b in 0..kb {
        let mut isum = [_mm256_setzero_si256(); MR];
        let wp = w.as_ptr().add(b * PANEL_BLOCK);
        let ap = a.as_ptr().add(b * BLOCK);
        for j in 0..PAIRS {
            // 8 columns × (k, k+1), widened to i16.
            let wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(j * NR * 2) as *const __m128i));
            for (r, s) in isum.iter_mut().enumerate() {
                let pair = (ap.add(r * k + 2 * j) as *const i32).read_unaligned();
                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(wv, _mm256_set1_epi32(pair)));
            }
        }
        let dwv = _mm256_loadu_ps(dw.as_ptr().add(b * NR));
        for (r, (acc, s)) in acc.iter_mut().zip(&isum).enumerate() {
            let scale = _mm256_mul_ps(_mm256_set1_ps(da[r * kb + b]), dwv);
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(_mm256_cvtepi32_ps(*s), scale));
        }
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        _mm256_storeu_ps(row.as_mut_ptr(), *acc);
    }
}

/// The f32 part of one block for `R` rows of 8 columns: `acc += f32(isum) ·
/// (dx · dw)`, the scales of the interleaved layout (`da[b·R + r]`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn block_epilogue<const R: usize>(
    acc: &mut [std::arch::x86_64::__m256; R],
    isum: &[std::arch::x86_64::__m256i; R],
    da: *const f32,
    dw: *const f32,
) {
    use std::arch::x86_64::*;
    let dwv = _mm256_loadu_ps(dw);
    for (r, (acc, s)) in acc.iter_mut().zip(isum).enumerate() {
        let scale = _mm256_mul_ps(_mm256_set1_ps(*da.add(r)), dwv);
        *acc = _mm256_add_ps(*acc, _mm256_mul_ps(_mm256_cvtepi32_ps(*s), scale));
    }
}

/// AVX-VNNI (VEX, 16 registers): 6 rows, [`tile_avx2`]'s algorithm with
/// `vpdpwssd` (multiply, pair sum and accumulation in one instruction, exact
/// in i32), on the interleaved activations.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn tile_avx_vnni(kb: usize, a: &[i16], da: &[f32], w: &[i8], dw: &[f32], out: &mut [[f32; NR]]) {
    use std::arch::x86_64::*;
    const R: usize = 6;
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let mut isum = [_mm256_setzero_si256(); R];
        let wp = w.as_ptr().add(b * PANEL_BLOCK);
        for j in 0..PAIRS {
            let wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(j * NR * 2) as *const __m128i));
            let p = a.as_ptr().add((b * PAIRS + j) * R * 2) as *const i32;
            for (r, s) in isum.iter_mut().enumerate() {
                *s = _mm256_dpwssd_avx_epi32(*s, wv, _mm256_set1_epi32(p.add(r).read_unaligned()));
            }
        }
        block_epilogue(&mut acc, &isum, da.as_ptr().add(b * R), dw.as_ptr().add(b * NR));
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        _mm256_storeu_ps(row.as_mut_ptr(), *acc);
    }
}

/// AVX-512 VNNI + VL: 12 rows on 256-bit registers, one `vpdpwssd` with an
/// embedded broadcast (`{1to8}`) per row and k-pair, written in assembly:
/// LLVM splits the intrinsic into `vpmaddwd` + `vpaddd` for generic x86-64
/// tuning (three instructions per row and pair with the broadcast, measured
/// at half the rate).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_avx512_vnni(kb: usize, a: &[i16], da: &[f32], w: &[i8], dw: &[f32], out: &mut [[f32; NR]]) {
    use std::arch::asm;
    use std::arch::x86_64::*;
    const R: usize = MAX_ROWS;
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let [mut s0, mut s1, mut s2, mut s3, mut s4, mut s5, mut s6, mut s7, mut s8, mut s9, mut s10, mut s11] =
            [_mm256_setzero_si256(); R];
        let wp = w.as_ptr().add(b * PANEL_BLOCK);
        let ap = a.as_ptr().add(b * PAIRS * R * 2);
        for j in 0..PAIRS {
            // SAFETY (of the reads): 16 bytes of the panel at pair j, and 12
            // rows × 4 bytes of pair j's activations (`tile` checked the lengths).
            asm!(
                "vpmovsxbw {w}, xmmword ptr [{wp}]",
                "vpdpwssd {s0}, {w}, dword ptr [{p}]{{1to8}}",
                "vpdpwssd {s1}, {w}, dword ptr [{p} + 4]{{1to8}}",
                "vpdpwssd {s2}, {w}, dword ptr [{p} + 8]{{1to8}}",
                "vpdpwssd {s3}, {w}, dword ptr [{p} + 12]{{1to8}}",
                "vpdpwssd {s4}, {w}, dword ptr [{p} + 16]{{1to8}}",
                "vpdpwssd {s5}, {w}, dword ptr [{p} + 20]{{1to8}}",
                "vpdpwssd {s6}, {w}, dword ptr [{p} + 24]{{1to8}}",
                "vpdpwssd {s7}, {w}, dword ptr [{p} + 28]{{1to8}}",
                "vpdpwssd {s8}, {w}, dword ptr [{p} + 32]{{1to8}}",
                "vpdpwssd {s9}, {w}, dword ptr [{p} + 36]{{1to8}}",
                "vpdpwssd {s10}, {w}, dword ptr [{p} + 40]{{1to8}}",
                "vpdpwssd {s11}, {w}, dword ptr [{p} + 44]{{1to8}}",
                wp = in(reg) wp.add(j * NR * 2),
                p = in(reg) ap.add(j * R * 2),
                w = out(ymm_reg) _,
                s0 = inout(ymm_reg) s0,
                s1 = inout(ymm_reg) s1,
                s2 = inout(ymm_reg) s2,
                s3 = inout(ymm_reg) s3,
                s4 = inout(ymm_reg) s4,
                s5 = inout(ymm_reg) s5,
                s6 = inout(ymm_reg) s6,
                s7 = inout(ymm_reg) s7,
                s8 = inout(ymm_reg) s8,
                s9 = inout(ymm_reg) s9,
                s10 = inout(ymm_reg) s10,
                s11 = inout(ymm_reg) s11,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        let isum = [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11];
        block_epilogue(&mut acc, &isum, da.as_ptr().add(b * R), dw.as_ptr().add(b * NR));
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        _mm256_storeu_ps(row.as_mut_ptr(), *acc);
    }
}

/// [`tile_avx512_vnni`] on two panels in 512-bit registers: per k-pair the
/// two panels' 8 columns joined and widened into one register, then one
/// `vpdpwssd` with a `{1to16}` broadcast per row; the f32 steps as
/// [`block_epilogue`]'s, lane by lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile2_avx512_vnni(kb: usize, a: &[i16], da: &[f32], w: [&[i8]; 2], dw: [&[f32]; 2], out: [&mut [[f32; NR]]; 2]) {
    use std::arch::asm;
    use std::arch::x86_64::*;
    const R: usize = MAX_ROWS;
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        let [mut s0, mut s1, mut s2, mut s3, mut s4, mut s5, mut s6, mut s7, mut s8, mut s9, mut s10, mut s11] =
            [_mm512_setzero_si512(); R];
        let (wp0, wp1) = (w[0].as_ptr().add(b * PANEL_BLOCK), w[1].as_ptr().add(b * PANEL_BLOCK));
        let ap = a.as_ptr().add(b * PAIRS * R * 2);
        for j in 0..PAIRS {
            // Scratch registers: both panels' 16 bytes (ymm), widened (zmm).
            let (_t, _w): (__m256i, __m512i);
            // SAFETY (of the reads): 16 bytes of each panel at pair j, and 12
            // rows × 4 bytes of pair j's activations (`tile2` checked the lengths).
            asm!(
                "vbroadcasti128 {t}, xmmword ptr [{wp0}]",
                "vinserti128 {t}, {t}, xmmword ptr [{wp1}], 1",
                "vpmovsxbw {w}, {t}",
                "vpdpwssd {s0}, {w}, dword ptr [{p}]{{1to16}}",
                "vpdpwssd {s1}, {w}, dword ptr [{p} + 4]{{1to16}}",
                "vpdpwssd {s2}, {w}, dword ptr [{p} + 8]{{1to16}}",
                "vpdpwssd {s3}, {w}, dword ptr [{p} + 12]{{1to16}}",
                "vpdpwssd {s4}, {w}, dword ptr [{p} + 16]{{1to16}}",
                "vpdpwssd {s5}, {w}, dword ptr [{p} + 20]{{1to16}}",
                "vpdpwssd {s6}, {w}, dword ptr [{p} + 24]{{1to16}}",
                "vpdpwssd {s7}, {w}, dword ptr [{p} + 28]{{1to16}}",
                "vpdpwssd {s8}, {w}, dword ptr [{p} + 32]{{1to16}}",
                "vpdpwssd {s9}, {w}, dword ptr [{p} + 36]{{1to16}}",
                "vpdpwssd {s10}, {w}, dword ptr [{p} + 40]{{1to16}}",
                "vpdpwssd {s11}, {w}, dword ptr [{p} + 44]{{1to16}}",
                wp0 = in(reg) wp0.add(j * NR * 2),
                wp1 = in(reg) wp1.add(j * NR * 2),
                p = in(reg) ap.add(j * R * 2),
                t = out(ymm_reg) _t,
                w = out(zmm_reg) _w,
                s0 = inout(zmm_reg) s0,
                s1 = inout(zmm_reg) s1,
                s2 = inout(zmm_reg) s2,
                s3 = inout(zmm_reg) s3,
                s4 = inout(zmm_reg) s4,
                s5 = inout(zmm_reg) s5,
                s6 = inout(zmm_reg) s6,
                s7 = inout(zmm_reg) s7,
                s8 = inout(zmm_reg) s8,
                s9 = inout(zmm_reg) s9,
                s10 = inout(zmm_reg) s10,
                s11 = inout(zmm_reg) s11,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        let isum = [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11];
        let lo = _mm512_castps256_ps512(_mm256_loadu_ps(dw[0].as_ptr().add(b * NR)));
        let hi = _mm256_loadu_ps(dw[1].as_ptr().add(b * NR));
        let dwv = _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), _mm256_castps_pd(hi)));
        let da = da.as_ptr().add(b * R);
        for (r, (acc, s)) in acc.iter_mut().zip(&isum).enumerate() {
            let scale = _mm512_mul_ps(_mm512_set1_ps(*da.add(r)), dwv);
            *acc = _mm512_add_ps(*acc, _mm512_mul_ps(_mm512_cvtepi32_ps(*s), scale));
        }
    }
    let [out0, out1] = out;
    for ((row0, row1), acc) in out0.iter_mut().zip(out1.iter_mut()).zip(&acc) {
        _mm256_storeu_ps(row0.as_mut_ptr(), _mm512_castps512_ps256(*acc));
        _mm256_storeu_ps(row1.as_mut_ptr(), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*acc))));
    }
}

/// Blocks whose integer sums [`tile_simd128`] forms before their f32 part:
/// 8 blocks × 4 rows × 8 columns of i32 (1 KB) on the stack.
#[cfg(target_arch = "wasm32")]
const CHUNK: usize = 8;

#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
unsafe fn tile_simd128(kb: usize, a: &[i16], da: &[f32], w: &[i8], dw: &[f32], out: &mut [[f32; NR]]) {
    use core::arch::wasm32::*;
    let k = kb * BLOCK;
    let mut acc = [[f32x4_splat(0.0); 2]; MR];
    let mut sums = [[[i32x4_splat(0); 2]; MR]; CHUNK];
    for b0 in (0..kb).step_by(CHUNK) {
        let blocks = CHUNK.min(kb - b0);
        for (i, sum) in sums[..blocks].iter_mut().enumerate() {
            let b = b0 + i;
            let mut isum = [[i32x4_splat(0); 2]; MR];
            let wp = w.as_ptr().add(b * PANEL_BLOCK);
            let ap = a.as_ptr().add(b * BLOCK);
            for j in 0..PAIRS {
                // Columns 0–3 and 4–7, each as (k, k+1) pairs widened to i16 by the
                // load itself (`v128.load8x8_s`: one instruction, no shuffle).
                let lo = i16x8_load_extend_i8x8(wp.add(j * NR * 2));
                let hi = i16x8_load_extend_i8x8(wp.add(j * NR * 2 + NR));
                for (r, s) in isum.iter_mut().enumerate() {
                    let pair = v128_load32_splat(ap.add(r * k + 2 * j) as *const u32);
                    s[0] = i32x4_add(s[0], i32x4_dot_i16x8(lo, pair));
                    s[1] = i32x4_add(s[1], i32x4_dot_i16x8(hi, pair));
                }
            }
            *sum = isum;
        }
        scale_simd128(&mut acc, &sums[..blocks], &da[b0..], kb, &dw[b0 * NR..]);
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        v128_store(row.as_mut_ptr() as *mut v128, acc[0]);
        v128_store(row.as_mut_ptr().add(4) as *mut v128, acc[1]);
    }
}

/// The f32 part of consecutive blocks, in block order: `acc += f32(isum) ·
/// (dx · dw)`. Not inlined, so that the f32 accumulators live in memory
/// while the integer loop has the engine's 16 vector registers (V8 spills
/// otherwise); called once per [`CHUNK`] blocks, not per block. Row by row
/// (each output still takes its blocks in k order, so the same bits), so
/// that a row's two accumulators, the scales and the temporaries fit in
/// registers, and on raw pointers after one length check: all rows at once
/// spilled, and the indexing's bounds checks were a third of the
/// instructions (bench/README.md, "wasm q8").
///
/// Panics if `da` (row r's block b at `da[r·kb + b]`) or `dw` (block b's 8
/// scales at `dw[b·8..]`) is shorter than `sums` needs.
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
#[inline(never)]
pub(super) unsafe fn scale_simd128(
    acc: &mut [[core::arch::wasm32::v128; 2]; MR],
    sums: &[[[core::arch::wasm32::v128; 2]; MR]],
    da: &[f32],
    kb: usize,
    dw: &[f32],
) {
    use core::arch::wasm32::*;
    let blocks = sums.len();
    if blocks == 0 {
        return;
    }
    assert!(dw.len() >= blocks * NR && da.len() >= (MR - 1) * kb + blocks, "scales shorter than the blocks");
    for (r, acc) in acc.iter_mut().enumerate() {
        let [mut lo, mut hi] = *acc;
        let dx = da.as_ptr().add(r * kb);
        for (b, isum) in sums.iter().enumerate() {
            // SAFETY: b < blocks, and the lengths are asserted above.
            let (dx, dwp) = (f32x4_splat(*dx.add(b)), dw.as_ptr().add(b * NR));
            let (dw0, dw1) = (v128_load(dwp as *const v128), v128_load(dwp.add(4) as *const v128));
            lo = f32x4_add(lo, f32x4_mul(f32x4_convert_i32x4(isum[r][0]), f32x4_mul(dx, dw0)));
            hi = f32x4_add(hi, f32x4_mul(f32x4_convert_i32x4(isum[r][1]), f32x4_mul(dx, dw1)));
        }
        *acc = [lo, hi];
    }
}

/// The arithmetic limit of the micro-kernel's instruction mix: `iters` rounds
/// of eight independent `madd`/`dot` + `add` chains on registers (no memory),
/// each on its own product (the 4-row kernels' 2 weight vectors × 4 rows).
/// Returns the integer operations done (a multiply and an add per product)
/// and a checksum the caller must consume.
#[doc(hidden)]
pub fn peak_loop(isa: Isa, iters: usize) -> (u64, i32) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: AVX2 is present.
            (iters as u64 * 8 * 16 * 2, unsafe { peak_avx2(iters) })
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni if isa.supported() => {
            // SAFETY: AVX-512 F/BW/VL/VNNI are present.
            (iters as u64 * 12 * 32 * 2, unsafe { peak_avx512_vnni(iters) })
        }
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni if isa.supported() => {
            // SAFETY: AVX-VNNI is present.
            (iters as u64 * 12 * 16 * 2, unsafe { peak_avx_vnni(iters) })
        }
        #[cfg(target_arch = "wasm32")]
        // SAFETY: simd128 is a requirement of the wasm build.
        Isa::Simd128 => (iters as u64 * 8 * 8 * 2, unsafe { peak_simd128(iters) }),
        // 16 products per instruction, of which the kernel's exact split keeps a third.
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        Isa::Relaxed => (iters as u64 * 8 * 16 * 2, super::q8_relaxed::peak(iters)),
        _ => {
            let mut acc = [0i32; 8];
            let a = std::hint::black_box(3i32);
            for _ in 0..iters {
                for (i, s) in acc.iter_mut().enumerate() {
                    *s = s.wrapping_add(a * (i as i32 + 1));
                }
            }
            (iters as u64 * 8 * 2, acc.iter().fold(0, |x, y| x ^ y))
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn peak_avx2(iters: usize) -> i32 {
    use std::arch::x86_64::*;
    // The tile's shape: 2 weight vectors × 4 broadcast activations, 8 distinct
    // products per round (one product into all 8 chains would be computed once:
    // LLVM shares the common subexpression). The weights change every round,
    // so the products cannot be hoisted out of the loop.
    let mut w = [_mm256_set1_epi16(std::hint::black_box(3)), _mm256_set1_epi16(std::hint::black_box(5))];
    let one = _mm256_set1_epi16(std::hint::black_box(1));
    let a: [__m256i; 4] = std::array::from_fn(|r| _mm256_set1_epi16(std::hint::black_box(r as i16 * 3 - 2)));
    let mut acc = [[_mm256_setzero_si256(); 2]; 4];
    for _ in 0..iters {
        for (s, a) in acc.iter_mut().zip(&a) {
            for (s, w) in s.iter_mut().zip(&w) {
                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(*w, *a));
            }
        }
        w = w.map(|w| _mm256_add_epi16(w, one));
    }
    let mut sum = _mm256_setzero_si256();
    for s in acc.iter().flatten() {
        sum = _mm256_xor_si256(sum, *s);
    }
    _mm256_extract_epi32::<0>(sum)
}

/// `iters` rounds of twelve independent `vpdpwssd` chains (the VNNI
/// kernels' instruction; its latency needs that many to fill the pipes).
macro_rules! vnni_peak {
    ($name:ident, $features:literal, $dot:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(iters: usize) -> i32 {
            use std::arch::x86_64::*;
            // w changes every round, so the products cannot be hoisted out of the loop.
            let mut w = _mm256_set1_epi16(std::hint::black_box(3));
            let one = _mm256_set1_epi16(std::hint::black_box(1));
            let a = _mm256_set1_epi16(std::hint::black_box(-2));
            let mut acc = [_mm256_setzero_si256(); 12];
            for _ in 0..iters {
                for s in acc.iter_mut() {
                    *s = $dot(*s, w, a);
                }
                w = _mm256_add_epi16(w, one);
            }
            let mut sum = acc[0];
            for s in &acc[1..] {
                sum = _mm256_xor_si256(sum, *s);
            }
            _mm256_extract_epi32::<0>(sum)
        }
    };
}

vnni_peak!(peak_avx_vnni, "avx2,avxvnni", _mm256_dpwssd_avx_epi32);
/// `iters` rounds of twelve independent chains of one 512-bit dot instruction
/// (`$op`: `vpdpwssd` here, `vpdpbusd` in [`super::q8x8_kernel`]) in
/// assembly, as the tiles are (the intrinsics would be split into a multiply
/// and an add under generic tuning); `$set1`/`$add` are the operands' lane
/// width. Returns a checksum the caller must consume.
macro_rules! zmm_dot_peak {
    ($name:ident, $features:literal, $op:literal, $set1:ident, $add:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(iters: usize) -> i32 {
            use std::arch::asm;
            use std::arch::x86_64::*;
            // w changes every round, so the products cannot be hoisted out of the loop.
            let mut w = $set1(std::hint::black_box(3));
            let one = $set1(std::hint::black_box(1));
            let a = $set1(std::hint::black_box(-2));
            let [mut s0, mut s1, mut s2, mut s3, mut s4, mut s5, mut s6, mut s7, mut s8, mut s9, mut s10, mut s11] =
                [_mm512_setzero_si512(); 12];
            for _ in 0..iters {
                asm!(
                    concat!($op, " {s0}, {w}, {a}"),
                    concat!($op, " {s1}, {w}, {a}"),
                    concat!($op, " {s2}, {w}, {a}"),
                    concat!($op, " {s3}, {w}, {a}"),
                    concat!($op, " {s4}, {w}, {a}"),
                    concat!($op, " {s5}, {w}, {a}"),
                    concat!($op, " {s6}, {w}, {a}"),
                    concat!($op, " {s7}, {w}, {a}"),
                    concat!($op, " {s8}, {w}, {a}"),
                    concat!($op, " {s9}, {w}, {a}"),
                    concat!($op, " {s10}, {w}, {a}"),
                    concat!($op, " {s11}, {w}, {a}"),
                    w = in(zmm_reg) w,
                    a = in(zmm_reg) a,
                    s0 = inout(zmm_reg) s0,
                    s1 = inout(zmm_reg) s1,
                    s2 = inout(zmm_reg) s2,
                    s3 = inout(zmm_reg) s3,
                    s4 = inout(zmm_reg) s4,
                    s5 = inout(zmm_reg) s5,
                    s6 = inout(zmm_reg) s6,
                    s7 = inout(zmm_reg) s7,
                    s8 = inout(zmm_reg) s8,
                    s9 = inout(zmm_reg) s9,
                    s10 = inout(zmm_reg) s10,
                    s11 = inout(zmm_reg) s11,
                    options(pure, nomem, nostack, preserves_flags),
                );
                w = $add(w, one);
            }
            let mut sum = s0;
            for s in [s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11] {
                sum = _mm512_xor_si512(sum, s);
            }
            _mm_cvtsi128_si32(_mm512_castsi512_si128(sum))
        }
    };
}
pub(super) use zmm_dot_peak;

zmm_dot_peak!(peak_avx512_vnni, "avx2,avx512f,avx512bw,avx512vl,avx512vnni", "vpdpwssd", _mm512_set1_epi16, _mm512_add_epi16);

#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
unsafe fn peak_simd128(iters: usize) -> i32 {
    use core::arch::wasm32::*;
    // As [`peak_avx2`]: the tile's 2 weight vectors × 4 activations, 8
    // distinct products per round (with one product for all 8 chains, LLVM
    // computed it once per round and the "peak" was that of the adds: 150
    // GOP/s against ~90 for this mix, bench/README.md); the weights change
    // every round, so the products cannot be hoisted out of the loop.
    let mut w = [i16x8_splat(std::hint::black_box(3)), i16x8_splat(std::hint::black_box(5))];
    let one = i16x8_splat(std::hint::black_box(1));
    let a: [v128; 4] = std::array::from_fn(|r| i16x8_splat(std::hint::black_box(r as i16 * 3 - 2)));
    let mut acc = [[i32x4_splat(0); 2]; 4];
    for _ in 0..iters {
        for (s, a) in acc.iter_mut().zip(&a) {
            for (s, w) in s.iter_mut().zip(&w) {
                *s = i32x4_add(*s, i32x4_dot_i16x8(*w, *a));
            }
        }
        w = w.map(|w| i16x8_add(w, one));
    }
    let mut sum = i32x4_splat(0);
    for s in acc.iter().flatten() {
        sum = v128_xor(sum, *s);
    }
    i32x4_extract_lane::<0>(sum)
}
