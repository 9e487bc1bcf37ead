//! Throughput of the GEMMs on one shape, next to the arithmetic limit of their
//! instruction mix on this machine (`make bench`; not a test). The same code
//! runs natively (`examples/bench_gemm.rs`) and in wasm (`gemmRates`).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use serde::Serialize;

use super::f32::PackedF32;
use super::f32_kernel::F32Isa;
use super::q4::PackedQ4;
use super::q8::PackedQ8;
use super::q8_kernel::{peak_loop, Isa};
use super::q8x8::PackedQ8x8;
use super::quantized::QuantizedGemm;
use super::q8x8_kernel::{self, Q8x8Isa};

/// One measured kernel: `ops_per_s` counts a multiply and an add per product
/// (2·m·k·n per call; for a peak loop, per instruction lane).
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    /// `q8-int8` (ours, one row per SIMD kernel of the machine, the default
    /// first), `q8-int8x8` (ours, q8_0 × q8_0 on AVX-512 VNNI `vpdpbusd`, or
    /// in the relaxed wasm build on the relaxed dot; where offered), `q8-blocks` (candle's q8_0 kernel), `q4-int8` (ours) /
    /// `q4-blocks` (candle's q4_K kernel; when k is a multiple of 256),
    /// `f32-packed` (ours), `f32-gemm` (candle's dense gemm), `peak-int8` (per
    /// int8 kernel, the default's first), `peak-int8x8` (`vpdpbusd`'s, or the relaxed dot's) /
    /// `peak-f32` (instruction-mix limits; `peak-f32` is that of
    /// `f32-packed`'s kernel).
    pub kernel: String,
    pub isa: String,
    pub median_s: f64,
    pub ops_per_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let h = v.len() / 2;
    if v.len() % 2 == 1 { v[h] } else { (v[h - 1] + v[h]) / 2.0 }
}

/// Median seconds per call of `f` over `runs` samples after a warm-up; each
/// sample repeats `f` for at least a quarter of a second, so that a coarse
/// clock (CPU time in 10 ms ticks) still resolves it. `now`: seconds. Every
/// call of `f` goes through [`call`].
fn time(runs: usize, now: &dyn Fn() -> f64, mut f: impl FnMut()) -> f64 {
    let mut f = || call(&mut f);
    let t = now();
    f();
    let mut repeats = 1;
    while now() - t < 0.05 && repeats < 1 << 20 {
        f();
        repeats += 1;
    }
    let per_call = ((now() - t) / repeats as f64).max(1e-9);
    let repeats = ((0.25 / per_call).ceil() as usize).clamp(1, 1 << 20);
    median(
        (0..runs.max(1))
            .map(|_| {
                let t = now();
                for _ in 0..repeats {
                    f();
                }
                (now() - t) / repeats as f64
            })
            .collect(),
    )
}

/// One call of a measured `f`, never inlined into [`time`]: V8 has no on-stack
/// replacement for wasm, so a loop inlined into `time`'s one activation ran every
/// repetition in its baseline compiler (Liftoff; the relaxed build's `peak-f32`
/// at 10.7 GFLOP/s vs 48 with `--no-liftoff`); separate calls pick up the
/// optimised code once it is ready.
#[inline(never)]
fn call(f: &mut impl FnMut()) {
    f()
}

/// A deterministic pseudo-random vector in [-scale, scale) (xorshift64; also
/// the fused attention's tests).
pub(crate) fn values(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
        })
        .collect()
}

