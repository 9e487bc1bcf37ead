// The page: input (file picker, drag and drop, paste), the labels field, and the
// result cards. It does no heavy work itself: worker.js owns the wasm and the model,
// and every exchange with it goes through the protocol in protocol.js.

import { KplClient, parseLabels } from './protocol.js';

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'),
  statusText: $('status-text'),
  progress: $('load-progress'),
  banner: $('random-banner'),
  task: $('task'),
  taskInfo: $('task-info'),
  labelsField: $('labels-field'),
  labels: $('labels'),
  labelsError: $('labels-error'),
  dropZone: $('drop-zone'),
  fileInput: $('file-input'),
  clear: $('clear'),
  exportCsv: $('export-csv'),
  exportJson: $('export-json'),
  results: $('results'),
  empty: $('results-empty'),
  cacheInfo: $('cache-info'),
  cacheRefresh: $('cache-refresh'),
  cacheClear: $('cache-clear'),
};

/** The value of the task selector that means plain CLIP over typed labels. */
const CUSTOM = 'custom';
const BACKEND = 'CPU (WebAssembly)';
/** Results shown, for the export (nothing is stored anywhere else). */
const exported = [];
/** The knowledge bases listed in the manifest, by task. */
const bases = new Map();
/** Resolves when the selected knowledge base is loaded in the worker (or rejects). */
let kbReady = Promise.reject(new Error('no knowledge base selected'));
kbReady.catch(() => {});

/** Object URLs of thumbnails, revoked when the results are cleared. */
const objectUrls = new Set();

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'kpl' });
const client = new KplClient(worker);

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
const ms = (t) => (t < 10 ? `${t.toFixed(1)} ms` : `${Math.round(t)} ms`);

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

/** Fills the task selector from the manifest's knowledge bases (default: a chest X-ray task). */
async function loadTasks() {
  let list = [];
  try {
    const res = await fetch('/model/manifest.json');
    if (res.ok) list = (await res.json()).knowledge ?? [];
  } catch {
    // Offline without a cache: custom labels only.
  }
  ui.task.replaceChildren();
  for (const kb of list) {
    bases.set(kb.task, kb);
    ui.task.append(el('option', { value: kb.task }, `${kb.title} (${kb.classes.join(', ')})`));
  }
  ui.task.append(el('option', { value: CUSTOM }, 'Custom labels (plain CLIP)'));
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
    ? 'Plain CLIP zero-shot over the labels you type (the text encoder runs in your browser).'
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
  kbReady = client.loadKb(kb.path).then((info) => {
    if (ui.task.value === kb.task) document.body.dataset.kbReady = 'true';
    ui.taskInfo.textContent = `${info.title}: ${info.classNames.join(', ')}. ` +
      (info.hasProxies ? 'Fitted proxies for single images. ' : '') +
      'Several images added together run transductive KPL over the set.';
    return info;
  });
  kbReady.catch((e) => {
    document.body.dataset.kbReady = 'failed';
    ui.taskInfo.textContent = `The knowledge base could not be loaded: ${e.message}`;
  });
}

async function loadModel() {
  setStatus('Loading the model…');
  try {
    const info = await client.load('/model/', ({ file, loaded, total }) => {
      ui.progress.max = total || 1;
      ui.progress.value = loaded;
      setStatus(`Downloading ${file}: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''}`);
    });
    ui.progress.hidden = true;
    ui.banner.hidden = !info.isRandom;
    document.body.dataset.modelReady = 'true';
    document.body.dataset.modelRandom = String(info.isRandom);
    setStatus(
      `Model ready (${mb(info.bytes)} in ${ms(info.ms)}): image ${info.imageSize}×${info.imageSize} px, ` +
        `${info.embeddingDim}-dimensional embeddings, CPU (WebAssembly).` +
        (info.isRandom ? ' Random test weights.' : ''),
    );
    if (!info.hasTokenizer) setStatus(`${ui.statusText.textContent} No tokenizer.json: labels cannot be scored.`);
    selectTask();
  } catch (e) {
    ui.progress.hidden = true;
    document.body.dataset.modelReady = 'false';
    setStatus(`The model could not be loaded: ${e.message}`, { failed: true });
  }
}

