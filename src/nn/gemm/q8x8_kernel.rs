//! The q8_0 × q8_0 GEMM's micro-kernels: one tile of [`ROWS`] rows × [`NR`]
//! columns over all of k. Each computes exactly the algorithm of
//! [`tile_scalar`] (see `q8x8`'s module doc): per block the integer sum
//! `corr + Σ (w + 128) · a` is exact in i32 whichever instruction forms it,
//! then `acc = fma(f32(isum), dx · dw, acc)` (one rounding, `f32::mul_add`;
//! `vfmadd` in the SIMD kernels), the same f32 operations in the same order,
//! so every kernel gives the same bits.

/// Rows of activations per tile.
pub const ROWS: usize = 12;
/// Output columns per weight panel (one 512-bit register of i32 lanes).
pub const NR: usize = 16;
/// Groups of 4 consecutive k (one `vpdpbusd` lane's bytes) per 32-value block.
pub const QUADS: usize = 8;
/// Bytes of one block of one panel: 8 quads × 16 columns × 4.
pub const PANEL_BLOCK: usize = QUADS * NR * 4;
/// Bytes of one block of one tile of activations: 8 quads × 12 rows × 4.
pub const TILE_BLOCK: usize = QUADS * ROWS * 4;

/// An instruction set a micro-kernel is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Q8x8Isa {
    /// Plain Rust: the reference, and the fallback on any CPU (and in wasm).
    Scalar,
    /// x86-64 AVX-512 VNNI (`vpdpbusd` on 512 bits: 16 columns × 4 k per
    /// instruction, the activation broadcast from memory), chosen at run time
    /// (Ice Lake and later, Zen 4 and later).
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// wasm relaxed SIMD (the relaxed build only): `i32x4.relaxed_dot_i8x16_i7x16_add_s`
    /// on the same panels, where the engine lowers it to `vpdpbusd`'s exact
    /// u8 × s8 sums and fuses `f32x4.relaxed_madd` (both probed at start-up,
    /// `q8x8_relaxed`; Chromium on AVX-VNNI / AVX-512 VNNI CPUs, not Node 20).
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    Relaxed,
}

impl Q8x8Isa {
    /// The fastest kernel this machine runs.
    pub fn best() -> Self {
        *Self::available().last().expect("the scalar kernel is always available")
    }

    /// Every kernel this machine runs, slowest first (for tests comparing them).
    pub fn available() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut v = vec![Q8x8Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        v.extend([Q8x8Isa::Avx512Vnni].into_iter().filter(|i| i.supported()));
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        v.extend([Q8x8Isa::Relaxed].into_iter().filter(|i| i.supported()));
        v
    }

    /// Whether this CPU (engine) runs the kernel exactly (run-time detection,
    /// cached by std; the wasm probes once, cached here).
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        use std::arch::is_x86_feature_detected as has;
        match self {
            Q8x8Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Q8x8Isa::Avx512Vnni => has!("avx512f") && has!("avx512bw") && has!("avx512vnni"),
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            Q8x8Isa::Relaxed => {
                static PROBED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
                *PROBED.get_or_init(|| super::q8x8_relaxed::dot_reads_u8() && super::f32_relaxed::fuses())
            }
        }
    }
}

