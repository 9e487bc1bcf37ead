// The worker that owns the WebAssembly module and the model (a MODULE worker).
//
// All heavy work happens here: fetching the model (hundreds of MB for a real
// checkpoint), decoding and preprocessing images, running both CLIP towers. The page
// only sends requests and draws replies, so it never blocks. The message protocol is
// defined, with JSDoc types, in protocol.js.
//
// Query parameters of the worker's URL (set by `KplClient.start` in protocol.js):
//   restarted=1   this worker replaces one whose WebAssembly module crashed: it reads
//                 the wasm, the model files and the knowledge bases from the browser's
//                 caches (the service worker's Cache API, else the HTTP cache) and
//                 goes to the network only for what neither holds.
//   threads=N     the threads asked for (default `navigator.hardwareConcurrency`). On a
//                 cross-origin-isolated page the threaded build runs (pkg/threads/:
//                 shared memory, rayon's pool over N Web Workers; the same bits at any
//                 N); elsewhere the single-threaded build (pkg/). The load result says
//                 which (`threads`, and `threadsNote` when fewer than asked).
//   crash-channel=NAME  the BroadcastChannel on which the threaded build's pool threads
//                 report their own crash (a panic, memory running out) to the page's
//                 KplClient: this worker is blocked on rayon's latch then and cannot
//                 (protocol.js, scripts/wasm-threads.mjs).
//   simd=relaxed|simd128  which SIMD build to run (tests, bench, `?simd=` on the page);
//                 default: the relaxed-SIMD twin (pkg/relaxed/, pkg/threads-relaxed/:
//                 the GEMMs' relaxed kernels) where this engine validates a module
//                 using relaxed SIMD (simd-probe.js), else the simd128 one. The
//                 int8 GEMMs give the same bits in both (the same kernel by default);
//                 f32 products differ by their rounding (fused or not; ARCHITECTURE.md),
//                 and no dtype is slower (bench/README.md). The load result says
//                 which (`simd`, and `simdNote` when not the one asked for).
//   test-hooks=1  test hooks (the page passes it on when opened with ?test-hooks=1):
//                 an image whose file name contains `__trap__` makes the module panic
//                 (`debugTrap`, src/wasm/test_hooks.rs) just before it is embedded, so
//                 the tests can check the recovery from a crash; `__pooltrap__` and
//                 `__pooloom__` crash a thread of rayon's pool instead (a panic, an
//                 allocation failure: `debugPoolTrap`); a batch (`embed-images`)
//                 that has embedded a file whose name contains `__hold__` waits until it
//                 is cancelled (at most a minute) before the next file, so that a test's
//                 Cancel lands while the batch runs however fast the build (the
//                 threaded one finishes a batch of small images in a second) and however
//                 slow the test's click on a loaded machine. Never set otherwise.

import { checkRequest, checkThreads, IMMEDIATE_REQUEST_TYPES, MODEL_FILES, OPEN_CLIP_CONFIG, OPEN_CLIP_FILES, OPEN_CLIP_WEIGHTS } from './protocol.js';
import { opfsResponse } from './opfs.js';
import './simd-probe.js'; // self.kplRelaxedSimd (shared with sw.js, a classic script)

const workerParams = new URL(self.location.href).searchParams;
/** This worker replaces a crashed one: read what it fetches from the browser's caches first. */
const RESTARTED = workerParams.get('restarted') === '1';
/** The test hooks are on (see the top of this file). */
const TEST_HOOKS = workerParams.get('test-hooks') === '1';
/** The file-name marker that makes the module panic in test-hooks mode. */
const TRAP_MARKER = '__trap__';
/** The file-name markers that crash a pool thread in test-hooks mode, and how (`debugPoolTrap`'s kind). */
const POOL_TRAP_MARKERS = { __pooltrap__: 'panic', __pooloom__: 'oom' };
/** The file-name marker after which a batch waits for its cancel in test-hooks mode. */
const HOLD_MARKER = '__hold__';
/** The longest a held batch waits for its cancel before it goes on (ms). */
const HOLD_MAX_MS = 60000;
/** The threads asked for (see the top of this file); a bad value counts as unset. */
const THREADS_ASKED = checkThreads(workerParams.get('threads')) ?? self.navigator?.hardwareConcurrency ?? 1;

// The wasm-bindgen exports of the build chosen by `startWasm` (pkg/, pkg/threads/ or
// their relaxed twins, the same API): set once it has started.
let wasmApi = null;
let ClipModel, GpuEncoder, KnowledgeBase, classifyCustom, dicomSummary, probeAccepts, probeCosine, verifyBundleFile, buildKnowledgeBase, setQuantKernel;
/** The threads the module runs on, and why fewer than asked ('' when as asked). */
let threadsUsed = { threads: 1, note: '' };
/** The files of the build that started, relative to this worker (the load result's `wasmFiles`). */
let wasmFiles = [];
/** The SIMD build asked for by the worker's URL, or null: chosen by `self.kplRelaxedSimd()` (simd-probe.js). */
const SIMD_ASKED = ['relaxed', 'simd128'].includes(workerParams.get('simd')) ? workerParams.get('simd') : null;
/** The SIMD build running ('relaxed' or 'simd128'), and why not the one asked for. */
let simdUsed = { simd: 'simd128', note: '' };

/** @type {ClipModel | null} */
let model = null;
/** @type {KnowledgeBase | null} */
let kb = null;
/** The WebGPU engine, while it runs the loaded model's encoders. @type {GpuEncoder | null} */
let gpu = null;
/** @type {Promise<unknown> | null} */
let wasmReady = null;
/**
 * What the loaded model came from: its folder, the backend running it, and for a
 * `kpl pack` bundle the manifest (text and parsed) for the text encoder fetched later.
 * @type {{base: string, backend: string, maxMegapixels: number | undefined, bundle: null | {text: string, json: any}, info: object} | null}
 */
