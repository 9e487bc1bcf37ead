//! The int8 GEMM for q8_0 weights (`kpl::nn::gemm::q8`): bit for bit against the
//! numpy reference of its algorithm (tests/reference/q8_gemm.py), every
//! micro-kernel of this machine against the others, and against candle: its
//! dense f32 matmul with the dequantised weight (within the activation
//! quantisation's bound) and its own q8_0 block kernel. Odd shapes: one row,
//! m and n off the 4 × 8 tile, k = 32 · odd.
//!
//! The f32 GEMM (`kpl::nn::gemm::f32`): every kernel bit for bit against the
//! numpy reference of its algorithm (tests/reference/f32_gemm.py: `y` unfused,
//! `y_fma` with fused multiply-adds, the scalar FMA one included), all within the f32
//! rounding bound of the exact product and of candle's dense matmul. Odd
//! shapes: k = 1, one row, m off every kernel's rows, n off the 16-column
//! panel and the AVX-512 kernel's 32 columns, k across the 256-value block
//! (768 for AVX-512).
//!
//! Their fused epilogues (bias, activation, residual sum): bit for bit the
//! unfused path (candle's operations) at 1–3 threads, and against numpy.

mod common;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use kpl::nn::gemm::q8::{PackedQ8, BLOCK, BLOCK_BYTES};
use kpl::nn::gemm::f32::PackedF32;
use kpl::nn::gemm::{Epilogue, F32Isa, Isa, QuantizedGemm};
use kpl::nn::Activation;

use common::gemm_data::{f32s, f64s, pool, q8_cases, same_bits, stream, unhex};

#[test]
fn q8_gemm_matches_the_numpy_reference_bit_for_bit() {
    let cases = q8_cases();
    assert!(cases.len() >= 7);
    for c in &cases {
        let (m, k, n, x, raw) = (c.m, c.k, c.n, c.x.as_slice(), c.blocks.as_slice());
        let expected = c.f32s("y");
        let packed = PackedQ8::from_blocks(&raw, n, k).unwrap();
        assert_eq!(packed.to_blocks(), raw, "[{m}, {k}, {n}]: packing must be lossless");
        for isa in Isa::available() {
            let y = packed.matmul_with(&x, m, isa);
            let same = y.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
            let worst = y.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(same, "[{m}, {k}, {n}] {isa:?}: differs from numpy's reference by up to {worst}");
        }
        eprintln!("[{m}, {k}, {n}]: {:?} equal to the reference bit for bit", Isa::available());
    }
}

