//! Threads change no result: the int8 and f32 GEMMs' column panels split across a
//! rayon pool (odd shapes, every micro-kernel), the q8_0 × q8_0 GEMM's rows (one
//! weight, several sharing their input, or two chained as an MLP), the fused attention's (sequence,
//! head) pairs and the layer norm's rows, whole encoders in pools of 1
//! and 3 threads (f32 folder and q8 bundle under the int8 kernel), and the
//! `kpl --threads` command line at 1 and 3 (candle's own pools included), all
//! the same bits.

mod common;

use common::gemm_data::{pool, same_bits};
use common::*;
use kpl::bundle::pack::{pack_model_dir, PackOptions};
use kpl::bundle::PackDtype;
use kpl::model_dir::load_model_dir;
use kpl::nn::gemm::q8::{PackedQ8, BLOCK, BLOCK_BYTES};
use kpl::nn::gemm::f32::PackedF32;
use kpl::nn::attention::{attend_with, Mask, Rows, Shape};
use kpl::nn::gemm::q8x8::PackedQ8x8;
use kpl::nn::gemm::{Epilogue, F32Isa, Isa, Q8x8Isa, QuantizedGemm};
use kpl::nn::Activation;
use kpl::nn::norm::layer_norm;
use kpl::nn::linear::{set_quant_kernel, QuantKernel};
use kpl::preprocess::PixelTensor;

/// Pseudo-random values in [-scale, scale) (xorshift64).
fn values(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
        })
        .collect()
}

/// q8_0 blocks with pseudo-random int8 values and f16 scales.
fn random_blocks(n: usize, k: usize, seed: u64) -> Vec<u8> {
    let q = values(seed, n * k, 127.0);
    let d = values(seed + 1, n * k / BLOCK, 0.01);
    let mut out = Vec::with_capacity(n * k / BLOCK * BLOCK_BYTES);
    for (b, block) in q.chunks_exact(BLOCK).enumerate() {
        out.extend(half::f16::from_f32(d[b].abs() + 1e-4).to_le_bytes());
        out.extend(block.iter().map(|v| v.round() as i8 as u8));
    }
    out
}