/// Measures `[m, k] × [n, k]ᵀ` with every kernel and the peaks.
pub fn measure(m: usize, k: usize, n: usize, runs: usize, now: &dyn Fn() -> f64) -> candle_core::Result<Vec<Rate>> {
    let dev = Device::Cpu;
    let ops = 2.0 * (m * k * n) as f64;
    let x = Tensor::from_vec(values(1, m * k, 1.0), (m, k), &dev)?;
    let w = Tensor::from_vec(values(2, n * k, 0.05), (n, k), &dev)?;
    let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
    let packed = PackedQ8::from_blocks(&q.data()?, n, k).map_err(|e| candle_core::Error::Msg(e.0))?;
    let xv = x.flatten_all()?.to_vec1::<f32>()?;
    let mut rates = Vec::new();
    let mut push = |kernel: &str, isa: String, s: f64, ops: f64| {
        rates.push(Rate { kernel: kernel.into(), isa, median_s: s, ops_per_s: ops / s.max(1e-12) })
    };
    // Every SIMD int8 kernel of this machine, the best (the default) first.
    let isas: Vec<Isa> = Isa::available().into_iter().rev().filter(|&i| i != Isa::Scalar || Isa::best() == Isa::Scalar).collect();
    for &isa in &isas {
        let s = time(runs, now, || {
            std::hint::black_box(packed.matmul_with(&xv, m, isa));
        });
        push("q8-int8", format!("{isa:?}"), s, ops);
    }
    if Q8x8Isa::best() != Q8x8Isa::Scalar {
        let packed = PackedQ8x8::from_blocks(&q.data()?, n, k).map_err(|e| candle_core::Error::Msg(e.0))?;
        let s = time(runs, now, || {
            std::hint::black_box(packed.matmul(&xv, m));
        });
        push("q8-int8x8", format!("{:?}", Q8x8Isa::best()), s, ops);
    }
    let qm = QMatMul::from_qtensor(q)?;
    let s = time(runs, now, || {
        std::hint::black_box(qm.forward(&x).expect("q8_0 matmul"));
    });
    push("q8-blocks", "candle".into(), s, ops);
    if k.is_multiple_of(super::q4::SUPER) {
        let q4 = QTensor::quantize(&w, GgmlDType::Q4K)?;
        let packed = PackedQ4::from_blocks(&q4.data()?, n, k).map_err(|e| candle_core::Error::Msg(e.0))?;
        let isa = super::q4::kernel_isa(Isa::best());
        let s = time(runs, now, || {
            std::hint::black_box(packed.matmul_with(&xv, m, isa));
        });
        push("q4-int8", format!("{isa:?}"), s, ops);
        let qm = QMatMul::from_qtensor(q4)?;
        let s = time(runs, now, || {
            std::hint::black_box(qm.forward(&x).expect("q4_K matmul"));
        });
        push("q4-blocks", "candle".into(), s, ops);
    }
    let f32_best = F32Isa::best();
    let packed_f32 = PackedF32::from_rows(&w.flatten_all()?.to_vec1::<f32>()?, n, k).map_err(|e| candle_core::Error::Msg(e.0))?;
    let s = time(runs, now, || {
        std::hint::black_box(packed_f32.matmul_with(&xv, m, None, f32_best));
    });
    push("f32-packed", format!("{f32_best:?}"), s, ops);
    let wt = w.t()?;
    let s = time(runs, now, || {
        std::hint::black_box(x.matmul(&wt).expect("f32 matmul"));
    });
    push("f32-gemm", "candle".into(), s, ops);

    let iters = 2_000_000;
    for &isa in &isas {
        let mut peak_ops = 0;
        let s = time(runs, now, || {
            let (o, sum) = peak_loop(isa, iters);
            peak_ops = o;
            std::hint::black_box(sum);
        });
        push("peak-int8", format!("{isa:?}"), s, peak_ops as f64);
    }
    if q8x8_kernel::peak_loop(1).is_some() {
        let mut peak_ops = 0;
        let s = time(runs, now, || {
            let (o, sum) = q8x8_kernel::peak_loop(iters).expect("checked above");
            peak_ops = o;
            std::hint::black_box(sum);
        });
        push("peak-int8x8", format!("{:?}", Q8x8Isa::best()), s, peak_ops as f64);
    }
    let (lanes, s) = peak_f32(iters, runs, now);
    push("peak-f32", format!("{f32_best:?}"), s, (iters * lanes * 2) as f64);
    Ok(rates)
}

