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
 *   The folder is a Hugging Face CLIP folder (config.json, model.safetensors, …) or a
 *   `kpl pack` bundle (manifest.json listing image_encoder.gguf and text_encoder.gguf;
 *   the text encoder is then fetched only when texts are first embedded).
 * @property {number} [maxMegapixels] refuse larger images (default 100).
 * @property {Backend} [backend] the compute backend asked for (default 'auto'); the
 *   worker picks the one it can run (`chooseBackend` in worker.js) and says so in the
 *   result.
 */

/**
 * A compute backend: 'auto' lets the worker choose, 'wasm' is the CPU
 * (WebAssembly), 'webgpu' the GPU. 'cpu' is accepted as another name for 'wasm'.
 * @typedef {'auto' | 'wasm' | 'cpu' | 'webgpu'} Backend
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
 * Embed several image files, one after the other, with one `progress` reply per
 * image (stage 'embed': `loaded` images done of `total`). A file that fails gets an
 * `error` in its own entry of the result; the others go on.
 * Result: {@link EmbedImagesResult}.
 * @typedef {object} EmbedImagesRequest
 * @property {number} id
 * @property {'embed-images'} type
 * @property {{name: string, data: Blob | ArrayBuffer}[]} items at least one.
 */

/**
 * Classify image embeddings over classes the user typed (custom-labels mode). Each
 * class is prompted as "a photo of a {name}."; with descriptions (any class), the
 * prompt and the descriptions form an in-memory knowledge base classified as a
 * task's is (several images: transductive KPL, method 'kpl'; one: the average of
 * the prompt and the descriptions closest to it, method 'single-image'); without,
 * plain CLIP zero-shot (method 'clip'). The texts are embedded in the worker (for a
 * bundle, the text encoder is fetched first: `progress` replies, stage 'download').
 * Result: {@link ClassifyCustomResult}.
 * @typedef {object} ClassifyCustomRequest
 * @property {number} id
 * @property {'classify-custom'} type
 * @property {Float32Array[]} embeddings
 * @property {CustomClass[]} classes at least one.
 * @property {number} [topEvidence] default 3.
 */

/**
 * @typedef {object} CustomClass
 * @property {string} name
 * @property {string[]} descriptions possibly empty.
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

/** @typedef {LoadRequest | LoadKbRequest | ClassifyKbRequest | EmbedImageRequest | EmbedImagesRequest | EmbedTextRequest | ClassifyRequest | ClassifyCustomRequest} Request */

/**
 * @typedef {object} LoadResult
 * @property {boolean} isRandom the weights are random test weights: no output means anything.
 * @property {number} embeddingDim
 * @property {number} imageSize
 * @property {boolean} hasTokenizer
 * @property {number} logitScale exp(logit_scale).
 * @property {number} bytes bytes of model files fetched.
 * @property {number} ms time to fetch and load.
 * @property {{wasm: number, fetch: number, parse: number, backend: number}} [timings]
 *   milliseconds of `ms` spent waiting for the WebAssembly module, fetching the files,
 *   building the model from them, and choosing the backend (absent when `reused`).
 * @property {'wasm' | 'webgpu'} backend the backend that runs the image encoder
 *   (`chooseBackend` in worker.js).
 * @property {Backend} requestedBackend what the load request asked for.
 * @property {string} backendNote a sentence for the page: why the backend asked for
 *   is not the one used, or what 'auto' measured; else ''.
 * @property {string | null} adapter the GPU adapter probed, when one was.
 * @property {{cpuMs: number, gpuMs: number} | null} probe the probe image's time on
 *   each engine, when both ran (now, or on an earlier visit: 'auto' remembers a CPU
 *   win per model in the Cache API).
 * @property {boolean} backendSettled false while 'auto' is still measuring WebGPU in
 *   the background (a BackendEvent follows).
 * @property {boolean} bundle the folder is a `kpl pack` bundle.
 * @property {boolean} hasTextEncoder the text encoder is loaded (a bundle's is
 *   fetched on first use).
 * @property {boolean} reused the same model was already loaded on the same backend,
 *   so nothing was fetched again (`bytes` is 0).
 */

