//! Fused multi-head attention on the CPU, one implementation for native and
//! wasm: for each (sequence, head), `softmax(q·kᵀ·scale + mask)·v`, read from
//! the projections' `[batch, len, hidden]` rows and written straight into the
//! `[batch, q_len, hidden]` context (no transposed copies of q, k, v, no score
//! tensor for every head at once: one head's `[q_len, k_len]` scores at a
//! time, per thread). As `torch.nn.functional.scaled_dot_product_attention`
//! with an additive mask, and `transformers`' eager attention: the query
//! scaled first, the softmax normalised before the product with v.
//!
//! - The two products run the f32 GEMM's micro-kernels
//!   ([`crate::nn::gemm::f32_tile`]): the scaled queries packed k-major per
//!   tile of rows, the keys in panels of 16 keys, then the probabilities
//!   packed the same way and the values in panels of 16 dimensions. Each
//!   score and each output is one chain over its sum in order, so tiles do
//!   not change its bits; natively the chains are fused multiply-adds, in
//!   wasm a multiply then an add (as the GEMM).
//! - The softmax ([`super::lanes`]): max, `exp(s − max)` (our vectorised
//!   `exp`), the sum in a fixed lane order, a division: the same bits on
//!   every target.
//! - Threads: the (sequence, head) pairs are split across the current rayon
//!   pool; each pair is computed by one thread, so the result is the same
//!   bits at any thread count (tests/threads.rs).

use std::cell::Cell;

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

use super::gemm::pack::pack_rows_scaled;
use super::gemm::{f32_tile, f32_tile_into, F32Isa, F32_MAX_ROWS as MAX_ROWS, F32_NR as NR};
use super::lanes;
use super::linear::with_f32_slice;

/// How attention computes on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// This module's fused kernel (the default: faster on every target,
    /// measured in `make bench`).
    Fused,
    /// candle's ops: transposed copies of q, k and v per head, a batched
    /// matmul, `softmax_last_dim`, a matmul and a transpose back (for
    /// comparisons).
    Candle,
}

impl std::str::FromStr for AttentionKernel {
    type Err = String;
    /// `fused` or `candle`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fused" => Ok(Self::Fused),
            "candle" => Ok(Self::Candle),
            other => Err(format!("unknown attention kernel {other:?} (fused or candle)")),
        }
    }
}

thread_local! {
    static KERNEL: Cell<AttentionKernel> = const { Cell::new(AttentionKernel::Fused) };
}

/// Chooses how attention computes in the forward passes started on this
/// thread (default `Fused`). Thread-local, so tests can compare them.
pub fn set_attention_kernel(kernel: AttentionKernel) {
    KERNEL.with(|k| k.set(kernel));
}

pub fn attention_kernel() -> AttentionKernel {
    KERNEL.with(|k| k.get())
}

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Queries per sequence.
    pub q_len: usize,
    /// Keys (and values) per sequence.
    pub k_len: usize,
}

/// Row-major `[batch, len, …]` values: head `h`'s part of token `i` of
/// sequence `b` starts at `((b · len + i) · stride) + offset + h · head_dim`
/// (`stride` ≥ the columns read: q, k and v may be parts of one wider row).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub values: &'a [f32],
    pub stride: usize,
    pub offset: usize,
}

/// An additive mask, the same for every head: the value added to the score
/// of query `i` and key `j` of sequence `b` is
/// `values[b · batch_stride + i · row_stride + j]` (a stride of 0 repeats it).
#[derive(Debug, Clone, Copy)]
pub struct Mask<'a> {
    pub values: &'a [f32],
    pub batch_stride: usize,
    pub row_stride: usize,
}

/// `softmax(q·kᵀ·scale + mask)·v` per sequence and head, as `[batch, q_len,
/// heads · head_dim]` row-major. Uses the best micro-kernel of this machine
/// and the current rayon pool (the same bits at any thread count).
///
/// Panics if a slice is shorter than `shape` reads (a caller's bug).
pub fn attend(q: Rows, k: Rows, v: Rows, shape: Shape, scale: f32, mask: Option<Mask>) -> Vec<f32> {
    attend_with(q, k, v, shape, scale, mask, F32Isa::best())
}

