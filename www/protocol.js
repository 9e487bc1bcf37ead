// The one message protocol between the page (app.js) and the worker (worker.js).
//
// The page sends requests; the worker answers each with zero or more `progress`
// replies and then exactly one `result` or `error` reply carrying the same `id`.
// The worker handles requests one at a time, in the order they arrive, so a request
// sent while the model is still loading simply waits for it.
//
// Adding a request type: add its typedef here, add it to REQUEST_TYPES, handle it in
// worker.js (`handlers`), and add a method to KplClient.

/**
 * Load the wasm module and a model. The worker reads `<base>manifest.json`
 * (scripts/serve.mjs synthesises one for /model/) and fetches the files it lists,
 * relative to `base`.
 * @typedef {object} LoadRequest
 * @property {number} id
 * @property {'load'} type
 * @property {string} [base] URL of the model folder, ending in '/' (default '/model/').
 * @property {number} [maxMegapixels] refuse larger images (default 100).
 */

/**
 * Embed one image file.
 * @typedef {object} EmbedImageRequest
 * @property {number} id
 * @property {'embed-image'} type
 * @property {string} name file name, used in error messages.
 * @property {Blob | ArrayBuffer} data the file's bytes (PNG, JPEG, WebP, BMP, TIFF).
 */

/**
 * Embed texts.
 * @typedef {object} EmbedTextRequest
 * @property {number} id
 * @property {'embed-text'} type
 * @property {string[]} texts
 */

/**
 * Embed one image and classify it over labels.
 * @typedef {object} ClassifyRequest
 * @property {number} id
 * @property {'classify'} type
 * @property {string} name
 * @property {Blob | ArrayBuffer} data
 * @property {string[]} labels at least one label.
 * @property {'clip'} [method] 'clip' (default): plain CLIP zero-shot, each label
 *   prompted as "a photo of a {label}.".
 */

/**
 * Load a knowledge base (.kplkb) built by the loaded model; it replaces the previous one.
 * Result: {task, title, classNames, randomWeights, hasProxies}.
 * @typedef {object} LoadKbRequest
 * @property {number} id
 * @property {'load-kb'} type
 * @property {string} url
 */

/**
 * Classify image embeddings with the loaded knowledge base: several run transductive
 * KPL over the set (method 'kpl'), one uses the proxies or single-image retrieval.
 * Result: {results: [{label, scores, method, clip_scores, clip_label, evidence}], classNames, ms}.
 * @typedef {object} ClassifyKbRequest
 * @property {number} id
 * @property {'classify-kb'} type
 * @property {Float32Array[]} embeddings
 * @property {number} [topEvidence] default 3.
 */

/** @typedef {LoadRequest | LoadKbRequest | ClassifyKbRequest | EmbedImageRequest | EmbedTextRequest | ClassifyRequest} Request */

/**
 * @typedef {object} LoadResult
 * @property {boolean} isRandom the weights are random test weights: no output means anything.
 * @property {number} embeddingDim
 * @property {number} imageSize
 * @property {boolean} hasTokenizer
 * @property {number} logitScale exp(logit_scale).
 * @property {number} bytes bytes of model files fetched.
 * @property {number} ms time to fetch and load.
 */

/**
 * @typedef {object} EmbedImageResult
 * @property {string} name
 * @property {Float32Array} embedding L2-normalised.
 * @property {number} ms time spent in the worker.
 */

/**
 * @typedef {object} EmbedTextResult
 * @property {Float32Array[]} embeddings L2-normalised, one per text.
 * @property {number} ms
 */

/**
 * @typedef {object} ClassifyResult
 * @property {string} name
 * @property {'clip'} method
 * @property {string[]} labels
 * @property {number[]} probs one per label, summing to 1.
 * @property {string} label the label with the highest probability.
 * @property {Float32Array} embedding the image embedding.
 * @property {number} ms time spent in the worker (decode, preprocess, embed, score).
 */

/**
 * Bytes fetched so far while loading (`file` is the file being fetched).
 * @typedef {object} ProgressReply
 * @property {number} id
 * @property {'progress'} type
 * @property {string} file
 * @property {number} loaded
 * @property {number} total 0 when unknown.
 */

/**
 * @typedef {object} ResultReply
 * @property {number} id
 * @property {'result'} type
 * @property {LoadResult | EmbedImageResult | EmbedTextResult | ClassifyResult} result
 */

/**
 * @typedef {object} ErrorReply
 * @property {number} id
 * @property {'error'} type
 * @property {string} message a sentence a person can act on.
 */

/** @typedef {ProgressReply | ResultReply | ErrorReply} Reply */

export const REQUEST_TYPES = Object.freeze(['load', 'load-kb', 'classify-kb', 'embed-image', 'embed-text', 'classify']);
export const REPLY_TYPES = Object.freeze(['progress', 'result', 'error']);

/**
 * The files of a Hugging Face CLIP folder, by role, in the order the worker fetches
 * them. config and weights are required. Shared with scripts/serve.mjs, which lists
 * them in the manifest it synthesises.
 */
