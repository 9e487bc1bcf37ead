// The page: input (file picker, drag and drop, paste), the labels field, and the
// result cards. It does no heavy work itself: worker.js owns the wasm and the model,
// and every exchange with it goes through the protocol in protocol.js.

import { KplClient, parseCustomClasses, BACKEND_NAMES, MAX_THREADS, checkThreads } from './protocol.js';
import { initModelsPanel } from './models-panel.js';
import { opfsResponse } from './opfs.js';
import { explain, messageNodes, showMessage } from './messages.js';
import { offersWindow, windowSelect } from './dicom-window.js';

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'),
  statusText: $('status-text'),
  progress: $('load-progress'),
  banner: $('random-banner'),
  backend: $('backend'),
  backendNote: $('backend-note'),
  threads: $('threads'),
  threadsNote: $('threads-note'),
  task: $('task'),
  taskInfo: $('task-info'),
  labelsField: $('labels-field'),
  labels: $('labels'),
  labelsError: $('labels-error'),
  dropZone: $('drop-zone'),
  fileInput: $('file-input'),
  embedStatus: $('embed-status'),
  embedProgress: $('embed-progress'),
  embedProgressText: $('embed-progress-text'),
  cancel: $('cancel'),
  workerNote: $('worker-note'),
  clear: $('clear'),
  exportCsv: $('export-csv'),
  exportJson: $('export-json'),
  results: $('results'),
  empty: $('results-empty'),
  cacheInfo: $('cache-info'),
  cacheRefresh: $('cache-refresh'),
  cacheClear: $('cache-clear'),
};

/** The value of the task selector that means classes typed by the user. */
const CUSTOM = 'custom';
// Relative to this script, so the app works under any path (a sub-path of an intranet server).
const SERVED_MODEL_BASE = new URL('model/', import.meta.url).href;
/** The model in use: the server's, or one stored in this browser (`opfs:` URL, models-panel.js). */
let modelBase = SERVED_MODEL_BASE;
/** Results shown, for the export (nothing is stored anywhere else). */
const exported = [];
/** The knowledge bases listed in the manifest, by task. */
const bases = new Map();

/** A promise with its resolve/reject, for things that happen later (the first model load). */
function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** Resolves with the load result once a model is loaded (files added earlier wait for it). */
let modelReady = deferred();
/** Resolves when the selected knowledge base is loaded in the worker (or rejects). */
let kbReady = Promise.reject(new Error('no knowledge base selected'));
kbReady.catch(() => {});
/** The backend the worker uses (from its last load result). */
let backendUsed = 'wasm';
/** The loaded model's family as Rust names it, and what its zero-shot scores are (LoadResult). */
let modelFamily = { name: 'CLIP', scoringNote: '' };

/** Object URLs of thumbnails not yet loaded (each is revoked once its image is in, or on clear). */
const objectUrls = new Set();

/**
 * Test hooks (`?test-hooks=1`, for the browser tests only): the worker makes the
 * module panic on files named with `__trap__` and a batch wait for its Cancel after
 * one named with `__hold__` (see worker.js), and
 * `window.kplTestHooks.memoryUsage()` reports the worker's memory.
 */
const testHooks = new URLSearchParams(location.search).get('test-hooks') === '1';

// The CPU threads setting: every core by default, or the page's `?threads=N`; more than
// one runs the threaded wasm build when the page is cross-origin isolated (worker.js).
const cores = Math.min(navigator.hardwareConcurrency || 1, MAX_THREADS);
ui.threads.options[0].textContent = `Every core (${cores})`;
for (let n = 2; n <= cores; n++) ui.threads.append(new Option(String(n), String(n)));
const threadsAsked = () => checkThreads(ui.threads.value) ?? undefined;
ui.threads.value = String(checkThreads(new URLSearchParams(location.search).get('threads')) ?? '');
if (ui.threads.selectedIndex < 0) ui.threads.value = '';

// The page's `?simd=relaxed|simd128` picks the wasm SIMD build (tests, comparisons);
// by default the worker detects relaxed SIMD (worker.js).
const simdAsked = new URLSearchParams(location.search).get('simd');
// The worker, restarted by the client if its WebAssembly module crashes.
const client = KplClient.start(new URL('./worker.js', import.meta.url), {
  name: 'kpl',
  params: { ...(testHooks ? { 'test-hooks': '1' } : {}), ...(['relaxed', 'simd128'].includes(simdAsked) ? { simd: simdAsked } : {}) },
  threads: threadsAsked(),
});
if (testHooks) window.kplTestHooks = { memoryUsage: () => client.memoryUsage() };

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
const ms = (t) => (t < 10 ? `${t.toFixed(1)} ms` : `${Math.round(t)} ms`);
const backendName = (b) => BACKEND_NAMES[b] ?? b;