/// [`attend`] with a chosen micro-kernel for the two products.
pub fn attend_with(q: Rows, k: Rows, v: Rows, shape: Shape, scale: f32, mask: Option<Mask>, isa: F32Isa) -> Vec<f32> {
    let Shape { batch, heads, head_dim: d, q_len, k_len } = shape;
    let hidden = heads * d;
    for (rows, len, name) in [(&q, q_len, "q"), (&k, k_len, "k"), (&v, k_len, "v")] {
        let needed = if batch * len == 0 { 0 } else { (batch * len - 1) * rows.stride + rows.offset + hidden };
        assert!(rows.stride >= hidden && rows.values.len() >= needed, "{name} is shorter than {shape:?} reads");
    }
    if let Some(m) = &mask {
        let last = (batch.max(1) - 1) * m.batch_stride + (q_len.max(1) - 1) * m.row_stride + k_len;
        assert!(m.values.len() >= last, "the mask is shorter than {shape:?} reads");
    }
    let mut out = vec![0f32; batch * q_len * hidden];
    if out.is_empty() {
        return out;
    }
    let pairs: Vec<(usize, usize)> = (0..batch).flat_map(|b| (0..heads).map(move |h| (b, h))).collect();
    if rayon::current_num_threads() == 1 {
        // Each head's context straight into its columns of `out`.
        let mut scratch = Scratch::default();
        for &(b, h) in &pairs {
            let dst = &mut out[b * q_len * hidden + h * d..];
            head(&mut scratch, &q, &k, &v, shape, b, h, scale, mask.as_ref(), isa, dst, hidden);
        }
        return out;
    }
    let blocks: Vec<Vec<f32>> = pairs
        .par_iter()
        .map_init(Scratch::default, |scratch, &(b, h)| {
            let mut block = vec![0f32; q_len * d];
            head(scratch, &q, &k, &v, shape, b, h, scale, mask.as_ref(), isa, &mut block, d);
            block
        })
        .collect();
    for (&(b, h), block) in pairs.iter().zip(&blocks) {
        for (i, row) in block.chunks_exact(d).enumerate() {
            out[(b * q_len + i) * hidden + h * d..][..d].copy_from_slice(row);
        }
    }
    out
}

/// The buffers of [`head`], shared by the heads one thread computes in one
/// [`attend_with`] call: fresh zeroed `vec!`s for each (sequence, head) cost
/// about 3 % of a native ViT-B/16 image (measured with `perf`,
/// bench/README.md). Dropped when the call returns, not kept per thread: kept,
/// they held ~0.5 MB per pool thread through the rest of the forward pass,
/// which put the 2-thread q4 wasm build over its memory bound
/// (tests/browser/memory.test.mjs, 1.257× the weights). What a call does not write
/// (the rows past `q_len` of the last query tile, the keys and dimensions
/// past the last full panel) holds an earlier call's values, which go only
/// into products that are never kept: the kernels compute the requested rows
/// alone, and the columns past `k_len` or `head_dim` are dropped.
#[derive(Default)]
struct Scratch {
    queries: Vec<f32>,
    keys: Vec<f32>,
    scores: Vec<f32>,
    probabilities: Vec<f32>,
    values: Vec<f32>,
}