let loaded = null;
/** Text embeddings by text, for the loaded model (custom labels re-use their prompts). */
let textCache = new Map();
/** The module's memory, for `memory-usage`. @type {WebAssembly.Memory | null} */
let wasmMemory = null;
/**
 * Set once the module crashed (a `WebAssembly.RuntimeError`: a Rust panic or an
 * allocation failure aborts): its state can no longer be trusted, so nothing runs
 * on it again and every later request is refused with `crashed: true`, for the
 * client to replace this worker. @type {string | null}
 */
let crashed = null;

/** Whether an exception is the module crashing (rather than an Error it threw). */
const isCrash = (e) => e instanceof WebAssembly.RuntimeError;

/**
 * A crash in words: the trap (`unreachable`, which says little) and what the module's
 * hooks noted just before it (the panic's message and place, or the allocation that
 * failed: src/wasm/crash_note.rs).
 */
function crashMessage(e) {
  const note = typeof self.kplCrashNote === 'string' ? `: ${self.kplCrashNote}` : '';
  return `${messageOf(e)}${note}`;
}

/** Forgets every object of the crashed module (without calling into it again). */
function markCrashed(e) {
  crashed ??= crashMessage(e);
  choiceGeneration++;
  model = null;
  kb = null;
  gpu = null;
  loaded = null;
  textCache = new Map();
}

/** Test hook: a panic in the module for a file named with the trap marker. */
function testTrap(name) {
  if (!TEST_HOOKS) return;
  const pool = Object.keys(POOL_TRAP_MARKERS).find((marker) => String(name).includes(marker));
  if (!pool && !String(name).includes(TRAP_MARKER)) return;
  const hook = pool ? 'debugPoolTrap' : 'debugTrap';
  if (typeof wasmApi[hook] !== 'function') throw new Error(`test hooks: the wasm build has no ${hook} export (rebuild it with \`make wasm\`)`);
  wasmApi[hook](POOL_TRAP_MARKERS[pool]);
}

/**
 * Test hook: after a file named with the hold marker, batch `id` waits until a cancel
 * for it arrives (polling between message-queue turns) or `HOLD_MAX_MS` passes.
 */
async function testHold(name, id) {
  if (!TEST_HOOKS || !String(name).includes(HOLD_MARKER)) return;
  const until = performance.now() + HOLD_MAX_MS;
  while (!cancelRequested.has(id) && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** @param {import('./protocol.js').Reply} reply */
const reply = (reply, transfer = []) => self.postMessage(reply, transfer);

const messageOf = (e) => (e instanceof Error ? e.message : String(e));

const ROLES = Object.keys(MODEL_FILES);
const PROGRESS_STEP = 1 << 20;

const CPU_NAME = 'the CPU (WebAssembly)';
const ms = (t) => (t < 10 ? `${t.toFixed(1)} ms` : `${Math.round(t)} ms`);

/**
 * A synthetic preprocessed image (smooth gradients and a checkerboard) for the
 * backend probe: no user image is needed to choose.
 */
function probePixels(size) {
  const pixels = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const check = ((x >> 3) + (y >> 3)) % 2 ? 0.8 : -0.8;
        pixels[(c * size + y) * size + x] = check + (2 * x) / size - 1 + (c - 1) * (y / size - 0.5);
      }
    }
  }
  return pixels;
}

/** Incremented by every backend choice, so a stale background probe is dropped. */
let choiceGeneration = 0;

/**
 * The backend that runs the loaded model: the ONE place where it is chosen.
 * 'cpu'/'wasm' take the CPU. 'webgpu' opens the GPU now and checks it on a probe
 * image against the CPU (cosine ≥ 0.999); any failure falls back to the CPU with a
 * note. 'auto' answers at once with the CPU and runs the same probe in the
 * background, timing both engines (the GPU's second run, after its pipeline and
 * buffer set-up); the faster one is kept and the page hears of it through a
 * BackendEvent. The first result never waits for the probe.
 * @param {import('./protocol.js').Backend} requested
 * @param {ClipModel} m
 * @returns {Promise<{backend: 'wasm' | 'webgpu', note: string, adapter?: string, probe?: {cpuMs: number, gpuMs: number}}>}
 */
async function chooseBackend(requested, m, restore) {
  const generation = ++choiceGeneration;
  gpu?.free();
  gpu = null;
  if (requested === 'cpu' || requested === 'wasm' || restore === 'wasm' || !m.hasImageEncoder) return { backend: 'wasm', note: '' };
  if (restore === 'webgpu') return reopenGpu(m);
  if (requested === 'webgpu') {
    const probed = await probeGpu(m);
    if (probed.engine) gpu = probed.engine;
    return probed.choice;
  }
  // A CPU win measured on an earlier visit stands: no GPU work at all this time.
  const key = await choiceKey(m);
  const remembered = key ? await recall(key) : null;
  if (remembered?.backend === 'wasm' && remembered.probe) {
    const { cpuMs, gpuMs } = remembered.probe;
    const note = `Auto: ${CPU_NAME}, ${ms(cpuMs)} per image against ${ms(gpuMs)} on WebGPU (${remembered.adapter}), measured on an earlier visit.`;
    return { backend: 'wasm', note, adapter: remembered.adapter, probe: remembered.probe, settled: true };
  }
  probeGpu(m).then(({ engine, choice }) => {
    const faster = engine && choice.probe.gpuMs < choice.probe.cpuMs;
    if (generation !== choiceGeneration || model !== m) {
      engine?.free();
      return;
    }
    let { backend, note } = choice;
    if (faster) {
      gpu = engine;
      note = `Auto: ${note}`;
    } else {
      engine?.free();
      backend = 'wasm';
      note = choice.probe
        ? `Auto: ${CPU_NAME}, ${ms(choice.probe.cpuMs)} per image against ${ms(choice.probe.gpuMs)} on WebGPU (${choice.adapter}).`
        : `Auto: ${note}`;
    }
    if (loaded) Object.assign(loaded, { backend, note }, { info: { ...loaded.info, backend, probe: choice.probe ?? null, adapter: choice.adapter ?? null, backendSettled: true } });
    reply({ type: 'backend', backend, note, probe: choice.probe ?? null });
    if (key && choice.probe) remember(key, { backend, probe: choice.probe, adapter: choice.adapter });
  }).catch((e) => {
    // Only a crash gets here (probeGpu turns every other failure into the CPU).
    markCrashed(e);
    reply({ type: 'crashed', message: `the WebAssembly module crashed while measuring WebGPU (${crashMessage(e)})` });
  });
  return { backend: 'wasm', note: 'Auto: running on the CPU while WebGPU is measured…', settled: false };
}

