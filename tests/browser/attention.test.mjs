// The fused attention and the layer norm in wasm (pkg/, simd128, under Node) against the
// same independent references as natively (tests/reference/attention.py: numpy float64
// checked against PyTorch's scaled_dot_product_attention; torch's layer_norm in float64
// and float32), at the native tolerances (tests/attention.rs), so wasm and native agree
// within twice them. Odd shapes, causal and key-padding masks, cross-attention, a
// sequence of length 0. Needs `make wasm`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { loadKplWasm } from '../../bench/lib.mjs';

const read = (name) => JSON.parse(readFileSync(`tests/fixtures/attention/${name}`, 'utf8')).cases;
const bytes = (hex) => new Uint8Array(Buffer.from(hex, 'hex'));
const f32 = (hex) => { const b = bytes(hex); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
const f64 = (hex) => { const b = bytes(hex); return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); };
const F32_MIN = -3.4028234663852886e38;

/** The additive mask nn::transformer builds: [batch, q_len, k_len], or empty. */
function maskOf(c) {
  const { batch, q_len: q, k_len: k } = c;
  if (c.mask === 'none') return new Float32Array(0);
  const m = new Float32Array(batch * q * k);
  for (let n = 0; n < m.length; n++) {
    const [b, i, j] = [Math.floor(n / (q * k)), Math.floor(n / k) % q, n % k];
    if (c.mask === 'causal') m[n] = j > i ? -Infinity : 0;
    else m[n] = j >= c.lengths[b] ? F32_MIN : 0;
  }
  return m;
}

test('attention in wasm matches the float64 reference', async () => {
  const { mod } = await loadKplWasm(resolve('pkg'));
  const cases = read('attention.json');
  assert.ok(cases.length >= 8);
  for (const c of cases) {
    const y = mod.attention(f32(c.q), f32(c.k), f32(c.v), maskOf(c), c.batch, c.heads, c.head_dim, c.q_len, c.k_len);
    const want = f32(c.y);
    assert.equal(y.length, want.length);
    let worst = 0;
    for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(y[i] - want[i]));
    assert.ok(worst < 4e-6, `[${c.batch}, ${c.heads}, ${c.head_dim}, ${c.q_len}, ${c.k_len}] ${c.mask}: ${worst}`);
  }
  assert.throws(() => mod.attention(new Float32Array(7), new Float32Array(8), new Float32Array(8), new Float32Array(0), 1, 1, 8, 1, 1), /q has 7/);
});

test('layer norm in wasm is as close to torch float64 as torch float32', async () => {
  const { mod } = await loadKplWasm(resolve('pkg'));
  const cases = read('layer_norm.json');
  assert.ok(cases.length >= 4);
  for (const c of cases) {
    const y = mod.layerNorm(f32(c.x), f32(c.gamma), f32(c.beta), c.eps);
    const [exact, torch] = [f64(c.y_f64), f32(c.y_torch_f32)];
    const err = (v) => v.reduce((w, x, i) => Math.max(w, Math.abs(x - exact[i])), 0);
    assert.ok(err(y) < 2 * err(torch) + 2e-6, `[${c.rows}, ${c.width}]: ${err(y)} vs torch's ${err(torch)}`);
  }
  assert.throws(() => mod.layerNorm(new Float32Array(5), new Float32Array(2), new Float32Array(2), 1e-5), /whole rows/);
});
