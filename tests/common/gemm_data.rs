//! Inputs and comparisons shared by the GEMM tests: the fixtures' hex and q8_0 blocks, a
//! deterministic value stream, bit equality, rayon pools of a given size.

/// One case of `tests/fixtures/q8-gemm/cases.json` (tests/reference/q8_gemm.py):
/// activations `x` [m, k], the weight as ggml q8_0 `blocks` [n, k], and the
/// case's JSON for its other fields (the expected outputs).
pub struct Q8Case {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub x: Vec<f32>,
    pub blocks: Vec<u8>,
    pub json: serde_json::Value,
}

impl Q8Case {
    /// The f32 values of one hex field of the case (`y`, `y_q8x8`, `b`, …).
    pub fn f32s(&self, field: &str) -> Vec<f32> {
        f32s(&unhex(self.json[field].as_str().unwrap()))
    }
}

/// Every case of the q8 GEMM fixture.
pub fn q8_cases() -> Vec<Q8Case> {
    let text = std::fs::read_to_string("tests/fixtures/q8-gemm/cases.json").unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let usize_of = |c: &serde_json::Value, key: &str| c[key].as_u64().unwrap() as usize;
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let (m, k, n) = (usize_of(c, "m"), usize_of(c, "k"), usize_of(c, "n"));
            Q8Case {
                m,
                k,
                n,
                x: f32s(&unhex(c["x"].as_str().unwrap())),
                blocks: blocks(&unhex(c["w_q"].as_str().unwrap()), &unhex(c["w_d"].as_str().unwrap()), n, k),
                json: c.clone(),
            }
        })
        .collect()
}

/// Bytes from the fixtures' hex strings.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// ggml `block_q8_0` bytes from int8 values [n, k] and f16 scales [n, k/32]
/// (the q8 fixtures' `w_q` and `w_d`).
pub fn blocks(q: &[u8], d: &[u8], n: usize, k: usize) -> Vec<u8> {
    const BLOCK: usize = 32;
    let kb = k / BLOCK;
    let mut out = Vec::new();
    for row in 0..n {
        for b in 0..kb {
            out.extend_from_slice(&d[(row * kb + b) * 2..(row * kb + b) * 2 + 2]);
            out.extend_from_slice(&q[row * k + b * BLOCK..row * k + (b + 1) * BLOCK]);
        }
    }
    out
}

/// Little-endian f32 values.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Little-endian f64 values.
pub fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Whether two results are the same bits.
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// A deterministic normal-ish stream with a few outliers (xorshift64*).
pub fn stream(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            let mut u = 0f32;
            for _ in 0..4 {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                u += (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            }
            let v = (u - 2.0) * 1.7 * scale;
            if i % 97 == 13 { v * 15.0 } else { v }
        })
        .collect()
}

/// A rayon pool of `threads` threads.
pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}