#[test]
fn q8_gemm_gives_the_same_bits_on_1_2_and_3_threads() {
    // m off the 4-row tile, n off the 8-column panel, fewer panels than
    // threads, and panel counts that do not divide by the thread count.
    for &(m, k, n) in &[(1, 32, 1), (5, 160, 13), (3, 96, 17), (11, 800, 9), (197, 96, 41), (7, 64, 200), (2, 32, 3072)] {
        let x = values(m as u64 * 131 + k as u64, m * k, 2.0);
        let packed = PackedQ8::from_blocks(&random_blocks(n, k, n as u64 + 7), n, k).unwrap();
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
fn q8x8_gemm_and_its_shared_products_give_the_same_bits_on_1_2_and_3_threads() {
    // The rows split across threads, each quantising its own: m off the
    // 12-row tile and its 6-row halves, fewer halves than threads, a residual
    // (read at the thread's rows), and several weights on one input (the
    // shared product: q, k and v), compared with each weight alone on one thread.
    for &(m, k, n) in &[(1, 32, 1), (5, 160, 13), (7, 64, 200), (13, 96, 41), (66, 64, 33), (197, 96, 48)] {
        let x = values(m as u64 * 131 + k as u64, m * k, 2.0);
        let widths = [n, n + 16, 3];
        let weights: Vec<PackedQ8x8> =
            widths.iter().map(|&w| PackedQ8x8::from_blocks(&random_blocks(w, k, w as u64 + 7), w, k).unwrap()).collect();
        let (bias, residual) = (values(n as u64 + 3, n + 16, 0.5), values(m as u64 + 5, m * n, 1.0));
        let epilogues = [
            Epilogue { residual: Some(&residual), ..Epilogue::default() },
            Epilogue { bias: Some(&bias), activation: Some(Activation::QuickGelu), residual: None },
            Epilogue::default(),
        ];
        let layers: Vec<(&PackedQ8x8, Epilogue)> = weights.iter().zip(epilogues).collect();
        let one: Vec<Vec<f32>> =
            pool(1).install(|| layers.iter().map(|(w, e)| w.matmul_fused_with(&x, m, e, Q8x8Isa::Scalar)).collect());
        assert!(one.iter().all(|y| y.iter().any(|v| *v != 0.0)), "[{m}, {k}, {n}]: an all-zero product proves nothing");
        for threads in [2, 3] {
            for isa in Q8x8Isa::available() {
                let (alone, shared) = pool(threads).install(|| {
                    assert_eq!(rayon::current_num_threads(), threads);
                    let alone: Vec<Vec<f32>> = layers.iter().map(|(w, e)| w.matmul_fused_with(&x, m, e, isa)).collect();
                    (alone, PackedQ8x8::matmul_shared_with(&layers, &x, m, isa))
                });
                for (i, want) in one.iter().enumerate() {
                    assert!(same_bits(&alone[i], want), "[{m}, {k}, {n}] layer {i} {isa:?} on {threads} threads differs from 1 thread");
                    assert!(same_bits(&shared[i], want), "[{m}, {k}, {n}] layer {i} shared, {isa:?} on {threads} threads differs");
                }
            }
        }
    }
}

#[test]
fn q8x8_chained_products_give_the_two_products_bits_on_1_2_and_3_threads() {
    // An MLP block (`residual + fc2(gelu(fc1(x)))`) through both weights per
    // thread's rows, the intermediate in steps of at most `max_rows` rows
    // (one half-tile per thread, a few tiles, all at once), against the two
    // products one after the other on one thread.
    for &(m, k, hidden) in &[(1, 32, 64), (13, 64, 96), (66, 96, 160), (197, 64, 128)] {
        let x = values(m as u64 * 7 + k as u64, m * k, 2.0);
        let fc1 = PackedQ8x8::from_blocks(&random_blocks(hidden, k, hidden as u64 + 1), hidden, k).unwrap();
        let fc2 = PackedQ8x8::from_blocks(&random_blocks(k, hidden, k as u64 + 2), k, hidden).unwrap();
        let (b1, b2, residual) = (values(3, hidden, 0.5), values(4, k, 0.5), values(m as u64 + 5, m * k, 1.0));
        let e1 = Epilogue { bias: Some(&b1), activation: Some(Activation::QuickGelu), residual: None };
        let e2 = Epilogue { bias: Some(&b2), activation: None, residual: Some(&residual) };
        let want = pool(1).install(|| {
            let h = fc1.matmul_fused_with(&x, m, &e1, Q8x8Isa::Scalar);
            fc2.matmul_fused_with(&h, m, &e2, Q8x8Isa::Scalar)
        });
        assert!(want.iter().zip(&residual).any(|(y, r)| y != r), "[{m}, {k}, {hidden}]: the MLP must change the residual");
        for threads in [1, 2, 3] {
            for isa in Q8x8Isa::available() {
                for max_rows in [1, 24, 1000] {
                    let got = pool(threads).install(|| PackedQ8x8::matmul_chain_with((&fc1, e1), (&fc2, e2), &x, m, max_rows, isa));
                    assert!(same_bits(&got, &want), "[{m}, {k}, {hidden}] {isa:?}, {max_rows} rows a step, {threads} threads");
                }
            }
        }
    }
}

#[test]
fn f32_gemm_gives_the_same_bits_on_1_2_and_3_threads() {
    // m off every kernel's rows, n off the 16-column panel, fewer panels than
    // threads, panel counts that do not divide by the thread count, k across
    // the 256-value block and AVX-512's 768.
    for &(m, k, n) in &[(1, 1, 1), (5, 33, 13), (3, 300, 17), (13, 800, 40), (197, 96, 81), (2, 32, 3072)] {
        let x = values(m as u64 * 131 + k as u64, m * k, 2.0);
        let w = values(n as u64 + 7, n * k, 0.1);
        let b = values(n as u64 + 8, n, 0.1);
        let packed = PackedF32::from_rows(&w, n, k).unwrap();
        for isa in F32Isa::available() {
            let one = pool(1).install(|| packed.matmul_with(&x, m, Some(&b), isa));
            assert!(one.iter().any(|v| *v != 0.0), "[{m}, {k}, {n}]: an all-zero product proves nothing");
            for threads in [2, 3] {
                let got = pool(threads).install(|| packed.matmul_with(&x, m, Some(&b), isa));
                assert!(same_bits(&got, &one), "[{m}, {k}, {n}] {isa:?} on {threads} threads differs from 1 thread");
            }
        }
    }
}

#[test]
fn attention_and_layer_norm_give_the_same_bits_on_1_2_and_3_threads() {
    // (batch, heads, head_dim, q_len, k_len): fewer (sequence, head) pairs than
    // threads, pair counts that do not divide by the thread count, cross-attention.
    for &(batch, heads, d, ql, kl) in &[(1, 1, 8, 5, 5), (1, 12, 64, 197, 197), (2, 3, 72, 13, 13), (3, 1, 64, 1, 29), (2, 5, 8, 40, 7)] {
        let h = heads * d;
        let (q, k, v) = (values(1, batch * ql * h, 1.5), values(2, batch * kl * h, 1.5), values(3, batch * kl * h, 1.5));
        let shape = Shape { batch, heads, head_dim: d, q_len: ql, k_len: kl };
        let rows = |values: &'static [f32]| Rows { values, stride: h, offset: 0 };
        let (q, k, v): (&'static [f32], &'static [f32], &'static [f32]) = (q.leak(), k.leak(), v.leak());
        let keys: Vec<f32> = (0..batch * kl).map(|i| if i % kl + i / kl >= kl { f32::MIN } else { 0.0 }).collect();
        for mask in [None, Some(Mask { values: &keys, batch_stride: kl, row_stride: 0 })] {
            for isa in F32Isa::available() {
                let run = |threads: usize| pool(threads).install(|| attend_with(rows(q), rows(k), rows(v), shape, 0.125, mask, isa));
                let one = run(1);
                assert!(one.iter().any(|v| *v != 0.0), "an all-zero result proves nothing");
                for threads in [2, 3] {
                    assert!(same_bits(&run(threads), &one), "{shape:?} {isa:?} on {threads} threads differs from 1 thread");
                }
            }
        }
    }
    for &(rows, width) in &[(1, 8), (197, 768), (77, 512), (33, 17)] {
        let x = values(rows as u64, rows * width, 3.0);
        let (g, b) = (values(5, width, 1.0), values(6, width, 0.5));
        let run = |threads: usize| {
            let mut y = vec![0f32; x.len()];
            pool(threads).install(|| layer_norm(&x, &g, &b, 1e-5, &mut y));
            y
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(same_bits(&run(threads), &one), "layer norm [{rows}, {width}] on {threads} threads differs");
        }
    }
}

fn fixture_pixels(size: usize) -> Vec<PixelTensor> {
    let images = test_images(size);
    (0..2)
        .map(|i| PixelTensor {
            height: size,
            width: size,
            data: images.get(i).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        })
        .collect()
}

/// Image and text embeddings of the model in `dir`, loaded and run inside a
/// pool of `threads` threads under `kernel` (set on the pool's thread: the
/// kernel choice is per thread).
fn embeddings_on(threads: usize, dir: &std::path::Path, kernel: QuantKernel) -> Vec<Vec<f32>> {
    pool(threads).install(|| {
        set_quant_kernel(kernel);
        let pipeline = load_model_dir(dir).unwrap();
        let size = pipeline.model.image_size();
        let mut out = pipeline.embed_pixels(&fixture_pixels(size), true).unwrap();
        for ids in reference_text_ids(&reference(), "tiny-quickgelu-f32") {
            out.push(pipeline.embed_ids(&ids, true).unwrap());
        }
        out
    })
}

#[test]
fn encoders_give_the_same_embeddings_on_1_and_3_threads() {
    let folder = fixtures().join("tiny-quickgelu-f32");
    let bundle = temp_dir("threads-q8");
    let options = PackOptions { dtype: PackDtype::Q8, knowledge: vec![], name: None };
    pack_model_dir(&folder, &bundle, &options, &mut |_| {}).unwrap();
    for (dir, kernel) in [(&folder, QuantKernel::Blocks), (&bundle, QuantKernel::Int8), (&bundle, QuantKernel::Int8x8), (&bundle, QuantKernel::Blocks)] {
        let one = embeddings_on(1, dir, kernel);
        let three = embeddings_on(3, dir, kernel);
        assert!(one.len() > 2, "images and texts");
        for (i, (a, b)) in one.iter().zip(&three).enumerate() {
            assert!(same_bits(a, b), "{} {kernel:?}: embedding {i} differs between 1 and 3 threads", dir.display());
        }
    }
    std::fs::remove_dir_all(&bundle).unwrap();
}

#[test]
fn the_command_line_prints_the_same_embeddings_at_threads_1_and_3() {
    let model = fixtures().join("tiny-quickgelu-f32").display().to_string();
    let images: Vec<String> = ["rgb_97x61.png", "photo_120x100.jpg", "grey16_70x90.png"]
        .iter()
        .map(|f| fixtures().join("images").join(f).display().to_string())
        .collect();
    let run = |threads: &str, command: &str, inputs: &[String]| {
        let mut args = vec!["--threads", threads, command, "--model", &model];
        args.extend(inputs.iter().map(String::as_str));
        let out = kpl(&args);
        assert!(out.status.success(), "--threads {threads} {command}: {}", stderr(&out));
        out.stdout
    };
    let texts = vec!["a chest x-ray".to_string(), "an MRI of the knee, sagittal".to_string()];
    for (command, inputs) in [("embed-image", &images), ("embed-text", &texts)] {
        let one = run("1", command, inputs);
        assert!(one.len() > 100, "{command}: {}", String::from_utf8_lossy(&one));
        assert_eq!(one, run("3", command, inputs), "{command}: --threads 3 differs from --threads 1");
    }
}
