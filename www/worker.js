// The worker that owns the WebAssembly module and the model (a MODULE worker).
//
// All heavy work happens here: fetching the model (hundreds of MB for a real
// checkpoint), decoding and preprocessing images, running both CLIP towers. The page
// only sends requests and draws replies, so it never blocks. The message protocol is
// defined, with JSDoc types, in protocol.js.

import init, { ClipModel } from '/pkg/kpl.js';
import { checkRequest } from './protocol.js';

/** @type {ClipModel | null} */
let model = null;
/** @type {Promise<unknown> | null} */
let wasmReady = null;

/** @param {import('./protocol.js').Reply} reply */
const reply = (reply, transfer = []) => self.postMessage(reply, transfer);

const messageOf = (e) => (e instanceof Error ? e.message : String(e));

/** Roles of a model folder's files, in fetch order, and the files the loader needs. */
const ROLES = ['config', 'weights', 'tokenizer', 'preprocessor'];
const DEFAULT_FILES = {
  config: 'config.json',
  weights: 'model.safetensors',
  tokenizer: 'tokenizer.json',
  preprocessor: 'preprocessor_config.json',
};

/**
 * Reads a model folder's manifest.json; without one, assumes the standard
 * Hugging Face file names (the optional files may then be missing).
 */
async function readManifest(base) {
  const res = await fetch(new URL('manifest.json', base));
  if (res.ok) {
    const manifest = await res.json();
    const files = manifest?.model?.files;
    if (!files || typeof files !== 'object') throw new Error(`${res.url}: no "model.files" object`);
    return { files, sizes: manifest.model.sizes ?? {}, random: manifest.random_weights === true, listed: true };
  }
  if (res.status !== 404) throw new Error(`${res.url}: HTTP ${res.status}`);
  return { files: DEFAULT_FILES, sizes: {}, random: false, listed: false };
}

/** Fetches a file's bytes, calling onBytes(n) as chunks arrive; null on 404 when optional. */
async function fetchBytes(url, optional, onBytes) {
  const res = await fetch(url);
  if (!res.ok) {
    if (optional && res.status === 404) return null;
    throw new Error(`cannot fetch ${url.pathname}: HTTP ${res.status}`);
  }
  const reader = res.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.byteLength;
    onBytes(value.byteLength);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(received);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

async function bytesOf(data) {
  return new Uint8Array(data instanceof ArrayBuffer ? data : await data.arrayBuffer());
}

function requireModel() {
  if (!model) throw new Error('no model is loaded');
  return model;
}

const handlers = {
  /** @param {import('./protocol.js').LoadRequest} req */
  async load(req) {
    const start = performance.now();
    wasmReady ??= init();
    try {
      await wasmReady;
    } catch (e) {
      wasmReady = null;
      throw new Error(`cannot start the WebAssembly module (/pkg/kpl_bg.wasm): ${messageOf(e)}`);
    }
    const base = new URL(req.base ?? '/model/', self.location.href);
    const manifest = await readManifest(base);
    if (!manifest.files.config || !manifest.files.weights) {
      throw new Error(`${base.pathname}: the model folder needs config.json and model.safetensors`);
    }
    const total = ROLES.reduce((sum, role) => sum + (Number(manifest.sizes[role]) || 0), 0);
    let loaded = 0;
    const bytes = {};
    for (const role of ROLES) {
      const name = manifest.files[role];
      if (!name) continue;
      const optional = role === 'tokenizer' || role === 'preprocessor';
      bytes[role] = await fetchBytes(new URL(name, base), optional && !manifest.listed, (n) => {
        loaded += n;
        reply({ id: req.id, type: 'progress', file: name, loaded, total: Math.max(total, loaded) });
      });
    }
    model?.free();
    model = null;
    const m = ClipModel.load(bytes.config, bytes.weights, bytes.tokenizer ?? undefined, bytes.preprocessor ?? undefined);
    if (req.maxMegapixels) m.setMaxMegapixels(req.maxMegapixels);
    model = m;
    return {
      isRandom: m.isRandom || manifest.random,
      embeddingDim: m.embeddingDim,
      imageSize: m.imageSize,
      hasTokenizer: m.hasTokenizer,
      logitScale: m.logitScale,
      bytes: loaded,
      ms: performance.now() - start,
    };
  },

  /** @param {import('./protocol.js').EmbedImageRequest} req */
  async 'embed-image'(req) {
    const m = requireModel();
    const bytes = await bytesOf(req.data);
    const start = performance.now();
    const embedding = m.embedImage(bytes, req.name);
    return { name: req.name, embedding, ms: performance.now() - start };
  },

  /** @param {import('./protocol.js').EmbedTextRequest} req */
  async 'embed-text'(req) {
    const m = requireModel();
    const start = performance.now();
    const embeddings = req.texts.map((t) => m.embedText(t));
    return { embeddings, ms: performance.now() - start };
  },

  /** @param {import('./protocol.js').ClassifyRequest} req */
  async classify(req) {
    const m = requireModel();
    const bytes = await bytesOf(req.data);
    const start = performance.now();
    const embedding = m.embedImage(bytes, req.name);
    const probs = Array.from(m.zeroShot(embedding, req.labels));
    let best = 0;
    probs.forEach((p, i) => {
      if (p > probs[best]) best = i;
    });
    return {
      name: req.name,
      method: 'clip',
      labels: req.labels,
      probs,
      label: req.labels[best],
      embedding,
      ms: performance.now() - start,
    };
  },
};

async function handle(req) {
  const problem = checkRequest(req);
  if (problem) {
    reply({ id: Number.isInteger(req?.id) ? req.id : -1, type: 'error', message: problem });
    return;
  }
  try {
    const result = await handlers[req.type](req);
    reply({ id: req.id, type: 'result', result });
  } catch (e) {
    let message = messageOf(e);
    if (e instanceof WebAssembly.RuntimeError) {
      // A Rust panic: the module's state can no longer be trusted.
      model = null;
      message = `internal error in the WebAssembly module (${message}); reload the page`;
    }
    reply({ id: req.id, type: 'error', message });
  }
}

// One request at a time, in arrival order: the wasm calls are synchronous anyway, and
// requests sent during `load` wait for the model.
let queue = Promise.resolve();
self.addEventListener('message', (event) => {
  queue = queue.then(() => handle(event.data));
});