/** Creates an element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function setStatus(text, { failed = false } = {}) {
  ui.statusText.textContent = text;
  ui.status.classList.toggle('failed', failed);
}

/** A failure in the status line: plain words, the technical text in a disclosure. */
function setStatusProblem(message) {
  showMessage(ui.statusText, message);
  ui.status.classList.add('failed');
}

/** A knowledge base's URL: manifest paths are absolute (/kb/…) or relative to the model folder (bundles). */
const kbUrl = (kb) => new URL(kb.path, modelBase).href;

/** Fills the task selector from the manifest's knowledge bases (default: a chest X-ray task). */
async function loadTasks() {
  const listOf = async (base) => {
    try {
      const url = new URL('manifest.json', base);
      const res = url.protocol === 'opfs:' ? await opfsResponse(url) : await fetch(url);
      if (res.ok) return (await res.json()).knowledge ?? [];
    } catch {
      // Offline without a cache: custom labels only.
    }
    return [];
  };
  let list = await listOf(modelBase);
  if (modelBase !== SERVED_MODEL_BASE) {
    // A stored model: the server's tasks it has no base for are built on first use.
    const own = new Set(list.map((k) => k.task));
    const more = (await listOf(SERVED_MODEL_BASE)).filter((k) => !own.has(k.task));
    list = [...list, ...more.map(({ task, title, classes }) => ({ task, title, classes, path: null, missing: true }))];
  }
  ui.task.replaceChildren();
  bases.clear();
  for (const kb of list) {
    bases.set(kb.task, kb);
    ui.task.append(el('option', { value: kb.task }, `${kb.title} (${kb.classes.join(', ')})${kb.missing ? ': built on first use' : ''}`));
  }
  ui.task.append(el('option', { value: CUSTOM }, 'Custom labels'));
  const tasks = [...bases.keys()];
  const preferred = bases.has('chest-xray-pneumonia') ? 'chest-xray-pneumonia' : tasks.find((t) => t.startsWith('chest-xray')) ?? tasks[0];
  ui.task.value = preferred ?? CUSTOM;
  updateMode();
}

function updateMode() {
  const custom = ui.task.value === CUSTOM;
  ui.labelsField.hidden = !custom;
  const kb = bases.get(ui.task.value);
  ui.taskInfo.textContent = custom
    ? 'Custom labels: the classes you type, scored by the text encoder in your browser.'
    : kb?.missing ? `This model has no knowledge base for ${kb.title}: it is built in this browser from the task's descriptions and stored with the model.`
    : kb ? `Knowledge base ${kb.path}: ${kb.classes.length} classes. Several images added together run transductive KPL over the set.` : '';
}

/** Loads the selected task's base in the worker (after the model). */
function selectTask() {
  updateMode();
  const kb = bases.get(ui.task.value);
  if (!kb) {
    kbReady = Promise.reject(new Error('no knowledge base selected'));
    kbReady.catch(() => {});
    delete document.body.dataset.kbReady;
    return;
  }
  document.body.dataset.kbReady = 'false';
  const ready = kb.missing
    ? modelsPanel.buildKnowledgeBase(kb).then((entry) => {
      bases.set(kb.task, entry);
      const option = [...ui.task.options].find((o) => o.value === kb.task);
      if (option) option.textContent = `${entry.title} (${entry.classes.join(', ')})`;
      return entry;
    })
    : Promise.resolve(kb);
  kbReady = ready.then((k) => client.loadKb(kbUrl(k))).then((info) => {
    if (ui.task.value === kb.task) {
      document.body.dataset.kbReady = 'true';
      performance.mark('kpl-kb-ready');
    }
    ui.taskInfo.textContent = `${info.title}: ${info.classNames.join(', ')}. ` +
      (info.hasProxies ? 'Fitted proxies for single images. ' : '') +
      'Several images added together run transductive KPL over the set.';
    return info;
  });
  kbReady.catch((e) => {
    document.body.dataset.kbReady = 'failed';
    showMessage(ui.taskInfo, explain('kb', e.message));
  });
}

/**
 * Shows the backend running the image encoder and why (the load result, or a
 * BackendEvent: auto's background probe, or a GPU failure mid-run).
 */