/// The first `len` values of `v`, grown (with zeros) where it is shorter.
fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Head `h` of sequence `b`: its `[q_len, head_dim]` context, row `i` into
/// `dst[i · ld..][..head_dim]`.
#[allow(clippy::too_many_arguments)]
fn head(scratch: &mut Scratch, q: &Rows, k: &Rows, v: &Rows, shape: Shape, b: usize, h: usize, scale: f32, mask: Option<&Mask>, isa: F32Isa, dst: &mut [f32], ld: usize) {
    let Shape { head_dim: d, q_len, k_len, .. } = shape;
    let mr = isa.rows();
    let start = |r: &Rows, len: usize| (b * len) * r.stride + r.offset + h * d;
    // The scaled queries, k-major per tile of mr rows: query i, dimension c
    // at (i / mr · d + c) · mr + i % mr.
    let queries = sized(&mut scratch.queries, q_len.div_ceil(mr) * mr * d);
    pack_rows_scaled(&q.values[start(q, q_len)..], q_len, q.stride, d, mr, Some(scale), queries);
    // The keys in panels of NR: key j, dimension c at (j / NR · d + c) · NR
    // + j % NR, the queries' layout with NR rows per tile.
    let key_panels = k_len.div_ceil(NR);
    let keys = sized(&mut scratch.keys, key_panels * d * NR);
    pack_rows_scaled(&k.values[start(k, k_len)..], k_len, k.stride, d, NR, None, keys);
    // Scores row i at i · ld_s, every panel's 16 columns written.
    let ld_s = key_panels * NR;
    let scores = sized(&mut scratch.scores, q_len * ld_s);
    products(isa, q_len, d, queries, keys, k_len, scores, ld_s, ld_s);
    for (i, s) in scores.chunks_exact_mut(ld_s).enumerate() {
        let m = mask.map(|m| &m.values[b * m.batch_stride + i * m.row_stride..][..k_len]);
        softmax(&mut s[..k_len], m);
    }
    // The probabilities k-major per tile of mr rows, as the queries.
    let probabilities = sized(&mut scratch.probabilities, q_len.div_ceil(mr) * mr * k_len);
    pack_rows_scaled(scores, q_len, ld_s, k_len, mr, None, probabilities);
    // The values in panels of NR dimensions: key j, dimension c at
    // (c / NR · k_len + j) · NR + c % NR.
    let value_panels = d.div_ceil(NR);
    let values = sized(&mut scratch.values, value_panels * k_len * NR);
    for j in 0..k_len {
        let src = &v.values[start(v, k_len) + j * v.stride..][..d];
        for (p, part) in src.chunks(NR).enumerate() {
            values[(p * k_len + j) * NR..][..part.len()].copy_from_slice(part);
        }
    }
    products(isa, q_len, k_len, probabilities, values, d, dst, ld, d);
}

/// `y[i · ldy + c] = (a · wᵀ)[i, c]` for `i < m`, `c < n`, through the GEMM's
/// micro-kernels: `a` packed k-major per tile of `isa.rows()` rows, `w` in
/// panels of [`NR`] columns (`kc` × NR values each). Panels (two at a time)
/// whose 16 columns all lie within the first `cap` ≥ `n` columns of `y`'s
/// rows go straight into `y` ([`f32_tile_into`], where `isa` has it: the
/// GEMM's 12 × 32 AVX-512 tile, twice the rate of one panel); the others
/// through [`f32_tile`] and a copy of their columns below `n`. The same bits
/// either way (one chain per output, in k order).
#[allow(clippy::too_many_arguments)]
fn products(isa: F32Isa, m: usize, kc: usize, a: &[f32], w: &[f32], n: usize, y: &mut [f32], ldy: usize, cap: usize) {
    let mr = isa.rows();
    let count = w.len() / (kc * NR);
    let panel = |p: usize| &w[p * kc * NR..(p + 1) * kc * NR];
    for r0 in (0..m).step_by(mr) {
        let rows = mr.min(m - r0);
        let tile = &a[r0 * kc..(r0 + mr) * kc];
        let mut p = 0;
        while p < count {
            let ws: &[&[f32]] = if p + 1 < count && (p + 2) * NR <= cap { &[panel(p), panel(p + 1)] } else { &[panel(p)] };
            if (p + ws.len()) * NR <= cap && f32_tile_into(isa, rows, kc, tile, ws, &mut y[r0 * ldy + p * NR..], ldy, false) {
                p += ws.len();
                continue;
            }
            for (q, w) in ws.iter().enumerate() {
                let mut acc = [[0f32; NR]; MAX_ROWS];
                f32_tile(isa, rows, kc, tile, w, &mut acc);
                let (c0, cols) = ((p + q) * NR, NR.min(n - (p + q) * NR));
                for (r, acc) in acc[..rows].iter().enumerate() {
                    y[(r0 + r) * ldy + c0..][..cols].copy_from_slice(&acc[..cols]);
                }
            }
            p += ws.len();
        }
    }
}

lanes::vectorised! {
    /// `s ← softmax(s + mask)` in place (as candle's `softmax_last_dim`: the
    /// max subtracted, `exp`, divided by the sum). A row whose keys are all at
    /// `f32::MIN` (a sequence of length 0 under a key-padding mask) attends
    /// uniformly, as `transformers` does.
    fn softmax(s: &mut [f32], mask: Option<&[f32]>) {
        if let Some(mask) = mask {
            for (x, &m) in s.iter_mut().zip(mask) {
                *x += m;
            }
        }
        let max = lanes::max(s);
        for x in s.iter_mut() {
            *x = lanes::exp(*x - max);
        }
        let sum = lanes::sum(s);
        for x in s.iter_mut() {
            *x /= sum;
        }
    }
}

