//! The f32 GEMM's micro-kernels: up to [`F32Isa::rows`] rows × one [`NR`]-column
//! panel over a block of k, for each instruction set. Each output is one chain
//! `acc ← acc + x·w` in k order, starting from the value passed in; the kernels
//! with fused multiply-adds ([`F32Isa::fused`]) round once per step
//! (`x.mul_add(w, acc)`), the others twice (`acc + x * w`). Kernels of the same
//! kind give the same bits as their scalar reference, whatever their tile.

/// Output columns per weight panel: one AVX-512 register, two AVX2 ones,
/// four simd128 ones.
pub const NR: usize = 16;
/// The most rows any kernel takes at once.
pub const MAX_ROWS: usize = 12;

/// An instruction set an f32 micro-kernel is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F32Isa {
    /// Plain Rust, `acc + x * w` (two roundings): the fallback on any CPU, and
    /// the reference of simd128.
    Scalar,
    /// Plain Rust, `x.mul_add(w, acc)` (one rounding): the reference of the FMA
    /// kernels (slow where the CPU has no FMA: software `fmaf`).
    ScalarFma,
    /// x86-64 AVX2 + FMA, 6 rows × 16 columns, chosen at run time.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// x86-64 AVX-512F, 12 rows × 16 columns, chosen at run time.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// wasm simd128 (`f32x4.mul` + `f32x4.add`: simd128 has no deterministic
    /// FMA), 4 rows × 8 columns twice per panel. Not in the relaxed-SIMD
    /// build, whose [`Relaxed`](Self::Relaxed) runs the same tiles.
    #[cfg(all(target_arch = "wasm32", not(target_feature = "relaxed-simd")))]
    Simd128,
    /// wasm relaxed SIMD (`f32x4.relaxed_madd`: one rounding where the
    /// engine's CPU has FMA, else two; [`super::f32_relaxed::fuses`] says
    /// which), the simd128 kernel's tiles. Only in the `+relaxed-simd` build.
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    Relaxed,
}

impl F32Isa {
    /// The fastest kernel this machine runs.
    pub fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return F32Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return F32Isa::Avx2Fma;
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        return F32Isa::Relaxed;
        #[cfg(all(target_arch = "wasm32", not(target_feature = "relaxed-simd")))]
        return F32Isa::Simd128;
        #[allow(unreachable_code)]
        F32Isa::Scalar
    }

    /// Every kernel this machine runs (for tests comparing them).
    pub fn available() -> Vec<Self> {
        let mut v = vec![F32Isa::Scalar, F32Isa::ScalarFma];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                v.push(F32Isa::Avx2Fma);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(F32Isa::Avx512);
            }
        }
        #[cfg(all(target_arch = "wasm32", not(target_feature = "relaxed-simd")))]
        v.push(F32Isa::Simd128);
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        v.push(F32Isa::Relaxed);
        v
    }

    /// Whether each step rounds once (a fused multiply-add).
    pub fn fused(self) -> bool {
        match self {
            F32Isa::Scalar => false,
            F32Isa::ScalarFma => true,
            #[cfg(target_arch = "x86_64")]
            F32Isa::Avx2Fma | F32Isa::Avx512 => true,
            #[cfg(all(target_arch = "wasm32", not(target_feature = "relaxed-simd")))]
            F32Isa::Simd128 => false,
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            F32Isa::Relaxed => super::f32_relaxed::fuses(),
        }
    }

    /// Rows per tile: as many accumulators as the registers hold beside the
    /// weights and the broadcast activation (16 ymm, 32 zmm, 16 in V8).
    pub fn rows(self) -> usize {
        match self {
            F32Isa::Scalar | F32Isa::ScalarFma => 4,
            #[cfg(target_arch = "x86_64")]
            F32Isa::Avx2Fma => 6,
            #[cfg(target_arch = "x86_64")]
            F32Isa::Avx512 => MAX_ROWS,
            #[cfg(all(target_arch = "wasm32", not(target_feature = "relaxed-simd")))]
            F32Isa::Simd128 => 4,
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            F32Isa::Relaxed => 4,
        }
    }
}

/// Calls `$f::<R>($args)` (or `$f::<R, $p>`) for `R = $rows`, one of the listed constants.
macro_rules! by_rows {
    ($rows:expr, $f:ident, $args:tt, $($r:literal)*) => {
        match $rows {
            $($r => $f::<$r> $args,)*
            _ => unreachable!("rows checked by tile"),
        }
    };
    ($rows:expr, $f:ident::<_, $p:literal>, $args:tt, $($r:literal)*) => {
        match $rows {
            $($r => $f::<$r, $p> $args,)*
            _ => unreachable!("rows checked by tile"),
        }
    };
}