/**
 * A replacement worker's backend when the crashed one ran on WebGPU: the GPU that
 * agreed with the CPU then is opened again without a new probe; if it cannot be,
 * the CPU, with a note.
 */
async function reopenGpu(m) {
  if (!self.navigator?.gpu) return { backend: 'wasm', note: `WebGPU is not available any more; using ${CPU_NAME}.` };
  try {
    gpu = await GpuEncoder.create(m);
    return { backend: 'webgpu', note: '', adapter: gpu.adapter };
  } catch (e) {
    if (isCrash(e)) throw e;
    return { backend: 'wasm', note: `WebGPU could not be opened again after a restart (${messageOf(e)}); using ${CPU_NAME}.` };
  }
}

// auto's measurement, remembered per model in the Cache API (a timing, never an image
// or a result; the page's "clear" control and a new service worker remove it).
const CHOICE_CACHE = 'kpl-backend-choice';

async function choiceKey(m) {
  try {
    return new URL(`kpl-backend-choice/${m.fingerprint()}`, self.location.href).href;
  } catch {
    return null;
  }
}

async function recall(key) {
  try {
    const hit = await (await caches.open(CHOICE_CACHE)).match(key);
    return hit ? await hit.json() : null;
  } catch {
    return null;
  }
}

async function remember(key, value) {
  try {
    const body = JSON.stringify(value);
    await (await caches.open(CHOICE_CACHE)).put(key, new Response(body, { headers: { 'content-type': 'application/json' } }));
  } catch {
    // Without the Cache API the next visit measures again.
  }
}

/**
 * Opens the GPU and embeds one probe image on both engines. `engine` is set only
 * when the GPU worked and agreed with the CPU.
 */
async function probeGpu(m) {
  const fallback = (why) => ({ engine: null, choice: { backend: 'wasm', note: `${why}; using ${CPU_NAME}.` } });
  if (!self.navigator?.gpu) return fallback('WebGPU is not available in this browser');
  let engine;
  try {
    engine = await GpuEncoder.create(m);
  } catch (e) {
    if (isCrash(e)) throw e;
    return fallback(`WebGPU could not start (${messageOf(e)})`);
  }
  const adapter = engine.adapter;
  const pixels = probePixels(m.imageSize);
  let t = performance.now();
  const onCpu = m.embedPixels(pixels);
  const cpuMs = performance.now() - t;
  let onGpu;
  let gpuMs;
  try {
    await engine.embedPixels(pixels, 1);
    t = performance.now();
    onGpu = await engine.embedPixels(pixels, 1);
    gpuMs = performance.now() - t;
  } catch (e) {
    if (isCrash(e)) throw e;
    engine.free();
    return fallback(`WebGPU failed on a test image (${messageOf(e)})`);
  }
  const agreement = probeCosine(onCpu, onGpu);
  if (!probeAccepts(agreement)) {
    engine.free();
    return fallback(`WebGPU (${adapter}) disagreed with the CPU on a test image (cosine ${agreement.toFixed(4)})`);
  }
  const probe = { cpuMs, gpuMs };
  const note = `WebGPU on ${adapter}, ${ms(gpuMs)} per image against ${ms(cpuMs)} on the CPU.`;
  return { engine, choice: { backend: 'webgpu', note, adapter, probe } };
}

/** Leaves the GPU after a failure mid-run; later images run on the CPU. */
function dropGpu(error) {
  gpu?.free();
  gpu = null;
  const note = `WebGPU failed (${messageOf(error)}); continuing on ${CPU_NAME}.`;
  if (loaded) {
    loaded.backend = 'wasm';
    loaded.info.backend = 'wasm';
    loaded.note = note;
  }
  reply({ type: 'backend', backend: 'wasm', note, probe: null });
  return note;
}

/**
 * One image file's embedding on the chosen engine. Decoding errors (a bad file)
 * throw before the GPU is involved; a GPU failure reruns the same pixels on the
 * CPU, so a result is never lost to it. `voi`: the window of a greyscale DICOM file
 * (a DicomWindowChoice; default the README's rule); `dicomWindow`: the window the
 * decode used (null for other images), read before any await so no other request's
 * decode can come between.
 */
async function embedImageOn(m, bytes, name, voi = null) {
  if (!gpu) {
    const embedding = m.embedImage(bytes, name, voi ?? undefined);
    return { embedding, backend: 'wasm', dicomWindow: m.dicomWindowUsed };
  }
  const pixels = m.preparePixels(bytes, name, voi ?? undefined);
  const dicomWindow = m.dicomWindowUsed;
  try {
    return { embedding: await gpu.embedPixels(pixels, 1), backend: 'webgpu', dicomWindow };
  } catch (e) {
    if (isCrash(e)) throw e;
    const note = dropGpu(e);
    return { embedding: m.embedPixels(pixels), backend: 'wasm', note, dicomWindow };
  }
}