#[test]
fn q8_gemm_agrees_with_candle_dense_and_block_kernels() {
    let dev = Device::Cpu;
    for &(m, k, n) in &[(1, 32, 1), (1, 768, 19), (3, 96, 5), (5, 160, 13), (6, 224, 40), (11, 800, 9), (197, 96, 12)] {
        let x = stream(m as u64 * 31 + k as u64, m * k, 1.0);
        let w = stream(n as u64 * 7 + 3, n * k, 0.02);
        let wt = Tensor::from_vec(w, (n, k), &dev).unwrap();
        let qt = QTensor::quantize(&wt, GgmlDType::Q8_0).unwrap();
        let raw = qt.data().unwrap().into_owned();
        assert_eq!(raw.len(), n * k / BLOCK * BLOCK_BYTES);
        let packed = PackedQ8::from_blocks(&raw, n, k).unwrap();
        let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
        let wdeq = qt.dequantize(&dev).unwrap();
        let dense = xt.matmul(&wdeq.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        let blocks = QMatMul::from_qtensor(qt).unwrap().forward(&xt).unwrap().to_vec2::<f32>().unwrap();
        let wdeq = wdeq.to_vec2::<f32>().unwrap();
        let reference = packed.matmul_with(&x, m, Isa::Scalar);
        for isa in Isa::available() {
            let y = packed.matmul_with(&x, m, isa);
            assert!(y.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits()), "{isa:?} differs from the scalar kernel");
        }
        let mut worst = 0f32;
        for i in 0..m {
            let row = &x[i * k..(i + 1) * k];
            // Quantising an activation moves it by at most half a step, d/2 with
            // d = max|x| / 32767 per 32 values (ours) or / 127 (candle's blocks,
            // 8-bit): the bounds on |y − dense|, plus f32 rounding.
            for j in 0..n {
                let (mut bound16, mut bound8, mut magnitude) = (0f64, 0f64, 0f64);
                for b in 0..k / BLOCK {
                    let amax = row[b * BLOCK..(b + 1) * BLOCK].iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                    let wsum: f64 = wdeq[j][b * BLOCK..(b + 1) * BLOCK].iter().map(|v| v.abs() as f64).sum();
                    bound16 += amax / 32767.0 / 2.0 * wsum;
                    bound8 += amax / 127.0 / 2.0 * wsum;
                    magnitude += row[b * BLOCK..(b + 1) * BLOCK].iter().zip(&wdeq[j][b * BLOCK..]).map(|(a, w)| (a * w).abs() as f64).sum::<f64>();
                }
                let tol = bound16 * 1.0001 + 1e-6 * magnitude + 1e-7;
                let got = reference[i * n + j] as f64;
                let err = (got - dense[i][j] as f64).abs();
                assert!(err <= tol, "[{m}, {k}, {n}] ({i}, {j}): int8 {got} vs dense {} (bound {tol})", dense[i][j]);
                // candle's block kernel: 8-bit activations with f16 scales.
                let err_blocks = (got - blocks[i][j] as f64).abs();
                let tol8 = tol + bound8 * 1.01;
                assert!(err_blocks <= tol8, "[{m}, {k}, {n}] ({i}, {j}): int8 {got} vs candle blocks {}", blocks[i][j]);
                worst = worst.max((err / tol.max(1e-30)) as f32);
            }
        }
        eprintln!("[{m}, {k}, {n}]: |int8 − dense| ≤ {worst:.3} of the quantisation bound");
    }
}

#[test]
fn q8_packing_rejects_bad_shapes() {
    let raw = vec![0u8; 2 * BLOCK_BYTES];
    assert!(PackedQ8::from_blocks(&raw, 2, 32).is_ok());
    assert!(PackedQ8::from_blocks(&raw, 2, 48).is_err(), "k not a multiple of 32");
    assert!(PackedQ8::from_blocks(&raw, 3, 32).is_err(), "too few bytes");
    assert!(PackedQ8::from_blocks(&raw, 0, 32).is_err(), "no rows");
    assert!(PackedQ8::from_blocks(&raw[1..], 2, 32).is_err(), "a truncated block");
}

/// f32's unit roundoff.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// The rounding bound of a k-step f32 chain `Σ x·w (+ b)` (Higham's γ_k,
/// doubled for the products' rounding, plus the bias sum): `(2k + 2) · u ·
/// (Σ|x·w| + |b|)`, with a floor for the subnormal range.
fn chain_bound(x: &[f32], w: &[f32], b: f32) -> f64 {
    let magnitude: f64 = x.iter().zip(w).map(|(a, c)| (a * c).abs() as f64).sum::<f64>() + b.abs() as f64;
    (2 * x.len() + 2) as f64 * U * magnitude + 1e-30
}

#[test]
fn f32_gemm_matches_the_numpy_reference() {
    let text = std::fs::read_to_string("tests/fixtures/f32-gemm/cases.json").unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let (m, k, n) = (c["m"].as_u64().unwrap() as usize, c["k"].as_u64().unwrap() as usize, c["n"].as_u64().unwrap() as usize);
        let x = f32s(&unhex(c["x"].as_str().unwrap()));
        let w = f32s(&unhex(c["w"].as_str().unwrap()));
        let b = c["b"].as_str().map(|h| f32s(&unhex(h)));
        let expected = f32s(&unhex(c["y"].as_str().unwrap()));
        let expected_fma = f32s(&unhex(c["y_fma"].as_str().unwrap()));
        let exact: Vec<f64> = unhex(c["y_f64"].as_str().unwrap()).chunks_exact(8).map(|v| f64::from_le_bytes(v.try_into().unwrap())).collect();
        let packed = PackedF32::from_rows(&w, n, k).unwrap();
        assert_eq!(packed.to_rows(), w, "[{m}, {k}, {n}]: packing must be lossless");
        for isa in F32Isa::available() {
            let y = packed.matmul_with(&x, m, b.as_deref(), isa);
            let reference = if isa.fused() { &expected_fma } else { &expected };
            let same = y.iter().zip(reference).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "[{m}, {k}, {n}] {isa:?}: differs from numpy's {}", if isa.fused() { "y_fma" } else { "y" });
            for i in 0..m {
                for j in 0..n {
                    let bound = chain_bound(&x[i * k..(i + 1) * k], &w[j * k..(j + 1) * k], b.as_ref().map_or(0.0, |b| b[j]));
                    let err = (y[i * n + j] as f64 - exact[i * n + j]).abs();
                    assert!(err <= bound, "[{m}, {k}, {n}] {isa:?} ({i}, {j}): {} vs exact {} (bound {bound})", y[i * n + j], exact[i * n + j]);
                }
            }
        }
        eprintln!("[{m}, {k}, {n}]: {:?} equal to their references bit for bit", F32Isa::available());
    }
}

