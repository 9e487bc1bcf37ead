//! A hash of every bit the engine outputs on fixed synthetic data, to check that native
//! and wasm32 builds compute identical results.
//!
//!     cargo run --release --example fingerprint                 # native: prints the hash
//!     RUSTFLAGS="-C link-arg=--export=fingerprint [-C target-feature=+simd128]" \
//!       cargo build --release --example fingerprint --target wasm32-unknown-unknown
//!     node -e 'const fs=require("fs");WebAssembly.instantiate(fs.readFileSync(
//!       "<target>/wasm32-unknown-unknown/release/examples/fingerprint.wasm")).then(
//!       m=>console.log(BigInt.asUintN(64,m.instance.exports.fingerprint()).toString(16)))'

use kpl_core::{classify_single, run_all, KnowledgeEmbeddings, KplParams, Matrix, Precision};

struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ x as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn f32s(&mut self, v: &[f32]) {
        v.iter()
            .for_each(|x| self.bytes(&x.to_bits().to_le_bytes()));
    }
    fn f64s(&mut self, v: &[f64]) {
        v.iter()
            .for_each(|x| self.bytes(&x.to_bits().to_le_bytes()));
    }
    fn usizes(&mut self, v: &[usize]) {
        v.iter()
            .for_each(|x| self.bytes(&(*x as u64).to_le_bytes()));
    }
}

fn data() -> (Matrix, KnowledgeEmbeddings) {
    let (n, d, c, m) = (150, 96, 4, 20);
    let mut s = 0x0123_4567_89ab_cdefu64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut unit = |bias: &dyn Fn(usize) -> f64| {
        let v: Vec<f64> = (0..d).map(|k| bias(k) + next()).collect();
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        v.into_iter()
            .map(|a| (a / norm) as f32)
            .collect::<Vec<f32>>()
    };
    let mut text = Vec::new();
    let mut class_of = Vec::new();
    for j in 0..c {
        for _ in 0..m {
            text.extend(unit(&|k| if k % c == j { 0.6 } else { 0.0 }));
            class_of.push(j);
        }
    }
    let mut images = Vec::new();
    for i in 0..n {
        let j = i % c;
        images.extend(unit(&|k| 0.4 + if k % c == j { 0.3 } else { 0.0 }));
    }
    let names = (0..c).map(|j| format!("c{j}")).collect();
    (
        Matrix::new(n, d, images).unwrap(),
        KnowledgeEmbeddings::new(d, names, text, class_of).unwrap(),
    )
}

#[no_mangle]
pub extern "C" fn fingerprint() -> u64 {
    let (images, kb) = data();
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for (precision, gamma) in [(Precision::F64, 0.0), (Precision::F32, 0.5)] {
        let params = KplParams {
            iters_proxy: 400,
            precision,
            gamma,
            ..KplParams::default()
        };
        let all = run_all(&images, &kb, &params).unwrap();
        for o in all.iter() {
            h.usizes(&o.predictions);
            h.f32s(o.proxies.data());
            h.f32s(o.scores.data());
            if let Some(p) = &o.pseudo_labels {
                h.f64s(p);
            }
        }
    }
    let single = classify_single(images.row(3), &kb, 5).unwrap();
    h.f32s(&single.scores);
    h.usizes(&single.selected.concat());
    h.0
}

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    println!("{:x}", fingerprint());
}