/// [`attend`] on tensors: `q` `[batch, q_len, hidden]`, `k` and `v` `[batch,
/// k_len, hidden]` (any float dtype, CPU), `mask` additive, broadcastable to
/// `[batch, 1, q_len, k_len]` (the same for every head: `[q_len, k_len]`,
/// `[batch | 1, 1, 1, k_len]`, …). Returns `[batch, q_len, hidden]` f32.
///
/// Errors: the shapes disagree, `hidden` is not a multiple of `heads`, or the
/// mask does not broadcast to `[batch, 1, q_len, k_len]`.
pub fn attend_tensors(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f32, mask: Option<&Tensor>) -> Result<Tensor> {
    let (batch, q_len, hidden) = q.dims3()?;
    let (kb, k_len, kh) = k.dims3()?;
    if kb != batch || kh != hidden || v.dims() != k.dims() || heads == 0 || hidden % heads != 0 {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?} with {heads} heads (expected [b, q, h], [b, k, h] twice, h a multiple of the heads)",
            q.dims(),
            k.dims(),
            v.dims()
        )
    }
    let shape = Shape { batch, heads, head_dim: hidden / heads, q_len, k_len };
    fn rows(values: &[f32], stride: usize) -> Rows<'_> {
        Rows { values, stride, offset: 0 }
    }
    let context = with_f32_slice(q, |qs| {
        with_f32_slice(k, |ks| {
            with_f32_slice(v, |vs| -> Result<Vec<f32>> {
                let Some(mask) = mask else {
                    return Ok(attend(rows(qs, hidden), rows(ks, hidden), rows(vs, hidden), shape, scale, None));
                };
                let mask = super::dtype::to_f32(mask)?.broadcast_as((batch, 1, q_len, k_len))?;
                let mask = if mask.layout().stride()[3] == 1 { mask } else { mask.contiguous()? };
                let (sb, sq) = (mask.layout().stride()[0], mask.layout().stride()[2]);
                let start = mask.layout().start_offset();
                let (storage, _) = mask.storage_and_layout();
                let candle_core::Storage::Cpu(cpu) = &*storage else { candle_core::bail!("attention: the mask is not on the CPU") };
                let values = &cpu.as_slice::<f32>()?[start..];
                let mask = Mask { values, batch_stride: sb, row_stride: sq };
                Ok(attend(rows(qs, hidden), rows(ks, hidden), rows(vs, hidden), shape, scale, Some(mask)))
            })
        })
    })????;
    Tensor::from_vec(context, (batch, q_len, hidden), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gemm::rates::values;
    use candle_core::{DType, D};

    /// candle's ops, as `Attention::attend` computes under `Candle`.
    fn candle_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, ql, h) = q.dims3()?;
        let kl = k.dim(1)?;
        let split = |t: &Tensor, len| t.reshape((b, len, heads, h / heads))?.transpose(1, 2)?.contiguous();
        let (q, k, v) = (split(&(q * scale)?, ql)?, split(k, kl)?, split(v, kl)?);
        let mut s = q.matmul(&k.t()?)?;
        if let Some(m) = mask {
            s = s.broadcast_add(m)?;
        }
        candle_nn::ops::softmax_last_dim(&s)?.matmul(&v)?.transpose(1, 2)?.reshape((b, ql, h))
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(D::Minus1).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Against candle's ops on odd shapes (q_len off every kernel's tile, k_len
    /// off the 16-key panel, head dims off the 16-dimension panel), with and
    /// without masks, cross-attention included, for every micro-kernel.
    #[test]
    fn matches_candle_on_odd_shapes() -> Result<()> {
        let dev = Device::Cpu;
        for &(batch, heads, d, ql, kl) in &[(1, 1, 8, 1, 1), (2, 3, 8, 13, 13), (1, 12, 64, 197, 197), (3, 3, 72, 5, 29), (2, 1, 64, 1, 50)] {
            let h = heads * d;
            let t = |seed, len| Tensor::from_vec(values(seed, batch * len * h, 1.5), (batch, len, h), &dev);
            let (q, k, v) = (t(1, ql)?, t(2, kl)?, t(3, kl)?);
            let scale = (d as f64).powf(-0.5);
            let causal: Vec<f32> = (0..ql).flat_map(|i| (0..kl).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
            let keys: Vec<f32> = (0..batch).flat_map(|b| (0..kl).map(move |j| if j + b >= kl && kl > 1 { f32::MIN } else { 0.0 })).collect();
            let masks = [None, Some(Tensor::from_vec(causal, (ql, kl), &dev)?), Some(Tensor::from_vec(keys, (batch, 1, 1, kl), &dev)?)];
            for mask in &masks {
                let want = candle_attention(&q, &k, &v, heads, scale, mask.as_ref())?;
                for isa in F32Isa::available() {
                    let got = with_isa(&q, &k, &v, heads, scale as f32, mask.as_ref(), isa)?;
                    let diff = max_diff(&got, &want);
                    assert!(diff < 2e-6, "[{batch}, {heads}, {d}, {ql}, {kl}] {isa:?} mask {}: {diff}", mask.is_some());
                }
                assert!(max_diff(&attend_tensors(&q, &k, &v, heads, scale as f32, mask.as_ref())?, &want) < 2e-6);
            }
        }
        Ok(())
    }

    fn with_isa(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f32, mask: Option<&Tensor>, isa: F32Isa) -> Result<Tensor> {
        let (batch, ql, h) = q.dims3()?;
        let kl = k.dim(1)?;
        let shape = Shape { batch, heads, head_dim: h / heads, q_len: ql, k_len: kl };
        let (qv, kv, vv) = (q.flatten_all()?.to_vec1()?, k.flatten_all()?.to_vec1()?, v.flatten_all()?.to_vec1()?);
        let rows = |values| Rows { values, stride: h, offset: 0 };
        let mask = mask.map(|m| m.broadcast_as((batch, 1, ql, kl))?.contiguous()?.flatten_all()?.to_vec1::<f32>()).transpose()?;
        let mask = mask.as_ref().map(|m| Mask { values: m, batch_stride: ql * kl, row_stride: kl });
        Tensor::from_vec(attend_with(rows(&qv), rows(&kv), rows(&vv), shape, scale, mask, isa), (batch, ql, h), &Device::Cpu)
    }

    /// q, k and v read as parts of one fused `[batch, len, 3·hidden]` row give
    /// the same bits as separate tensors; a fully masked sequence attends uniformly.
    #[test]
    fn reads_fused_rows_and_masked_sequences() -> Result<()> {
        let (batch, heads, d, len) = (2, 3, 8, 7);
        let h = heads * d;
        let fused = values(9, batch * len * 3 * h, 1.0);
        let part = |p: usize| -> Vec<f32> { fused.chunks_exact(3 * h).flat_map(|r| r[p * h..(p + 1) * h].to_vec()).collect() };
        let shape = Shape { batch, heads, head_dim: d, q_len: len, k_len: len };
        let at = |offset| Rows { values: &fused, stride: 3 * h, offset };
        let got = attend(at(0), at(h), at(2 * h), shape, 0.3, None);
        let (q, k, v) = (part(0), part(1), part(2));
        let rows = |values| Rows { values, stride: h, offset: 0 };
        let want = attend(rows(&q), rows(&k), rows(&v), shape, 0.3, None);
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        // Sequence 1 entirely masked: each of its outputs is the mean of its values.
        let mask: Vec<f32> = (0..batch * len).map(|i| if i >= len { f32::MIN } else { 0.0 }).collect();
        let got = attend(rows(&q), rows(&k), rows(&v), shape, 0.3, Some(Mask { values: &mask, batch_stride: len, row_stride: 0 }));
        let vt = Tensor::from_vec(v.clone(), (batch, len, h), &Device::Cpu)?.to_dtype(DType::F64)?;
        let mean = vt.narrow(0, 1, 1)?.mean_keepdim(1)?.flatten_all()?.to_vec1::<f64>()?;
        for row in got[len * h..].chunks_exact(h) {
            for (a, b) in row.iter().zip(&mean) {
                assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
            }
        }
        Ok(())
    }
}
