// Weights are held once in wasm memory, and one image adds little (issue #14 item 3),
// under Node with pkg/: each case starts a fresh wasm instance, loads a model and embeds
// an image. Wasm memory never shrinks, so the instance's linear memory afterwards is the
// page's peak for good; it is bounded against the bytes of the weights the model holds
// (ClipModel.weightBytes). A loader that copies the whole file into wasm memory before
// building tensors grows by ≥ 2× and fails; so did, at 1.29×, the q4 image encoder before
// the patch embedding stopped copying its kernel per image (candle's conv2d) and the MLP
// ran in row chunks (nn::patch, nn::transformer).
//
// weightBytes is checked independently: for the folders it must be within 1 % above the
// held bytes computed here from the safetensors header (f32 for every tensor, the f16
// token table kept f16; the f32 GEMM's panels pad rows to 16); for the bundles it must
// lie within 0.95–1.3× the encoder file (q8_0 packed for the int8 GEMM at 1.125 bytes a
// weight against the blocks' 1.0625, q4_K at 152 bytes per 256 weights against 144;
// f16 tensors widened to f32).
//
// Tiny fixtures (f32, f16): the load alone within BOUND (their activations are no
// weights, and at this size the instance's ~1 MiB of kernel buffers would dominate).
// The goal, per dtype: a full-size random ViT-B/16 image tower (12 layers; text tower
// of 1 layer), written here with the native CLI (`make native`) as an f32 folder and
// packed q8 and q4: the instance's whole memory (static data and stack included) after
// loading and one 224 × 224 image within BOUND × the weights held (bench/README.md's
// peak_memory_bytes / held_weight_bytes, where the threaded build's rows are measured
// too), f32 (both towers, as the page holds them) and each bundle's image encoder;
// then the same in Chromium at 1 and 2 threads (bench/chromium.mjs's rows).
//
// KPL_MEMORY_PKG=dir runs the same cases on another build of pkg/ (e.g. an older one,
// to see the bound fail).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';

import { REPO, FIXTURES, runNative } from './helpers.mjs';

/** The full-size models' folders (bench/chromium.mjs's names). */
const FOLDERS = { f32: 'vit-b16-random', q8: 'vit-b16-q8', q4: 'vit-b16-q4' };

/** The claim: peak wasm memory growth ≤ BOUND × the held weight bytes. */
const BOUND = 1.25;
const PKG = path.resolve(REPO, process.env.KPL_MEMORY_PKG ?? 'pkg');

let dir;
let instances = 0;

/** A fresh wasm instance (its own memory): the glue module imported under a new URL. */
async function freshInstance() {
  instances += 1;
  const mod = await import(`${pathToFileURL(path.join(PKG, 'kpl.js')).href}?instance=${instances}`);
  const exports = await mod.default({ module_or_path: fs.readFileSync(path.join(PKG, 'kpl_bg.wasm')) });
  return { mod, bytes: () => exports.memory.buffer.byteLength };
}

/** Held bytes from a safetensors header: f32 for every tensor, `table` kept f16 when stored f16. */
function heldFromHeader(file, table) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  let total = 0;
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const elements = info.shape.reduce((a, b) => a * b, 1);
    total += elements * (name === table && info.dtype === 'F16' ? 2 : 4);
  }
  return total;
}

function assertWithinBound(what, memory, weightBytes) {
  const ratio = memory / weightBytes;
  assert.ok(
    ratio <= BOUND,
    `${what}: ${memory} bytes of wasm memory for ${weightBytes} bytes of weights (${ratio.toFixed(3)}×, bound ${BOUND}×)`,
  );
  return ratio;
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-memory-'));
  // Named as bench/chromium.mjs reads them (its --out folder).
  const model = path.join(dir, FOLDERS.f32);
  runNative(['random-model', '--preset', 'vit-b16', '--text-layers', '1', '--output', model]);
  for (const dtype of ['q8', 'q4']) runNative(['pack', '--model', model, '--dtype', dtype, '--threads', '1', '-o', path.join(dir, FOLDERS[dtype])]);
  fs.copyFileSync(path.join(FIXTURES, 'images', 'rgb_97x61.png'), path.join(dir, 'image-224.png'));
}, { timeout: 900000 });

after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

