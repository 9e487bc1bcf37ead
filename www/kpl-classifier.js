// <kpl-classifier>: the KPL classifier as one custom element, for embedding in other
// pages (an intranet portal, a viewer). One ES module; it starts its own module worker
// (worker.js beside this file, which loads /pkg/kpl.js), so the host page never blocks.
//
//   <script type="module" src="/radiology/kpl/kpl-classifier.js"></script>
//   <kpl-classifier task="chest-xray-pneumonia"></kpl-classifier>
//
// Attributes
//   model    URL of the model folder; its manifest.json lists the weights and the
//            knowledge bases (scripts/serve.mjs synthesises it). Default: model/ beside this script.
//   task     the knowledge base to use (a task name of the manifest). Default: the first.
//   backend  "auto" (default), "wasm" (or "cpu": the CPU, WebAssembly) or "webgpu";
//            passed to the worker, which says which one it used. "auto" embeds a
//            probe image on both and keeps the faster; a GPU that is missing, fails
//            or disagrees with the CPU falls back to the CPU with a note in the
//            widget's status line.
//   threads  the CPU threads to use, 1 to 64 (default: every core). More than one runs
//            the threaded WebAssembly build, which needs a cross-origin-isolated host
//            page (COOP/COEP headers); elsewhere the widget runs on one thread and its
//            note says why. `data-threads` tells the count in use, `data-simd` the
//            SIMD build (`relaxed` where the browser runs relaxed SIMD, else `simd128`).
//
// Events (bubbling, composed)
//   kpl-ready   detail {task, title, classNames, isRandom}
//   kpl-result  detail {file, label, scores, method, evidence, backend} per image; scores are
//               per class (detail.classNames), method 'kpl' for images chosen together
//               (transductive KPL), else 'proxies' or 'single-image'.
//   kpl-error   detail {file?, message, summary}: `message` is the technical text,
//               `summary` the plain words shown (see messages.js).
//   kpl-cancelled  detail {classified, notProcessed}: a batch was cancelled (the Cancel
//               button, or `cancel()`); the images encoded before it were classified
//               together (KPL over those), the rest never ran.
//
// While a batch is encoded the widget shows a Cancel button; it stops the batch after
// the image in progress. If the WebAssembly module crashes on a file, that file gets
// an error entry naming it, the worker is replaced (model and knowledge base read
// again from the browser cache) and the batch goes on with the next file.
//
// Strict-CSP safe: no inline script or style (the styles are a constructable
// stylesheet), and no request leaves the origins given in `model`.

import { KplClient, BACKEND_NAMES, MAX_THREADS, checkThreads } from './protocol.js';
import { explain, showMessage } from './messages.js';

const CSS = `
:host { display: block; font: inherit; border: 1px solid #c8ced6; border-radius: 8px; padding: 0.75rem; max-width: 40rem; }
:host([hidden]) { display: none; }
.status { margin: 0 0 0.5rem; color: #444; }
.status.failed { color: #b00020; }
.warn { border: 2px solid #b58400; background: #fff1c2; padding: 0.4rem 0.6rem; border-radius: 6px; margin-bottom: 0.5rem; }
label { font-weight: 600; display: block; margin-bottom: 0.25rem; }
ul { list-style: none; padding: 0; margin: 0.5rem 0 0; display: grid; gap: 0.5rem; }
li { border-top: 1px solid #e1e4e8; padding-top: 0.4rem; }
li.error { color: #b00020; }
meter { width: 8rem; vertical-align: middle; }
.ev { color: #555; font-size: 0.9em; }
.progress { display: flex; flex-wrap: wrap; gap: 0.25rem 0.5rem; align-items: center; margin: 0.4rem 0; }
.progress[hidden] { display: none; }
.progress progress { flex: 1 1 6rem; min-width: 0; max-width: 14rem; }
.note { color: #555; margin: 0 0 0.5rem; }
.note[data-tone="problem"] { color: #b00020; }
.note[hidden] { display: none; }
details.detail { color: #555; font-size: 0.88em; margin-top: 0.15rem; }
details.detail > summary { cursor: pointer; width: fit-content; }
.detail-text { display: block; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
`;

let sheet = null;
function styles() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  }
  return sheet;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c != null) node.append(c);
  return node;
}

export class KplClassifier extends HTMLElement {
  static observedAttributes = ['model', 'task', 'backend', 'threads'];