/// `out[r][c] = Σ_b (dx[r,b]·dw[b,c]) · (corr[r,b] + Σ_{k∈b} a[r,k]·w[c,k])`
/// for one tile of [`ROWS`] rows. `a`: per block, per quad, the 12 rows' 4
/// int8 side by side (`a[((b·8 + j)·12 + r)·4 + t]`); `da`, `corr`:
/// `[b·12 + r]`; `w`: one panel (per block, per quad, the 16 columns' 4
/// bytes side by side, each the int8 weight + 128); `dw`: `[b·16 + c]`.
/// `out` must start at zero.
///
/// Panics if a slice is shorter than the kernel reads (a caller's bug).
#[allow(clippy::too_many_arguments)]
pub fn tile(isa: Q8x8Isa, kb: usize, a: &[i8], da: &[f32], corr: &[i32], w: &[u8], dw: &[f32], out: &mut [[f32; NR]; ROWS]) {
    assert!(a.len() >= kb * TILE_BLOCK && da.len() >= kb * ROWS && corr.len() >= kb * ROWS);
    assert!(w.len() >= kb * PANEL_BLOCK && dw.len() >= kb * NR);
    match isa {
        Q8x8Isa::Scalar => tile_scalar(kb, a, da, corr, w, dw, out),
        #[cfg(target_arch = "x86_64")]
        Q8x8Isa::Avx512Vnni => {
            assert!(isa.supported());
            // SAFETY: AVX-512 F/BW/VNNI are present (checked above); the slices
            // are at least as long as the kernel reads (asserted above).
            unsafe { tile_avx512_vnni(kb, a, da, corr, w, dw, out) }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        Q8x8Isa::Relaxed => {
            assert!(isa.supported());
            // SAFETY: the probes passed (checked above); the slices are at
            // least as long as the kernel reads (asserted above).
            unsafe { super::q8x8_relaxed::tile(kb, a, da, corr, w, dw, 0, out) }
        }
    }
}

fn tile_scalar(kb: usize, a: &[i8], da: &[f32], corr: &[i32], w: &[u8], dw: &[f32], out: &mut [[f32; NR]; ROWS]) {
    for b in 0..kb {
        let (ab, wb) = (&a[b * TILE_BLOCK..(b + 1) * TILE_BLOCK], &w[b * PANEL_BLOCK..(b + 1) * PANEL_BLOCK]);
        for (r, row) in out.iter_mut().enumerate() {
            for (c, o) in row.iter_mut().enumerate() {
                let mut s = corr[b * ROWS + r];
                for j in 0..QUADS {
                    for t in 0..4 {
                        s += i32::from(wb[(j * NR + c) * 4 + t]) * i32::from(ab[(j * ROWS + r) * 4 + t]);
                    }
                }
                *o = (s as f32).mul_add(da[b * ROWS + r] * dw[b * NR + c], *o);
            }
        }
    }
}

/// 12 rows × 16 columns: per quad one 64-byte load of the panel and one
/// `vpdpbusd` per row with the row's 4 activations as an embedded broadcast
/// (`{1to16}`), written in assembly as the q8 kernels' `vpdpwssd` is (LLVM's
/// generic x86-64 tuning may split VNNI intrinsics). The integer
/// accumulators start at the block's correction; the f32 steps are
/// [`tile_scalar`]'s, lane by lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
unsafe fn tile_avx512_vnni(kb: usize, a: &[i8], da: &[f32], corr: &[i32], w: &[u8], dw: &[f32], out: &mut [[f32; NR]; ROWS]) {
    use std::arch::asm;
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); ROWS];
    for b in 0..kb {
        let cp = corr.as_ptr().add(b * ROWS);
        let [mut s0, mut s1, mut s2, mut s3, mut s4, mut s5, mut s6, mut s7, mut s8, mut s9, mut s10, mut s11]: [__m512i; ROWS] =
            std::array::from_fn(|r| _mm512_set1_epi32(*cp.add(r)));
        let wp = w.as_ptr().add(b * PANEL_BLOCK);
        let ap = a.as_ptr().add(b * TILE_BLOCK);
        for j in 0..QUADS {
            let _w: __m512i;
            // SAFETY (of the reads): 64 bytes of the panel at quad j, and 12
            // rows × 4 bytes of quad j's activations (`tile` checked the lengths).
            asm!(
                "vmovdqu64 {w}, zmmword ptr [{wp}]",
                "vpdpbusd {s0}, {w}, dword ptr [{p}]{{1to16}}",
                "vpdpbusd {s1}, {w}, dword ptr [{p} + 4]{{1to16}}",
                "vpdpbusd {s2}, {w}, dword ptr [{p} + 8]{{1to16}}",
                "vpdpbusd {s3}, {w}, dword ptr [{p} + 12]{{1to16}}",
                "vpdpbusd {s4}, {w}, dword ptr [{p} + 16]{{1to16}}",
                "vpdpbusd {s5}, {w}, dword ptr [{p} + 20]{{1to16}}",
                "vpdpbusd {s6}, {w}, dword ptr [{p} + 24]{{1to16}}",
                "vpdpbusd {s7}, {w}, dword ptr [{p} + 28]{{1to16}}",
                "vpdpbusd {s8}, {w}, dword ptr [{p} + 32]{{1to16}}",
                "vpdpbusd {s9}, {w}, dword ptr [{p} + 36]{{1to16}}",
                "vpdpbusd {s10}, {w}, dword ptr [{p} + 40]{{1to16}}",
                "vpdpbusd {s11}, {w}, dword ptr [{p} + 44]{{1to16}}",
                wp = in(reg) wp.add(j * NR * 4),
                p = in(reg) ap.add(j * ROWS * 4),
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
        let dwv = _mm512_loadu_ps(dw.as_ptr().add(b * NR));
        let dap = da.as_ptr().add(b * ROWS);
        for (r, (acc, s)) in acc.iter_mut().zip(&isum).enumerate() {
            let scale = _mm512_mul_ps(_mm512_set1_ps(*dap.add(r)), dwv);
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(*s), scale, *acc);
        }
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        _mm512_storeu_ps(row.as_mut_ptr(), *acc);
    }
}