function showBackend({ backend, note, probe }) {
  backendUsed = backend;
  if (note) showMessage(ui.backendNote, explain('backend', note));
  else ui.backendNote.replaceChildren();
  ui.backendNote.hidden = !note;
  document.body.dataset.backend = backend;
  // What the probe measured (auto's evidence), for automation.
  ui.backendNote.dataset.cpuMs = probe ? probe.cpuMs.toFixed(3) : '';
  ui.backendNote.dataset.gpuMs = probe ? probe.gpuMs.toFixed(3) : '';
}

/** Shows the threads the CPU engine runs on (the load result) and why fewer than asked. */
function showThreads({ threads, threadsNote, simd, simdNote }) {
  document.body.dataset.threads = String(threads ?? 1);
  document.body.dataset.simd = simd ?? '';
  document.body.dataset.simdNote = simdNote ?? '';
  if (threadsNote) showMessage(ui.threadsNote, explain('backend', threadsNote));
  else ui.threadsNote.replaceChildren();
  ui.threadsNote.hidden = !threadsNote;
}

client.onRestart = ({ file, restarts, ok, error }) => {
  document.body.dataset.workerRestarts = String(restarts);
  ui.workerNote.hidden = false;
  showMessage(ui.workerNote, explain('restart', ok
    ? `The WebAssembly module crashed${file ? ` on ${file}` : ''} and was restarted, with the model read again from the browser cache; the other images went on.`
    : `The WebAssembly module crashed${file ? ` on ${file}` : ''} and could not be restarted (${error}); reload the page.`));
};

client.onBackend = (event) => {
  showBackend(event);
  document.body.dataset.backendSettled = 'true';
  setStatus(`${ui.statusText.textContent.replace(/ Running on [^.]*\.$/, '')} Running on ${backendName(event.backend)}.`);
};

/** Loads (or, for a new backend, reloads) the model in the worker with the chosen backend. */
async function loadModel() {
  const first = document.body.dataset.modelReady === undefined;
  const requested = ui.backend.value;
  setStatus('Loading the model…');
  ui.progress.hidden = false;
  try {
    const info = await client.load(modelBase, ({ file, loaded, total }) => {
      ui.progress.max = total || 1;
      ui.progress.value = loaded;
      setStatus(`Downloading ${file}: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''}`);
    }, { backend: requested });
    ui.progress.hidden = true;
    ui.banner.hidden = !info.isRandom;
    modelFamily = { name: info.familyName ?? 'CLIP', scoringNote: info.scoringNote ?? '' };
    showBackend({ backend: info.backend, note: info.backendNote, probe: info.probe });
    showThreads(info);
    document.body.dataset.backend = info.backend;
    document.body.dataset.backendSettled = String(info.backendSettled !== false);
    document.body.dataset.modelReady = 'true';
    document.body.dataset.modelRandom = String(info.isRandom);
    performance.mark('kpl-model-ready', { detail: info.timings ?? null });
    setStatus(
      `Model ready (${info.reused ? 'already loaded' : `${mb(info.bytes)} in ${ms(info.ms)}`}): image ${info.imageSize}×${info.imageSize} px, ` +
        `${info.embeddingDim}-dimensional embeddings, ${backendName(info.backend)}` +
        `${info.backend === 'wasm' ? `, ${info.threads} thread${info.threads === 1 ? '' : 's'}${info.simd === 'relaxed' ? ', relaxed SIMD' : ''}` : ''}.` +
        (info.bundle && !info.hasTextEncoder ? ' The text encoder is fetched when custom labels are first used.' : '') +
        (info.isRandom ? ' Random test weights.' : ''),
    );
    if (!info.bundle && !info.hasTokenizer) setStatus(`${ui.statusText.textContent} No tokenizer (tokenizer.json or spiece.model): labels cannot be scored.`);
    if (first) await tasksLoaded;
    if (first || !info.reused) selectTask();
    keepOffline(info.wasmFiles);
    if (first) modelReady.resolve(info);
    else modelReady = { promise: Promise.resolve(info) };
  } catch (e) {
    ui.progress.hidden = true;
    document.body.dataset.modelReady = 'false';
    setStatusProblem(explain('model', e.message));
    if (first) modelReady.reject(e);
    else {
      modelReady = { promise: Promise.reject(e) };
      modelReady.promise.catch(() => {});
    }
  }
}

/** The classes typed in custom-labels mode, with the field marked invalid when there are none. */
function currentClasses() {
  const classes = parseCustomClasses(ui.labels.value);
  const bad = classes.length === 0;
  ui.labels.setAttribute('aria-invalid', String(bad));
  ui.labelsError.hidden = !bad;
  ui.labelsError.textContent = bad ? 'Enter at least one class.' : '';
  return classes;
}