/// `acc[r][c] ← acc[r][c] + Σ_{j<kc} a[j·MR + r] · w[j·NR + c]`, one step per
/// j in order, for `r < rows`, `c < NR`, with `MR = isa.rows()`. `a`: a tile of
/// activations packed k-major (`kc` × MR values: row r of step j at `j·MR + r`,
/// so the kernels broadcast from one pointer at constant offsets); `w`: `kc` ×
/// [`NR`] values of one panel.
///
/// Panics if `rows` is 0 or above `isa.rows()`, or a slice is shorter than read
/// (a caller's bug).
pub fn tile(isa: F32Isa, rows: usize, kc: usize, a: &[f32], w: &[f32], acc: &mut [[f32; NR]]) {
    assert!((1..=isa.rows()).contains(&rows) && acc.len() >= rows && w.len() >= kc * NR);
    assert!(a.len() >= kc * isa.rows(), "a is shorter than kc · MR");
    let (x, w, acc) = (a.as_ptr(), w.as_ptr(), &mut acc[..rows]);
    match isa {
        F32Isa::Scalar => tile_scalar(false, kc, &a[..kc * isa.rows()], w, acc),
        F32Isa::ScalarFma => tile_scalar(true, kc, &a[..kc * isa.rows()], w, acc),
        #[cfg(target_arch = "x86_64")]
        F32Isa::Avx2Fma => {
            assert!(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"));
            // SAFETY: AVX2 and FMA are present (checked above); the pointers
            // cover what the kernel reads (asserted above).
            unsafe { by_rows!(rows, tile_avx2, (kc, x, w, acc), 1 2 3 4 5 6) }
        }
        #[cfg(target_arch = "x86_64")]
        F32Isa::Avx512 => {
            assert!(std::arch::is_x86_feature_detected!("avx512f"));
            // SAFETY: AVX-512F is present (checked above); the pointers cover
            // what the kernel reads (asserted above).
            unsafe { by_rows!(rows, tile_avx512, (kc, x, w, acc), 1 2 3 4 5 6 7 8 9 10 11 12) }
        }
        // SAFETY: the lengths are asserted above; simd128 is a requirement of
        // the wasm build (every supported browser and Node ≥ 16 has it).
        #[cfg(all(target_arch = "wasm32", not(target_feature = "relaxed-simd")))]
        F32Isa::Simd128 => unsafe { by_rows!(rows, tile_simd128::<_, false>, (kc, x, w, acc), 1 2 3 4) },
        // SAFETY: as simd128; relaxed SIMD is compiled in (this variant exists
        // only then), and the worker runs this build only where it validates.
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        F32Isa::Relaxed => unsafe { by_rows!(rows, tile_simd128::<_, true>, (kc, x, w, acc), 1 2 3 4) },
    }
}

/// The GEMM driver's path without a copy of the tile:
/// `c[r·ldc + q·NR + i] ← (if accumulate, that value, else 0) +
/// Σ_{j<kc} a[j·MR + r] · w[q][j·NR + i]` for `r < rows`, `i < NR` and each
/// of the `P` = `w.len()` panels (1 or 2) side by side, one step per j in
/// order as [`tile`] takes it on the same `isa` (a fused multiply-add on
/// AVX-512, a multiply then an add on simd128): the bits of [`tile`]. Returns `false`, doing nothing, where `isa` has no such kernel
/// (all but AVX-512 and simd128; the caller then goes through [`tile`]). On AVX-512, two
/// panels make a 12 × 32 tile: 24 accumulators, per k two weight loads and 12
/// broadcasts for 24 multiply-adds.
///
/// Panics if `rows` is 0 or above `isa.rows()`, `w` holds neither 1 nor 2
/// panels, or a slice is shorter than read (a caller's bug).
#[allow(clippy::too_many_arguments)]
pub fn tile_into(isa: F32Isa, rows: usize, kc: usize, a: &[f32], w: &[&[f32]], c: &mut [f32], ldc: usize, accumulate: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa == F32Isa::Avx512 {
        let p = w.len();
        assert!((1..=isa.rows()).contains(&rows) && (1..=2).contains(&p) && ldc >= p * NR);
        assert!(w.iter().all(|w| w.len() >= kc * NR) && a.len() >= kc * isa.rows(), "a slice is shorter than read");
        assert!(c.len() >= (rows - 1) * ldc + p * NR, "c is shorter than the tile");
        assert!(std::arch::is_x86_feature_detected!("avx512f"));
        let (x, c) = (a.as_ptr(), c.as_mut_ptr());
        // SAFETY: AVX-512F is present (checked above); the pointers cover
        // what the kernel reads and writes (asserted above).
        unsafe {
            if p == 2 {
                let w = [w[0].as_ptr(), w[1].as_ptr()];
                by_rows!(rows, tile_into_avx512::<_, 2>, (kc, x, w, c, ldc, accumulate), 1 2 3 4 5 6 7 8 9 10 11 12)
            } else {
                let w = [w[0].as_ptr()];
                by_rows!(rows, tile_into_avx512::<_, 1>, (kc, x, w, c, ldc, accumulate), 1 2 3 4 5 6 7 8 9 10 11 12)
            }
        }
        return true;
    }
    #[cfg(target_arch = "wasm32")]
    if isa == F32Isa::best() {
        let p = w.len();
        assert!((1..=isa.rows()).contains(&rows) && (1..=2).contains(&p) && ldc >= p * NR);
        assert!(w.iter().all(|w| w.len() >= kc * NR) && a.len() >= kc * isa.rows(), "a slice is shorter than read");
        assert!(c.len() >= (rows - 1) * ldc + p * NR, "c is shorter than the tile");
        let (x, c) = (a.as_ptr(), c.as_mut_ptr());
        // SAFETY: the pointers cover what the kernel reads and writes (asserted
        // above); simd128 is a requirement of the wasm build.
        // The relaxed-SIMD build's kernel (its only wasm one) steps with `relaxed_madd`.
        #[cfg(target_feature = "relaxed-simd")]
        unsafe { by_rows!(rows, tile_into_simd128::<_, true>, (kc, x, w, c, ldc, accumulate), 1 2 3 4) };
        #[cfg(not(target_feature = "relaxed-simd"))]
        unsafe { by_rows!(rows, tile_into_simd128::<_, false>, (kc, x, w, c, ldc, accumulate), 1 2 3 4) };
        return true;
    }
    let _ = (isa, rows, kc, a, w, c, ldc, accumulate);
    false
}

/// [`tile_into`] in simd128: [`tile_simd128`]'s passes of 8 columns (4 rows ×
/// 2 vectors of accumulators, 2 of weights and the broadcast in V8's 16
/// registers), their accumulators loaded from and stored to `c` rows `ldc`
/// apart instead of a tile copied there and back per k block (a
/// `memory.copy` call per row in wasm).
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
unsafe fn tile_into_simd128<const R: usize, const RELAXED: bool>(kc: usize, x: *const f32, w: &[&[f32]], c: *mut f32, ldc: usize, accumulate: bool) {
    const MR: usize = 4;
    use core::arch::wasm32::*;
    for (q, panel) in w.iter().enumerate() {
        let w = panel.as_ptr();
        for half in [0, NR / 2] {
            let col = q * NR + half;
            let mut acc = [[f32x4_splat(0.0); 2]; R];
            if accumulate {
                for (r, a) in acc.iter_mut().enumerate() {
                    let p = c.add(r * ldc + col);
                    *a = [v128_load(p as *const v128), v128_load(p.add(4) as *const v128)];
                }
            }
            for j in 0..kc {
                let wp = w.add(j * NR + half);
                let (w0, w1) = (v128_load(wp as *const v128), v128_load(wp.add(4) as *const v128));
                for (r, a) in acc.iter_mut().enumerate() {
                    let xv = v128_load32_splat(x.add(j * MR + r) as *const u32);
                    a[0] = super::f32_relaxed::madd::<RELAXED>(xv, w0, a[0]);
                    a[1] = super::f32_relaxed::madd::<RELAXED>(xv, w1, a[1]);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                let p = c.add(r * ldc + col);
                v128_store(p as *mut v128, a[0]);
                v128_store(p.add(4) as *mut v128, a[1]);
            }
        }
    }
}

/// `a`: kc × mr values (mr = a.len() / kc).
fn tile_scalar(fused: bool, kc: usize, a: &[f32], w: *const f32, acc: &mut [[f32; NR]]) {
    // SAFETY: `tile` asserted that w holds kc · NR values.
    let w = unsafe { std::slice::from_raw_parts(w, kc * NR) };
    let mr = a.len() / kc.max(1);
    for (r, acc) in acc.iter_mut().enumerate() {
        for (ak, wk) in a.chunks_exact(mr).zip(w.chunks_exact(NR)) {
            let x = ak[r];
            for (o, &b) in acc.iter_mut().zip(wk) {
                *o = if fused { x.mul_add(b, *o) } else { *o + x * b };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize>(kc: usize, x: *const f32, w: *const f32, acc: &mut [[f32; NR]]) {
    const MR: usize = 6;
    use std::arch::x86_64::*;
    let mut c = [[_mm256_setzero_ps(); 2]; R];
    for (c, a) in c.iter_mut().zip(acc.iter()) {
        *c = [_mm256_loadu_ps(a.as_ptr()), _mm256_loadu_ps(a.as_ptr().add(8))];
    }
    for j in 0..kc {
        let w0 = _mm256_loadu_ps(w.add(j * NR));
        let w1 = _mm256_loadu_ps(w.add(j * NR + 8));
        for (r, c) in c.iter_mut().enumerate() {
            let a = _mm256_broadcast_ss(&*x.add(j * MR + r));
            c[0] = _mm256_fmadd_ps(a, w0, c[0]);
            c[1] = _mm256_fmadd_ps(a, w1, c[1]);
        }
    }
    for (c, a) in c.iter().zip(acc.iter_mut()) {
        _mm256_storeu_ps(a.as_mut_ptr(), c[0]);
        _mm256_storeu_ps(a.as_mut_ptr().add(8), c[1]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const R: usize>(kc: usize, x: *const f32, w: *const f32, acc: &mut [[f32; NR]]) {
    const MR: usize = MAX_ROWS;
    use std::arch::x86_64::*;
    let mut c = [_mm512_setzero_ps(); R];
    for (c, a) in c.iter_mut().zip(acc.iter()) {
        *c = _mm512_loadu_ps(a.as_ptr());
    }
    for j in 0..kc {
        let wv = _mm512_loadu_ps(w.add(j * NR));
        for (r, c) in c.iter_mut().enumerate() {
            *c = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(j * MR + r)), wv, *c);
        }
    }
    for (c, a) in c.iter().zip(acc.iter_mut()) {
        _mm512_storeu_ps(a.as_mut_ptr(), *c);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_into_avx512<const R: usize, const P: usize>(
    kc: usize,
    x: *const f32,
    w: [*const f32; P],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    const MR: usize = MAX_ROWS;
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    if accumulate {
        for (r, acc) in acc.iter_mut().enumerate() {
            for (q, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_loadu_ps(c.add(r * ldc + q * NR));
            }
        }
    }
    for j in 0..kc {
        let mut v = [_mm512_setzero_ps(); P];
        for (v, w) in v.iter_mut().zip(w) {
            *v = _mm512_loadu_ps(w.add(j * NR));
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let a = _mm512_set1_ps(*x.add(j * MR + r));
            for (acc, v) in acc.iter_mut().zip(v) {
                *acc = _mm512_fmadd_ps(a, v, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (q, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(c.add(r * ldc + q * NR), *acc);
        }
    }
}

/// `RELAXED`: each step one `f32x4.relaxed_madd` ([`F32Isa::Relaxed`]) instead
/// of `f32x4.mul` then `add`.
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
unsafe fn tile_simd128<const R: usize, const RELAXED: bool>(kc: usize, x: *const f32, w: *const f32, acc: &mut [[f32; NR]]) {
    const MR: usize = 4;
    use core::arch::wasm32::*;
    // Two passes of 8 columns: 4 rows × 2 vectors of accumulators, 2 of
    // weights and the broadcast stay within the 16 registers V8 allocates.
    for half in [0, NR / 2] {
        let mut c = [[f32x4_splat(0.0); 2]; R];
        for (c, a) in c.iter_mut().zip(acc.iter()) {
            let p = a.as_ptr().add(half);
            *c = [v128_load(p as *const v128), v128_load(p.add(4) as *const v128)];
        }
        for j in 0..kc {
            let wp = w.add(j * NR + half);
            let (w0, w1) = (v128_load(wp as *const v128), v128_load(wp.add(4) as *const v128));
            for (r, c) in c.iter_mut().enumerate() {
                let a = v128_load32_splat(x.add(j * MR + r) as *const u32);
                c[0] = super::f32_relaxed::madd::<RELAXED>(a, w0, c[0]);
                c[1] = super::f32_relaxed::madd::<RELAXED>(a, w1, c[1]);
            }
        }
        for (c, a) in c.iter().zip(acc.iter_mut()) {
            let p = a.as_mut_ptr().add(half);
            v128_store(p as *mut v128, c[0]);
            v128_store(p.add(4) as *mut v128, c[1]);
        }
    }
}
