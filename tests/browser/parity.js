// Loaded by parity.html (served at /test/ by `scripts/serve.mjs --test`). Runs the
// wasm build directly, on the page's thread, so that the numbers compared with the
// native CLI come from the same entry points the worker uses (ClipModel.load,
// embedImage, embedText) and nothing else.

import init, { ClipModel, GpuEncoder } from '/pkg/kpl.js';
import { MODEL_FILES, OPEN_CLIP_CONFIG, OPEN_CLIP_FILES, OPEN_CLIP_WEIGHTS } from '/protocol.js';

async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** The bytes at `url`, or undefined when the server has no such file (404). */
async function fetchOptional(url) {
  const res = await fetch(url);
  if (res.status === 404) return undefined;
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * A Hugging Face folder (CLIP or SigLIP) as ClipModel.load takes it: tokenizer.json
 * when the folder has one, else spiece.model with tokenizer_config.json (as the worker).
 */
async function loadFolder(base) {
  const { config, weights, tokenizer, preprocessor, spiece, tokenizerConfig } = MODEL_FILES;
  const [c, w, p] = await Promise.all([config, weights, preprocessor].map((f) => fetchBytes(base + f)));
  const json = await fetchOptional(base + tokenizer);
  const [sp, tc] = json ? [] : await Promise.all([spiece, tokenizerConfig].map((f) => fetchOptional(base + f)));
  return ClipModel.load(c, w, json, p, sp, tc);
}

/**
 * @param {{models: string[], images: string[], texts: string[], gpu?: boolean}} job
 *   models: folder names under /fixtures/ (CLIP or SigLIP); images: paths under /fixtures/; gpu: also
 *   embed everything with the WebGPU engine (GpuEncoder), images as one batch.
 */
async function run({ models, images, texts, gpu = false }) {
  await init();
  const out = {};
  for (const name of models) {
    const model = await loadFixture(`/fixtures/${name}/`);
    try {
      const result = { isRandom: model.isRandom, embeddingDim: model.embeddingDim, images: [], texts: [] };
      for (const file of images) {
        const bytes = await fetchBytes(`/fixtures/${file}`);
        result.images.push({ file, embedding: Array.from(model.embedImage(bytes, file)) });
      }
      for (const text of texts) {
        result.texts.push({ text, embedding: Array.from(model.embedText(text)) });
      }
      if (gpu) result.gpu = await onGpu(model, images, texts);
      out[name] = result;
    } finally {
      model.free();
    }
  }
  return out;
}

/** A fixture folder: a Hugging Face one (CLIP or SigLIP, `loadFolder`), or an open_clip one (its config and weights by name). */
async function loadFixture(base) {
  const open = await fetch(base + OPEN_CLIP_CONFIG);
  if (open.ok) {
    const config = new Uint8Array(await open.arrayBuffer());
    for (const name of OPEN_CLIP_WEIGHTS) {
      const res = await fetch(base + name);
      if (!res.ok) continue;
      const optional = async (f) => {
        const r = await fetch(base + f);
        return r.ok ? new Uint8Array(await r.arrayBuffer()) : undefined;
      };
      const { tokenizer, textConfig, vocab, tokenizerConfig } = OPEN_CLIP_FILES;
      const extra = await Promise.all([tokenizer, textConfig, vocab, tokenizerConfig].map(optional));
      return ClipModel.loadOpenClip(config, new Uint8Array(await res.arrayBuffer()), name, ...extra);
    }
    throw new Error(`${base}: no open_clip weights`);
  }
  return loadFolder(base);
}

const rows = (flat, n) => Array.from({ length: n }, (_, i) => Array.from(flat.subarray((i * flat.length) / n, ((i + 1) * flat.length) / n)));

/** The same images and texts through the WebGPU engine. */
async function onGpu(model, images, texts) {
  const engine = await GpuEncoder.create(model);
  try {
    const pixels = [];
    for (const file of images) pixels.push(model.preparePixels(await fetchBytes(`/fixtures/${file}`), file));
    const flat = new Float32Array(pixels.reduce((n, p) => n + p.length, 0));
    pixels.reduce((offset, p) => (flat.set(p, offset), offset + p.length), 0);
    const imageRows = rows(await engine.embedPixels(flat, images.length), images.length);
    const textRows = rows(await engine.embedTexts(model, texts), texts.length);
    return { adapter: engine.adapter, software: engine.isSoftware, f16: engine.hasF16, images: imageRows, texts: textRows };
  } finally {
    engine.free();
  }
}

/**
 * The model served at /model/ (a Hugging Face folder), on the CPU and on WebGPU,
 * for the same images (paths under /fixtures/) and texts.
 */
async function runServedModel({ images, texts }) {
  await init();
  const model = await loadFolder('/model/');
  try {
    const cpu = { images: [], texts: [] };
    let t = performance.now();
    for (const file of images) cpu.images.push(Array.from(model.embedImage(await fetchBytes(`/fixtures/${file}`), file)));
    const cpuImageMs = (performance.now() - t) / images.length;
    for (const text of texts) cpu.texts.push(Array.from(model.embedText(text)));
    t = performance.now();
    const gpu = await onGpu(model, images, texts);
    return { isRandom: model.isRandom, cpu, gpu, cpuImageMs, gpuMs: performance.now() - t };
  } finally {
    model.free();
  }
}

window.kplParity = run;
window.kplServedModelParity = runServedModel;
document.documentElement.dataset.ready = 'true';
