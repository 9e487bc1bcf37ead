//! The int8 GEMM for q4_K weights (`kpl::nn::gemm::q4`): packing lossless,
//! its dequantisation bit for bit ggml's (numpy's `dequantize_row_q4_K`,
//! tests/reference/q4_gemm.py, and candle's), the product bit for bit the
//! numpy reference of its algorithm on every micro-kernel of this machine,
//! within the activation quantisation's bound of the exact product with the
//! dequantised weight and of candle's dense and q4_K block kernels, and the
//! same bits on 1, 2 and 3 threads. Odd shapes: one row, m and n off the
//! 4 × 8 tile, k = 256 · odd.

mod common;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use common::gemm_data::{f32s, f64s, pool, same_bits, stream, unhex};
use kpl::nn::gemm::q4::{PackedQ4, SUPER, SUPER_BYTES};
use kpl::nn::gemm::{Isa, QuantizedGemm};

/// Quantising an activation moves it by at most half a step, `max|x| / 32767
/// / 2` per 32 values: the bound on `|y − x·wᵀ|` for one output, plus f32
/// rounding of the sums (relative to their magnitude).
fn quantisation_bound(x: &[f32], w: &[f32]) -> f64 {
    let (mut bound, mut magnitude) = (0f64, 0f64);
    for (xb, wb) in x.chunks_exact(32).zip(w.chunks_exact(32)) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
        bound += amax / 32767.0 / 2.0 * wb.iter().map(|v| v.abs() as f64).sum::<f64>();
        magnitude += xb.iter().zip(wb).map(|(a, b)| (a * b).abs() as f64).sum::<f64>();
    }
    bound * 1.0001 + 4e-6 * magnitude + 1e-7
}

#[test]
fn q4_gemm_matches_the_numpy_reference_bit_for_bit() {
    let text = std::fs::read_to_string("tests/fixtures/q4-gemm/cases.json").unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for c in cases {
        let (m, k, n) = (c["m"].as_u64().unwrap() as usize, c["k"].as_u64().unwrap() as usize, c["n"].as_u64().unwrap() as usize);
        let x = f32s(&unhex(c["x"].as_str().unwrap()));
        let raw = unhex(c["blocks"].as_str().unwrap());
        let w_deq = f32s(&unhex(c["w_deq"].as_str().unwrap()));
        let expected = f32s(&unhex(c["y"].as_str().unwrap()));
        let exact = f64s(&unhex(c["y_f64"].as_str().unwrap()));
        let packed = PackedQ4::from_blocks(&raw, n, k).unwrap();
        assert_eq!(packed.to_blocks(), raw, "[{m}, {k}, {n}]: packing must be lossless");
        assert!(same_bits(&packed.to_rows(), &w_deq), "[{m}, {k}, {n}]: dequantisation differs from ggml's (numpy)");
        // 152 bytes a 256-value block of a row (the blocks' 144), rows padded to the 8-column panel.
        assert_eq!(packed.bytes(), n.div_ceil(8) * 8 * (k / SUPER) * 152, "[{m}, {k}, {n}]: bytes held");
        for isa in Isa::available() {
            let y = packed.matmul_with(&x, m, isa);
            let worst = y.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(same_bits(&y, &expected), "[{m}, {k}, {n}] {isa:?}: differs from numpy's reference by up to {worst}");
        }
        for i in 0..m {
            for j in 0..n {
                let tol = quantisation_bound(&x[i * k..(i + 1) * k], &w_deq[j * k..(j + 1) * k]);
                let err = (expected[i * n + j] as f64 - exact[i * n + j]).abs();
                assert!(err <= tol, "[{m}, {k}, {n}] ({i}, {j}): {} vs exact {} (bound {tol})", expected[i * n + j], exact[i * n + j]);
            }
        }
        eprintln!("[{m}, {k}, {n}]: {:?} equal to the reference bit for bit", Isa::available());
    }
}