/**
 * A file from the browser's caches, or null: the Cache API first (the service
 * worker keeps the app, the wasm, the model and the bases there), then the HTTP
 * cache alone (`only-if-cached`: stale or fresh, never the network).
 */
async function cachedResponse(url) {
  try {
    const hit = await caches.match(url.href);
    if (hit?.ok) return hit;
  } catch {
    // No Cache API here (an opaque origin): try the HTTP cache.
  }
  try {
    const res = await fetch(url, { cache: 'only-if-cached', mode: 'same-origin' });
    if (res.ok) return res;
  } catch {
    // Not in the HTTP cache.
  }
  return null;
}

/** Bytes read from the caches by this worker (a restarted one), for the load result. */
let cachedBytes = 0;

/**
 * Fetches a file of the model or a knowledge base: in a restarted worker from the
 * browser's caches when they hold it, else (and always in a first worker) from the
 * network. `fromCache` says which.
 */
async function fetchModelFile(url) {
  // A model opened from this computer, stored in the origin private file system.
  if (url.protocol === 'opfs:') return Object.assign(await opfsResponse(url), { fromCache: false });
  if (RESTARTED) {
    const hit = await cachedResponse(url);
    if (hit) return Object.assign(hit, { fromCache: true });
  }
  const res = await fetch(url);
  return Object.assign(res, { fromCache: false });
}

/**
 * Reads a model folder's manifest.json. Without one, the folder is an open_clip
 * checkpoint when it has open_clip_config.json (as the native loader decides; its
 * weight file is then the first of OPEN_CLIP_WEIGHTS found), else the standard Hugging
 * Face file names are assumed (the optional files may then be missing). A `kpl pack`
 * bundle's manifest (files.image_encoder) is returned with its text.
 */
async function readManifest(base) {
  const res = await fetchModelFile(new URL('manifest.json', base));
  if (res.ok) {
    const text = await res.text();
    let manifest;
    try {
      manifest = JSON.parse(text);
    } catch (e) {
      throw new Error(`${res.url}: not JSON (${messageOf(e)})`);
    }
    if (manifest?.files?.image_encoder) {
      // The bundle's own manifest, less any knowledge entry a server added without the
      // size and SHA-256 a bundle lists (scripts/serve.mjs adds its --kb bases, at /kb/).
      const own = (k) => Number.isSafeInteger(k?.bytes) && typeof k?.sha256 === 'string';
      const knowledge = Array.isArray(manifest.knowledge) ? manifest.knowledge : [];
      const clean = knowledge.every(own) ? text : JSON.stringify({ ...manifest, knowledge: knowledge.filter(own) });
      return { bundle: { text: clean, json: JSON.parse(clean) }, random: manifest.model?.random_weights === true };
    }
    const files = manifest?.model?.files;
    if (!files || typeof files !== 'object') throw new Error(`${res.url}: no "model.files" object`);
    return { files, sizes: manifest.model.sizes ?? {}, random: manifest.random_weights === true, listed: true };
  }
  if (res.status !== 404) throw new Error(`${res.url}: HTTP ${res.status}`);
  const openClip = await fetchModelFile(new URL(OPEN_CLIP_CONFIG, base));
  if (openClip.ok) {
    const config = new Uint8Array(await openClip.arrayBuffer());
    return { files: { ...OPEN_CLIP_FILES, weights: null }, openClipConfig: config, sizes: {}, random: false, listed: false };
  }
  if (openClip.status !== 404) throw new Error(`${openClip.url}: HTTP ${openClip.status}`);
  return { files: MODEL_FILES, sizes: {}, random: false, listed: false };
}

/**
 * Fetches an open_clip folder's files for `ClipModel.loadOpenClip` (`manifest.files`:
 * OPEN_CLIP_FILES roles; without a listed weight file, the first of OPEN_CLIP_WEIGHTS
 * found). The weights may be a PyTorch pickle, which the wasm reads (src/io/pytorch.rs).
 */
async function loadOpenClipFolder(manifest, base, progress) {
  const { files, listed } = manifest;
  const fetchRole = async (name, optional) => {
    const bytes = await fetchBytes(new URL(name, base), optional, (n) => progress.add(n, name));
    if (bytes) progress.done(name);
    return bytes;
  };
  const config = manifest.openClipConfig ?? (await fetchRole(files.openClipConfig, false));
  let weightsName = files.weights;
  let weights = weightsName ? await fetchRole(weightsName, false) : null;
  for (const name of weightsName ? [] : OPEN_CLIP_WEIGHTS) {
    weights = await fetchRole(name, true);
    if (weights) {
      weightsName = name;
      break;
    }
  }
  if (!weights) throw new Error(`${base.pathname}: has ${OPEN_CLIP_CONFIG} but no weights (one of ${OPEN_CLIP_WEIGHTS.join(', ')})`);
  const optional = async (role) => (files[role] ? fetchRole(files[role], !listed) : null);
  const tokenizer = await optional('tokenizer');
  // vocab.txt only stands in for a missing tokenizer.json; tokenizer_config.json goes
  // with either (its special tokens and settings apply to tokenizer.json too).
  const vocab = tokenizer ? null : await optional('vocab');
  const tokenizerConfig = tokenizer || vocab ? await optional('tokenizerConfig') : null;
  return { config, weights, weightsName, tokenizer, vocab, tokenizerConfig, textConfig: await optional('textConfig') };
}

/**
 * Fetches a file's bytes, calling onBytes(n) as chunks arrive; null on 404 when
 * optional. With a Content-Length the chunks go straight into one buffer, so a
 * large checkpoint is not held twice.
 */
async function fetchBytes(url, optional, onBytes) {
  const res = await fetchModelFile(url);
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
  if (res.fromCache) cachedBytes += received;
  return received === out.byteLength ? out : out.slice(0, received);
}