export const MODEL_FILES = Object.freeze({
  config: 'config.json',
  weights: 'model.safetensors',
  tokenizer: 'tokenizer.json',
  preprocessor: 'preprocessor_config.json',
});

/**
 * Splits a comma-separated labels field: trimmed, empty entries and repeats dropped.
 * @param {string} text
 * @returns {string[]}
 */
export function parseLabels(text) {
  const seen = new Set();
  for (const part of String(text).split(',')) {
    const label = part.trim().replace(/\s+/g, ' ');
    if (label) seen.add(label);
  }
  return [...seen];
}

/**
 * Checks a request's shape; returns an error message, or null when it is valid.
 * @param {any} msg
 * @returns {string | null}
 */
export function checkRequest(msg) {
  if (!msg || typeof msg !== 'object') return 'a request must be an object';
  if (!Number.isInteger(msg.id)) return 'a request needs an integer id';
  if (!REQUEST_TYPES.includes(msg.type)) return `unknown request type ${JSON.stringify(msg.type)}`;
  const isBytes = (d) => d instanceof ArrayBuffer || (typeof Blob !== 'undefined' && d instanceof Blob);
  switch (msg.type) {
    case 'load':
      if (msg.base !== undefined && typeof msg.base !== 'string') return 'load: base must be a URL string';
      return null;
    case 'load-kb':
      if (typeof msg.url !== 'string' || !msg.url) return 'load-kb: url must be a URL string';
      return null;
    case 'classify-kb':
      if (!Array.isArray(msg.embeddings) || msg.embeddings.length === 0 || !msg.embeddings.every((e) => e instanceof Float32Array))
        return 'classify-kb: embeddings must be a non-empty list of Float32Array';
      return null;
    case 'embed-image':
    case 'classify':
      if (typeof msg.name !== 'string') return `${msg.type}: name must be a string`;
      if (!isBytes(msg.data)) return `${msg.type}: data must be a Blob or an ArrayBuffer`;
      if (msg.type === 'classify') {
        if (!Array.isArray(msg.labels) || msg.labels.length === 0 || !msg.labels.every((l) => typeof l === 'string' && l))
          return 'classify: labels must be a non-empty list of non-empty strings';
        if (msg.method !== undefined && msg.method !== 'clip') return `classify: unknown method ${JSON.stringify(msg.method)}`;
      }
      return null;
    case 'embed-text':
      if (!Array.isArray(msg.texts) || !msg.texts.every((t) => typeof t === 'string'))
        return 'embed-text: texts must be a list of strings';
      return null;
  }
  return null;
}

/**
 * The page's side of the protocol: one promise per request.
 */
export class KplClient {
  /** @param {Worker} worker a module worker running worker.js */
  constructor(worker) {
    this.worker = worker;
    this.nextId = 1;
    /** @type {Map<number, {resolve: Function, reject: Function, onProgress?: Function}>} */
    this.pending = new Map();
    worker.addEventListener('message', (event) => this.#onReply(event.data));
    worker.addEventListener('error', (event) => {
      event.preventDefault?.();
      this.#failAll(new Error(`the worker failed: ${event.message || 'it could not start (is pkg/ built?)'}`));
    });
    worker.addEventListener('messageerror', () => this.#failAll(new Error('a reply from the worker could not be read')));
  }

  /**
   * Sends a request and resolves with its result.
   * @param {Omit<Request, 'id'>} body
   * @param {{onProgress?: (p: ProgressReply) => void, transfer?: Transferable[]}} [options]
   */
  request(body, { onProgress, transfer = [] } = {}) {
    const id = this.nextId++;
    const msg = { ...body, id };
    const problem = checkRequest(msg);
    if (problem) return Promise.reject(new Error(problem));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage(msg, transfer);
    });
  }

  /** @returns {Promise<LoadResult>} */
  load(base = '/model/', onProgress) {
    return this.request({ type: 'load', base }, { onProgress });
  }

  loadKb(url) {
    return this.request({ type: 'load-kb', url });
  }

  classifyKb(embeddings, topEvidence = 3) {
    return this.request({ type: 'classify-kb', embeddings, topEvidence });
  }

  /** @returns {Promise<EmbedImageResult>} */
  embedImage(name, data) {
    return this.request({ type: 'embed-image', name, data });
  }

  /** @returns {Promise<EmbedTextResult>} */
  embedText(texts) {
    return this.request({ type: 'embed-text', texts });
  }

  /** @returns {Promise<ClassifyResult>} */
  classify(name, data, labels) {
    return this.request({ type: 'classify', name, data, labels, method: 'clip' });
  }

  /** @param {Reply} reply */
  #onReply(reply) {
    const entry = this.pending.get(reply?.id);
    if (!entry) return;
    if (reply.type === 'progress') {
      entry.onProgress?.(reply);
    } else if (reply.type === 'result') {
      this.pending.delete(reply.id);
      entry.resolve(reply.result);
    } else if (reply.type === 'error') {
      this.pending.delete(reply.id);
      entry.reject(new Error(reply.message));
    }
  }

  #failAll(error) {
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
    this.failure = error;
  }
}