function updateEmpty() {
  const any = ui.results.children.length > 0;
  ui.empty.hidden = any;
  ui.clear.disabled = !any;
  ui.exportCsv.disabled = ui.exportJson.disabled = exported.length === 0;
}

/**
 * The per-image progress bar: images encoded of images added, over every batch still
 * in flight (a batch added while another runs extends the same bar), and how many a
 * Cancel left out.
 */

const encoding = { done: 0, total: 0, cancelled: 0 };

function showEncoding() {
  ui.embedStatus.hidden = false;
  ui.embedProgress.max = Math.max(encoding.total, 1);
  ui.embedProgress.value = encoding.done;
  const busy = encoding.done < encoding.total;
  const cancelled = encoding.cancelled ? ` Cancelled: ${encoding.cancelled} image${encoding.cancelled === 1 ? '' : 's'} not processed.` : '';
  ui.embedProgressText.textContent = `${encoding.done} of ${encoding.total} image${encoding.total === 1 ? '' : 's'} encoded${busy ? '…' : '.'}${cancelled}`;
  ui.embedStatus.dataset.done = String(encoding.done);
  ui.embedStatus.dataset.total = String(encoding.total);
  ui.embedStatus.dataset.cancelled = String(encoding.cancelled);
  ui.embedStatus.classList.toggle('busy', busy);
  ui.cancel.hidden = !busy;
}

function encodingAdd(n) {
  if (encoding.done >= encoding.total) encoding.done = encoding.total = encoding.cancelled = 0;
  encoding.total += n;
  showEncoding();
}

function encodingStep(n = 1) {
  encoding.done = Math.min(encoding.total, encoding.done + n);
  showEncoding();
}

/** Images of a cancelled batch that will not be encoded: off the bar, counted as cancelled. */
function encodingCancelled(n) {
  encoding.total -= n;
  encoding.cancelled += n;
  showEncoding();
}

function pendingCard(name) {
  return el('li', { class: 'card pending', 'data-kpl-pending': true, 'data-file': name },
    el('div', {}, el('h3', {}, name), el('p', {}, 'Waiting for the model…')));
}

/**
 * A thumbnail, loaded when it scrolls into view. Its object URL is revoked as soon
 * as the image is in (or failed), so a long batch does not pin every file.
 */
function thumbnail(file, name) {
  const url = URL.createObjectURL(file);
  objectUrls.add(url);
  const release = () => {
    if (objectUrls.delete(url)) URL.revokeObjectURL(url);
  };
  const thumb = el('img', { class: 'thumb', src: url, alt: `Thumbnail of ${name}`, loading: 'lazy', decoding: 'async' });
  thumb.addEventListener('load', release, { once: true });
  // Browsers cannot show every format the decoder reads (TIFF, DICOM): drop the thumbnail then.
  thumb.addEventListener('error', () => {
    release();
    thumb.replaceWith(el('div', { class: 'thumb no-preview', role: 'img', 'aria-label': `No preview of ${name}` }, 'No preview'));
  }, { once: true });
  return thumb;
}

const pct = (p) => `${(100 * p).toFixed(1)} %`;

function bars(labels, probs, best, caption) {
  return el('div', { class: 'score-column' },
    el('h4', {}, caption),
    el('ul', { class: 'scores', 'aria-label': caption },
      labels.map((label, i) =>
        el('li', { class: i === best ? 'score best' : 'score' },
          el('span', { class: 'name' }, label),
          el('meter', { min: 0, max: 1, value: probs[i], 'aria-label': `${caption}: ${label}` }),
          el('span', { class: 'pct' }, pct(probs[i]))))));
}

/**
 * The DICOM attributes a card shows (never a patient attribute: see src/wasm/dicom.rs),
 * the window used, and `choice` (the window selector, for greyscale images).
 */
