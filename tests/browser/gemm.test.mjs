// The int8 GEMM for q8_0 weights in wasm (pkg/, the simd128 kernel, under Node):
// bit for bit equal to the numpy reference of its algorithm
// (tests/reference/q8_gemm.py → tests/fixtures/q8-gemm/cases.json), which the native
// kernels also match exactly (tests/gemm.rs): wasm and native give the same bits.
// Odd shapes: one row, m and n off the 4 × 8 tile, k = 32 · odd.
// The f32 GEMM in wasm (simd128: multiply, then add) bit for bit equal to the numpy
// reference of that algorithm (tests/reference/f32_gemm.py), which the native scalar
// kernel also matches exactly, and the native FMA kernels its fused twin `y_fma`
// (tests/gemm.rs). Odd shapes: k = 1, one row, n off the 16-column panel, k
// across the 256-value block.
// The int8 GEMM for q4_K weights in wasm: its product bit for bit the numpy reference
// (tests/reference/q4_gemm.py → tests/fixtures/q4-gemm/cases.json), which the native
// kernels also match exactly (tests/gemm_q4.rs). Needs `make wasm`.
// The relaxed-SIMD builds and the four builds in Chromium: relaxed.test.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';

import { loadKplWasm } from '../../bench/lib.mjs';
import { q8Cases, f32Cases, q4Cases, differingBits } from './gemm-cases.mjs';

test('q8 GEMM in wasm equals the numpy reference bit for bit', async () => {
  const { mod } = await loadKplWasm(resolve('pkg'));
  const cases = q8Cases();
  assert.ok(cases.length >= 7);
  for (const c of cases) {
    const y = mod.q8Gemm(c.w, c.n, c.k, c.x, c.m);
    assert.equal(y.length, c.m * c.n);
    const differing = differingBits(y, c.y);
    assert.equal(differing, 0, `[${c.m}, ${c.k}, ${c.n}]: ${differing} of ${y.length} values differ from the reference`);
  }
  // A bad shape is an error, not a trap.
  assert.throws(() => mod.q8Gemm(new Uint8Array(34), 1, 48, new Float32Array(48), 1), /multiple of 32/);
  assert.throws(() => mod.q8Gemm(new Uint8Array(34), 1, 32, new Float32Array(31), 1), /expected m/);
});

test('f32 GEMM in wasm equals the numpy reference bit for bit', async () => {
  const { mod } = await loadKplWasm(resolve('pkg'));
  const cases = f32Cases();
  assert.ok(cases.length >= 8);
  for (const c of cases) {
    const y = mod.f32Gemm(c.w, c.n, c.k, c.b, c.x, c.m);
    assert.equal(y.length, c.m * c.n);
    const differing = differingBits(y, c.y);
    assert.equal(differing, 0, `[${c.m}, ${c.k}, ${c.n}]: ${differing} of ${y.length} values differ from the reference`);
  }
  assert.throws(() => mod.f32Gemm(new Float32Array(6), 2, 4, new Float32Array(0), new Float32Array(4), 1), /expected a positive n/);
  assert.throws(() => mod.f32Gemm(new Float32Array(6), 2, 3, new Float32Array(0), new Float32Array(4), 1), /expected m/);
  assert.throws(() => mod.f32Gemm(new Float32Array(6), 2, 3, new Float32Array(3), new Float32Array(3), 1), /expected n/);
});

test('q4 GEMM in wasm equals the numpy reference bit for bit', async () => {
  const { mod } = await loadKplWasm(resolve('pkg'));
  const cases = q4Cases();
  assert.ok(cases.length >= 7);
  for (const c of cases) {
    const y = mod.q4Gemm(c.blocks, c.n, c.k, c.x, c.m);
    assert.equal(y.length, c.m * c.n);
    const differing = differingBits(y, c.y);
    assert.equal(differing, 0, `[${c.m}, ${c.k}, ${c.n}]: ${differing} of ${y.length} values differ from the reference`);
  }
  assert.throws(() => mod.q4Gemm(new Uint8Array(144), 1, 288, new Float32Array(288), 1), /multiple of 256/);
  assert.throws(() => mod.q4Gemm(new Uint8Array(144), 1, 256, new Float32Array(255), 1), /expected m/);
});

test('the fused epilogue\'s activations in wasm equal candle\'s unfused ones bit for bit', async () => {
  const { mod } = await loadKplWasm(resolve('pkg'));
  // Every path of libm's expf inside quick_gelu (e^(-1.702 v)): |1.702 v| ≤ 2^-14, ≤ ½ ln 2,
  // ≤ 1.5 ln 2, larger, ≥ 87.34 (underflow, overflow), ±∞, NaN, subnormals; the special
  // lanes mixed into fours with ordinary ones. Magnitudes log-uniform over 1e-9..1e3 and
  // uniform over ±12, from a fixed linear congruential sequence.
  let seed = 12345;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const values = [0, -0, Infinity, -Infinity, NaN, 1e-40, -1e-40, 51.3, -51.3, 51.32, -51.32, 52.2, -52.2, 61.1, -61.1, 1e30, -1e30];
  for (let i = 0; i < 100000; i++) {
    const sign = next() < 0.5 ? -1 : 1;
    values.push(i % 2 ? sign * 10 ** (-9 + 12 * next()) : sign * 12 * next());
  }
  const x = new Float32Array(values);
  for (const name of ['quick_gelu', 'gelu', 'gelu_new']) {
    const both = mod.activationTwice(name, x);
    const fused = both.subarray(0, x.length);
    const candle = both.subarray(x.length);
    let differing = 0;
    for (let i = 0; i < x.length; i++) {
      const same = Object.is(fused[i], candle[i]) || (Number.isNaN(fused[i]) && Number.isNaN(candle[i]));
      if (!same) differing++;
    }
    assert.equal(differing, 0, `${name}: ${differing} of ${x.length} values differ from candle's`);
  }
  // And the values are quick_gelu's (an independent f64 formula), not just equal to each
  // other: within a few f32 roundings, of which the one of 1.702·v grows the exponential's
  // relative error with |1.702·v|.
  const both = mod.activationTwice('quick_gelu', x);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (!Number.isFinite(v) || Math.abs(v) > 50) continue;
    const want = v / (1 + Math.exp(-1.702 * v));
    const bound = 3e-7 * (2 + Math.abs(1.702 * v)) * Math.abs(want) + 1e-44;
    assert.ok(Math.abs(both[i] - want) <= bound, `quick_gelu(${v}) = ${both[i]}, expected ${want}`);
  }
  assert.throws(() => mod.activationTwice('relu', x), /relu/);
});