/**
 * Byte progress for one request: `add(n)` as bytes arrive (a reply at most every MB),
 * `file(name)` after each file.
 */
function byteProgress(id, total) {
  let bytes = 0;
  let reported = 0;
  const send = (file) => {
    reported = bytes;
    reply({ id, type: 'progress', stage: 'download', unit: 'bytes', file, loaded: bytes, total: Math.max(total, bytes) });
  };
  return {
    add(n, file) {
      bytes += n;
      if (bytes - reported >= PROGRESS_STEP) send(file);
    },
    done: send,
    get bytes() {
      return bytes;
    },
  };
}

async function bytesOf(data) {
  return new Uint8Array(data instanceof ArrayBuffer ? data : await data.arrayBuffer());
}

function requireModel() {
  if (!model) throw new Error('no model is loaded');
  return model;
}

/**
 * Makes sure the model can embed texts: a bundle loaded without its text encoder
 * fetches text_encoder.gguf now (byte progress on request `id`), checks it against
 * the manifest and adds it.
 */
async function ensureTextEncoder(id) {
  const m = requireModel();
  if (m.hasTextEncoder) return m;
  const bundle = loaded?.bundle;
  const entry = bundle?.json.files?.text_encoder;
  if (!entry) throw new Error('this model has no text encoder: custom labels cannot be scored');
  const progress = byteProgress(id, Number(entry.bytes) || 0);
  const url = new URL(entry.path, loaded.base);
  const bytes = await fetchBytes(url, false, (n) => progress.add(n, entry.path));
  progress.done(entry.path);
  m.addTextEncoder(bundle.text, bytes);
  loaded.info.hasTextEncoder = true;
  loaded.info.hasTokenizer = m.hasTokenizer;
  return m;
}

/** The embeddings of texts, computed once per text for the loaded model. */
function embedTexts(m, texts) {
  return texts.map((t) => {
    let e = textCache.get(t);
    if (!e) {
      e = m.embedText(t);
      textCache.set(t, e);
    }
    return e;
  });
}

const argmax = (values) => values.reduce((best, v, i) => (v > values[best] ? i : best), 0);

/** The prompt plain CLIP uses for a label (src/pipeline.rs `zero_shot_prompt`). */
const prompt = (label) => `a photo of a ${label}.`;

/**
 * Starts the WebAssembly module once. Called when the worker starts, so that the
 * module compiles while the page is still setting up, and again by `load` (a failed
 * start is retried).
 */
function startWasm() {
  wasmReady ??= (async () => {
    const relaxed = self.kplRelaxedSimd();
    const wantRelaxed = SIMD_ASKED ? SIMD_ASKED === 'relaxed' : relaxed;
    if (wantRelaxed && !relaxed) simdUsed.note = 'The simd128 build: this browser does not run relaxed SIMD.';
    /** Starts `dir` (plain) or its relaxed twin, then the plain one if the twin fails. */
    const start = async (plain, twin, threads) => {
      if (wantRelaxed && relaxed) {
        try {
          const exports = await startBuild(twin, threads);
          simdUsed = { simd: 'relaxed', note: '' };
          return exports;
        } catch (e) {
          simdUsed.note = `The simd128 build: the relaxed-SIMD build (${twin}) could not start (${messageOf(e)}).`;
        }
      }
      const exports = await startBuild(plain, threads);
      simdUsed.simd = 'simd128';
      return exports;
    };
    const threaded = threadsAllowed(THREADS_ASKED);
    if (threaded.ok) {
      try {
        return await start('pkg/threads/', 'pkg/threads-relaxed/', THREADS_ASKED);
      } catch (e) {
        threadsUsed = { threads: 1, note: `One thread: the threaded WebAssembly build (pkg/threads/) could not start (${messageOf(e)}).` };
      }
    } else {
      threadsUsed = { threads: 1, note: threaded.note };
    }
    return start('pkg/', 'pkg/relaxed/', 1);
  })().catch((e) => {
    wasmReady = null;
    throw e;
  });
  return wasmReady;
}

/**
 * Whether the threaded build can run: wasm threads need a SharedArrayBuffer memory,
 * which the browser gives only to a cross-origin-isolated page (COOP `same-origin` +
 * COEP `require-corp`, as scripts/serve.mjs and `kpl site` send). It runs then even
 * for one thread, so that every count gives the same bits on a page. `note` says why
 * not, when more than one thread was asked for.
 */
function threadsAllowed(asked) {
  if (self.crossOriginIsolated && typeof SharedArrayBuffer === 'function') return { ok: true, note: '' };
  const note = asked > 1
    ? `One thread instead of ${asked}: this page is not cross-origin isolated (served without the COOP/COEP headers), so the browser allows no WebAssembly threads.`
    : '';
  return { ok: false, note };
}

/**
 * Imports and instantiates one build (`dir`: pkg/, pkg/threads/ or their relaxed-SIMD
 * twins pkg/relaxed/, pkg/threads-relaxed/, beside this worker)
 * and, for the threaded one, starts its pool of `threads` Web Workers
 * (wasm-bindgen-rayon's `initThreadPool`; each imports pkg/threads/kpl.js with the
 * shared memory). A restarted worker instantiates the module from the cached binary.
 */