/**
 * @typedef {object} EmbedImageResult
 * @property {string} name
 * @property {Float32Array} embedding L2-normalised.
 * @property {number} ms time spent in the worker.
 */

/**
 * What a result card may show about a DICOM file (never a patient attribute):
 * `dicomSummary` in src/wasm_dicom.rs.
 * @typedef {object} DicomSummary
 * @property {string | null} modality
 * @property {string | null} body_part
 * @property {number} rows
 * @property {number} columns
 * @property {number} frames
 * @property {string} transfer_syntax the UID.
 * @property {string} transfer_syntax_name
 */

/**
 * @typedef {object} EmbedImagesItem
 * @property {string} name
 * @property {Float32Array} [embedding] absent when the file failed.
 * @property {string} [error] why the file failed, naming it.
 * @property {DicomSummary} [dicom] for DICOM files.
 * @property {number} ms time spent on this file in the worker (reading included).
 * @property {number} encodeMs time of the embedding call alone (decode, preprocess,
 *   vision tower), as `performance.measure` 'kpl-encode' entries also record.
 */

/**
 * @typedef {object} EmbedImagesResult
 * @property {EmbedImagesItem[]} results one per item, in order; each embedded one
 *   says which `backend` ('wasm' | 'webgpu') embedded it.
 * @property {'wasm' | 'webgpu'} backend the backend after the batch.
 * @property {string} backendNote set when the GPU failed during the batch and the
 *   rest (including the image it failed on) ran on the CPU; else ''.
 * @property {number} ms
 */

/**
 * @typedef {object} ClassifyCustomResult
 * @property {{label: string, scores: number[], method: string, clip_scores: number[], clip_label: string,
 *   evidence: {description: string, similarity: number}[]}[]} results one per embedding.
 * @property {string[]} classNames
 * @property {'clip' | 'kpl' | 'single-image'} method
 * @property {boolean} knowledge the classes had descriptions.
 * @property {number} texts texts embedded (prompts and descriptions).
 * @property {number} ms
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
 * Progress of a request. Stage 'download' (load, or a bundle's text encoder fetched
 * on first use): `loaded` bytes of `total`, `file` the file being fetched. Stage
 * 'embed' (embed-images): `loaded` images done of `total`, `file` the image just
 * done.
 * @typedef {object} ProgressReply
 * @property {number} id
 * @property {'progress'} type
 * @property {'download' | 'embed'} stage
 * @property {'bytes' | 'images'} unit
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

/**
 * Sent without a request id when the worker changes backend on its own: 'auto'
 * answers the load on the CPU at once and probes WebGPU in the background, and a
 * GPU that fails mid-run hands over to the CPU.
 * @typedef {object} BackendEvent
 * @property {'backend'} type
 * @property {'wasm' | 'webgpu'} backend the backend now running the image encoder.
 * @property {string} note the sentence for the page.
 * @property {{cpuMs: number, gpuMs: number} | null} probe what the probe measured.
 */

/** @typedef {ProgressReply | ResultReply | ErrorReply | BackendEvent} Reply */

export const REQUEST_TYPES = Object.freeze([
  'load', 'load-kb', 'classify-kb', 'embed-image', 'embed-images', 'embed-text', 'classify', 'classify-custom',
]);
export const REPLY_TYPES = Object.freeze(['progress', 'result', 'error', 'backend']);
/** The backends a load request may ask for. */
export const BACKENDS = Object.freeze(['auto', 'wasm', 'cpu', 'webgpu']);
/** How the page names a backend the worker used. */
export const BACKEND_NAMES = Object.freeze({ wasm: 'CPU (WebAssembly)', webgpu: 'GPU (WebGPU)' });

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
 * Parses the custom-labels field: one class per line, `label: description;
 * description` (descriptions optional). A single line without a colon is read as
 * comma-separated labels (`normal, pneumonia`). Names are trimmed with inner spaces
 * collapsed; empty lines, empty descriptions and repeats are dropped; a repeated
 * class gets the descriptions of both lines.
 * @param {string} text
 * @returns {CustomClass[]}
 */