for (const [fixture, table] of [['tiny-quickgelu-f32', null], ['tiny-gelu-f16', 'text_model.embeddings.token_embedding.weight']]) {
  test(`${fixture}: loading grows wasm memory by at most ${BOUND}× the weights held`, async () => {
    const folder = path.join(FIXTURES, fixture);
    const read = (name) => new Uint8Array(fs.readFileSync(path.join(folder, name)));
    const { mod, bytes } = await freshInstance();
    const start = bytes();
    const config = read('config.json');
    const preprocessor = read('preprocessor_config.json');
    let weights = read('model.safetensors');
    const model = mod.ClipModel.load(config, weights, undefined, preprocessor);
    weights = null;
    const loaded = bytes() - start;
    // Dense linear weights are held as the f32 GEMM's 16-column panels (rows padded
    // to a multiple of 16): a little more than the header's bytes, never less.
    const header = heldFromHeader(path.join(folder, 'model.safetensors'), table);
    assert.ok(model.weightBytes >= header && model.weightBytes <= 1.01 * header, `weightBytes ${model.weightBytes} against the header's ${header} in the form held`);
    const ratio = assertWithinBound(fixture, loaded, model.weightBytes);
    const png = new Uint8Array(fs.readFileSync(path.join(FIXTURES, 'images', 'rgb_97x61.png')));
    assert.equal(model.embedImage(png, 'rgb_97x61.png').length, model.embeddingDim);
    console.log(`# ${fixture}: load grew ${loaded} bytes for ${model.weightBytes} of weights (${ratio.toFixed(3)}×); with an embedding ${bytes() - start}`);
    model.free();
  });
}

/** The fixtures' photo (120 × 100), which the model resizes to 224 × 224. */
const IMAGE = 'photo_120x100.jpg';

for (const dtype of ['f32', 'q8', 'q4']) {
  test(`ViT-B/16 ${dtype}: loading and one image grow wasm memory by at most ${BOUND}× the weights held`, async () => {
    const folder = path.join(dir, FOLDERS[dtype]);
    const read = (name) => new Uint8Array(fs.readFileSync(path.join(folder, name)));
    const { mod, bytes } = await freshInstance();
    mod.setQuantKernel('int8');
    const start = bytes();
    let model;
    if (dtype === 'f32') {
      let weights = read('model.safetensors');
      model = mod.ClipModel.load(read('config.json'), weights, undefined, read('preprocessor_config.json'));
      weights = null;
      const header = heldFromHeader(path.join(folder, 'model.safetensors'), null);
      assert.ok(model.weightBytes >= header && model.weightBytes <= 1.01 * header, `weightBytes ${model.weightBytes} against the header's ${header}`);
    } else {
      const file = path.join(folder, 'image_encoder.gguf');
      model = mod.ClipModel.loadBundle(fs.readFileSync(path.join(folder, 'manifest.json'), 'utf8'), read('image_encoder.gguf'), undefined);
      const held = model.weightBytes / fs.statSync(file).size;
      assert.ok(held >= 0.95 && held <= 1.3, `weightBytes ${model.weightBytes} is ${held.toFixed(3)}× the encoder file`);
    }
    const loaded = bytes() - start;
    const image = new Uint8Array(fs.readFileSync(path.join(FIXTURES, 'images', IMAGE)));
    assert.equal(model.embedImage(image, IMAGE).length, model.embeddingDim);
    // The whole linear memory (static data and stack included), as the bench's peak_memory_bytes.
    const ratio = assertWithinBound(`ViT-B/16 ${dtype}`, bytes(), model.weightBytes);
    console.log(`# ${dtype}: load grew ${loaded} bytes; memory ${bytes()} after one image for ${model.weightBytes} of weights (${ratio.toFixed(3)}×)`);
    model.free();
  }, { timeout: 300000 });
}

// The same models in headless Chromium on a cross-origin-isolated page, as
// bench/chromium.mjs measures them: pkg/ at one thread and the threaded build
// (pkg/threads/, a pool of two Web Workers whose stacks come from the shared heap) at
// two, a fresh tab each, and the same for their relaxed-SIMD twins (what Chromium runs
// by default); the linear memory after loading and one image (no GEMM rows).
test(`ViT-B/16 f32, q8, q4 in Chromium at 1 and 2 threads, simd128 and relaxed builds: memory at most ${BOUND}× the weights held`, () => {
  for (const dir of ['threads', 'relaxed', 'threads-relaxed']) {
    assert.ok(fs.existsSync(path.join(PKG, dir, 'kpl_bg.wasm')), `pkg/${dir}/ is missing: run \`make wasm\``);
  }
  const r = spawnSync(process.execPath, [path.join(REPO, 'bench', 'chromium.mjs'), '--engines', 'kpl-wasm', '--dtypes', 'f32 q8 q4', '--simd', 'simd128 relaxed',
    '--gemm', '', '--runs', '1', '--out', dir, '--pkg', PKG], { encoding: 'utf8', maxBuffer: 16 << 20 });
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  assert.equal(rows.length, 12, r.stdout + r.stderr);
  for (const row of rows) {
    const name = `${row.dtype} ${row.threads} thr ${row.simd}`;
    assert.ok(!row.status, `${name}: ${row.status} ${row.reason}`);
    const ratio = assertWithinBound(`Chromium ${name}`, row.peak_memory_bytes, row.held_weight_bytes);
    console.log(`# Chromium ${name}: memory ${row.peak_memory_bytes} for ${row.held_weight_bytes} of weights (${ratio.toFixed(3)}×)`);
  }
}, { timeout: 300000 });