function dicomList(d, choice = null) {
  if (!d) return null;
  const rows = [
    ['Modality', d.modality ?? '—'],
    ['Body part', d.body_part ?? '—'],
    ['Rows × columns', `${d.rows} × ${d.columns}`],
    ['Frames', String(d.frames)],
    ['Photometric interpretation', d.photometric_interpretation],
    ['Transfer syntax', d.transfer_syntax_name ? `${d.transfer_syntax_name} (${d.transfer_syntax})` : d.transfer_syntax],
    ...(d.warnings ?? []).map((w) => ['Warning', w]),
    ['Window used', d.voi_description],
  ].filter(([, v]) => v !== undefined && v !== null);
  return el('div', { class: 'dicom' },
    el('h4', {}, 'DICOM'),
    el('dl', {}, rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
    choice);
}

const METHOD_TEXT = {
  kpl: 'transductive KPL over the images added together',
  proxies: 'fitted class proxies',
  'single-image': 'single-image knowledge retrieval',
};
const CUSTOM_METHOD_TEXT = {
  kpl: 'transductive KPL over the images added together, with the class prompts and your descriptions as knowledge',
  'single-image': 'the class prompt averaged with your descriptions closest to the image (single-image KPL retrieval)',
};

let firstResult = true;

/**
 * A result card. `ctx`: {task, custom, classNames}; `item`: {file, name, embedding,
 * encodeMs, ms, dicom}; `r`: one result of classify-kb / classify-custom.
 */
function resultCard(ctx, item, r, classifyMs) {
  const { classNames, custom } = ctx;
  const best = classNames.indexOf(r.label);
  const clipBest = classNames.indexOf(r.clip_label);
  const plain = r.method === 'clip';
  const methodText = r.method === 'clip'
    ? `plain ${modelFamily.name} zero-shot${custom ? ' (“a photo of a {label}.”)' : ''}`
    : (custom ? CUSTOM_METHOD_TEXT : METHOD_TEXT)[r.method] ?? r.method;
  const zeroShotCaption = `Plain ${modelFamily.name}`;
  // What the zero-shot numbers are (a softmax, or SigLIP's probability per label), in Rust's words.
  const scoringNote = modelFamily.scoringNote
    ? el('p', { class: 'scoring-note' }, `${zeroShotCaption} scores: ${modelFamily.scoringNote}.`)
    : null;
  const row = { file: item.name, task: ctx.task, custom_labels: custom, method: r.method, label: r.label,
    clip_label: r.clip_label, labels: classNames, scores: r.scores, clip_scores: r.clip_scores, evidence: r.evidence,
    dicom: item.dicom ?? null, dicom_window: item.dicom?.voi_description ?? null, embed_ms: item.ms,
    encode_ms: item.encodeMs, classify_ms: classifyMs, backend: backendName(item.backend ?? backendUsed) };
  // A card shown again (another DICOM window) replaces its row of the export.
  const previous = exported.indexOf(item.exportRow);
  if (previous >= 0) exported[previous] = row;
  else exported.push(row);
  item.exportRow = row;
  const head = Array.from(item.embedding.slice(0, 8), (v) => v.toFixed(4)).join(', ');
  const card = el('li', {
      class: custom ? 'card custom' : 'card',
      'data-kpl-result': true,
      'data-file': item.name,
      'data-label': r.label,
      'data-method': r.method,
      'data-task': ctx.task,
      'data-custom': custom ? 'true' : null,
      'data-scores': JSON.stringify(r.scores),
      'data-backend': item.backend ?? backendUsed,
      'data-encode-ms': item.encodeMs.toFixed(3),
      'data-classify-ms': classifyMs.toFixed(3),
      'data-dicom-modality': item.dicom ? item.dicom.modality ?? '' : null,
    },
    thumbnail(item.file, item.name),
    el('div', { class: 'card-body' },
      el('h3', {}, item.name),
      el('p', { class: 'top-label' }, custom ? 'Top label: ' : 'Label: ', el('strong', {}, r.label),
        ` (${pct(r.scores[best] ?? 0)})`, plain || custom ? null : `; plain ${modelFamily.name}: ${r.clip_label}`),
      el('p', { class: 'method' }, el('span', { class: custom ? 'badge badge-custom' : 'badge' }, custom ? 'Custom labels' : 'Task'),
        ` Method: ${methodText}.`),
      plain
        ? bars(classNames, r.scores, best, zeroShotCaption)
        : el('div', { class: 'score-columns' },
            bars(classNames, r.clip_scores, clipBest, zeroShotCaption),
            bars(classNames, r.scores, best, custom ? 'KPL (your descriptions)' : 'KPL')),
      scoringNote,
      r.evidence.length
        ? el('div', { class: 'evidence' }, el('h4', {}, 'Evidence'),
            el('ul', {}, r.evidence.map((e) =>
              el('li', {}, `${e.description} `, el('span', { class: 'sim' }, `(similarity ${e.similarity.toFixed(3)})`)))))
        : null,
      dicomList(item.dicom, item.rewindow && offersWindow(item.dicom) ? windowSelect(item.dicom, item.voi, item.rewindow) : null),
      el('p', { class: 'meta' },
        plain
          ? `Embedded and scored in ${ms(item.encodeMs + classifyMs)} in the worker (image encoder ${ms(item.encodeMs)}). `
          : `Embedded in ${ms(item.ms)} (image encoder ${ms(item.encodeMs)}), classified in ${ms(classifyMs)}. `,
        el('span', { class: 'backend' }, `Backend: ${backendName(item.backend ?? backendUsed)}.`)),
      plain
        ? el('code', { class: 'embedding', 'aria-label': 'First values of the image embedding' },
            `embedding[0..8] of ${item.embedding.length}: ${head}, …`)
        : null));
  if (firstResult) {
    firstResult = false;
    performance.mark('kpl-first-result', { detail: { file: item.name, encodeMs: item.encodeMs } });
  }
  return card;
}

function errorCard(name, message) {
  return el('li', { class: 'card error', 'data-kpl-error': true, 'data-file': name },
    el('div', {}, el('h3', {}, name), el('p', {}, messageNodes(explain('file', message)))));
}

/** Yields to the page's event loop (input, painting) between slices of DOM work. */
const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));