  #client = null;
  #ready = null;
  #info = null;
  #ui = null;
  /** The controller of the batch being encoded, if any. @type {AbortController | null} */
  #batch = null;

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.adoptedStyleSheets = [styles()];
    const id = 'kpl-file';
    this.#ui = {
      status: el('p', { class: 'status', role: 'status', 'aria-live': 'polite' }, 'Starting…'),
      warn: el('div', { class: 'warn', role: 'alert', hidden: true },
        'Random test weights: outputs are meaningless; not a diagnosis.'),
      note: el('p', { class: 'note', role: 'status', hidden: true }),
      threadsNote: el('p', { class: 'note threads-note', role: 'status', hidden: true }),
      input: el('input', { id, type: 'file', multiple: true, accept: 'image/*,.tif,.tiff,.dcm,application/dicom', disabled: true }),
      bar: el('progress', { id: 'kpl-progress', max: 1, value: 0 }),
      barText: el('span', { 'aria-live': 'polite' }),
      list: el('ul', { 'aria-live': 'polite' }),
      cancel: el('button', { type: 'button', hidden: true }, 'Cancel'),
    };
    const u = this.#ui;
    u.progress = el('div', { class: 'progress', hidden: true },
      el('label', { for: 'kpl-progress' }, 'Encoding images'), u.bar, u.barText, u.cancel);
    u.cancel.addEventListener('click', () => this.cancel());
    root.append(u.status, u.warn, u.note, u.threadsNote, el('label', { for: id }, 'Choose images'), u.input, u.progress, u.list);
    u.input.addEventListener('change', () => {
      const files = Array.from(u.input.files ?? []);
      u.input.value = '';
      if (files.length) this.classifyFiles(files);
    });
  }

  get model() {
    return this.getAttribute('model') || new URL('model/', import.meta.url).href;
  }

  get task() {
    return this.getAttribute('task') || '';
  }

  get backend() {
    return this.getAttribute('backend') || 'auto';
  }

  /** The `threads` attribute: undefined when absent (every core), else its text. */
  get threads() {
    return this.getAttribute('threads') ?? undefined;
  }

  connectedCallback() {
    if (!this.#ready) this.#ready = this.#start();
  }

  disconnectedCallback() {
    this.#client?.terminate();
    this.#client = null;
    this.#ready = null;
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (oldValue === newValue || !this.#client) return;
    // A new model, task, backend or thread count: start again (not ready meanwhile).
    this.disconnectedCallback();
    delete this.dataset.ready;
    delete this.dataset.threads;
    delete this.dataset.simd;
    if (this.isConnected) this.#ready = this.#start();
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  #status(text, failed = false) {
    this.#ui.status.textContent = text;
    this.#ui.status.classList.toggle('failed', failed);
  }

  /** The engine note (a backend note from the worker), in plain words; hidden when empty. */
  #note(note) {
    if (note) showMessage(this.#ui.note, explain('backend', note));
    else this.#ui.note.replaceChildren();
    this.#ui.note.hidden = !note;
  }

  async #start() {
    try {
      if (!['auto', 'wasm', 'cpu', 'webgpu'].includes(this.backend)) {
        throw new Error(`backend "${this.backend}" is unknown; use "auto", "wasm" or "webgpu"`);
      }
      const threads = this.threads === undefined ? undefined : checkThreads(this.threads);
      if (threads === null) throw new Error(`threads must be a whole number from 1 to ${MAX_THREADS}, not "${this.threads}"`);
      const base = new URL(this.model.endsWith('/') ? this.model : `${this.model}/`, document.baseURI);
      // Test hooks (the host page opened with ?test-hooks=1, for the browser tests only):
      // see worker.js.
      const testHooks = new URLSearchParams(location.search).get('test-hooks') === '1';
      this.#client = KplClient.start(new URL('./worker.js', import.meta.url), {
        name: 'kpl-classifier', params: testHooks ? { 'test-hooks': '1' } : {}, threads,
      });
      this.#client.onRestart = ({ file, ok, error, restarts }) => {
        this.dataset.workerRestarts = String(restarts);
        this.#ui.note.hidden = false;
        showMessage(this.#ui.note, explain('restart', ok
          ? `The WebAssembly module crashed${file ? ` on ${file}` : ''} and was restarted; the other images went on.`
          : `The WebAssembly module crashed${file ? ` on ${file}` : ''} and could not be restarted (${error}).`));
      };
      this.#client.onBackend = ({ backend, note }) => {
        this.#note(note);
        this.dataset.backend = backend;
        if (this.#info) this.#info.backend = BACKEND_NAMES[backend] ?? backend;
      };
      this.#status('Loading the model…');
      const manifestRes = await fetch(new URL('manifest.json', base));
      if (!manifestRes.ok) throw new Error(`${manifestRes.url}: HTTP ${manifestRes.status}`);
      const manifest = await manifestRes.json();
      const list = manifest.knowledge ?? [];
      const kb = this.task ? list.find((k) => k.task === this.task) : list[0];
      if (!kb) throw new Error(this.task ? `the model has no knowledge base for task "${this.task}"` : 'the model lists no knowledge base');
      const info = await this.#client.load(base.href, ({ loaded, total }) =>
        this.#status(`Downloading the model: ${(loaded / 1e6).toFixed(1)}${total ? ` of ${(total / 1e6).toFixed(1)}` : ''} MB`),
        { backend: this.backend });
      const kbInfo = await this.#client.loadKb(new URL(kb.path, base).href);
      this.#info = { ...kbInfo, isRandom: info.isRandom, backend: BACKEND_NAMES[info.backend] ?? info.backend };
      this.#ui.warn.hidden = !info.isRandom;
      this.#note(info.backendNote);
      // Why the CPU runs on fewer threads than asked (e.g. the host page is not isolated).
      if (info.threadsNote) showMessage(this.#ui.threadsNote, explain('backend', info.threadsNote));
      this.#ui.threadsNote.hidden = !info.threadsNote;
      this.#ui.input.disabled = false;
      this.#status(`${kbInfo.title}: ${kbInfo.classNames.join(', ')}. ${this.#info.backend}.`);
      this.dataset.ready = 'true';
      this.dataset.backend = info.backend;
      this.dataset.threads = String(info.threads);
      this.dataset.simd = info.simd;
      this.#emit('kpl-ready', { task: kbInfo.task, title: kbInfo.title, classNames: kbInfo.classNames, isRandom: info.isRandom });
    } catch (e) {
      this.dataset.ready = 'false';
      const plain = explain('start', e.message);
      showMessage(this.#ui.status, plain);
      this.#ui.status.classList.add('failed');
      this.#emit('kpl-error', { message: e.message, summary: plain.summary });
      throw e;
    }
  }

  /** Stops the batch being encoded after the image in progress (see `kpl-cancelled`). */
  cancel() {
    this.#batch?.abort();
  }

  /**
   * Classifies files (File or Blob objects): several run transductive KPL together.
   * Resolves with the `kpl-result` details, one per classified file (after a
   * Cancel, those of the files encoded before it).
   */
  async classifyFiles(files) {
    await this.#ready;
    const client = this.#client;
    const u = this.#ui;
    const items = files.map((file, i) => ({ name: file.name || `image ${i + 1}`, data: file }));
    u.progress.hidden = false;
    u.bar.max = items.length;
    u.bar.value = 0;
    u.barText.textContent = `0 of ${items.length}`;
    this.#status(`Encoding ${items.length} image(s)…`);
    this.#batch?.abort();
    const batch = new AbortController();
    this.#batch = batch;
    u.cancel.hidden = false;
    let out;
    try {
      out = await client.embedImages(items, ({ loaded, total }) => {
        u.bar.value = loaded;
        u.barText.textContent = `${loaded} of ${total}`;
      }, { signal: batch.signal });
    } finally {
      if (this.#batch === batch) {
        this.#batch = null;
        u.cancel.hidden = true;
      }
    }
    const notProcessed = items.length - out.results.length;
    if (out.cancelled) u.barText.textContent = `${out.results.length} of ${items.length}; cancelled, ${notProcessed} not processed`;
    const embedded = [];
    for (const r of out.results) {
      if (r.error) {
        const plain = explain('file', r.error);
        const entry = el('li', { class: 'error', 'data-kpl-error': true, 'data-file': r.name });
        showMessage(entry, plain);
        entry.prepend(el('strong', {}, r.name), ': ');
        u.list.append(entry);
        this.#emit('kpl-error', { file: r.name, message: r.error, summary: plain.summary });
      } else {
        embedded.push({ name: r.name, embedding: r.embedding, backend: r.backend });
      }
    }
    const cancelled = () => {
      if (!out.cancelled) return;
      this.#status(`${this.#info.title}: cancelled; ${embedded.length} image(s) classified, ${notProcessed} not processed. ${this.#info.backend}.`);
      this.dataset.cancelled = String(notProcessed);
      this.#emit('kpl-cancelled', { classified: embedded.length, notProcessed });
    };
    if (!embedded.length) {
      cancelled();
      return [];
    }
    const classified = await client.classifyKb(embedded.map((e) => e.embedding), 3);
    const classNames = classified.classNames;
    const details = embedded.map((e, i) => {
      const r = classified.results[i];
      return { file: e.name, label: r.label, scores: r.scores, method: r.method, evidence: r.evidence, classNames, backend: e.backend ?? classified.backend };
    });
    for (const d of details) {
      const best = classNames.indexOf(d.label);
      this.#ui.list.append(
        el('li', { 'data-kpl-result': true, 'data-file': d.file, 'data-label': d.label, 'data-method': d.method },
          el('strong', {}, d.file), `: ${d.label} `,
          el('meter', { min: 0, max: 1, value: d.scores[best] ?? 0, 'aria-label': `${d.label} score` }),
          ` ${(100 * (d.scores[best] ?? 0)).toFixed(1)} % (${d.method})`,
          d.evidence.length ? el('div', { class: 'ev' }, `Evidence: ${d.evidence[0].description}`) : null));
      this.#emit('kpl-result', d);
    }
    this.#status(`${this.#info.title}: ${details.length} image(s) classified. ${this.#info.backend}.`);
    cancelled();
    return details;
  }
}

if (!customElements.get('kpl-classifier')) customElements.define('kpl-classifier', KplClassifier);
