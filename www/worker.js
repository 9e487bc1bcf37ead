// The worker that owns the WebAssembly module and the model (a MODULE worker).
//
// All heavy work happens here: fetching the model (hundreds of MB for a real
// checkpoint), decoding and preprocessing images, running both CLIP towers. The page
// only sends requests and draws replies, so it never blocks. The message protocol is
// defined, with JSDoc types, in protocol.js.

import init, { ClipModel, KnowledgeBase } from '/pkg/kpl.js';
import { checkRequest, MODEL_FILES } from './protocol.js';

/** @type {ClipModel | null} */
let model = null;
/** @type {KnowledgeBase | null} */
let kb = null;
/** @type {Promise<unknown> | null} */
let wasmReady = null;

/** @param {import('./protocol.js').Reply} reply */
const reply = (reply, transfer = []) => self.postMessage(reply, transfer);

const messageOf = (e) => (e instanceof Error ? e.message : String(e));

const ROLES = Object.keys(MODEL_FILES);
const PROGRESS_STEP = 1 << 20;

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
  return { files: MODEL_FILES, sizes: {}, random: false, listed: false };
}

/**
 * Fetches a file's bytes, calling onBytes(n) as chunks arrive; null on 404 when
 * optional. With a Content-Length the chunks go straight into one buffer, so a
 * large checkpoint is not held twice.
 */
async function fetchBytes(url, optional, onBytes) {
  const res = await fetch(url);
  if (!res.ok) {
    if (optional && res.status === 404) return null;
    throw new Error(`cannot fetch ${url.pathname}: HTTP ${res.status}`);
  }
  const declared = res.headers.has('Content-Encoding') ? NaN : Number(res.headers.get('Content-Length'));
  let out = Number.isSafeInteger(declared) && declared > 0 ? new Uint8Array(declared) : new Uint8Array(1 << 20);
  let received = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (received + value.byteLength > out.byteLength) {
      const grown = new Uint8Array(Math.max(out.byteLength * 2, received + value.byteLength));
      grown.set(out.subarray(0, received));
      out = grown;
    }
    out.set(value, received);
    received += value.byteLength;
    onBytes(value.byteLength);
  }
  return received === out.byteLength ? out : out.slice(0, received);
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
    let reported = 0;
    const progress = (file) => {
      reported = loaded;
      reply({ id: req.id, type: 'progress', file, loaded, total: Math.max(total, loaded) });
    };
    const bytes = {};
    for (const role of ROLES) {
      const name = manifest.files[role];
      if (!name) continue;
      const optional = role === 'tokenizer' || role === 'preprocessor';
      bytes[role] = await fetchBytes(new URL(name, base), optional && !manifest.listed, (n) => {
        loaded += n;
        if (loaded - reported >= PROGRESS_STEP) progress(name); // at most one message per MB
      });
      progress(name);
    }
    model?.free();
    model = null;
    kb?.free();
    kb = null;
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

  /** @param {import('./protocol.js').LoadKbRequest} req */
  async 'load-kb'(req) {
    const m = requireModel();
    const url = new URL(req.url, self.location.href);
    const res = await fetch(url);
    if (!res.ok) throw new Error(`cannot fetch ${url.pathname}: HTTP ${res.status}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const name = decodeURIComponent(url.pathname.split('/').pop());
    const base = KnowledgeBase.load(bytes, name);
    try {
      base.checkModel(m, name);
    } catch (e) {
      base.free();
      throw e;
    }
    kb?.free();
    kb = base;
    return {
      task: base.task,
      title: base.title,
      classNames: Array.from(base.classNames),
      randomWeights: base.randomWeights,
      hasProxies: base.hasProxies,
    };
  },

  /** @param {import('./protocol.js').ClassifyKbRequest} req */
  async 'classify-kb'(req) {
    const m = requireModel();
    if (!kb) throw new Error('no knowledge base is loaded');
    const n = req.embeddings.length;
    const dim = req.embeddings[0].length;
    const flat = new Float32Array(n * dim);
    req.embeddings.forEach((e, i) => flat.set(e, i * dim));
    const start = performance.now();
    const raw = kb.classify(flat, n, m.logitScale, undefined, req.topEvidence ?? 3);
    const results = Array.from(raw, (r) => ({
      label: r.label,
      scores: Array.from(r.scores),
      method: r.method,
      clip_scores: Array.from(r.clip_scores),
      clip_label: r.clip_label,
      evidence: Array.from(r.evidence ?? [], (e) => ({ description: e.description, similarity: e.similarity })),
    }));
    return { results, classNames: Array.from(kb.classNames), ms: performance.now() - start };
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