/**
 * Runs DOM updates (one function per card) in slices of at most 8 ms or 24 cards,
 * so that hundreds of cards never hold the main thread for long: neither the
 * script nor the layout of what a slice added.
 */
async function inSlices(updates) {
  let start = performance.now();
  let count = 0;
  for (const update of updates) {
    update();
    if (++count >= 24 || performance.now() - start > 8) {
      await nextTask();
      start = performance.now();
      count = 0;
    }
  }
}

/** The batches being encoded, each with its controller (the Cancel button aborts them all). */
const running = new Set();

ui.cancel.addEventListener('click', () => {
  for (const controller of running) controller.abort();
});

/**
 * One batch: pending cards, then (once the model is loaded) one embed-images request
 * with a progress reply per image, then one classification over every image that
 * embedded (several: transductive KPL), with an error card for each file that failed.
 */
async function handleBatch(files) {
  const custom = ui.task.value === CUSTOM;
  const task = custom ? CUSTOM : ui.task.value;
  let classes = null;
  if (custom) {
    classes = currentClasses();
    if (classes.length === 0) {
      ui.labels.focus();
      return;
    }
  }
  const controller = new AbortController();
  running.add(controller);
  encodingAdd(files.length);
  // The pending cards, added in slices (a drop may bring hundreds of files).
  const items = files.map((file) => ({ file, name: file.name || 'pasted image', card: pendingCard(file.name || 'pasted image') }));
  await inSlices(items.map((it) => () => ui.results.append(it.card)));
  updateEmpty();
  const fail = async (list, message) => {
    await inSlices(list.map((it) => () => it.card.replaceWith(errorCard(it.name, message))));
    updateEmpty();
  };
  /** Cards of files a Cancel left out: removed, and counted in the status line. */
  const dropUnprocessed = async (list) => {
    encodingCancelled(list.length);
    await inSlices(list.map((it) => () => it.card.remove()));
    updateEmpty();
  };
  let info;
  let embedded;
  try {
    try {
      await modelReady.promise;
      info = custom ? null : await kbReady;
    } catch (e) {
      encodingStep(items.length);
      return await fail(items, e.message);
    }
    if (controller.signal.aborted) return await dropUnprocessed(items);
    for (const it of items) it.card.querySelector('p').textContent = 'Encoding…';
    try {
      embedded = await client.embedImages(items.map((it) => ({ name: it.name, data: it.file })), ({ loaded, total }) => {
        encodingStep();
        const it = items[loaded - 1];
        if (it) it.card.querySelector('p').textContent = `Encoded (${loaded} of ${total}); waiting for the batch…`;
      }, { signal: controller.signal });
    } catch (e) {
      encodingStep(items.length);
      return await fail(items, e.message);
    }
  } finally {
    running.delete(controller);
  }
  // After a Cancel the result holds the files done, in order; the rest never ran.
  const finished = items.slice(0, embedded.results.length);
  if (embedded.cancelled) await dropUnprocessed(items.slice(embedded.results.length));
  const done = [];
  const failedCards = [];
  embedded.results.forEach((r, i) => {
    const it = finished[i];
    if (r.error) failedCards.push(() => it.card.replaceWith(errorCard(it.name, r.error)));
    else done.push({ ...it, ...r });
  });
  await inSlices(failedCards);
  updateEmpty();
  if (done.length === 0) return;
  try {
    const embeddings = done.map((d) => d.embedding);
    const before = ui.statusText.textContent;
    let downloading = false;
    const out = custom
      ? await client.classifyCustom(embeddings, classes, {
          topEvidence: 3,
          // A bundle's text encoder is fetched on first use: say so meanwhile.
          onProgress: ({ loaded, total }) => {
            downloading = true;
            setStatus(`Downloading the text encoder: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''}`);
          },
        }).finally(() => {
          if (downloading) setStatus(before.replace(' The text encoder is fetched when custom labels are first used.', ' Text encoder loaded.'));
        })
      : await client.classifyKb(embeddings, 3);
    const ctx = { task, custom, classNames: out.classNames ?? info.classNames };
    const classify = (list) => (custom ? client.classifyCustom(list, classes, { topEvidence: 3 }) : client.classifyKb(list, 3));
    const batch = { ctx, done, classify };
    for (const d of done) d.rewindow = (voi) => rewindow(batch, d, voi);
    await inSlices(done.map((d, i) => () => d.card.replaceWith(d.card = resultCard(ctx, d, out.results[i], out.ms))));
  } catch (e) {
    await fail(done, e.message);
  }
  updateEmpty();
}

