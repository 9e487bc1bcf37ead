// The one message protocol between the page (app.js) and the worker (worker.js).
//
// The page sends requests; the worker answers each with zero or more `progress`
// replies and then exactly one `result` or `error` reply carrying the same `id`.
// The worker handles requests one at a time, in the order they arrive, so a request
// sent while the model is still loading simply waits for it. Two requests are
// answered on arrival instead, since they only read or flag state: `cancel` (seen by
// an `embed-images` batch between two images) and `memory-usage`.
//
// A crash of the WebAssembly module (a Rust panic or an allocation failure aborts
// as `WebAssembly.RuntimeError`) ends the worker's usefulness: it answers the request
// it was running with `crashed` set (for `embed-images`: the files done so far, the
// one it crashed on with an error naming it) and refuses everything after. A
// `KplClient` made with `KplClient.start` then replaces the worker with a new one
// that reads the wasm, the model and the knowledge base from the browser's caches,
// replays the last `load` (with the backend the old worker was running, as
// `restoreBackend`) and `load-kb`, resends what was waiting, and continues the batch
// with the next file: the caller sees one `embed-images` result with every file.
//
// In the threaded build (pkg/threads/) a crash can also happen in a thread of rayon's
// pool (a Web Worker of the module worker's): the module worker then waits on rayon's
// latch for good and can answer nothing. The pool thread reports its own trap on a
// BroadcastChannel named per module worker (`crash-channel` in its URL; see
// scripts/wasm-threads.mjs); the client takes that as the module worker's crash on
// the request it was running (for a batch, the first file it had not reported done:
// each file's entry comes with its `progress` reply, so none done is lost), replaces
// it and goes on as above. A BroadcastChannel rather than the pool Worker's `error`
// event (dispatched in the module worker, which is blocked), a watchdog (a long
// request looks the same as a dead one) or a panic hook alone (blind to an allocation
// failure and to any other trap): every trap ends in the pool thread's own JS, which
// is never blocked.
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
 * @property {string} [base] URL of the model folder, ending in '/' (default 'model/' beside the worker).
 *   The folder is a Hugging Face CLIP or SigLIP folder (config.json, model.safetensors, …),
 *   an open_clip folder (open_clip_config.json and a weight file of OPEN_CLIP_WEIGHTS,
 *   e.g. BiomedCLIP's PyTorch pickle, read in the wasm), or a
 *   `kpl pack` bundle (manifest.json listing image_encoder.gguf and text_encoder.gguf;
 *   the text encoder is then fetched only when texts are first embedded).
 * @property {number} [maxMegapixels] refuse larger images (default 100).
 * @property {QuantKernel} [quantKernel] how a bundle's q8/q4 layers multiply on the CPU
 *   (`setQuantKernel`, src/nn/linear.rs `QuantKernel`); unset: the wasm's default. 'blocks'
 *   is candle's block-by-block kernel, the native CLI's default: the same numbers as
 *   `kpl` on the same bundle.
 * @property {Backend} [backend] the compute backend asked for (default 'auto'); the
 *   worker picks the one it can run (`chooseBackend` in worker.js) and says so in the
 *   result.
 * @property {'wasm' | 'webgpu'} [restoreBackend] sent by `KplClient` to a worker
 *   that replaces a crashed one: the backend the old worker was running, taken as
 *   settled (no new probe; 'webgpu' only reopens the GPU, and falls back to the CPU
 *   with a note if it cannot).
 */

/**
 * Cancel a request: an `embed-images` batch stops after the image in progress and
 * answers with the files done (`cancelled: true`); a request still waiting its turn
 * is answered with an error. Answered on arrival, not in turn.
 * Result: {cancelled: boolean} (false when `target` is finished or unknown).
 * @typedef {object} CancelRequest
 * @property {number} id
 * @property {'cancel'} type
 * @property {number} target the id of the request to cancel.
 */

/**
 * How much memory the worker holds, answered on arrival (also during a batch).
 * Result: {wasmBytes: number, jsHeapBytes: number | null} (the WebAssembly memory,
 * which never shrinks, and the worker's JS heap where the browser tells it).
 * @typedef {object} MemoryUsageRequest
 * @property {number} id
 * @property {'memory-usage'} type
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
 * `error` in its own entry of the result; the others go on. Between two images the
 * worker yields to its message queue, so a `cancel` stops the batch after the image
 * in progress.
 * Result: {@link EmbedImagesResult}.
 * @typedef {object} EmbedImagesRequest
 * @property {number} id
 * @property {'embed-images'} type
 * @property {{name: string, data: Blob | ArrayBuffer, voi?: DicomWindowChoice | null}[]} items at
 *   least one; `voi`: the window a greyscale DICOM file is rendered with (default: the
 *   README's rule).
 */

/**
 * A window choice for greyscale DICOM (src/preprocess/dicom/voi.rs): the file's
 * window `index` (from 0, in `DicomSummary.windows`), or a window in modality units
 * (width at least 1).
 * @typedef {{index: number} | {center: number, width: number}} DicomWindowChoice
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
 * Build a knowledge base in the worker: the task's descriptions (its task.json) embedded
 * by the loaded model's text encoder, as `kpl build-kb` does. Progress: stage
 * 'knowledge', unit 'texts'. Result: {bytes: Uint8Array} (a .kplkb file).
 * @typedef {object} BuildKbRequest
 * @property {number} id
 * @property {'build-kb'} type
 * @property {string} taskUrl URL of the task's task.json.
 * @property {string} [modelName] recorded in the base.
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

/** @typedef {LoadRequest | LoadKbRequest | BuildKbRequest | ClassifyKbRequest | EmbedImageRequest | EmbedImagesRequest | EmbedTextRequest | ClassifyRequest | ClassifyCustomRequest | CancelRequest | MemoryUsageRequest} Request */

/**
 * @typedef {object} LoadResult
 * @property {boolean} isRandom the weights are random test weights: no output means anything.
 * @property {number} embeddingDim
 * @property {number} imageSize
 * @property {boolean} hasTokenizer
 * @property {number} logitScale exp(logit_scale).
 * @property {'clip' | 'siglip' | 'open_clip'} family The model family (from its config.json,
 *   open_clip_config.json, or a bundle's stored configuration).
 * @property {string} familyName The family as people write it ('CLIP', 'SigLIP', 'open_clip'), from Rust.
 * @property {string} scoringNote What the zero-shot scores are (softmax over labels, or a probability per label).
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
 * @property {number} cachedBytes of `bytes`, those read from the browser's caches
 *   (a restarted worker reads the model from there; 0 otherwise).
 * @property {number} threads the threads the CPU engine runs on: rayon's pool in the
 *   threaded build (pkg/threads/), else 1 (pkg/). Fixed per worker (`KplClient.start`'s
 *   `threads`, `KplClient.setThreads`).
 * @property {string} threadsNote why `threads` is fewer than asked (the page is not
 *   cross-origin isolated, or the threaded build could not start); '' otherwise.
 * @property {string[]} wasmFiles the files of the WebAssembly build this worker runs,
 *   relative to its folder (`pkg/kpl.js`, `pkg/kpl_bg.wasm`; the threaded build's
 *   `pkg/threads/…` with `workerHelpers.js`): what the page asks the service worker to
 *   keep for offline use (sw.js `keep-build`), rather than every build.
 * @property {'relaxed' | 'simd128'} simd the wasm SIMD build running: the relaxed-SIMD
 *   twin (pkg/relaxed/, pkg/threads-relaxed/) where the browser runs relaxed SIMD, else
 *   simd128 (worker.js; the worker's `simd` URL parameter overrides).
 * @property {string} simdNote why `simd` is not the build asked for, or not relaxed
 *   where the browser runs it (the relaxed build could not start); '' otherwise.
 */

/**
 * @typedef {object} EmbedImageResult
 * @property {string} name
 * @property {Float32Array} embedding L2-normalised.
 * @property {number} ms time spent in the worker.
 */

/**
 * What a result card may show about a DICOM file (never a patient attribute):
 * `dicomSummary` in src/wasm/dicom.rs, and the window the embedding's decode used
 * (`ClipModel.dicomWindowUsed`).
 * @typedef {object} DicomSummary
 * @property {string | null} modality
 * @property {string | null} body_part
 * @property {number} rows
 * @property {number} columns
 * @property {number} frames
 * @property {string} transfer_syntax the UID.
 * @property {string} transfer_syntax_name
 * @property {string[]} warnings what was read other than the file declares (an
 *   encoding that contradicts the transfer syntax, …); empty when nothing was.
 * @property {{center: number, width: number, explanation: string | null}[]} windows
 *   the windows the file carries, in order.
 * @property {{kind: 'file' | 'given' | 'min-max', index?: number, center?: number, width?: number,
 *   explanation?: string | null, low?: number, high?: number, description: string} | null} voi
 *   the window the image was rendered with, in modality units (null for colour; as
 *   `kpl decode`'s `voi`).
 * @property {string | null} voi_description the same in words (`kpl decode`'s).
 */

/**
 * @typedef {object} EmbedImagesItem
 * @property {string} name
 * @property {Float32Array} [embedding] absent when the file failed.
 * @property {string} [error] why the file failed, naming it.
 * @property {true} [crashed] the WebAssembly module crashed on this file.
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
 * @property {boolean} [cancelled] the batch was cancelled: `results` holds only the
 *   files done, in order (a prefix of the items).
 * @property {{file: string, message: string}} [crashed] from the worker: the module
 *   crashed on `file` and the batch ended there (`results` ends with that file).
 *   `KplClient.start`'s client continues the batch in a new worker and returns every
 *   file instead, with `crashes` listing what happened.
 * @property {{file: string, message: string}[]} [crashes] from `KplClient`: each
 *   crash the batch went through (the file's entry has the error).
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
 * @property {number[]} probs one per label, as the model family scores them (Rust: CLIP a softmax
 *   summing to 1, SigLIP a sigmoid per label that need not sum to 1; LoadResult.scoringNote).
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
 * @property {'download' | 'embed' | 'knowledge'} stage
 * @property {'bytes' | 'images' | 'texts'} unit
 * @property {string} file
 * @property {number} loaded
 * @property {number} total 0 when unknown.
 * @property {EmbedImagesItem} [item] stage 'embed' of `embed-images`: the entry of the
 *   file just done, as the result will list it (the client keeps it, should the worker
 *   never answer: a pool thread's crash).
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
 * @property {true} [crashed] the WebAssembly module crashed (now, or on an earlier
 *   request): this worker can do nothing more and must be replaced.
 */

/**
 * Sent without a request id when the module crashed outside any request (auto's
 * background GPU probe): the worker must be replaced.
 * @typedef {object} CrashedEvent
 * @property {'crashed'} type
 * @property {string} message
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

/** @typedef {ProgressReply | ResultReply | ErrorReply | BackendEvent | CrashedEvent} Reply */

export const REQUEST_TYPES = Object.freeze([
  'load', 'load-kb', 'build-kb', 'classify-kb', 'embed-image', 'embed-images', 'embed-text', 'classify', 'classify-custom',
  'cancel', 'memory-usage',
]);
/** The requests the worker answers on arrival rather than in turn. */
export const IMMEDIATE_REQUEST_TYPES = Object.freeze(['cancel', 'memory-usage']);
export const REPLY_TYPES = Object.freeze(['progress', 'result', 'error', 'backend', 'crashed']);

/**
 * `KplClient.embedImages` sends a batch to the worker in parts of this many files,
 * the next when the last is answered: posting a `File` costs the page's thread about
 * half a millisecond (the browser registers each blob), so 500 files in one message
 * would hold it for a quarter of a second. The caller still gets one result.
 */
export const BATCH_PART = 16;
/**
 * How long the client lets a worker's last replies arrive after its pool thread
 * reported a crash (ms): the report takes another channel, which may overtake them.
 */
export const POOL_CRASH_GRACE_MS = 200;
/** The CPU kernels of quantised layers a load request may ask for. */
export const QUANT_KERNELS = Object.freeze(['int8', 'int8x8', 'dequantize', 'blocks']);
/** @typedef {'int8' | 'int8x8' | 'dequantize' | 'blocks'} QuantKernel */
/** The most threads a worker may be asked for (each is a Web Worker sharing the wasm memory). */
export const MAX_THREADS = 64;

/**
 * A thread count as the worker takes it (`threads` in its URL): a whole number from 1
 * to MAX_THREADS (a number or its decimal string), else null (unset or not valid).
 * @param {unknown} value
 * @returns {number | null}
 */
export function checkThreads(value) {
  const n = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
  return Number.isInteger(n) && n >= 1 && n <= MAX_THREADS ? n : null;
}

/** The backends a load request may ask for. */
export const BACKENDS = Object.freeze(['auto', 'wasm', 'cpu', 'webgpu']);
/** How the page names a backend the worker used. */
export const BACKEND_NAMES = Object.freeze({ wasm: 'CPU (WebAssembly)', webgpu: 'GPU (WebGPU)' });

/**
 * The files of a Hugging Face CLIP or SigLIP folder, by role, in the order the worker
 * fetches them. config and weights are required. The tokenizer is the repository's as
 * it ships it: tokenizer.json, else spiece.model (fetched only when there is no
 * tokenizer.json), either with tokenizer_config.json (its special tokens apply to
 * tokenizer.json too, as in transformers). Shared with
 * scripts/serve.mjs, which lists them in the manifest it synthesises.
 */
export const MODEL_FILES = Object.freeze({
  config: 'config.json',
  weights: 'model.safetensors',
  tokenizer: 'tokenizer.json',
  preprocessor: 'preprocessor_config.json',
  spiece: 'spiece.model',
  tokenizerConfig: 'tokenizer_config.json',
});

/** The file that makes a folder an open_clip checkpoint (src/models/open_clip/mod.rs). */
export const OPEN_CLIP_CONFIG = 'open_clip_config.json';
/**
 * open_clip's weight files in the order open_clip prefers them (src/models/open_clip/mod.rs
 * `OPEN_CLIP_WEIGHTS`): the worker loads the first one the folder has.
 */
export const OPEN_CLIP_WEIGHTS = Object.freeze([
  'open_clip_model.safetensors',
  'open_clip_pytorch_model.safetensors',
  'open_clip_pytorch_model.bin',
  'open_clip_pytorch_model.pth',
]);
/**
 * The files of an open_clip folder, by role, as a manifest lists them (`weights`: the
 * first of OPEN_CLIP_WEIGHTS present). openClipConfig and weights are required;
 * tokenizer.json (else BERT's vocab.txt), either with tokenizer_config.json, and the
 * BERT tower's config.json (which BiomedCLIP's repository lacks) are read when present.
 */
export const OPEN_CLIP_FILES = Object.freeze({
  openClipConfig: OPEN_CLIP_CONFIG,
  weights: OPEN_CLIP_WEIGHTS[0],
  tokenizer: 'tokenizer.json',
  vocab: 'vocab.txt',
  tokenizerConfig: 'tokenizer_config.json',
  textConfig: 'config.json',
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

/** Whether `v` is a {@link DicomWindowChoice}. */
function isWindowChoice(v) {
  if (!v || typeof v !== 'object') return false;
  if ('index' in v) return Number.isInteger(v.index) && v.index >= 0 && v.index <= 0xffffffff;
  return Number.isFinite(v.center) && Number.isFinite(v.width) && v.width >= 1;
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
      if (msg.restoreBackend !== undefined && msg.restoreBackend !== 'wasm' && msg.restoreBackend !== 'webgpu')
        return `load: restoreBackend must be "wasm" or "webgpu", not ${JSON.stringify(msg.restoreBackend)}`;
      if (msg.quantKernel !== undefined && !QUANT_KERNELS.includes(msg.quantKernel))
        return `load: unknown quantKernel ${JSON.stringify(msg.quantKernel)} (${QUANT_KERNELS.join(', ')})`;
      return null;
    case 'cancel':
      if (!Number.isInteger(msg.target)) return 'cancel: target must be the integer id of a request';
      return null;
    case 'memory-usage':
      return null;
    case 'load-kb':
      if (typeof msg.url !== 'string' || !msg.url) return 'load-kb: url must be a URL string';
      return null;
    case 'build-kb':
      if (typeof msg.taskUrl !== 'string' || !msg.taskUrl) return 'build-kb: taskUrl must be a URL string';
      if (msg.modelName !== undefined && typeof msg.modelName !== 'string') return 'build-kb: modelName must be a string';
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
        if (item.voi != null && !isWindowChoice(item.voi)) return `embed-images: ${item.name}: voi must be {index} or {center, width}`;
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
 *
 * Made with `KplClient.start(url)`, the client also owns the worker's life: when the
 * WebAssembly module crashes it replaces the worker (see the top of this file) and
 * resends, so a crash costs the file it happened on and nothing else. Made with
 * `new KplClient(worker)`, a crash is reported and the worker stays unusable.
 */
export class KplClient {
  /**
   * Starts a module worker at `url` and a client for it that restarts it after a
   * crash. The replacement gets `restarted=1` in its URL: it reads the wasm, the
   * model files and the knowledge base from the browser's caches (the service
   * worker's, else the HTTP cache) before trying the network.
   * @param {string | URL} url worker.js
   * Each worker gets its own `crash-channel` name, on which its pool threads report
   * their crashes (see the top of this file).
   * @param {{name?: string, params?: Record<string, string>, threads?: number}} [options]
   *   `params`: query parameters for the worker (the page passes `test-hooks`);
   *   `threads`: the threads the worker's CPU engine asks for (1 to MAX_THREADS; default
   *   every core, `navigator.hardwareConcurrency`). More than one needs a
   *   cross-origin-isolated page; the load result says how many it got and why not.
   */
  static start(url, { name = 'kpl', params = {}, threads } = {}) {
    if (threads !== undefined && checkThreads(threads) === null) {
      throw new Error(`threads must be a whole number from 1 to ${MAX_THREADS}, not ${JSON.stringify(threads)}`);
    }
    let asked = threads;
    /** Each worker's crash channel (a name of its own, so a late report of a replaced worker is not taken for its successor's). */
    const channels = new WeakMap();
    const prefix = `kpl-pool-crash-${globalThis.crypto?.randomUUID?.() ?? Math.random().toString(36).slice(2)}`;
    let made = 0;
    const make = (restarted) => {
      const u = new URL(url, typeof location === 'undefined' ? undefined : location.href);
      for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
      if (asked !== undefined) u.searchParams.set('threads', String(asked));
      if (restarted) u.searchParams.set('restarted', '1');
      const channel = `${prefix}-${made++}`;
      u.searchParams.set('crash-channel', channel);
      const worker = new Worker(u, { type: 'module', name });
      channels.set(worker, channel);
      return worker;
    };
    return new KplClient(make(false), {
      restart: () => make(true),
      respawn: (n) => {
        asked = n;
        return make(false);
      },
      watch: (worker, onCrash) => {
        const name = channels.get(worker);
        if (!name || typeof BroadcastChannel !== 'function') return () => {};
        const channel = new BroadcastChannel(name);
        channel.addEventListener('message', ({ data }) => {
          if (data?.type === 'kpl-pool-crashed') onCrash(String(data.message));
        });
        return () => channel.close();
      },
    });
  }

  /**
   * @param {Worker} worker a module worker running worker.js
   * @param {{restart?: () => Worker, respawn?: (threads: number | undefined) => Worker,
   *   watch?: (worker: Worker, onCrash: (message: string) => void) => () => void}} [options]
   *   how to start a replacement after a crash, a worker for another thread count, and
   *   how to hear of a worker's crash that its own messages cannot tell (a pool
   *   thread's; returns how to stop listening).
   */
  constructor(worker, { restart, respawn, watch } = {}) {
    this.nextId = 1;
    /** Entries by the id of their message to the current worker. @type {Map<number, object>} */
    this.pending = new Map();
    /** Called with each BackendEvent. @type {((e: BackendEvent) => void) | null} */
    this.onBackend = null;
    /**
     * Called after the worker crashed and a new one took over (or could not):
     * {message, file, restarts, ok, error?}. @type {((e: object) => void) | null}
     */
    this.onRestart = null;
    /** Replacements started so far. */
    this.restarts = 0;
    this.failure = null;
    this.#startReplacement = restart ?? null;
    this.#respawn = respawn ?? null;
    this.#watch = watch ?? null;
    this.#attach(worker);
  }

  #startReplacement;
  #respawn;
  #watch;
  /** Stops listening for the current worker's pool crashes. @type {(() => void) | null} */
  #unwatch = null;
  /** While a replacement worker is being set up: sends wait for it. @type {Promise<void> | null} */
  #restarting = null;
  /** Counts replacements, so that a set-up overtaken by a newer one leaves everything to it. */
  #generation = 0;
  /** Requests an abandoned worker had not answered, for the worker being set up to run in order. */
  #waiting = [];
  /** The crash a replacement is being set up for, told to `onRestart` once one has taken over (or failed to). */
  #crash = null;
  /** What a replacement must redo: the last load (and what it ran on) and knowledge base. */
  #session = { load: null, backend: null, settled: true, kbUrl: null };

  #attach(worker) {
    this.worker = worker;
    this.#unwatch?.();
    this.#unwatch = this.#watch?.(worker, (message) => {
      if (worker === this.worker) this.#onPoolCrash(worker, message);
    }) ?? null;
    worker.addEventListener('message', (event) => {
      if (worker === this.worker) this.#onReply(event.data);
    });
    worker.addEventListener('error', (event) => {
      event.preventDefault?.();
      if (worker === this.worker) this.#failAll(new Error(`the worker failed: ${event.message || 'it could not start (is pkg/ built?)'}`));
    });
    worker.addEventListener('messageerror', () => {
      if (worker === this.worker) this.#failAll(new Error('a reply from the worker could not be read'));
    });
  }

  /**
   * Sends a request and resolves with its result.
   * @param {Omit<Request, 'id'>} body
   * @param {{onProgress?: (p: ProgressReply) => void, transfer?: Transferable[], signal?: AbortSignal}} [options]
   *   `signal`: aborting it sends a `cancel` for this request.
   */
  request(body, { onProgress, transfer = [], signal } = {}) {
    const problem = checkRequest({ ...body, id: 0 });
    if (problem) return Promise.reject(new Error(problem));
    if (this.failure) return Promise.reject(this.failure);
    const entry = { body, transfer, onProgress, signal, id: null, cancelled: false, done: [], crashes: [], total: 0, ms: 0, backendNote: '' };
    if (body.type === 'embed-images') entry.total = body.items.length;
    const promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    if (signal) {
      if (signal.aborted) entry.cancelled = true;
      else signal.addEventListener('abort', () => this.#cancel(entry), { once: true });
    }
    this.#send(entry);
    return promise;
  }

  /** Posts an entry to the worker, after the replacement is ready when one is being set up. */
  #send(entry) {
    const post = () => this.#post(entry);
    if (this.#restarting) this.#restarting.then(post, post);
    else post();
  }

  #post(entry) {
    if (this.failure) return entry.reject(this.failure);
    if (entry.cancelled) return this.#finishCancelled(entry);
    const id = this.nextId++;
    entry.id = id;
    this.pending.set(id, entry);
    // A batch goes in parts (see BATCH_PART), each from the first file not done yet.
    // The files this part reports done one by one (their entries come with the
    // progress), and where the part ends.
    entry.partDone = [];
    entry.partEnd = entry.done.length + BATCH_PART;
    const body = entry.body.type === 'embed-images'
      ? { ...entry.body, items: entry.body.items.slice(entry.done.length, entry.done.length + BATCH_PART) }
      : entry.body;
    this.worker.postMessage({ ...body, id }, entry.transfer);
  }

  /** A request of the client's own (replays, cancels), straight to the current worker. */
  #call(body) {
    return new Promise((resolve, reject) => {
      this.#post({ body, transfer: [], id: null, cancelled: false, done: [], crashes: [], total: 0, ms: 0, backendNote: '', resolve, reject, internal: true });
    });
  }

  #cancel(entry) {
    if (entry.cancelled) return;
    entry.cancelled = true;
    if (entry.id !== null && this.pending.get(entry.id) === entry) {
      this.#call({ type: 'cancel', target: entry.id }).catch(() => {});
    }
    // Otherwise it is waiting for a replacement worker: #post or the batch's
    // continuation sees `cancelled`.
  }

  /** A request cancelled before the worker saw it (or between two parts of a batch). */
  #finishCancelled(entry) {
    if (entry.body.type === 'embed-images') {
      this.#finishBatch(entry, { cancelled: true });
    } else {
      entry.reject(new Error(`${entry.body.type}: cancelled`));
    }
  }

  /**
   * @param {string} [base]
   * @param {(p: ProgressReply) => void} [onProgress]
   * @param {{backend?: Backend, maxMegapixels?: number, quantKernel?: QuantKernel}} [options]
   * @returns {Promise<LoadResult>}
   */
  load(base = 'model/', onProgress, { backend, maxMegapixels, quantKernel } = {}) {
    const body = { type: 'load', base };
    if (quantKernel !== undefined) body.quantKernel = quantKernel;
    if (backend !== undefined) body.backend = backend;
    if (maxMegapixels !== undefined) body.maxMegapixels = maxMegapixels;
    return this.request(body, { onProgress });
  }

  loadKb(url) {
    return this.request({ type: 'load-kb', url });
  }

  /** @returns {Promise<{bytes: Uint8Array}>} */
  buildKb(taskUrl, modelName, onProgress) {
    const body = { type: 'build-kb', taskUrl };
    if (modelName !== undefined) body.modelName = modelName;
    return this.request(body, { onProgress });
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
   * @param {{signal?: AbortSignal}} [options] aborting `signal` cancels the batch
   *   after the image in progress; the result then holds the files done.
   * @returns {Promise<EmbedImagesResult>}
   */
  embedImages(items, onProgress, { signal } = {}) {
    return this.request({ type: 'embed-images', items }, { onProgress, signal });
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

  /** @returns {Promise<{wasmBytes: number, jsHeapBytes: number | null}>} */
  memoryUsage() {
    return this.request({ type: 'memory-usage' });
  }

  /** @param {Reply} reply */
  #onReply(reply) {
    if (reply?.type === 'backend') {
      this.#session.backend = reply.backend;
      this.#session.settled = true;
      this.onBackend?.(reply);
      return;
    }
    if (reply?.type === 'crashed') {
      this.#restart(reply.message, null);
      return;
    }
    const entry = this.pending.get(reply?.id);
    if (!entry) return;
    if (reply.type === 'progress') {
      if (entry.body.type === 'embed-images' && reply.stage === 'embed') {
        if (reply.item) entry.partDone.push(reply.item);
        const { item, ...progress } = reply;
        entry.onProgress?.({ ...progress, loaded: reply.loaded + entry.done.length, total: entry.total });
      } else {
        entry.onProgress?.(reply);
      }
    } else if (reply.type === 'result') {
      this.pending.delete(reply.id);
      if (entry.body.type === 'embed-images' && !entry.internal) this.#batchPartDone(entry, reply.result);
      else this.#resolve(entry, reply.result);
    } else if (reply.type === 'error') {
      this.pending.delete(reply.id);
      entry.reject(new Error(reply.message));
      if (reply.crashed) this.#restart(reply.message, null);
    }
  }

  #resolve(entry, result) {
    if (!entry.internal) this.#remember(entry.body, result);
    entry.resolve(result);
  }

  /**
   * One part of a batch is answered: the next part is sent, or the batch is over
   * (all done, or cancelled), or the module crashed and a new worker takes over.
   */
  #batchPartDone(entry, part) {
    entry.partDone = [];
    entry.done = entry.done.concat(part.results);
    entry.ms += part.ms ?? 0;
    if (part.backendNote) entry.backendNote = part.backendNote;
    entry.backend = part.backend;
    if (part.crashed) this.#continueAfterCrash(entry, part.crashed);
    else if (part.cancelled || entry.cancelled || entry.done.length >= entry.total) this.#finishBatch(entry, { cancelled: part.cancelled || entry.cancelled });
    else this.#send(entry);
  }

  /** Resolves a batch with every file done, in order (a prefix of the items when cancelled). */
  #finishBatch(entry, { cancelled }) {
    const result = {
      results: entry.done,
      backend: entry.backend ?? this.#session.backend ?? 'wasm',
      backendNote: entry.backendNote,
      ms: entry.ms,
      crashes: entry.crashes,
    };
    if (cancelled && entry.done.length < entry.total) result.cancelled = true;
    entry.resolve(result);
  }

  /** Keeps what a replacement worker must redo. */
  #remember(body, result) {
    if (body.type === 'load') {
      const { id, restoreBackend, ...load } = body;
      this.#session.load = load;
      this.#session.backend = result.backend;
      this.#session.settled = result.backendSettled !== false;
      if (!result.reused) this.#session.kbUrl = null;
    } else if (body.type === 'load-kb') {
      this.#session.kbUrl = body.url;
    }
  }

  /**
   * An embed-images batch the module crashed in: keep what is done, have a new
   * worker take over, and send it the files after the one the module crashed on.
   */
  async #continueAfterCrash(entry, crash) {
    entry.crashes.push(crash);
    const remaining = entry.body.items.slice(entry.done.length);
    const crashedItem = entry.done[entry.done.length - 1];
    const restarted = this.#restart(crash.message, crash.file);
    let problem = null;
    if (restarted) {
      try {
        await restarted;
      } catch (e) {
        problem = e;
      }
    } else {
      problem = new Error('this client cannot start a new worker');
    }
    if (crashedItem?.crashed && crashedItem.name === crash.file) {
      crashedItem.error += problem
        ? `; the module could not be restarted (${problem.message})`
        : '; the module was restarted (model and knowledge base read again from the browser cache) and the batch went on';
    }
    if (remaining.length === 0 || entry.cancelled || problem) {
      if (problem && !entry.cancelled) {
        for (const item of remaining) {
          entry.done.push({ name: item.name, error: `${item.name}: not processed: the WebAssembly module crashed${crash.file ? ` on ${crash.file}` : ''} and could not be restarted`, ms: 0 });
        }
      }
      this.#finishBatch(entry, { cancelled: entry.cancelled });
      return;
    }
    this.#send(entry);
  }

  /**
   * Replaces a crashed worker (once per crash: a crash of the worker that replaces it,
   * before it has taken over, fails the client instead, since the model would crash it
   * again). Returns null when this client cannot start workers.
   * @returns {Promise<void> | null}
   */
  #restart(message, file) {
    if (!this.#startReplacement) return null;
    if (this.#restarting) return this.#restarting;
    this.restarts += 1;
    return this.#replaceWorker(this.#startReplacement, { crash: { message, file } });
  }

  /**
   * A pool thread of `worker` crashed: the worker is blocked for good on the request it
   * was running (the oldest it has not answered; `cancel` and `memory-usage` are
   * answered on arrival). That request fails as if the module had crashed on it — in a
   * batch, the first file not reported done — and the worker is replaced.
   */
  #onPoolCrash(worker, message) {
    // The report comes on another channel than the worker's replies: let the replies
    // it sent before it blocked (the progress of the files it finished) arrive first.
    setTimeout(() => {
      if (worker !== this.worker || this.failure) return;
      const running = [...this.pending.values()]
        .filter((e) => !IMMEDIATE_REQUEST_TYPES.includes(e.body.type))
        .sort((a, b) => a.id - b.id)[0];
      if (running) this.pending.delete(running.id);
      if (running?.body.type === 'embed-images' && !running.internal) {
        this.#keepPartDone(running);
        // The file in progress, unless the part had reported every file done.
        const item = running.done.length < running.partEnd ? running.body.items[running.done.length] : undefined;
        if (!item) {
          this.#continueAfterCrash(running, { file: null, message: `the WebAssembly module crashed (${message})` });
          return;
        }
        const error = `${item.name}: the WebAssembly module crashed on this file (${message})`;
        running.done.push({ name: item.name, error, crashed: true, ms: 0 });
        // The progress the worker would have sent for it (as it does for its own crashes).
        running.onProgress?.({ id: running.id, type: 'progress', stage: 'embed', unit: 'images', file: item.name, loaded: running.done.length, total: running.total });
        this.#continueAfterCrash(running, { file: item.name, message: error });
        return;
      }
      running?.reject(new Error(`the WebAssembly module crashed (${message})`));
      if (!this.#restart(message, null)) this.#failAll(new Error(`the WebAssembly module crashed (${message})`));
    }, POOL_CRASH_GRACE_MS);
  }

  /** A batch's files the abandoned worker reported done join those kept. */
  #keepPartDone(entry) {
    if (entry.partDone?.length) entry.done = entry.done.concat(entry.partDone);
    entry.partDone = [];
  }

  /**
   * Ends the current worker and has `make()`'s take over: the last load (and the
   * backend it ran on, after a `crash`) and knowledge base replayed, then the requests
   * not answered resent in order (a batch from its first file not done: the files done
   * are kept). A replacement asked for while one is being set up (a thread change
   * during a restart) overtakes it: the newest worker takes over everything, and the
   * returned promise settles when it has. Rejects, failing the client, when the new
   * worker cannot load the model again (it would crash or fail the same way each time:
   * no loop).
   * @param {() => Worker} make
   * @param {{crash?: {message: string, file: string | null}}} how `crash`: why (for
   *   `onRestart` and the errors); without it, a thread change.
   * @returns {Promise<void>}
   */
  #replaceWorker(make, { crash } = {}) {
    const overtaken = new Error('the worker was replaced again before it took over');
    if (crash) this.#crash = crash;
    for (const e of this.pending.values()) {
      if (e.internal) {
        e.reject(crash ? new Error(`the WebAssembly module crashed (${crash.message})`) : overtaken);
      } else {
        this.#keepPartDone(e);
        this.#waiting.push(e);
      }
    }
    this.pending.clear();
    this.worker.terminate();
    this.#attach(make());
    const generation = ++this.#generation;
    const session = { ...this.#session };
    const current = () => generation === this.#generation;
    const setup = (async () => {
      try {
        if (session.load) {
          const body = { ...session.load };
          // A restart keeps the backend settled before (no new probe); a thread
          // change lets 'auto' measure again against the new CPU speed.
          if (crash && session.settled && session.backend) body.restoreBackend = session.backend;
          const info = await this.#call(body);
          if (!current()) return this.#restarting;
          this.#session.backend = info.backend;
          this.#session.settled = info.backendSettled !== false;
          if (info.backend !== session.backend || info.backendNote) {
            this.onBackend?.({ type: 'backend', backend: info.backend, note: info.backendNote, probe: info.probe ?? null });
          }
        }
        if (session.kbUrl) await this.#call({ type: 'load-kb', url: session.kbUrl });
      } catch (e) {
        if (!current()) return this.#restarting;
        this.#restarting = null;
        this.worker.terminate();
        const error = new Error(crash
          ? `the WebAssembly module crashed (${crash.message}) and could not be restarted: ${e.message}`
          : `the worker started for the new thread count could not load the model again: ${e.message}`);
        // (A crash overtaken by a thread change is still told below.)
        for (const w of this.#waiting.splice(0)) w.reject(error);
        this.#failAll(error);
        const told = this.#crash;
        this.#crash = null;
        if (told) this.onRestart?.({ message: told.message, file: told.file, restarts: this.restarts, ok: false, error: e.message });
        throw e;
      }
      if (!current()) return this.#restarting;
      this.#restarting = null;
      for (const e of this.#waiting.splice(0).sort((a, b) => a.id - b.id)) this.#post(e);
      const told = this.#crash;
      this.#crash = null;
      if (told) this.onRestart?.({ message: told.message, file: told.file, restarts: this.restarts, ok: true });
      return undefined;
    })();
    this.#restarting = setup;
    setup.catch(() => {});
    return setup;
  }

  /**
   * Replaces the worker by a new one asking for `threads` (1 to MAX_THREADS; undefined:
   * every core), for a client made with `KplClient.start`: a worker's thread count is
   * fixed when its module starts. Nothing is lost: the new worker loads the model and
   * the knowledge base again, then runs what was not answered (a batch goes on from its
   * first file not done). Called while a crashed worker is being replaced, the new
   * count wins and the batch goes on in its worker; later restarts keep it.
   * @param {number | undefined} threads
   */
  setThreads(threads) {
    if (!this.#respawn) throw new Error('this client cannot start a new worker');
    if (threads !== undefined && checkThreads(threads) === null) {
      throw new Error(`threads must be a whole number from 1 to ${MAX_THREADS}, not ${JSON.stringify(threads)}`);
    }
    this.failure = null;
    this.#replaceWorker(() => this.#respawn(threads));
  }

  /** Stops the worker for good (the widget, when it leaves the page). */
  terminate() {
    this.#unwatch?.();
    this.#unwatch = null;
    this.worker.terminate();
    this.#failAll(new Error('the worker was stopped'));
  }

  #failAll(error) {
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
    this.failure = error;
  }
}