async function startBuild(dir, threads) {
  const api = await import(`./${dir}kpl.js`);
  const cached = RESTARTED ? await cachedResponse(new URL(`${dir}kpl_bg.wasm`, self.location.href)) : null;
  const exports = await api.default(cached ? { module_or_path: cached } : undefined);
  if (api.initThreadPool) {
    // Read by the pool's worker helper when it starts the threads (scripts/wasm-threads.mjs).
    globalThis.kplPoolCrashChannel = workerParams.get('crash-channel');
    await api.initThreadPool(threads);
    // What rayon's pool really holds (1 would mean the split never happens).
    threadsUsed = { threads: api.rayonThreads(), note: threadsUsed.note };
  }
  wasmApi = api;
  wasmFiles = [`${dir}kpl.js`, `${dir}kpl_bg.wasm`, ...(api.initThreadPool ? [`${dir}workerHelpers.js`] : [])];
  ({ ClipModel, GpuEncoder, KnowledgeBase, classifyCustom, dicomSummary, probeAccepts, probeCosine, verifyBundleFile, buildKnowledgeBase, setQuantKernel } = api);
  wasmMemory = exports?.memory ?? null;
  return exports;
}

/** The classifier's results (wasm values) as plain objects the page can be sent. */
function plainResults(raw) {
  return Array.from(raw, (r) => ({
    label: r.label,
    scores: Array.from(r.scores),
    method: r.method,
    clip_scores: Array.from(r.clip_scores),
    clip_label: r.clip_label,
    evidence: Array.from(r.evidence ?? [], (e) => ({ description: e.description, similarity: e.similarity })),
  }));
}