export function parseCustomClasses(text) {
  const clean = (s) => s.trim().replace(/\s+/g, ' ');
  const lines = String(text).split(/\r?\n/).map(clean).filter(Boolean);
  if (lines.length === 1 && !lines[0].includes(':')) {
    return parseLabels(lines[0]).map((name) => ({ name, descriptions: [] }));
  }
  /** @type {Map<string, Set<string>>} */
  const classes = new Map();
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = clean(colon < 0 ? line : line.slice(0, colon));
    if (!name) continue;
    const set = classes.get(name) ?? new Set();
    classes.set(name, set);
    if (colon >= 0) {
      for (const d of line.slice(colon + 1).split(';').map(clean)) if (d) set.add(d);
    }
  }
  return [...classes].map(([name, set]) => ({ name, descriptions: [...set] }));
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
      if (msg.backend !== undefined && !BACKENDS.includes(msg.backend))
        return `load: unknown backend ${JSON.stringify(msg.backend)} (${BACKENDS.join(', ')})`;
      return null;
    case 'load-kb':
      if (typeof msg.url !== 'string' || !msg.url) return 'load-kb: url must be a URL string';
      return null;
    case 'classify-kb':
      if (!Array.isArray(msg.embeddings) || msg.embeddings.length === 0 || !msg.embeddings.every((e) => e instanceof Float32Array))
        return 'classify-kb: embeddings must be a non-empty list of Float32Array';
      return null;
    case 'embed-images':
      if (!Array.isArray(msg.items) || msg.items.length === 0) return 'embed-images: items must be a non-empty list';
      for (const item of msg.items) {
        if (!item || typeof item.name !== 'string') return 'embed-images: every item needs a name';
        if (!isBytes(item.data)) return `embed-images: ${item.name}: data must be a Blob or an ArrayBuffer`;
      }
      return null;
    case 'classify-custom':
      if (!Array.isArray(msg.embeddings) || msg.embeddings.length === 0 || !msg.embeddings.every((e) => e instanceof Float32Array))
        return 'classify-custom: embeddings must be a non-empty list of Float32Array';
      if (!Array.isArray(msg.classes) || msg.classes.length === 0)
        return 'classify-custom: classes must be a non-empty list';
      for (const c of msg.classes) {
        if (!c || typeof c.name !== 'string' || !c.name) return 'classify-custom: every class needs a name';
        if (!Array.isArray(c.descriptions) || !c.descriptions.every((d) => typeof d === 'string'))
          return `classify-custom: ${c.name}: descriptions must be a list of strings`;
      }
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
    /** Called with each BackendEvent. @type {((e: BackendEvent) => void) | null} */
    this.onBackend = null;
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

  /**
   * @param {string} [base]
   * @param {(p: ProgressReply) => void} [onProgress]
   * @param {{backend?: Backend, maxMegapixels?: number}} [options]
   * @returns {Promise<LoadResult>}
   */
  load(base = '/model/', onProgress, { backend, maxMegapixels } = {}) {
    const body = { type: 'load', base };
    if (backend !== undefined) body.backend = backend;
    if (maxMegapixels !== undefined) body.maxMegapixels = maxMegapixels;
    return this.request(body, { onProgress });
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

  /**
   * @param {{name: string, data: Blob | ArrayBuffer}[]} items
   * @param {(p: ProgressReply) => void} [onProgress] once per image done.
   * @returns {Promise<EmbedImagesResult>}
   */
  embedImages(items, onProgress) {
    return this.request({ type: 'embed-images', items }, { onProgress });
  }

  /**
   * @param {Float32Array[]} embeddings
   * @param {CustomClass[]} classes
   * @param {{topEvidence?: number, onProgress?: (p: ProgressReply) => void}} [options]
   * @returns {Promise<ClassifyCustomResult>}
   */
  classifyCustom(embeddings, classes, { topEvidence = 3, onProgress } = {}) {
    return this.request({ type: 'classify-custom', embeddings, classes, topEvidence }, { onProgress });
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
    if (reply?.type === 'backend') {
      this.onBackend?.(reply);
      return;
    }
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