#[test]
fn q4_gemm_agrees_with_candle_dense_and_block_kernels() {
    let dev = Device::Cpu;
    for &(m, k, n) in &[(1, 256, 1), (1, 768, 19), (3, 256, 5), (6, 512, 40), (11, 1280, 9), (197, 256, 12)] {
        let x = stream(m as u64 * 31 + k as u64, m * k, 1.0);
        let w = stream(n as u64 * 7 + 3, n * k, 0.02);
        let qt = QTensor::quantize(&Tensor::from_vec(w, (n, k), &dev).unwrap(), GgmlDType::Q4K).unwrap();
        let raw = qt.data().unwrap().into_owned();
        assert_eq!(raw.len(), n * k / SUPER * SUPER_BYTES);
        let packed = PackedQ4::from_blocks(&raw, n, k).unwrap();
        let wdeq = qt.dequantize(&dev).unwrap();
        assert!(same_bits(&packed.to_rows(), &wdeq.flatten_all().unwrap().to_vec1::<f32>().unwrap()), "dequantisation differs from candle's");
        let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
        let dense = xt.matmul(&wdeq.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        let blocks = QMatMul::from_qtensor(qt).unwrap().forward(&xt).unwrap().to_vec2::<f32>().unwrap();
        let wdeq = wdeq.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let reference = packed.matmul_with(&x, m, Isa::Scalar);
        for isa in Isa::available() {
            assert!(same_bits(&packed.matmul_with(&x, m, isa), &reference), "{isa:?} differs from the scalar kernel");
        }
        let mut worst = 0f64;
        for i in 0..m {
            let row = &x[i * k..(i + 1) * k];
            for j in 0..n {
                let wrow = &wdeq[j * k..(j + 1) * k];
                let tol = quantisation_bound(row, wrow);
                let got = reference[i * n + j] as f64;
                let err = (got - dense[i][j] as f64).abs();
                assert!(err <= tol, "[{m}, {k}, {n}] ({i}, {j}): int8 {got} vs dense {} (bound {tol})", dense[i][j]);
                // candle's block kernel: 8-bit activations per 256 values.
                let amax = row.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                let tol8 = tol + amax / 127.0 * wrow.iter().map(|v| v.abs() as f64).sum::<f64>();
                assert!((got - blocks[i][j] as f64).abs() <= tol8, "[{m}, {k}, {n}] ({i}, {j}): int8 {got} vs candle blocks {}", blocks[i][j]);
                worst = worst.max(err / tol);
            }
        }
        eprintln!("[{m}, {k}, {n}]: |int8 − dense| ≤ {worst:.3} of the quantisation bound");
    }
}

#[test]
fn q4_gemm_gives_the_same_bits_on_1_2_and_3_threads() {
    let dev = Device::Cpu;
    // m off the tile, n off the panel, fewer panels than threads, panel counts
    // that do not divide by the thread count.
    for &(m, k, n) in &[(1, 256, 1), (5, 256, 13), (3, 512, 17), (197, 256, 41), (2, 256, 200)] {
        let x = stream(m as u64 * 131 + k as u64, m * k, 2.0);
        let w = stream(n as u64 + 7, n * k, 0.1);
        let qt = QTensor::quantize(&Tensor::from_vec(w, (n, k), &dev).unwrap(), GgmlDType::Q4K).unwrap();
        let packed = PackedQ4::from_blocks(&qt.data().unwrap(), n, k).unwrap();
        let one = pool(1).install(|| packed.matmul_with(&x, m, Isa::Scalar));
        assert!(one.iter().any(|v| *v != 0.0), "[{m}, {k}, {n}]: an all-zero product proves nothing");
        for threads in [2, 3] {
            for isa in Isa::available() {
                let got = pool(threads).install(|| {
                    assert_eq!(rayon::current_num_threads(), threads);
                    packed.matmul_with(&x, m, isa)
                });
                assert!(same_bits(&got, &one), "[{m}, {k}, {n}] {isa:?} on {threads} threads differs from 1 thread");
            }
        }
    }
}

#[test]
fn q4_packing_rejects_bad_shapes() {
    let raw = vec![0u8; 2 * SUPER_BYTES];
    assert!(PackedQ4::from_blocks(&raw, 2, 256).is_ok());
    assert!(PackedQ4::from_blocks(&raw, 1, 512).is_ok());
    assert!(PackedQ4::from_blocks(&raw, 2, 288).is_err(), "k not a multiple of 256");
    assert!(PackedQ4::from_blocks(&raw, 3, 256).is_err(), "too few bytes");
    assert!(PackedQ4::from_blocks(&raw, 0, 256).is_err(), "no rows");
    assert!(PackedQ4::from_blocks(&raw[1..], 2, 256).is_err(), "a truncated block");
}

/// The fused epilogue (bias, each activation, the residual sum) gives the
/// bits of the unfused path (candle's bias add, `Activation::apply`, the
/// sum), every kernel, odd shapes, at 1, 2 and 3 threads.
#[test]
fn q4_fused_epilogues_equal_the_unfused_path_bit_for_bit() {
    use kpl::nn::gemm::Epilogue;
    use kpl::nn::Activation;
    let dev = Device::Cpu;
    let pools = [pool(1), pool(2), pool(3)];
    for &(m, k, n) in &[(1, 256, 1), (5, 512, 13), (197, 256, 50)] {
        let x = stream(m as u64 * 13 + k as u64, m * k, 1.0);
        let w = stream(n as u64 * 3 + 7, n * k, 0.05);
        let b = stream(n as u64 + 5, n, 0.3);
        let r = stream(m as u64 + 11, m * n, 1.0);
        let qt = QTensor::quantize(&Tensor::from_vec(w, (n, k), &dev).unwrap(), GgmlDType::Q4K).unwrap();
        let packed = PackedQ4::from_blocks(&qt.data().unwrap(), n, k).unwrap();
        let (bt, rt) = (Tensor::from_vec(b.clone(), n, &dev).unwrap(), Tensor::from_vec(r.clone(), (m, n), &dev).unwrap());
        let cases = [(None, true), (Some(Activation::QuickGelu), false), (Some(Activation::Gelu), false), (Some(Activation::GeluTanh), false)];
        for (act, residual) in cases {
            let epilogue = Epilogue { bias: Some(&b), activation: act, residual: residual.then_some(&r[..]) };
            for isa in Isa::available() {
                let mut t = Tensor::from_vec(packed.matmul_with(&x, m, isa), (m, n), &dev).unwrap().broadcast_add(&bt).unwrap();
                if let Some(a) = act {
                    t = a.apply(&t).unwrap();
                }
                if residual {
                    t = (&rt + t).unwrap();
                }
                let want = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for p in &pools {
                    let got = p.install(|| packed.matmul_fused_with(&x, m, &epilogue, isa));
                    assert!(same_bits(&got, &want), "[{m}, {k}, {n}] {isa:?} {act:?} residual {residual}, {} threads", p.current_num_threads());
                }
            }
        }
    }
}