const handlers = {
  /** @param {import('./protocol.js').LoadRequest} req */
  async load(req) {
    const start = performance.now();
    const base = new URL(req.base ?? 'model/', self.location.href);
    const requestedBackend = req.backend ?? 'auto';
    // The same model is already loaded: nothing to fetch again; only the backend
    // is chosen again when another one is asked for.
    if (model && loaded && loaded.base === base.href && loaded.maxMegapixels === req.maxMegapixels) {
      if (req.quantKernel) setQuantKernel(req.quantKernel);
      if (loaded.requestedBackend !== requestedBackend) {
        const choice = await chooseBackend(requestedBackend, model, req.restoreBackend);
        Object.assign(loaded, { requestedBackend, backend: choice.backend, note: choice.note });
        loaded.info.backend = choice.backend;
        loaded.info.adapter = choice.adapter ?? null;
        loaded.info.probe = choice.probe ?? null;
        loaded.info.backendSettled = choice.settled ?? true;
      }
      return { ...loaded.info, requestedBackend, backendNote: loaded.note, reused: true, bytes: 0, cachedBytes: 0, ms: performance.now() - start };
    }
    const manifestReady = readManifest(base);
    manifestReady.catch(() => {});
    try {
      await startWasm();
    } catch (e) {
      throw new Error(`cannot start the WebAssembly module (pkg/kpl_bg.wasm): ${messageOf(e)}`);
    }
    // Before the weights are read: q8_0 layers are held as the kernel needs them.
    if (req.quantKernel) setQuantKernel(req.quantKernel);
    const wasmMs = performance.now() - start;
    const manifest = await manifestReady;
    const cachedBefore = cachedBytes;
    let m;
    let progress;
    let fetched;
    if (manifest.bundle) {
      // A `kpl pack` bundle: the image encoder now, the text encoder on first use.
      const entry = manifest.bundle.json.files.image_encoder;
      progress = byteProgress(req.id, Number(entry.bytes) || 0);
      const bytes = await fetchBytes(new URL(entry.path, base), false, (n) => progress.add(n, entry.path));
      progress.done(entry.path);
      fetched = performance.now();
      model?.free();
      model = null;
      kb?.free();
      kb = null;
      m = ClipModel.loadBundle(manifest.bundle.text, bytes, undefined);
    } else if (manifest.files.openClipConfig) {
      const counted = (role) => !(role === 'vocab' && manifest.files.tokenizer);
      const total = Object.entries(manifest.sizes).filter(([role]) => counted(role)).reduce((sum, [, n]) => sum + (Number(n) || 0), 0);
      progress = byteProgress(req.id, total);
      const f = await loadOpenClipFolder(manifest, base, progress);
      fetched = performance.now();
      model?.free();
      model = null;
      kb?.free();
      kb = null;
      m = ClipModel.loadOpenClip(f.config, f.weights, f.weightsName, f.tokenizer ?? undefined, f.textConfig ?? undefined,
        f.vocab ?? undefined, f.tokenizerConfig ?? undefined);
    } else {
      if (!manifest.files.config || !manifest.files.weights) {
        throw new Error(`${base.pathname}: the model folder needs config.json and model.safetensors (a Hugging Face folder), ${OPEN_CLIP_CONFIG} and its weights (an open_clip folder) or manifest.json (a kpl pack bundle)`);
      }
      // A listed tokenizer.json means spiece.model is not fetched (tokenizer_config.json is:
      // its special tokens apply to tokenizer.json too).
      const counted = (role) => !(role === 'spiece' && manifest.files.tokenizer && manifest.listed);
      const total = ROLES.filter(counted).reduce((sum, role) => sum + (Number(manifest.sizes[role]) || 0), 0);
      progress = byteProgress(req.id, total);
      const bytes = {};
      for (const role of ROLES) {
        const name = manifest.files[role];
        if (!name) continue;
        // spiece.model only stands in for a missing tokenizer.json.
        if (role === 'spiece' && bytes.tokenizer) continue;
        const optional = role !== 'config' && role !== 'weights';
        bytes[role] = await fetchBytes(new URL(name, base), optional && !manifest.listed, (n) => progress.add(n, name));
        progress.done(name);
      }
      fetched = performance.now();
      model?.free();
      model = null;
      kb?.free();
      kb = null;
      m = ClipModel.load(bytes.config, bytes.weights, bytes.tokenizer ?? undefined, bytes.preprocessor ?? undefined,
        bytes.spiece ?? undefined, bytes.tokenizerConfig ?? undefined);
    }
    if (req.maxMegapixels) m.setMaxMegapixels(req.maxMegapixels);
    model = m;
    textCache = new Map();
    const info = {
      isRandom: m.isRandom || manifest.random,
      embeddingDim: m.embeddingDim,
      imageSize: m.imageSize,
      hasTokenizer: m.hasTokenizer,
      hasTextEncoder: m.hasTextEncoder,
      logitScale: m.logitScale,
      family: m.family,
      familyName: m.familyName,
      scoringNote: m.scoringNote,
      bundle: Boolean(manifest.bundle),
      threads: threadsUsed.threads,
      threadsNote: threadsUsed.note,
      wasmFiles,
      simd: simdUsed.simd,
      simdNote: simdUsed.note,
    };
    const parsed = performance.now();
    const choice = await chooseBackend(requestedBackend, m, req.restoreBackend);
    Object.assign(info, { backend: choice.backend, adapter: choice.adapter ?? null, probe: choice.probe ?? null, backendSettled: choice.settled ?? true });
    loaded = { base: base.href, requestedBackend, backend: choice.backend, note: choice.note, maxMegapixels: req.maxMegapixels, bundle: manifest.bundle ?? null, info };
    const end = performance.now();
    const timings = { wasm: wasmMs, fetch: fetched - start - wasmMs, parse: parsed - fetched, backend: end - parsed };
    return { ...info, requestedBackend, backendNote: choice.note, reused: false, bytes: progress.bytes, cachedBytes: cachedBytes - cachedBefore, ms: end - start, timings };
  },

  /** @param {import('./protocol.js').LoadKbRequest} req */
  async 'load-kb'(req) {
    const m = requireModel();
    const url = new URL(req.url, self.location.href);
    const res = await fetchModelFile(url);
    if (!res.ok) throw new Error(`cannot fetch ${url.pathname}: HTTP ${res.status}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (res.fromCache) cachedBytes += bytes.byteLength;
    const name = decodeURIComponent(url.pathname.split('/').pop());
    // A bundle's base is checked against the size and SHA-256 its manifest lists.
    const listed = loaded?.bundle?.json.knowledge?.find((k) => new URL(k.path, loaded.base).href === url.href);
    if (listed) verifyBundleFile(loaded.bundle.text, listed.path, bytes);
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

  /**
   * Embeds a task's descriptions (task.json at `taskUrl`) with the loaded model's text
   * encoder (a bundle fetches it first) into a knowledge base; progress in texts.
   * @param {import('./protocol.js').BuildKbRequest} req
   */
  async 'build-kb'(req) {
    const m = await ensureTextEncoder(req.id);
    const url = new URL(req.taskUrl, self.location.href);
    const res = await fetchModelFile(url);
    if (!res.ok) throw new Error(`cannot fetch ${url.pathname}: HTTP ${res.status}`);
    const json = new Uint8Array(await res.arrayBuffer());
    const file = decodeURIComponent(url.pathname.split('/').slice(-2).join('/'));
    let sent = 0;
    const bytes = buildKnowledgeBase(m, json, file, req.modelName ?? 'model', (done, total) => {
      const now = performance.now();
      if (done === total || now - sent > 100) {
        sent = now;
        reply({ id: req.id, type: 'progress', stage: 'knowledge', unit: 'texts', file, loaded: done, total });
      }
    });
    return { bytes };
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
    const results = plainResults(kb.classify(flat, n, m, undefined, req.topEvidence ?? 3));
    return { results, classNames: Array.from(kb.classNames), ms: performance.now() - start, backend: loaded?.backend };
  },

  /** @param {import('./protocol.js').ClassifyCustomRequest} req */
  async 'classify-custom'(req) {
    const m = await ensureTextEncoder(req.id);
    const start = performance.now();
    const classes = req.classes.map((c) => ({ name: c.name, texts: [prompt(c.name), ...c.descriptions] }));
    const knowledge = req.classes.some((c) => c.descriptions.length > 0);
    const texts = classes.flatMap((c) => c.texts);
    const embedded = embedTexts(m, texts);
    const classNames = classes.map((c) => c.name);
    let results;
    if (knowledge) {
      const n = req.embeddings.length;
      const dim = req.embeddings[0].length;
      const images = new Float32Array(n * dim);
      req.embeddings.forEach((e, i) => images.set(e, i * dim));
      const textFlat = new Float32Array(texts.length * dim);
      embedded.forEach((e, i) => textFlat.set(e, i * dim));
      results = plainResults(classifyCustom(images, n, classes, textFlat, m, req.topEvidence ?? 3));
    } else {
      // Plain zero-shot, scored in Rust as the model's family does (CLIP:
      // softmax over the labels; SigLIP: a sigmoid per label).
      const dim = embedded[0].length;
      const prompts = new Float32Array(embedded.length * dim);
      embedded.forEach((e, i) => prompts.set(e, i * dim));
      results = req.embeddings.map((image) => {
        const scores = Array.from(m.zeroShotScores(Float32Array.from(image), prompts));
        const label = classNames[argmax(scores)];
        return { label, scores, method: 'clip', clip_scores: scores, clip_label: label, evidence: [] };
      });
    }
    return {
      results,
      classNames,
      method: results[0]?.method ?? 'clip',
      knowledge,
      texts: texts.length,
      ms: performance.now() - start,
      backend: loaded?.backend,
    };
  },

  /** @param {import('./protocol.js').EmbedImageRequest} req */
  async 'embed-image'(req) {
    const m = requireModel();
    const bytes = await bytesOf(req.data);
    const start = performance.now();
    testTrap(req.name);
    const { embedding, backend, note } = await embedImageOn(m, bytes, req.name);
    return { name: req.name, embedding, backend, backendNote: note ?? '', ms: performance.now() - start };
  },

  /** @param {import('./protocol.js').EmbedImagesRequest} req */
  async 'embed-images'(req) {
    const m = requireModel();
    const start = performance.now();
    const total = req.items.length;
    const results = [];
    let backendNote = '';
    for (const item of req.items) {
      // Between two images: let a `cancel` (or `memory-usage`) in the message queue through.
      await yieldToMessages();
      if (cancelRequested.has(req.id)) {
        return { results, cancelled: true, backend: loaded?.backend, backendNote, ms: performance.now() - start };
      }
      const t0 = performance.now();
      const out = { name: item.name };
      try {
        const bytes = await bytesOf(item.data);
        // The summary reads the data set only; the window used comes from the
        // embedding's own decode (no second decode of the pixels).
        const dicom = dicomSummary(bytes, item.name, loaded?.maxMegapixels);
        if (dicom) out.dicom = dicom;
        const t1 = performance.now();
        testTrap(item.name);
        const embedded = await embedImageOn(m, bytes, item.name, item.voi);
        if (dicom) {
          dicom.voi = embedded.dicomWindow;
          dicom.voi_description = embedded.dicomWindow?.description ?? null;
        }
        out.embedding = embedded.embedding;
        out.backend = embedded.backend;
        if (embedded.note) backendNote = embedded.note;
        const t2 = performance.now();
        out.encodeMs = t2 - t1;
        performance.measure('kpl-encode', { start: t1, end: t2, detail: { file: item.name } });
      } catch (e) {
        if (!isCrash(e)) {
          out.error = messageOf(e);
        } else {
          // The module is lost: this file fails, naming it, and the batch ends here
          // with what is done, for the client to continue in a new worker.
          markCrashed(e);
          out.error = `${item.name}: the WebAssembly module crashed on this file (${crashMessage(e)})`;
          out.crashed = true;
          out.ms = performance.now() - t0;
          results.push(out);
          reply({ id: req.id, type: 'progress', stage: 'embed', unit: 'images', file: item.name, loaded: results.length, total });
          return { results, crashed: { file: item.name, message: out.error }, backend: 'wasm', backendNote, ms: performance.now() - start };
        }
      }
      out.ms = performance.now() - t0;
      results.push(out);
      // The file's entry comes with its progress: should a pool thread crash later in
      // this batch, this worker never answers, and the client keeps what it was sent.
      reply({ id: req.id, type: 'progress', stage: 'embed', unit: 'images', file: item.name, loaded: results.length, total, item: out });
      await testHold(item.name, req.id);
    }
    return { results, backend: loaded?.backend, backendNote, ms: performance.now() - start };
  },

  /** @param {import('./protocol.js').EmbedTextRequest} req */
  async 'embed-text'(req) {
    const m = await ensureTextEncoder(req.id);
    const start = performance.now();
    const embeddings = req.texts.map((t) => m.embedText(t));
    return { embeddings, ms: performance.now() - start };
  },

  /** @param {import('./protocol.js').ClassifyRequest} req */
  async classify(req) {
    const m = await ensureTextEncoder(req.id);
    const bytes = await bytesOf(req.data);
    const start = performance.now();
    testTrap(req.name);
    const { embedding } = await embedImageOn(m, bytes, req.name);
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

/**
 * Lets the worker's message queue run (a macrotask), so that a `cancel` sent during
 * a batch is seen before the next image.
 */
function yieldToMessages() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Requests received and not answered yet (queued or running), by id. */
const unanswered = new Set();
/** Requests a `cancel` asked to stop. */
const cancelRequested = new Set();

async function handle(req) {
  const problem = checkRequest(req);
  if (problem) {
    reply({ id: Number.isInteger(req?.id) ? req.id : -1, type: 'error', message: problem });
    return;
  }
  try {
    if (crashed) {
      reply({ id: req.id, type: 'error', crashed: true, message: `the WebAssembly module crashed earlier (${crashed}); this worker must be replaced` });
      return;
    }
    if (cancelRequested.has(req.id) && req.type !== 'embed-images') {
      reply({ id: req.id, type: 'error', message: `${req.type}: cancelled before it started` });
      return;
    }
    const result = await handlers[req.type](req);
    reply({ id: req.id, type: 'result', result });
  } catch (e) {
    if (isCrash(e)) {
      markCrashed(e);
      reply({ id: req.id, type: 'error', crashed: true, message: `the WebAssembly module crashed (${crashMessage(e)})` });
    } else {
      reply({ id: req.id, type: 'error', message: messageOf(e) });
    }
  } finally {
    unanswered.delete(req.id);
    cancelRequested.delete(req.id);
  }
}

/** The requests answered on arrival: they only read or flag state. */
function handleNow(req) {
  const problem = checkRequest(req);
  if (problem) {
    reply({ id: Number.isInteger(req?.id) ? req.id : -1, type: 'error', message: problem });
  } else if (req.type === 'cancel') {
    const known = unanswered.has(req.target);
    if (known) cancelRequested.add(req.target);
    reply({ id: req.id, type: 'result', result: { cancelled: known } });
  } else if (req.type === 'memory-usage') {
    const jsHeapBytes = self.performance?.memory?.usedJSHeapSize ?? null;
    reply({ id: req.id, type: 'result', result: { wasmBytes: wasmMemory?.buffer.byteLength ?? 0, jsHeapBytes } });
  }
}

startWasm().catch(() => {}); // reported by the first load request

// One request at a time, in arrival order: the wasm calls are synchronous anyway, and
// requests sent during `load` wait for the model. `cancel` and `memory-usage` are
// answered at once (a batch yields between images, so they arrive during it).
let queue = Promise.resolve();
self.addEventListener('message', (event) => {
  const req = event.data;
  if (IMMEDIATE_REQUEST_TYPES.includes(req?.type)) {
    handleNow(req);
    return;
  }
  if (Number.isInteger(req?.id)) unanswered.add(req.id);
  queue = queue.then(() => handle(req));
});