#[test]
fn f32_gemm_agrees_with_candle_dense_matmul() {
    let dev = Device::Cpu;
    // k = 1, one row, exact tiles (12 × 16, 6 × 16, 12 × 32), k across the
    // 256-value block and AVX-512's 768 (one and two crossings), n off the panel and off the
    // 32-column AVX-512 tile.
    let shapes = [(1, 1, 1), (1, 768, 19), (3, 1, 40), (12, 256, 16), (6, 512, 32), (13, 520, 33), (197, 96, 50), (29, 2, 7), (13, 1000, 40), (25, 1600, 50)];
    for &(m, k, n) in &shapes {
        let x = stream(m as u64 * 17 + k as u64, m * k, 1.0);
        let w = stream(n as u64 * 5 + 1, n * k, 0.02);
        let b = stream(n as u64 + 99, n, 0.1);
        let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
        let wt = Tensor::from_vec(w.clone(), (n, k), &dev).unwrap();
        let bt = Tensor::from_vec(b.clone(), n, &dev).unwrap();
        let candle = candle_nn::Linear::new(wt, Some(bt)).forward(&xt).unwrap().to_vec2::<f32>().unwrap();
        let packed = PackedF32::from_rows(&w, n, k).unwrap();
        let mut worst = 0f64;
        let fused_reference = packed.matmul_with(&x, m, Some(&b), F32Isa::ScalarFma);
        for isa in F32Isa::available() {
            let y = packed.matmul_with(&x, m, Some(&b), isa);
            if isa.fused() {
                assert!(y.iter().zip(&fused_reference).all(|(a, b)| a.to_bits() == b.to_bits()), "[{m}, {k}, {n}] {isa:?}: differs from ScalarFma");
            }
            for i in 0..m {
                for j in 0..n {
                    // Both are within the chain bound of the exact value.
                    let bound = 2.0 * chain_bound(&x[i * k..(i + 1) * k], &w[j * k..(j + 1) * k], b[j]);
                    let err = (y[i * n + j] as f64 - candle[i][j] as f64).abs();
                    assert!(err <= bound, "[{m}, {k}, {n}] {isa:?} ({i}, {j}): {} vs candle {} (bound {bound})", y[i * n + j], candle[i][j]);
                    worst = worst.max(err / bound);
                }
            }
        }
        eprintln!("[{m}, {k}, {n}]: |ours − candle| ≤ {worst:.3} of the rounding bound");
    }
}

#[test]
fn f32_packing_rejects_bad_shapes() {
    assert!(PackedF32::from_rows(&[0.0; 6], 2, 3).is_ok());
    assert!(PackedF32::from_rows(&[0.0; 6], 2, 4).is_err(), "too few values");
    assert!(PackedF32::from_rows(&[0.0; 6], 0, 6).is_err(), "no rows");
    assert!(PackedF32::from_rows(&[], 6, 0).is_err(), "no columns");
    assert!(PackedF32::from_rows(&[0.0; 6], usize::MAX, 2).is_err(), "n · k overflows");
}

const ACTIVATIONS: [(Activation, &str); 3] =
    [(Activation::QuickGelu, "quick_gelu"), (Activation::Gelu, "gelu"), (Activation::GeluTanh, "gelu_tanh")];