/**
 * Another DICOM window for one image of a batch: that image is embedded again with
 * it, and the batch classified again (KPL is transductive over the batch), so every
 * card of the batch is shown again. Nothing changes until both steps succeed.
 */
async function rewindow(batch, item, voi) {
  const select = item.card.querySelector('select.dicom-window');
  item.card.setAttribute('aria-busy', 'true');
  if (select) select.disabled = true;
  try {
    const [r] = (await client.embedImages([{ name: item.name, data: item.file, voi }])).results;
    if (r.error) throw new Error(r.error);
    const out = await batch.classify(batch.done.map((d) => (d === item ? r.embedding : d.embedding)));
    Object.assign(item, { embedding: r.embedding, dicom: r.dicom, ms: r.ms, encodeMs: r.encodeMs, backend: r.backend, voi });
    await inSlices(batch.done.map((d, i) => () => d.card.replaceWith(d.card = resultCard(batch.ctx, d, out.results[i], out.ms))));
  } catch (e) {
    item.card.removeAttribute('aria-busy');
    if (select) {
      select.disabled = false;
      select.value = JSON.stringify(item.voi ?? null);
    }
    setStatusProblem(explain('window', `${item.name}: ${e.message}`));
  }
}

function handleFiles(fileList) {
  const files = Array.from(fileList ?? []);
  if (files.length === 0) return;
  handleBatch(files);
  updateEmpty();
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

const csvCell = (v) => {
  const s = Array.isArray(v) ? v.map((x) => (typeof x === 'number' ? x.toFixed(6) : String(x))).join(';') : String(v ?? '');
  return /[",\n;]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

ui.exportJson.addEventListener('click', () =>
  download('kpl-results.json', 'application/json', JSON.stringify({ results: exported }, null, 2)));
ui.exportCsv.addEventListener('click', () => {
  const cols = ['file', 'task', 'method', 'label', 'clip_label', 'labels', 'scores', 'clip_scores', 'dicom_window', 'backend', 'encode_ms'];
  const rows = [cols.join(',')].concat(exported.map((r) => cols.map((c) => csvCell(r[c])).join(',')));
  download('kpl-results.csv', 'text/csv', rows.join('\n') + '\n');
});

ui.task.addEventListener('change', () => {
  if (document.body.dataset.modelReady === 'true') selectTask();
  else updateMode();
});

ui.fileInput.addEventListener('change', () => {
  handleFiles(ui.fileInput.files);
  ui.fileInput.value = ''; // choosing the same file again fires `change` again
});

for (const type of ['dragenter', 'dragover']) {
  ui.dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    ui.dropZone.classList.add('dragging');
  });
}
ui.dropZone.addEventListener('dragleave', (event) => {
  if (!ui.dropZone.contains(event.relatedTarget)) ui.dropZone.classList.remove('dragging');
});
ui.dropZone.addEventListener('drop', (event) => {
  event.preventDefault();
  ui.dropZone.classList.remove('dragging');
  filesFromDrop(event.dataTransfer).then(handleFiles, () => handleFiles(event.dataTransfer.files));
});

const IMAGE_NAME = /\.(png|jpe?g|webp|bmp|tiff?|gif|dcm)$/i;

/**
 * The files of a drop, whole folders included (walked recursively; inside folders
 * only files that look like images are kept). The entries are read synchronously,
 * before the drop event ends.
 */
async function filesFromDrop(dt) {
  const entries = Array.from(dt.items ?? [], (item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.some((e) => e.isDirectory)) return Array.from(dt.files);
  const out = [];
  const walk = async (entry, inFolder) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      if (!inFolder || IMAGE_NAME.test(file.name) || file.type.startsWith('image/')) out.push(file);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (batch.length === 0) break;
        for (const e of batch) await walk(e, true);
      }
    }
  };
  for (const e of entries) await walk(e, false);
  return out;
}
// A file dropped beside the zone must not make the browser navigate away to it.
window.addEventListener('dragover', (event) => event.preventDefault());
window.addEventListener('drop', (event) => event.preventDefault());

