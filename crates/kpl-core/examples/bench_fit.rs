//! Benchmark of the transductive fit (retrieval, pseudo-labels, greedy OT and 2000
//! proxy-learning iterations) on n=1000, d=768, C=5 synthetic clustered embeddings.
//!
//!     cargo run --release --example bench_fit            # both precisions
//!     cargo run --release --example bench_fit -- f32     # one of f32 | f64
//!     cargo run --release --features simd-dispatch --example bench_fit   # AVX2/AVX-512
//!
//! "dtype" is the arithmetic of proxy learning (`Precision`); inputs are f32 in both.
//! Prints one JSON line per precision: the median of 5 timed runs after a warm-up.
//! tests/reference/bench_fit_torch.py builds the same data and times the same steps.

use kpl_core::{run, KnowledgeEmbeddings, KplParams, Matrix, Method, Precision};
use std::time::Instant;

const N: usize = 1000;
const D: usize = 768;
const C: usize = 5;
const M: usize = 50;
const RUNS: usize = 5;

/// xorshift64*: tiny, seeded, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Approximately standard normal (sum of 4 uniforms, rescaled).
    fn normal(&mut self) -> f64 {
        let s: f64 = (0..4).map(|_| self.uniform()).sum();
        (s - 2.0) * 3.0f64.sqrt()
    }
    fn unit(&mut self, d: usize) -> Vec<f64> {
        let v: Vec<f64> = (0..d).map(|_| self.normal()).collect();
        let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        v.into_iter().map(|a| a / n).collect()
    }
}

fn normalized(v: Vec<f64>) -> Vec<f32> {
    let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    v.into_iter().map(|a| (a / n) as f32).collect()
}

fn data() -> (Matrix, KnowledgeEmbeddings) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let classes: Vec<Vec<f64>> = (0..C).map(|_| rng.unit(D)).collect();
    let shared = rng.unit(D);
    let gap = rng.unit(D);
    let mut text = Vec::with_capacity(C * M * D);
    let mut class_of = Vec::with_capacity(C * M);
    for (c, u) in classes.iter().enumerate() {
        for _ in 0..M {
            let rel = 0.1 + 0.9 * rng.uniform();
            let noise = rng.unit(D);
            text.extend(normalized(
                (0..D)
                    .map(|k| 0.8 * shared[k] + rel * u[k] + 0.35 * noise[k])
                    .collect(),
            ));
            class_of.push(c);
        }
    }
    let mut images = Vec::with_capacity(N * D);
    for i in 0..N {
        let c = (i * i + 3 * i) % 7 % C; // imbalanced labels
        let off = rng.unit(D);
        let noise = rng.unit(D);
        images.extend(normalized(
            (0..D)
                .map(|k| 1.2 * gap[k] + 0.55 * (classes[c][k] + 0.9 * off[k]) + 0.45 * noise[k])
                .collect(),
        ));
    }
    let names = (0..C).map(|c| format!("class_{c}")).collect();
    (
        Matrix::new(N, D, images).unwrap(),
        KnowledgeEmbeddings::new(D, names, text, class_of).unwrap(),
    )
}

fn main() {
    let which = std::env::args().nth(1);
    let (images, kb) = data();
    for (name, precision) in [("f32", Precision::F32), ("f64", Precision::F64)] {
        if which.as_deref().is_some_and(|w| w != name) {
            continue;
        }
        let params = KplParams {
            precision,
            ..KplParams::default()
        };
        let fit = || run(&images, &kb, &params, Method::Kpl).unwrap();
        let warm = fit();
        let mut times: Vec<f64> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(fit());
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        eprintln!(
            "# {name}: runs {times:?}; halvings {:?}",
            warm.fit.map(|f| f.halvings)
        );
        println!(
            "{{\"model\":\"kpl-fit-n{N}-d{D}-c{C}\",\"engine\":\"kpl-native\",\"dtype\":\"{name}\",\"threads\":1,\"median_s\":{:.4}}}",
            times[RUNS / 2]
        );
    }
}
