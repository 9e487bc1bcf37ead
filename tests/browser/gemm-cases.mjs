// The GEMM fixtures (numpy references: tests/reference/q8_gemm.py, f32_gemm.py, q4_gemm.py) decoded
// for the browser tests that run the wasm GEMMs (gemm.test.mjs, relaxed.test.mjs).

import { readFileSync } from 'node:fs';

const bytes = (hex) => new Uint8Array(Buffer.from(hex, 'hex'));
const f32 = (hex) => { const b = bytes(hex); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };

/** ggml block_q8_0 bytes from int8 values [n, k] and f16 scales [n, k/32]. */
function blocks(q, d, n, k) {
  const kb = k / 32;
  const out = new Uint8Array(n * kb * 34);
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < kb; b++) {
      const o = (row * kb + b) * 34;
      out.set(d.subarray((row * kb + b) * 2, (row * kb + b) * 2 + 2), o);
      out.set(q.subarray(row * k + b * 32, row * k + b * 32 + 32), o + 2);
    }
  }
  return out;
}

/** The q8 cases: {m, k, n, w (block_q8_0 bytes), x, y (the int8 GEMM's), yQ8x8 (the q8_0 × q8_0 GEMM's)}. */
export function q8Cases() {
  const fixture = JSON.parse(readFileSync('tests/fixtures/q8-gemm/cases.json', 'utf8'));
  return fixture.cases.map((c) => ({ m: c.m, k: c.k, n: c.n, w: blocks(bytes(c.w_q), bytes(c.w_d), c.n, c.k), x: f32(c.x), y: f32(c.y), yQ8x8: f32(c.y_q8x8) }));
}

/** The f32 cases: {m, k, n, w, b (empty for none), x, y (unfused), yFma (fused)}. */
export function f32Cases() {
  const fixture = JSON.parse(readFileSync('tests/fixtures/f32-gemm/cases.json', 'utf8'));
  return fixture.cases.map((c) => ({
    m: c.m, k: c.k, n: c.n, w: f32(c.w), b: c.b ? f32(c.b) : new Float32Array(0), x: f32(c.x), y: f32(c.y), yFma: f32(c.y_fma),
  }));
}

/** The q4 cases: {m, k, n, blocks (block_q4_K bytes), x, y}. */
export function q4Cases() {
  const fixture = JSON.parse(readFileSync('tests/fixtures/q4-gemm/cases.json', 'utf8'));
  return fixture.cases.map((c) => ({ m: c.m, k: c.k, n: c.n, blocks: bytes(c.blocks), x: f32(c.x), y: f32(c.y) }));
}

/** How many values of two f32 arrays differ in their bits. */
export function differingBits(a, b) {
  const x = new Uint32Array(new Float32Array(a).buffer);
  const y = new Uint32Array(new Float32Array(b).buffer);
  let n = Math.abs(x.length - y.length);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) n++;
  return n;
}