/// The epilogues against numpy: the residual sum bit for bit (both GEMMs),
/// the activations within a few f32 roundings of torch's formulas in f64.
#[test]
fn epilogues_match_the_numpy_references() {
    let text = std::fs::read_to_string("tests/fixtures/f32-gemm/cases.json").unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for c in json["cases"].as_array().unwrap() {
        let (m, k, n) = (c["m"].as_u64().unwrap() as usize, c["k"].as_u64().unwrap() as usize, c["n"].as_u64().unwrap() as usize);
        let x = f32s(&unhex(c["x"].as_str().unwrap()));
        let w = f32s(&unhex(c["w"].as_str().unwrap()));
        let b = c["b"].as_str().map(|h| f32s(&unhex(h)));
        let r = f32s(&unhex(c["r"].as_str().unwrap()));
        let packed = PackedF32::from_rows(&w, n, k).unwrap();
        // The unfused kernels' sums are numpy's `y` bit for bit (tested above).
        let isa = F32Isa::Scalar;
        let y = packed.matmul_with(&x, m, b.as_deref(), isa);
        let epilogue = Epilogue { bias: b.as_deref(), activation: None, residual: Some(&r) };
        let with_residual = packed.matmul_fused_with(&x, m, &epilogue, isa);
        assert_eq!(with_residual, f32s(&unhex(c["y_res"].as_str().unwrap())), "[{m}, {k}, {n}]: residual");
        for (act, name) in ACTIVATIONS {
            let want = f64s(&unhex(c[format!("act_{name}")].as_str().unwrap()));
            let epilogue = Epilogue { bias: b.as_deref(), activation: Some(act), residual: None };
            let got = packed.matmul_fused_with(&x, m, &epilogue, isa);
            for ((&g, &t), &v) in got.iter().zip(&want).zip(&y) {
                // A few roundings of the result and of the input's scale (the
                // cancellation in 1 + erf(x) near x = −4 leaves an error of
                // order ulp(1) · |x|).
                let tol = 8.0 * U * (t.abs() + v.abs() as f64) + 1e-30;
                assert!((g as f64 - t).abs() <= tol, "[{m}, {k}, {n}] {name}({v}) = {g}, reference {t}");
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
    for c in q8_cases() {
        let (m, k, n, x, raw) = (c.m, c.k, c.n, c.x.as_slice(), c.blocks.as_slice());
        let (b, r) = (c.f32s("b"), c.f32s("r"));
        let packed = PackedQ8::from_blocks(&raw, n, k).unwrap();
        let epilogue = Epilogue { bias: Some(&b), activation: None, residual: Some(&r) };
        for isa in Isa::available() {
            let y = packed.matmul_fused_with(&x, m, &epilogue, isa);
            assert_eq!(y, c.f32s("y_epi"), "[{m}, {k}, {n}] {isa:?}: bias + residual");
        }
    }
}

/// Fused epilogues give the bits of the unfused path (candle's bias add,
/// `Activation::apply`, residual sum), for both GEMMs, every kernel, odd
/// shapes (k = 800: a last k block after the first, AVX-512's 768), at 1, 2
/// and 3 threads.
#[test]
fn fused_epilogues_equal_the_unfused_path_bit_for_bit() {
    let dev = Device::Cpu;
    let pools = [pool(1), pool(2), pool(3)];
    for &(m, k, n) in &[(1, 32, 1), (5, 160, 13), (13, 288, 40), (197, 64, 50), (13, 800, 40)] {
        let x = stream(m as u64 * 13 + k as u64, m * k, 1.0);
        let w = stream(n as u64 * 3 + 7, n * k, 0.05);
        let b = stream(n as u64 + 5, n, 0.3);
        let r = stream(m as u64 + 11, m * n, 1.0);
        let f32w = PackedF32::from_rows(&w, n, k).unwrap();
        let qt = QTensor::quantize(&Tensor::from_vec(w.clone(), (n, k), &dev).unwrap(), GgmlDType::Q8_0).unwrap();
        let q8w = PackedQ8::from_blocks(&qt.data().unwrap(), n, k).unwrap();
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
        let mut epilogues = vec![(None, true)];
        epilogues.extend(ACTIVATIONS.map(|(a, _)| (Some(a), false)));
        for (act, residual) in epilogues {
            let epilogue = Epilogue { bias: Some(&b), activation: act, residual: residual.then_some(&r[..]) };
            for isa in F32Isa::available() {
                let want = unfused(f32w.matmul_with(&x, m, None, isa), act, residual);
                for p in &pools {
                    let got = p.install(|| f32w.matmul_fused_with(&x, m, &epilogue, isa));
                    assert!(same_bits(&got, &want), "f32 [{m}, {k}, {n}] {isa:?} {act:?} residual {residual}, {} threads", p.current_num_threads());
                }
            }
            for isa in Isa::available() {
                let want = unfused(q8w.matmul_with(&x, m, isa), act, residual);
                for p in &pools {
                    let got = p.install(|| q8w.matmul_fused_with(&x, m, &epilogue, isa));
                    assert!(same_bits(&got, &want), "q8 [{m}, {k}, {n}] {isa:?} {act:?} residual {residual}, {} threads", p.current_num_threads());
                }
            }
        }
    }
}


/// `Linear::forward_shared` (the input packed, or quantised, once for several
/// layers that read it: q, k and v of self-attention) gives the bits of each
/// layer's own `forward`, on the f32 GEMM and on the q8_0 × q8_0 GEMM, with
/// a batch dimension, odd rows and odd output widths; layers not all on one
/// of those GEMMs (a candle `Dense` one among them, or q8_0 under `Int8`) go
/// one `forward` each, with the same results.
#[test]
fn shared_activations_give_each_layers_own_bits() -> candle_core::Result<()> {
    use kpl::nn::linear::{quant_kernel, set_f32_kernel, set_quant_kernel, F32Kernel, Linear, QuantKernel};
    let (dev, default_kernel) = (Device::Cpu, quant_kernel());
    let (batch, rows, k) = (2, 13, 64);
    let x = Tensor::from_vec(stream(1, batch * rows * k, 1.0), (batch, rows, k), &dev)?;
    let weight = |seed: u64, n: usize| Tensor::from_vec(stream(seed, n * k, 0.2), (n, k), &dev);
    let bias = |seed: u64, n: usize| Tensor::from_vec(stream(seed, n, 0.5), n, &dev);
    let check = |layers: [&Linear; 3]| -> candle_core::Result<()> {
        let shared = Linear::forward_shared(layers, &x)?;
        for (layer, got) in layers.iter().zip(&shared) {
            let want = layer.forward(&x)?;
            assert_eq!(got.dims(), want.dims());
            let (got, want) = (got.flatten_all()?.to_vec1::<f32>()?, want.flatten_all()?.to_vec1::<f32>()?);
            assert!(same_bits(&got, &want), "a shared product differs from the layer's own");
        }
        Ok(())
    };
    let widths = [48, 17, 64];
    let dense: Vec<Linear> =
        widths.iter().enumerate().map(|(i, &n)| Linear::dense(weight(10 + i as u64, n)?, Some(bias(20 + i as u64, n)?))).collect::<candle_core::Result<_>>()?;
    check([&dense[0], &dense[1], &dense[2]])?;
    set_f32_kernel(F32Kernel::Candle);
    let candle = Linear::dense(weight(30, 40)?, None)?;
    set_f32_kernel(F32Kernel::Packed);
    check([&dense[0], &candle, &dense[2]])?;
    let quantized = |kernel| -> candle_core::Result<Vec<Linear>> {
        set_quant_kernel(kernel);
        let layers = [32, 96, 64]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let q = QTensor::quantize(&weight(40 + i as u64, n)?, GgmlDType::Q8_0)?;
                Linear::from_qtensor(std::sync::Arc::new(q), (i != 1).then(|| bias(50 + i as u64, n)).transpose()?)
            })
            .collect();
        layers
    };
    for kernel in [QuantKernel::Int8x8, QuantKernel::Int8] {
        let layers = quantized(kernel)?;
        check([&layers[0], &layers[1], &layers[2]])?;
    }
    set_quant_kernel(default_kernel);
    Ok(())
}
