// Weights are held once in wasm memory (issue #14 item 3), under Node with pkg/: each
// case starts a fresh wasm instance and loads a model; the growth of the instance's
// linear memory during the load (it never shrinks, so this is the load's peak) must stay
// within BOUND × the bytes of the weights the model holds (ClipModel.weightBytes). A
// loader that copies the whole file into wasm memory before building tensors grows by
// ≥ 2× and fails. The run's own memory (activations, about 1 MiB of kernel buffers even
// for the tiny fixtures) is not weights: bench/README.md reports the full-size peak
// with runs against the same bound.
//
// weightBytes is checked independently: for the folders it must be within 1 % above the
// held bytes computed here from the safetensors header (f32 for every tensor, the f16
// token table kept f16; the f32 GEMM's panels pad rows to 16); for the bundles it must lie within 0.95–1.3× the encoder file (q8_0
// packed for the int8 GEMM at 1.125 bytes a weight against the blocks' 1.0625; f16
// tensors widened to f32).
//
// Folders: the committed fixtures (f32, f16), loaded without a tokenizer (its parsed
// vocabulary is no weight), then an image embedded to show the model works. Bundles: a 2-layer ViT-B/16
// sized random model packed q8 and q4 here with the native CLI (`make native`), image
// encoder only, loaded (its activations at 224×224 are not weights: bench/README.md
// reports the peak with a run).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { REPO, FIXTURES, runNative } from './helpers.mjs';

/** The claim: peak wasm memory growth ≤ BOUND × the held weight bytes. */
const BOUND = 1.25;
const PKG = path.join(REPO, 'pkg');

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

function assertWithinBound(what, grown, weightBytes) {
  const ratio = grown / weightBytes;
  assert.ok(
    ratio <= BOUND,
    `${what}: wasm memory grew by ${grown} bytes for ${weightBytes} bytes of weights (${ratio.toFixed(3)}×, bound ${BOUND}×)`,
  );
  return ratio;
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kpl-memory-'));
  const model = path.join(dir, 'vit-b16-2');
  runNative(['random-model', '--preset', 'vit-b16', '--vision-layers', '2', '--text-layers', '1', '--output', model]);
  for (const dtype of ['q8', 'q4']) runNative(['pack', '--model', model, '--dtype', dtype, '--threads', '1', '-o', path.join(dir, dtype)]);
}, { timeout: 300000 });

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

for (const dtype of ['q8', 'q4']) {
  test(`${dtype} bundle: loading the image encoder grows wasm memory by at most ${BOUND}× the weights held`, async () => {
    const bundle = path.join(dir, dtype);
    const manifest = fs.readFileSync(path.join(bundle, 'manifest.json'), 'utf8');
    const file = path.join(bundle, 'image_encoder.gguf');
    const { mod, bytes } = await freshInstance();
    mod.setQuantKernel('int8');
    const start = bytes();
    const model = mod.ClipModel.loadBundle(manifest, new Uint8Array(fs.readFileSync(file)), undefined);
    const fileBytes = fs.statSync(file).size;
    const held = model.weightBytes / fileBytes;
    assert.ok(held >= 0.95 && held <= 1.3, `weightBytes ${model.weightBytes} is ${held.toFixed(3)}× the ${fileBytes}-byte encoder file`);
    const ratio = assertWithinBound(`${dtype} image encoder`, bytes() - start, model.weightBytes);
    console.log(`# ${dtype}: load grew ${bytes() - start} bytes for ${model.weightBytes} of weights (${ratio.toFixed(3)}×; weights ${held.toFixed(3)}× the file)`);
    model.free();
  });
}
