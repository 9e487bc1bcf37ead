//! The q8_0 × q8_0 GEMM (`kpl::nn::gemm::q8x8`, ggml's semantics): bit for
//! bit against the numpy reference of its algorithm (tests/reference/q8_gemm.py,
//! `y_q8x8`, with ties of the half-away rounding), its activation
//! quantisation byte for byte against candle's `BlockQ8_0::from_float`
//! (ggml's `quantize_row_q8_0`), every kernel of this machine against the
//! scalar one, within f32 summation-order rounding of candle's q8_0 block
//! kernel on odd shapes, and its fused epilogues at 1–3 threads.

mod common;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use kpl::nn::gemm::q8::{BLOCK, BLOCK_BYTES};
use kpl::nn::gemm::q8x8::{quantize_block, round_half_away, PackedQ8x8};
use kpl::nn::gemm::{Epilogue, Q8x8Isa, QuantizedGemm};
use kpl::nn::Activation;

use common::gemm_data::{pool, q8_cases, same_bits, stream};

/// candle's q8_0 quantisation of `x` [rows, k] (its `from_float`, the
/// activations' quantisation in its block kernel).
fn candle_q8_0(x: &[f32], rows: usize, k: usize) -> Vec<u8> {
    let t = Tensor::from_vec(x.to_vec(), (rows, k), &Device::Cpu).unwrap();
    QTensor::quantize(&t, GgmlDType::Q8_0).unwrap().data().unwrap().into_owned()
}

#[test]
fn q8x8_gemm_matches_the_numpy_reference_bit_for_bit() {
    let cases = q8_cases();
    assert!(cases.len() >= 9);
    for c in &cases {
        let (m, k, n, x, raw) = (c.m, c.k, c.n, c.x.as_slice(), c.blocks.as_slice());
        let expected = c.f32s("y_q8x8");
        let packed = PackedQ8x8::from_blocks(&raw, n, k).unwrap();
        assert_eq!(packed.to_blocks(), raw, "[{m}, {k}, {n}]: packing must be lossless");
        for isa in Q8x8Isa::available() {
            let y = packed.matmul_with(&x, m, isa);
            let worst = y.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(same_bits(&y, &expected), "[{m}, {k}, {n}] {isa:?}: differs from numpy's reference by up to {worst}");
        }
        eprintln!("[{m}, {k}, {n}]: {:?} equal to the reference bit for bit", Q8x8Isa::available());
    }
}

#[test]
fn activation_quantisation_is_candles_byte_for_byte() {
    // Round half away from zero for every kind of f32: ties, the largest
    // value below ½, huge values, infinities, NaN.
    let mut values: Vec<f32> = (-600..=600).map(|i| i as f32 * 0.25).collect();
    values.extend([0.499_999_97, -0.499_999_97, 0.5, -0.5, 1.499_999_9, 2.5, -2.5, 8_388_607.5, 8_388_609.0, 1e30, -1e30]);
    values.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE, -0.0, 127.5, -128.5, 126.49999]);
    values.extend(stream(3, 4096, 90.0));
    for v in values {
        assert_eq!(round_half_away(v), v.round() as i8, "round({v})");
    }
    // Blocks as ggml quantises them: candle's bytes (f16 scale, 32 int8).
    let mut x = stream(5, 64 * BLOCK, 1.0);
    x[..BLOCK].fill(0.0); // d = 0
    for (j, v) in x[BLOCK..2 * BLOCK].iter_mut().enumerate() {
        *v = if j == 0 { 127.0 * 0.25 } else { 0.25 * ((j % 20) as f32 - 10.5) }; // ties
    }
    x[2 * BLOCK..3 * BLOCK].iter_mut().for_each(|v| *v *= 1e-5); // a subnormal f16 scale
    x[3 * BLOCK + 5] = f32::NAN;
    x[3 * BLOCK + 6] = f32::INFINITY; // d = ∞: 1/d = 0, ∞ · 0 = NaN → 0
    x[4 * BLOCK + 7] = 1e30; // x / d = 127 · (1 + ε): saturated
    let want = candle_q8_0(&x, 1, x.len());
    for ((b, (xb, cb)), isa) in x.chunks_exact(BLOCK).zip(want.chunks_exact(BLOCK_BYTES)).enumerate().flat_map(|c| Q8x8Isa::available().into_iter().map(move |i| (c, i))) {
        let mut q = [0i8; BLOCK];
        let (d, sum) = quantize_block(xb, &mut q, isa);
        assert_eq!(half::f16::from_f32(d).to_le_bytes(), [cb[0], cb[1]], "block {b} {isa:?}: scale");
        assert!(d.to_bits() == half::f16::from_le_bytes([cb[0], cb[1]]).to_f32().to_bits(), "block {b} {isa:?}: the scale is f16's");
        assert_eq!(q.map(|v| v as u8), cb[2..], "block {b} {isa:?}: values");
        assert_eq!(sum, q.iter().map(|&v| i32::from(v)).sum::<i32>());
    }
}

/// f32's unit roundoff.
const U: f64 = 1.0 / (1u64 << 24) as f64;