document.addEventListener('paste', (event) => {
  const files = event.clipboardData?.files;
  if (files && files.length > 0) {
    event.preventDefault();
    handleFiles(files);
  }
});

ui.labels.addEventListener('input', () => currentClasses());
ui.backend.addEventListener('change', () => loadModel());
// A worker's thread count is fixed when its module starts: a new worker, the model again.
ui.threads.addEventListener('change', () => {
  document.body.dataset.modelReady = 'false';
  client.setThreads(threadsAsked());
  loadModel();
});

ui.clear.addEventListener('click', () => {
  ui.results.replaceChildren();
  exported.length = 0;
  for (const url of objectUrls) URL.revokeObjectURL(url);
  objectUrls.clear();
  updateEmpty();
  ui.fileInput.focus();
});

// Offline: the service worker caches the app, the wasm, the model and the bases.
async function showCacheSize() {
  let bytes = 0;
  let entries = 0;
  try {
    for (const key of await caches.keys()) {
      const cache = await caches.open(key);
      for (const req of await cache.keys()) {
        const res = await cache.match(req);
        const len = Number(res?.headers.get('Content-Length'));
        bytes += Number.isFinite(len) && len > 0 ? len : (await res.clone().arrayBuffer()).byteLength;
        entries++;
      }
    }
    ui.cacheInfo.textContent = `Offline cache: ${mb(bytes)} in ${entries} files.`;
  } catch (e) {
    showMessage(ui.cacheInfo, explain('offline', e.message));
  }
  ui.cacheInfo.dataset.bytes = String(bytes);
}

ui.cacheRefresh.addEventListener('click', showCacheSize);
ui.cacheClear.addEventListener('click', async () => {
  for (const key of await caches.keys()) await caches.delete(key);
  await showCacheSize();
});

/** The active service worker's registration, or null where there is none. */
const serviceWorker = 'serviceWorker' in navigator
  ? navigator.serviceWorker
    .register(new URL('sw.js', import.meta.url), { scope: new URL('./', import.meta.url).pathname })
    .then(() => navigator.serviceWorker.ready)
  : Promise.resolve(null);
serviceWorker.catch((e) => showMessage(ui.cacheInfo, explain('offline', e.message)));
if (!('serviceWorker' in navigator)) ui.cacheInfo.textContent = 'Offline mode unavailable in this browser.';

/**
 * After a load: the service worker keeps the WebAssembly build the worker runs (its
 * `wasmFiles`; sw.js keeps no build before it is told which), then the page works
 * offline (`data-offline-ready`).
 */
async function keepOffline(files) {
  const registration = await serviceWorker.catch(() => null);
  if (!registration?.active || !Array.isArray(files) || files.length === 0) return;
  const channel = new MessageChannel();
  const answer = new Promise((resolve) => {
    channel.port1.onmessage = (event) => resolve(event.data);
  });
  registration.active.postMessage({ type: 'keep-build', files }, [channel.port2]);
  const { error } = (await answer) ?? {};
  if (error) {
    showMessage(ui.cacheInfo, explain('offline', error));
    return;
  }
  document.body.dataset.offlineReady = 'true';
  showCacheSize();
}

/** Switches the page to the model at `base` (the models panel's "Use"); rejects when it cannot load. */
async function useModel(base) {
  modelBase = base;
  await loadTasks();
  await loadModel();
  if (document.body.dataset.modelReady !== 'true') throw new Error(ui.statusText.textContent);
}

const modelsPanel = initModelsPanel({ client, useModel, servedBase: SERVED_MODEL_BASE });

updateEmpty();
// The stored model last used, if any; else the server's.
modelBase = await modelsPanel.initialBase().catch(() => SERVED_MODEL_BASE);
// The model loads while the task list is fetched; the task's base once both are there.
const tasksLoaded = loadTasks();
loadModel();