function currentLabels() {
  const labels = parseLabels(ui.labels.value);
  const bad = labels.length === 0;
  ui.labels.setAttribute('aria-invalid', String(bad));
  ui.labelsError.hidden = !bad;
  ui.labelsError.textContent = bad ? 'Enter at least one label.' : '';
  return labels;
}

function updateEmpty() {
  const any = ui.results.children.length > 0;
  ui.empty.hidden = any;
  ui.clear.disabled = !any;
  ui.exportCsv.disabled = ui.exportJson.disabled = exported.length === 0;
}

function pendingCard(name) {
  return el('li', { class: 'card pending', 'data-kpl-pending': true, 'data-file': name },
    el('div', {}, el('h3', {}, name), el('p', {}, 'Working…')));
}

function thumbnail(file, name) {
  const url = URL.createObjectURL(file);
  objectUrls.add(url);
  const thumb = el('img', { class: 'thumb', src: url, alt: `Thumbnail of ${name}` });
  // Browsers cannot show every format the decoder reads (TIFF): drop the thumbnail then.
  thumb.addEventListener('error', () => thumb.replaceWith(el('div', { class: 'thumb no-preview' }, 'No preview')));
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

function resultCard(file, result) {
  const best = result.labels.indexOf(result.label);
  const scores = el('ul', { class: 'scores', 'aria-label': 'Scores' },
    result.labels.map((label, i) =>
      el('li', { class: i === best ? 'score best' : 'score' },
        el('span', { class: 'name' }, label),
        el('meter', { min: 0, max: 1, value: result.probs[i], 'aria-label': label }),
        el('span', { class: 'pct' }, pct(result.probs[i])))));
  const head = Array.from(result.embedding.slice(0, 8), (v) => v.toFixed(4)).join(', ');
  exported.push({ file: result.name, task: 'custom', method: result.method, label: result.label,
    labels: result.labels, scores: result.probs, ms: result.ms, backend: BACKEND });
  return el('li', {
      class: 'card',
      'data-kpl-result': true,
      'data-file': result.name,
      'data-label': result.label,
      'data-method': result.method,
      'data-scores': JSON.stringify(result.probs),
    },
    thumbnail(file, result.name),
    el('div', { class: 'card-body' },
      el('h3', {}, result.name),
      el('p', { class: 'top-label' }, 'Top label: ', el('strong', {}, result.label),
        ` (${pct(result.probs[best])}, plain CLIP zero-shot)`),
      scores,
      el('p', { class: 'meta' }, `Embedded and scored in ${ms(result.ms)} in the worker. ${BACKEND}.`),
      el('code', { class: 'embedding', 'aria-label': 'First values of the image embedding' },
        `embedding[0..8] of ${result.embedding.length}: ${head}, …`)));
}

const METHOD_TEXT = {
  kpl: 'transductive KPL over the images added together',
  proxies: 'fitted class proxies',
  'single-image': 'single-image knowledge retrieval',
};

function kbCard(file, name, task, classNames, r, embedMs, classifyMs) {
  const best = classNames.indexOf(r.label);
  const clipBest = classNames.indexOf(r.clip_label);
  exported.push({ file: name, task, method: r.method, label: r.label, clip_label: r.clip_label,
    labels: classNames, scores: r.scores, clip_scores: r.clip_scores, evidence: r.evidence,
    embed_ms: embedMs, classify_ms: classifyMs, backend: BACKEND });
  return el('li', {
      class: 'card',
      'data-kpl-result': true,
      'data-file': name,
      'data-label': r.label,
      'data-method': r.method,
      'data-task': task,
      'data-scores': JSON.stringify(r.scores),
    },
    thumbnail(file, name),
    el('div', { class: 'card-body' },
      el('h3', {}, name),
      el('p', { class: 'top-label' }, 'Label: ', el('strong', {}, r.label),
        ` (${pct(r.scores[best] ?? 0)}, ${METHOD_TEXT[r.method] ?? r.method}); plain CLIP: ${r.clip_label}`),
      el('div', { class: 'score-columns' },
        bars(classNames, r.clip_scores, clipBest, 'Plain CLIP'),
        bars(classNames, r.scores, best, 'KPL')),
      r.evidence.length
        ? el('div', { class: 'evidence' }, el('h4', {}, 'Evidence'),
            el('ul', {}, r.evidence.map((e) =>
              el('li', {}, `${e.description} `, el('span', { class: 'sim' }, `(similarity ${e.similarity.toFixed(3)})`)))))
        : null,
      el('p', { class: 'meta' },
        `Embedded in ${ms(embedMs)}, classified in ${ms(classifyMs)}. ${BACKEND}.`)));
}

function errorCard(name, message) {
  return el('li', { class: 'card error', 'data-kpl-error': true, 'data-file': name },
    el('div', {}, el('h3', {}, name), el('p', {}, `Could not classify this file: ${message}`)));
}

/** Plain CLIP over typed labels: each file gets its own card, one failure stops nothing. */
function handleCustom(files) {
  const labels = currentLabels();
  if (labels.length === 0) {
    ui.labels.focus();
    return;
  }
  for (const file of files) {
    const name = file.name || 'pasted image';
    const card = pendingCard(name);
    ui.results.append(card);
    client
      .classify(name, file, labels)
      .then((result) => card.replaceWith(resultCard(file, result)))
      .catch((e) => card.replaceWith(errorCard(name, e.message)))
      .finally(updateEmpty);
  }
}

/**
 * With a knowledge base: embed the files one by one (per-image progress), then one
 * classify call over every embedded image (several: transductive KPL).
 */
async function handleKb(files) {
  const task = ui.task.value;
  const items = files.map((file) => {
    const name = file.name || 'pasted image';
    const card = pendingCard(name);
    ui.results.append(card);
    return { file, name, card };
  });
  updateEmpty();
  let info;
  try {
    info = await kbReady;
  } catch (e) {
    for (const it of items) it.card.replaceWith(errorCard(it.name, e.message));
    return updateEmpty();
  }
  const done = [];
  for (const [i, it] of items.entries()) {
    it.card.querySelector('p').textContent = `Embedding image ${i + 1} of ${items.length}…`;
    try {
      const r = await client.embedImage(it.name, it.file);
      done.push({ ...it, embedding: r.embedding, ms: r.ms });
      it.card.querySelector('p').textContent = `Embedded (${i + 1} of ${items.length}); waiting for the batch…`;
    } catch (e) {
      it.card.replaceWith(errorCard(it.name, e.message));
    }
  }
  if (done.length === 0) return updateEmpty();
  try {
    const out = await client.classifyKb(done.map((d) => d.embedding), 3);
    done.forEach((d, i) =>
      d.card.replaceWith(kbCard(d.file, d.name, task, out.classNames ?? info.classNames, out.results[i], d.ms, out.ms)));
  } catch (e) {
    for (const d of done) d.card.replaceWith(errorCard(d.name, e.message));
  }
  updateEmpty();
}

function handleFiles(fileList) {
  const files = Array.from(fileList ?? []);
  if (files.length === 0) return;
  if (ui.task.value === CUSTOM) handleCustom(files);
  else handleKb(files);
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
  const cols = ['file', 'task', 'method', 'label', 'clip_label', 'labels', 'scores', 'clip_scores', 'backend'];
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

ui.labels.addEventListener('input', () => currentLabels());

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
    ui.cacheInfo.textContent = `Offline cache unavailable: ${e.message}`;
  }
  ui.cacheInfo.dataset.bytes = String(bytes);
}

ui.cacheRefresh.addEventListener('click', showCacheSize);
ui.cacheClear.addEventListener('click', async () => {
  for (const key of await caches.keys()) await caches.delete(key);
  await showCacheSize();
});

if ('serviceWorker' in navigator) {
  navigator.serviceWorker
    .register('/sw.js', { scope: '/' })
    .then(() => navigator.serviceWorker.ready)
    .then(() => {
      document.body.dataset.offlineReady = 'true';
      showCacheSize();
    })
    .catch((e) => (ui.cacheInfo.textContent = `Offline mode unavailable: ${e.message}`));
} else {
  ui.cacheInfo.textContent = 'Offline mode unavailable in this browser.';
}

updateEmpty();
loadTasks().then(loadModel);