/// Independent multiply-add chains on registers (12; in wasm 4 rounds of them per iteration), in the instructions of
/// the best f32 kernel ([`F32Isa::best`]): AVX-512 or AVX2 FMA natively,
/// `f32x4.mul` + `add` in wasm (simd128 has no FMA), `f32x4.relaxed_madd` in
/// the relaxed-SIMD build. Returns (multiply-adds
/// per iteration, median seconds).
fn peak_f32(iters: usize, runs: usize, now: &dyn Fn() -> f64) -> (usize, f64) {
    #[cfg(target_arch = "x86_64")]
    if F32Isa::best() == F32Isa::Avx512 {
        #[target_feature(enable = "avx512f")]
        unsafe fn fma(iters: usize) -> f32 {
            use std::arch::x86_64::*;
            let a = _mm512_set1_ps(std::hint::black_box(0.999));
            let b = _mm512_set1_ps(std::hint::black_box(0.001));
            let mut acc = [_mm512_setzero_ps(); 12];
            for _ in 0..iters {
                for s in acc.iter_mut() {
                    *s = _mm512_fmadd_ps(*s, a, b);
                }
            }
            let mut sum = acc[0];
            for s in &acc[1..] {
                sum = _mm512_add_ps(sum, *s);
            }
            _mm512_reduce_add_ps(sum)
        }
        // SAFETY: AVX-512F is present (F32Isa::best checked it).
        return (12 * 16, time(runs, now, || {
            std::hint::black_box(unsafe { fma(iters) });
        }));
    }
    #[cfg(target_arch = "x86_64")]
    if F32Isa::best() == F32Isa::Avx2Fma {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn fma(iters: usize) -> f32 {
            use std::arch::x86_64::*;
            let a = _mm256_set1_ps(std::hint::black_box(0.999));
            let b = _mm256_set1_ps(std::hint::black_box(0.001));
            let mut acc = [_mm256_setzero_ps(); 12];
            for _ in 0..iters {
                for s in acc.iter_mut() {
                    *s = _mm256_fmadd_ps(*s, a, b);
                }
            }
            let mut sum = acc[0];
            for s in &acc[1..] {
                sum = _mm256_add_ps(sum, *s);
            }
            _mm256_cvtss_f32(sum)
        }
        // SAFETY: AVX2 and FMA are present (F32Isa::best checked them).
        return (12 * 8, time(runs, now, || {
            std::hint::black_box(unsafe { fma(iters) });
        }));
    }
    #[cfg(target_arch = "wasm32")]
    {
        const ROUNDS: usize = 4;
        const CHAINS: usize = 12;
        /// `RELAXED`: `f32x4.relaxed_madd` (the relaxed build's kernel), else mul + add.
        #[target_feature(enable = "simd128")]
        unsafe fn madd<const RELAXED: bool>(iters: usize) -> f32 {
            use core::arch::wasm32::*;
            // acc += w · a: the products are independent of the accumulators (as
            // in a gemm), and w changes every iteration so they cannot be hoisted.
            // The chains share one product, which LLVM computes once per w for mul
            // + add: the simd128 figure is that of the adds, an upper bound. Loops
            // with 8 distinct products (weights loaded from L1, as in the kernel)
            // measured below the kernel itself in V8 (20 vs ~50 GFLOP/s: SSE's
            // two-operand multiply copies each reused weight), so not those. Each w
            // serves ROUNDS rounds: with w's own add every round the loop ran 9
            // adds per 8 multiply-adds on the CPU's add ports and measured below
            // the packed kernel (53.9 vs 65.3 GFLOP/s under Node 26). 12 chains (with
            // a, w and step, the 15 xmm registers V8 allocates): 8 left the relaxed
            // build's fused multiply-adds one short of covering their latency (61.9
            // vs 71.3 GFLOP/s with 12).
            let a = f32x4_splat(std::hint::black_box(0.999));
            let step = f32x4_splat(std::hint::black_box(1e-7));
            let mut w = f32x4_splat(std::hint::black_box(0.001));
            let mut acc = [f32x4_splat(0.0); CHAINS];
            for _ in 0..iters {
                for _ in 0..ROUNDS {
                    for s in acc.iter_mut() {
                        *s = super::f32_relaxed::madd::<RELAXED>(w, a, *s);
                    }
                }
                w = f32x4_add(w, step);
            }
            let mut sum = acc[0];
            for s in &acc[1..] {
                sum = f32x4_add(sum, *s);
            }
            f32x4_extract_lane::<0>(sum)
        }
        let relaxed = cfg!(target_feature = "relaxed-simd");
        // SAFETY: simd128 is a requirement of the wasm build; relaxed SIMD is
        // compiled in when `relaxed`.
        return (ROUNDS * CHAINS * 4, time(runs, now, || {
            std::hint::black_box(unsafe { if relaxed { madd::<true>(iters) } else { madd::<false>(iters) } });
        }));
    }
    #[allow(unreachable_code)]
    {
        let mut acc = [0f32; 8];
        let a = std::hint::black_box(0.999f32);
        let s = time(runs, now, || {
            for _ in 0..iters {
                for v in acc.iter_mut() {
                    *v = *v * a + 0.001;
                }
            }
            std::hint::black_box(acc);
        });
        (8, s)
    }
}