/// Rows of the two-panel kernel ([`tile_pair`]): half a tile of activations.
pub const HALF_ROWS: usize = ROWS / 2;

/// [`tile`]'s sums for rows `half · 6 .. half · 6 + 6` of a tile of
/// activations and the 32 columns of two panels (`w[0]`, `dw[0]` give
/// columns 0..16 of `out`, `w[1]`, `dw[1]` columns 16..32): each value the
/// same f32 operations in the same order as [`tile`]'s, so the same bits.
/// `out` must start at zero.
///
/// Panics if `half > 1` or a slice is shorter than the kernel reads.
#[allow(clippy::too_many_arguments)]
pub fn tile_pair(isa: Q8x8Isa, kb: usize, a: &[i8], da: &[f32], corr: &[i32], half: usize, w: [&[u8]; 2], dw: [&[f32]; 2], out: &mut [[f32; 2 * NR]; HALF_ROWS]) {
    assert!(half < 2 && a.len() >= kb * TILE_BLOCK && da.len() >= kb * ROWS && corr.len() >= kb * ROWS);
    assert!(w.iter().all(|w| w.len() >= kb * PANEL_BLOCK) && dw.iter().all(|d| d.len() >= kb * NR));
    match isa {
        Q8x8Isa::Scalar => {
            for (i, (w, dw)) in w.into_iter().zip(dw).enumerate() {
                let mut full = [[0f32; NR]; ROWS];
                tile_scalar(kb, a, da, corr, w, dw, &mut full);
                for (o, f) in out.iter_mut().zip(&full[half * HALF_ROWS..]) {
                    o[i * NR..(i + 1) * NR].copy_from_slice(f);
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Q8x8Isa::Avx512Vnni => {
            assert!(isa.supported());
            // SAFETY: AVX-512 F/BW/VNNI are present (checked above); the slices
            // are at least as long as the kernel reads (asserted above).
            unsafe { tile_pair_avx512_vnni(kb, a, da, corr, half, w, dw, out) }
        }
        // One panel at a time (the kernel's 2 × 16 tile has no registers to spare).
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        Q8x8Isa::Relaxed => {
            assert!(isa.supported());
            for (i, (w, dw)) in w.into_iter().zip(dw).enumerate() {
                let mut rows = [[0f32; NR]; HALF_ROWS];
                // SAFETY: as in `tile`; rows half · 6 .. half · 6 + 6 of 12.
                unsafe { super::q8x8_relaxed::tile(kb, a, da, corr, w, dw, half * HALF_ROWS, &mut rows) };
                for (o, r) in out.iter_mut().zip(&rows) {
                    o[i * NR..(i + 1) * NR].copy_from_slice(r);
                }
            }
        }
    }
}

/// 6 rows × 32 columns: per quad two 64-byte loads (one per panel) and per
/// row one broadcast of its 4 activations feeding two `vpdpbusd`, so 8 loads
/// per 12 products where [`tile_avx512_vnni`] issues 13. The f32 steps are
/// [`tile_scalar`]'s, lane by lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_pair_avx512_vnni(kb: usize, a: &[i8], da: &[f32], corr: &[i32], half: usize, w: [&[u8]; 2], dw: [&[f32]; 2], out: &mut [[f32; 2 * NR]; HALF_ROWS]) {
    use std::arch::asm;
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; HALF_ROWS];
    let h = half * HALF_ROWS;
    for b in 0..kb {
        let cp = corr.as_ptr().add(b * ROWS + h);
        let c: [__m512i; HALF_ROWS] = std::array::from_fn(|r| _mm512_set1_epi32(*cp.add(r)));
        let [mut s0, mut s1, mut s2, mut s3, mut s4, mut s5] = c;
        let [mut t0, mut t1, mut t2, mut t3, mut t4, mut t5] = c;
        let (w0, w1) = (w[0].as_ptr().add(b * PANEL_BLOCK), w[1].as_ptr().add(b * PANEL_BLOCK));
        let ap = a.as_ptr().add(b * TILE_BLOCK + h * 4);
        for j in 0..QUADS {
            let (_u, _v, _x, _y): (__m512i, __m512i, __m512i, __m512i);
            // SAFETY (of the reads): 64 bytes of each panel at quad j, and
            // rows h..h + 6 × 4 bytes of quad j's activations (`tile_pair`
            // checked the lengths).
            asm!(
                "vmovdqu64 {u}, zmmword ptr [{w0}]",
                "vmovdqu64 {v}, zmmword ptr [{w1}]",
                "vpbroadcastd {x}, dword ptr [{p}]",
                "vpbroadcastd {y}, dword ptr [{p} + 4]",
                "vpdpbusd {s0}, {u}, {x}",
                "vpdpbusd {t0}, {v}, {x}",
                "vpbroadcastd {x}, dword ptr [{p} + 8]",
                "vpdpbusd {s1}, {u}, {y}",
                "vpdpbusd {t1}, {v}, {y}",
                "vpbroadcastd {y}, dword ptr [{p} + 12]",
                "vpdpbusd {s2}, {u}, {x}",
                "vpdpbusd {t2}, {v}, {x}",
                "vpbroadcastd {x}, dword ptr [{p} + 16]",
                "vpdpbusd {s3}, {u}, {y}",
                "vpdpbusd {t3}, {v}, {y}",
                "vpbroadcastd {y}, dword ptr [{p} + 20]",
                "vpdpbusd {s4}, {u}, {x}",
                "vpdpbusd {t4}, {v}, {x}",
                "vpdpbusd {s5}, {u}, {y}",
                "vpdpbusd {t5}, {v}, {y}",
                w0 = in(reg) w0.add(j * NR * 4),
                w1 = in(reg) w1.add(j * NR * 4),
                p = in(reg) ap.add(j * ROWS * 4),
                u = out(zmm_reg) _u,
                v = out(zmm_reg) _v,
                x = out(zmm_reg) _x,
                y = out(zmm_reg) _y,
                s0 = inout(zmm_reg) s0,
                s1 = inout(zmm_reg) s1,
                s2 = inout(zmm_reg) s2,
                s3 = inout(zmm_reg) s3,
                s4 = inout(zmm_reg) s4,
                s5 = inout(zmm_reg) s5,
                t0 = inout(zmm_reg) t0,
                t1 = inout(zmm_reg) t1,
                t2 = inout(zmm_reg) t2,
                t3 = inout(zmm_reg) t3,
                t4 = inout(zmm_reg) t4,
                t5 = inout(zmm_reg) t5,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        let isum = [[s0, t0], [s1, t1], [s2, t2], [s3, t3], [s4, t4], [s5, t5]];
        let dwv = [_mm512_loadu_ps(dw[0].as_ptr().add(b * NR)), _mm512_loadu_ps(dw[1].as_ptr().add(b * NR))];
        let dap = da.as_ptr().add(b * ROWS + h);
        for (r, (acc, s)) in acc.iter_mut().zip(&isum).enumerate() {
            let d = _mm512_set1_ps(*dap.add(r));
            for i in 0..2 {
                let scale = _mm512_mul_ps(d, dwv[i]);
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i]), scale, acc[i]);
            }
        }
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(NR), acc[1]);
    }
}

/// The arithmetic limit of the micro-kernel's instruction: `iters` rounds of
/// twelve independent `vpdpbusd` chains on registers (no memory). Returns
/// the integer operations done (a multiply and an add per product: 16 lanes
/// × 4 per instruction; in wasm, the relaxed dot's 4 lanes × 4) and a
/// checksum the caller must consume; `None` without AVX-512 VNNI (in wasm,
/// without `Q8x8Isa::Relaxed`).
#[doc(hidden)]
pub fn peak_loop(iters: usize) -> Option<(u64, i32)> {
    #[cfg(target_arch = "x86_64")]
    if Q8x8Isa::Avx512Vnni.supported() {
        // SAFETY: AVX-512 F/BW/VNNI are present.
        return Some((iters as u64 * 12 * 64 * 2, unsafe { peak_avx512_vnni(iters) }));
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    if Q8x8Isa::Relaxed.supported() {
        return Some(super::q8x8_relaxed::peak(iters));
    }
    let _ = iters;
    None
}

super::q8_kernel::zmm_dot_peak!(
    peak_avx512_vnni,
    "avx2,avx512f,avx512bw,avx512vnni",
    "vpdpbusd",
    _mm512_set1_epi8,
    _mm512_add_epi8
);