#[test]
fn q8x8_gemm_agrees_with_candles_block_kernel() {
    let dev = Device::Cpu;
    // One row, rows and columns off the 12 × 16 tile, k = 32 · odd, a
    // transformer's 197 rows.
    for &(m, k, n) in &[(1, 32, 1), (1, 768, 19), (5, 160, 13), (12, 96, 16), (13, 224, 17), (25, 800, 33), (197, 96, 40)] {
        let x = stream(m as u64 * 29 + k as u64, m * k, 1.0);
        let w = stream(n as u64 * 11 + 5, n * k, 0.02);
        let qt = QTensor::quantize(&Tensor::from_vec(w, (n, k), &dev).unwrap(), GgmlDType::Q8_0).unwrap();
        let raw = qt.data().unwrap().into_owned();
        let packed = PackedQ8x8::from_blocks(&raw, n, k).unwrap();
        let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
        let candle = QMatMul::from_qtensor(qt).unwrap().forward(&xt).unwrap().to_vec2::<f32>().unwrap();
        let reference = packed.matmul_with(&x, m, Q8x8Isa::Scalar);
        for isa in Q8x8Isa::available() {
            assert!(same_bits(&packed.matmul_with(&x, m, isa), &reference), "[{m}, {k}, {n}] {isa:?} differs from the scalar kernel");
        }
        // The terms T_b = isum_b · (d_x · d_w) from candle's own quantised
        // activations: both sums are within (2·kb + 16) roundings of their exact
        // sum (ours: the scale's product and a fused multiply-add per block;
        // candle's: 8 lanes of fused multiply-adds, then their sum), so within
        // twice that of each other.
        let xq = candle_q8_0(&x, m, k);
        let kb = k / BLOCK;
        let mut worst = 0f64;
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut magnitude) = (0f64, 0f64);
                for b in 0..kb {
                    let xa = &xq[(i * kb + b) * BLOCK_BYTES..(i * kb + b + 1) * BLOCK_BYTES];
                    let wb = &raw[(j * kb + b) * BLOCK_BYTES..(j * kb + b + 1) * BLOCK_BYTES];
                    let isum: i32 = xa[2..].iter().zip(&wb[2..]).map(|(&a, &c)| i32::from(a as i8) * i32::from(c as i8)).sum();
                    let scale = half::f16::from_le_bytes([xa[0], xa[1]]).to_f32() * half::f16::from_le_bytes([wb[0], wb[1]]).to_f32();
                    exact += isum as f64 * scale as f64;
                    magnitude += (isum as f64 * scale as f64).abs();
                }
                let bound = (2 * kb + 16) as f64 * U * magnitude + 1e-30;
                let (ours, theirs) = (reference[i * n + j] as f64, candle[i][j] as f64);
                assert!((ours - exact).abs() <= bound, "[{m}, {k}, {n}] ({i}, {j}): {ours} vs exact {exact} (bound {bound})");
                assert!((ours - theirs).abs() <= 2.0 * bound, "[{m}, {k}, {n}] ({i}, {j}): {ours} vs candle {theirs}");
                worst = worst.max((ours - theirs).abs() / (2.0 * bound));
            }
        }
        eprintln!("[{m}, {k}, {n}]: |q8x8 − candle blocks| ≤ {worst:.3} of the summation-order bound");
    }
}

#[test]
fn q8x8_packing_rejects_bad_shapes() {
    let raw = vec![0u8; 2 * BLOCK_BYTES];
    assert!(PackedQ8x8::from_blocks(&raw, 2, 32).is_ok());
    assert!(PackedQ8x8::from_blocks(&raw, 2, 48).is_err(), "k not a multiple of 32");
    assert!(PackedQ8x8::from_blocks(&raw, 3, 32).is_err(), "too few bytes");
    assert!(PackedQ8x8::from_blocks(&raw, 0, 32).is_err(), "no rows");
    assert!(PackedQ8x8::from_blocks(&raw[1..], 2, 32).is_err(), "a truncated block");
}

/// Fused epilogues give the bits of the unfused path (candle's bias add,
/// `Activation::apply`, residual sum), every kernel, odd shapes, at 1, 2 and
/// 3 threads.
#[test]
fn q8x8_fused_epilogues_equal_the_unfused_path_at_any_thread_count() {
    let dev = Device::Cpu;
    let pools = [pool(1), pool(2), pool(3)];
    for &(m, k, n) in &[(1, 32, 1), (5, 160, 13), (13, 288, 40), (197, 64, 50)] {
        let x = stream(m as u64 * 13 + k as u64, m * k, 1.0);
        let w = stream(n as u64 * 3 + 7, n * k, 0.05);
        let b = stream(n as u64 + 5, n, 0.3);
        let r = stream(m as u64 + 11, m * n, 1.0);
        let qt = QTensor::quantize(&Tensor::from_vec(w, (n, k), &dev).unwrap(), GgmlDType::Q8_0).unwrap();
        let packed = PackedQ8x8::from_blocks(&qt.data().unwrap(), n, k).unwrap();
        let bt = Tensor::from_vec(b.clone(), n, &dev).unwrap();
        let rt = Tensor::from_vec(r.clone(), (m, n), &dev).unwrap();
        let unfused = |y: Vec<f32>, act: Option<Activation>, residual: bool| -> Vec<f32> {
            let mut t = Tensor::from_vec(y, (m, n), &dev).unwrap().broadcast_add(&bt).unwrap();
            if let Some(a) = act {
                t = a.apply(&t).unwrap();
            }
            if residual {
                t = (&rt + t).unwrap();
            }
            t.flatten_all().unwrap().to_vec1().unwrap()
        };
        let epilogues = [(None, true), (Some(Activation::QuickGelu), false), (Some(Activation::Gelu), false), (Some(Activation::GeluTanh), true)];
        for (act, residual) in epilogues {
            let epilogue = Epilogue { bias: Some(&b), activation: act, residual: residual.then_some(&r[..]) };
            for isa in Q8x8Isa::available() {
                let want = unfused(packed.matmul_with(&x, m, isa), act, residual);
                for p in &pools {
                    let got = p.install(|| packed.matmul_fused_with(&x, m, &epilogue, isa));
                    let threads = p.current_num_threads();
                    assert!(same_bits(&got, &want), "[{m}, {k}, {n}] {isa:?} {act:?} residual {residual}, {threads} threads");
                }
            }
        }
    }
}
