// KPL's transductive fit in wasm (pkg/ in Node: runKpl, greedy OT + proxy learning)
// against the native CLI (`kpl eval-embeddings --method kpl`) on the same inputs: every
// parity case in tests/reference/cases/ and the benchmark's n = 1000, d = 768 data
// (bench/fit_data.mjs). The predictions must be equal, image for image: both builds
// run the same kpl-core (simd128 in wasm, AVX2/AVX-512 natively, the same bits), and
// both stop proxy learning at the same fixed point.
//
// The CLI reads an .npz and L2-normalises its rows in f32 (src/npz.rs); this test
// normalises the rows the same way (each f32 operation rounded with Math.fround) before
// handing them to runKpl, so both builds see the same bits. Needs `make native wasm`.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { REPO, runNative } from './helpers.mjs';
import { loadKplWasm } from '../../bench/lib.mjs';
import { fitData, N, D, C } from '../../bench/fit_data.mjs';

let kpl;
before(async () => {
  ({ mod: kpl } = await loadKplWasm(path.join(REPO, 'pkg')));
});

/** Rows of `flat` (f32) L2-normalised as src/npz.rs does: an f32 sum of squares in order. */
function normalizedRows(flat, d) {
  const out = new Float32Array(flat.length);
  for (let r = 0; r < flat.length / d; r++) {
    let sum = 0;
    for (let k = 0; k < d; k++) sum = Math.fround(sum + Math.fround(flat[r * d + k] * flat[r * d + k]));
    const norm = Math.fround(Math.sqrt(sum));
    for (let k = 0; k < d; k++) out[r * d + k] = Math.fround(flat[r * d + k] / norm);
  }
  return out;
}

// ------------------------------------------------------------------ a minimal .npz writer
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (bytes) => {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};

/** An .npy (format 1.0) of a Float32Array ('<f4') or a BigInt64Array ('<i8'). */
function npy(array, shape) {
  const descr = array instanceof Float32Array ? '<f4' : '<i8';
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header = header.padEnd(Math.ceil((header.length + 11) / 64) * 64 - 11) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head.writeUInt16LE(header.length, 8);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(array.buffer, array.byteOffset, array.byteLength)]);
}

/** A zip of stored (uncompressed) entries, what numpy.savez writes. */
function zip(entries) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, Buffer.from(name), data);
    centrals.push(central, Buffer.from(name));
    offset += 30 + name.length + data.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

// ------------------------------------------------------------------ the comparison
function compare(name, { images, n, descriptions, classOf, classes, k, itersProxy }) {
  const d = images.length / n;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-fit-'));
  try {
    const file = path.join(dir, `${name}.npz`);
    fs.writeFileSync(file, zip([
      ['image_embeddings.npy', npy(images, [n, d])],
      ['description_embeddings.npy', npy(descriptions, [classOf.length, d])],
      ['description_class.npy', npy(BigInt64Array.from(classOf, (c) => BigInt(c)), [classOf.length])],
    ]));
    const native = runNative(['eval-embeddings', file, '--method', 'kpl', '--k', String(k), '--iters-proxy', String(itersProxy)]);
    const wasm = Array.from(kpl.runKpl(normalizedRows(images, d), n, normalizedRows(descriptions, d), classOf, classes, k, itersProxy));
    assert.deepEqual(wasm, native.methods.kpl.predictions, `${name}: wasm and native predictions differ`);
    return wasm;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('wasm KPL fit = native on every parity case', () => {
  const dir = path.join(REPO, 'tests', 'reference', 'cases');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  assert.ok(files.length >= 5, 'parity cases present');
  for (const f of files) {
    const c = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    compare(c.name, {
      images: Float32Array.from(c.images),
      n: c.n,
      descriptions: Float32Array.from(c.descriptions),
      classOf: Uint32Array.from(c.description_class),
      classes: c.classes,
      k: c.params.k,
      itersProxy: c.params.iters_proxy,
    });
  }
});

test('wasm KPL fit = native on the benchmark data (n = 1000, d = 768)', { timeout: 120000 }, () => {
  const { images, descriptions, classOf, labels } = fitData();
  const predictions = compare('bench', { images, n: N, descriptions, classOf, classes: C, k: 8, itersProxy: 2000 });
  const correct = predictions.filter((p, i) => p === labels[i]).length;
  assert.ok(correct > 0.9 * N, `the fit did its work: ${correct}/${N} correct (d = ${D})`);
});
